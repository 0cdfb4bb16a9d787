/* src/router/router_geo.h: client location from MaxMind DB (mmdb) files.
 *
 * Two layouts are read: MaxMind's GeoIP2/GeoLite2-City (`location.latitude`,
 * `location.longitude`, `country.iso_code`, falling back to `registered_country`) and the
 * flat layout of the @ip-location-db/ *-city-mmdb packages (`latitude`, `longitude`,
 * `country_code` at the top level). The layout is detected per record, so either file, or
 * one of each, works. Up to ROUTER_GEO_MAX_DB files may be opened: a lookup goes to the
 * first file whose IP version can hold the address (the flat packages ship IPv4 and IPv6
 * in two files).
 *
 * Lookups are split in two so callers can cache the expensive part: router_geo_find()
 * walks the search tree (cheap) and names the record by a key; router_geo_decode() reads
 * the record's fields. A record without coordinates but with a country gets the country's
 * location from a built-in table (router_geo_country_loc), overridable by configuration.
 * struct router_geo is read-only after open: any number of threads may look up at once. */
#ifndef MLCDN_ROUTER_ROUTER_GEO_H
#define MLCDN_ROUTER_ROUTER_GEO_H

#include <stddef.h>
#include <stdint.h>

#define ROUTER_GEO_MAX_DB 4

struct router_geo; /* opaque; router_geo_open() / router_geo_free() */

struct router_geo_hit {
    int found;       /* the address is in a database with a record */
    unsigned db;     /* which file */
    uint32_t offset; /* record offset in that file's data section */
    uint8_t netmask; /* prefix length of the network holding the address (in its family) */
};

enum router_geo_src {
    GEO_SRC_NONE = 0, /* no location */
    GEO_SRC_CITY,     /* the record's own coordinates */
    GEO_SRC_COUNTRY,  /* the country's location */
};

struct router_geo_loc {
    enum router_geo_src src;
    double lat, lon;
    char country[3]; /* ISO 3166-1 alpha-2, "" when unknown */
};

/* Opens every path (at least one). Returns 0, or a negative errno with a message naming
 * the file in err. The caller owns *out. */
int router_geo_open(const char *const *paths, size_t n, struct router_geo **out, char *err,
                    size_t errlen);
void router_geo_free(struct router_geo **g);

/* Looks up an IPv4 (family 4, 4 bytes) or IPv6 (family 6, 16 bytes) address. Always
 * fills *hit (found = 0 when no database knows it). Returns 0 or -EIO on a corrupt file. */
int router_geo_find(const struct router_geo *g, int family, const uint8_t *addr,
                    struct router_geo_hit *hit);
/* Reads the location of a found record. Returns 0 or -EIO. */
int router_geo_decode(const struct router_geo *g, const struct router_geo_hit *hit,
                      struct router_geo_loc *loc);
/* Short description of file i ("GeoLite2-City, 2019-12-24, city layout") for logs. */
const char *router_geo_describe(const struct router_geo *g, unsigned i);
unsigned router_geo_count(const struct router_geo *g);

/* Country location: the configured override if any, else the built-in table (capital or
 * population centre). Returns 0 or -ENOENT. */
int router_geo_country_loc(const char *cc, double *lat, double *lon);
/* Adds or replaces an override ("XX", lat, lon); process-wide, call before serving. */
int router_geo_country_set(const char *cc, double lat, double lon);

#endif
