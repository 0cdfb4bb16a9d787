/* src/ctl/ctl_world.h: the demo world of `mlcdn run` (inside src/ctl only).
 *
 * Regions, the round-trip times between users, edges and the origin (the one table of
 * them, in ctl_world.c), the addresses every part of a region uses on the loopback
 * network, the city database the router reads, and the workload replayed from each
 * region's users. */
#ifndef MLCDN_CTL_WORLD_H
#define MLCDN_CTL_WORLD_H

#include <stddef.h>
#include <stdint.h>

#define WORLD_MAX_REGIONS 128

struct world_region {
    char name[32];  /* tokyo, london, virginia, mumbai, saopaulo, sydney, r007-n12w045 ... */
    char title[40]; /* "Tokyo", or the coordinates of a generated region */
    char cc[3];     /* a country code for the city database */
    double lat, lon;
    unsigned rtt_origin_ms; /* this region's edge <-> the origin (N. Virginia) */
    unsigned rtt_user_ms;   /* a user of the region <-> the region's edge */
};

/* The origin's region: N. Virginia. */
extern const double world_origin_lat, world_origin_lon;

/* Writes n regions (1 <= n <= WORLD_MAX_REGIONS) into out: Tokyo, London, N. Virginia,
 * Mumbai, Sao Paulo and Sydney first (the table's round-trip times), then generated ones
 * spread over the world
 * (round-trip times from the great-circle distance to the origin). Deterministic. */
void world_regions(struct world_region *out, size_t n);

/* A user of region r straight to the origin: the last mile, then the long haul. */
unsigned world_rtt_user_origin(const struct world_region *r);

/* The loopback address of part `part` of region index i (0-based):
 * 127.<part>.<(i+1)/256>.<(i+1)%256>; parts are the WORLD_IP_* below. */
enum {
    WORLD_IP_USER_EDGE = 1,
    WORLD_IP_EDGE = 2,
    WORLD_IP_USER_ORIGIN = 3,
    WORLD_IP_EDGE_ORIGIN = 4,
    WORLD_IP_REDIS = 5
};
void world_ip(int part, size_t i, char *out, size_t outlen);

/* The users of region index i live in 10.<i+1>.0.0/16; 127.0.0.0/8 are users of N. Virginia
 * (region index 2; the first region when there are fewer), next to the origin. */
void world_users_net(size_t i, char *out, size_t outlen);

/* A place outside the regions' user networks the city database also knows: an address's
 * /24 (what an EDNS Client Subnet option names) at a city's coordinates. */
struct world_place {
    uint32_t net; /* host order, the /24's first address */
    double lat, lon;
    char cc[3];
    char city[40];
};

/* Reads places from a CSV file with a header naming at least the columns ip, lat and lon
 * (country and city are kept when present), as tests/fixtures/geo/test-ips.csv. IPv4 only;
 * 10.0.0.0/8 and 127.0.0.0/8 (the regions' users) are refused. On success *out (owned,
 * free()) holds *n places. 0, or -errno / -EINVAL with err naming the line. */
int world_places_load(const char *path, struct world_place **out, size_t *n, char *err,
                      size_t errlen);

/* Writes a MaxMind DB (city layout, IPv4 tree) mapping every region's users to the
 * region's coordinates, country and name, and each place's /24 to its own (a /24 given
 * twice keeps the first). 0 or -errno. */
int world_mmdb_write(const char *path, const struct world_region *r, size_t n,
                     const struct world_place *places, size_t nplaces);

/* One region as the workload sees it. */
struct world_target {
    const struct world_region *region;
    char edge_url[64];          /* http://ADDR:PORT: the users' way to their nearest edge */
    char origin_url[64];        /* the users' way straight to the origin */
    char model_url[64];         /* the users' way to the origin's model server ("" without) */
    char edge_origin_url[64];   /* the edge's way to the origin (the run reaches it too) */
    char edge_direct_url[64];   /* the edge's own listener, no relay in between */
    char origin_direct_url[64]; /* the origin's own listener */
};

/* Round-trip times the relays add, in ms (0: no answer). */
struct world_rtt {
    double user_edge, user_origin, edge_origin;
};

/* Measures each region's three emulated paths: `samples` small GETs on one kept-alive
 * connection per path (the first, which pays the handshake, left out), the origin asked to
 * add no latency (X-Origin-Latency: 0); the fastest through the relay less the fastest
 * straight to the same listener (the server's own time) is the round trip the relay adds.
 * All regions at once. Fills out[0..n). */
void world_rtt_measure(const struct world_target *t, size_t n, unsigned samples,
                       struct world_rtt *out);

/* Prints the measured against the configured round-trip times: a line per region up to 8
 * regions, else the worst deviation. Returns the largest relative deviation seen. */
double world_rtt_print(const struct world_target *t, size_t n, const struct world_rtt *m);

struct world_workload_cfg {
    size_t requests;            /* per region and way */
    unsigned users;             /* concurrent users per region */
    const char *const *models;  /* model names to ask predictions of (NULL-terminated) */
    const unsigned *model_dims; /* each model's feature count */
    const char *origin_metrics; /* the origin's admin /metrics URL: bytes served */
};

/* Replays the mixed workload from every region's users, first through their nearest
 * edge, then straight to the origin, and prints the comparison table to stdout.
 * 0, or -errno (a transport failure the table cannot hide is printed and counted). */
int world_workload_run(const struct world_target *t, size_t n,
                       const struct world_workload_cfg *cfg);

#endif
