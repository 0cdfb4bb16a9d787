/* src/router/router_select.h: edge scoring and choice.
 *
 * score = w_distance * distance score + w_load * (1 - load) + w_hit * hit_ratio, where the
 * distance score is 1 - d / 20015 km (d: haversine distance from the client's location to
 * the edge; 20015 km is half the Earth's circumference, the largest possible d), so with
 * equal load and hit ratio the nearest edge wins. Only eligible edges (healthy, not
 * draining) are candidates; an edge over its capacity spills to the next one unless every
 * eligible edge is over capacity. When no edge is eligible the router fails open and
 * answers by score over all edges of the family (an answer that may work beats none).
 *
 * Inputs come from struct router_edge_view, the published state of one edge (written by
 * the health checker, read by any thread: every field is a relaxed atomic). Hysteresis
 * lives in what is published: load and hit ratio move only by at least `deadband`, and
 * the over-capacity flag has a band of its own (router_view_publish), so answers do not
 * flap while the edges' reports jitter.
 *
 * struct router_loc_cache is a per-thread, direct-mapped cache from a database record to
 * its decoded location and its distance score to every edge. */
#ifndef MLCDN_ROUTER_ROUTER_SELECT_H
#define MLCDN_ROUTER_ROUTER_SELECT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "router/router_geo.h"

#define ROUTER_MAX_EDGES 128
#define ROUTER_EARTH_RADIUS_KM 6371.0088
#define ROUTER_HALF_CIRCUMFERENCE_KM 20015.087

struct router_edge_cfg {
    char name[64];
    double lat, lon;
    int family;       /* 4 or 6 */
    uint8_t addr[16]; /* 4 bytes used for IPv4 */
    char addr_text[64];
    char health_url[512];
    double capacity; /* load ceiling (0..1]; 1 when not given */
};

struct router_edge_view {
    atomic_int eligible; /* healthy and not draining */
    atomic_int over;     /* over capacity */
    _Atomic double load; /* as published (deadband applied) */
    _Atomic double hit;
};

struct router_weights {
    double distance, load, hit;
};

struct router_score {
    double distance_km;
    double distance_score;
    double load, hit;
    double total;
    int eligible, over, candidate;
};

/* Great-circle distance in km (haversine, mean Earth radius). */
double router_haversine_km(double lat1, double lon1, double lat2, double lon2);
/* 1 - km / half circumference, clamped to [0, 1]. */
double router_distance_score(double km);

/* Publishes a health report into v with hysteresis: load/hit change only when they moved by
 * at least `deadband` (or on the first report, `first`); over-capacity starts at load >=
 * capacity and ends below capacity - deadband. */
void router_view_publish(struct router_edge_view *v, int eligible, double load, double hit,
                         double capacity, double deadband, int first);

/* Chooses among the n edges of `family` (4 or 6) given each edge's distance score
 * (dist[i]). Fills scores[i] when scores != NULL. Returns the index, or -1 when no edge has
 * that family. Ties go to the nearer edge, then the lower index. */
int router_select(const struct router_edge_cfg *cfg, struct router_edge_view *view, size_t n,
                  const float *dist, const struct router_weights *w, int family,
                  struct router_score *scores);

/* ---- location cache ---- */
#define ROUTER_LOC_CACHE_SIZE 4096 /* power of two */

struct router_loc_entry {
    uint64_t key; /* 0 = empty */
    struct router_geo_loc loc;
    float dist[ROUTER_MAX_EDGES];
};

/* Address → database record, so repeated clients (the same resolver, the same ECS subnet)
 * skip the search-tree walk. The databases never change while serving. */
#define ROUTER_ADDR_CACHE_SIZE 4096 /* power of two */

struct router_addr_entry {
    uint8_t valid, family, netmask, found;
    uint32_t db;
    uint32_t offset;
    uint8_t addr[16];
};

struct router_loc_cache {
    unsigned magic;
#define ROUTER_LOC_CACHE_MAGIC 0x4c4f4331u
    const struct router_geo *geo;
    const struct router_edge_cfg *edges;
    size_t nedges;
    int have_default;
    double default_lat, default_lon;
    uint64_t hits, misses, addr_hits;
    struct router_loc_entry e[ROUTER_LOC_CACHE_SIZE];
    struct router_addr_entry a[ROUTER_ADDR_CACHE_SIZE];
};

/* A cache for one thread. With have_default = 0, addresses without a location get the same
 * distance score (0.5) for every edge, so load and hit ratio decide for them. Caller frees
 * with free(). */
struct router_loc_cache *router_loc_cache_new(const struct router_geo *geo,
                                              const struct router_edge_cfg *edges, size_t n,
                                              int have_default, double dlat, double dlon);

/* Locates an address (family 4 or 6). Returns the cache entry (valid until the next call
 * on this cache) and the network prefix in *netmask. geo may be NULL (no database). */
const struct router_loc_entry *router_loc_lookup(struct router_loc_cache *c, int family,
                                                 const uint8_t *addr, uint8_t *netmask);

#endif
