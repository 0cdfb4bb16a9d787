/* src/router/router_geo.c: mmdb lookups for both city layouts (see router_geo.h).
 *
 * The layout is decided per record by which path exists, not per file: the metadata's
 * database_type is free text ("GeoLite2-City", "city ipv4", ...) and not reliable enough.
 * libmaxminddb reports the network prefix of an IPv4 lookup in an IPv6 tree counted from
 * the start of the IPv6 address (::a.b.c.d/120 for a /24); the ECS scope needs it in the
 * IPv4 family, so 96 is taken off. */
#include "router/router_geo.h"

#include <arpa/inet.h>
#include <errno.h>
#include <maxminddb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/mc.h"

struct router_geo {
    unsigned magic;
#define ROUTER_GEO_MAGIC 0x47454f31u
    unsigned n;
    MMDB_s db[ROUTER_GEO_MAX_DB];
    char desc[ROUTER_GEO_MAX_DB][160];
};

int router_geo_open(const char *const *paths, size_t n, struct router_geo **out, char *err,
                    size_t errlen)
{
    struct router_geo *g;

    if (n == 0 || n > ROUTER_GEO_MAX_DB) {
        snprintf(err, errlen, "between 1 and %d --geoip files", ROUTER_GEO_MAX_DB);
        return -EINVAL;
    }
    g = mc_xcalloc(1, sizeof(*g));
    MC_INIT_OBJ(g, ROUTER_GEO_MAGIC);
    for (size_t i = 0; i < n; i++) {
        int rc = MMDB_open(paths[i], MMDB_MODE_MMAP, &g->db[i]);
        if (rc != MMDB_SUCCESS) {
            snprintf(err, errlen, "%s: %s", paths[i], MMDB_strerror(rc));
            for (size_t j = 0; j < i; j++)
                MMDB_close(&g->db[j]);
            MC_FREE_OBJ(g);
            return rc == MMDB_FILE_OPEN_ERROR ? -ENOENT : -EINVAL;
        }
        g->n++;
        const MMDB_metadata_s *m = &g->db[i].metadata;
        time_t t = (time_t)m->build_epoch;
        struct tm tm;
        char day[16] = "?";
        if (gmtime_r(&t, &tm))
            strftime(day, sizeof(day), "%Y-%m-%d", &tm);
        snprintf(g->desc[i], sizeof(g->desc[i]), "%s: %s, IPv%u tree, built %s, %u nodes", paths[i],
                 m->database_type ? m->database_type : "?", (unsigned)m->ip_version, day,
                 (unsigned)m->node_count);
    }
    *out = g;
    return 0;
}

void router_geo_free(struct router_geo **gp)
{
    struct router_geo *g = *gp;
    if (g == NULL)
        return;
    MC_CHECK_OBJ(g, ROUTER_GEO_MAGIC);
    for (unsigned i = 0; i < g->n; i++)
        MMDB_close(&g->db[i]);
    MC_FREE_OBJ(g);
    *gp = NULL;
}

unsigned router_geo_count(const struct router_geo *g)
{
    return g->n;
}

const char *router_geo_describe(const struct router_geo *g, unsigned i)
{
    return i < g->n ? g->desc[i] : "";
}

int router_geo_find(const struct router_geo *g, int family, const uint8_t *addr,
                    struct router_geo_hit *hit)
{
    memset(hit, 0, sizeof(*hit));
    for (unsigned i = 0; i < g->n; i++) {
        const MMDB_s *db = &g->db[i];
        int mmerr = 0;
        MMDB_lookup_result_s r;
        if (family == 6 && db->metadata.ip_version != 6)
            continue;
        if (family == 4) {
            struct sockaddr_in sin = {.sin_family = AF_INET};
            memcpy(&sin.sin_addr, addr, 4);
            r = MMDB_lookup_sockaddr(db, (const struct sockaddr *)&sin, &mmerr);
        } else {
            struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
            memcpy(&sin6.sin6_addr, addr, 16);
            r = MMDB_lookup_sockaddr(db, (const struct sockaddr *)&sin6, &mmerr);
        }
        if (mmerr != MMDB_SUCCESS)
            return -EIO;
        unsigned nm = r.netmask;
        if (family == 4 && db->metadata.ip_version == 6)
            nm = nm >= 96 ? nm - 96 : 0;
        if (!r.found_entry) {
            /* Remember the widest "unknown" network for the scope, then try the next file. */
            if (!hit->found && (hit->netmask == 0 || nm < hit->netmask))
                hit->netmask = (uint8_t)nm;
            continue;
        }
        hit->found = 1;
        hit->db = i;
        hit->offset = r.entry.offset;
        hit->netmask = (uint8_t)nm;
        return 0;
    }
    return 0;
}

static int get_number(MMDB_entry_s *e, const char *const *path, double *out)
{
    MMDB_entry_data_s d;
    if (MMDB_aget_value(e, &d, path) != MMDB_SUCCESS || !d.has_data)
        return -1;
    switch (d.type) {
    case MMDB_DATA_TYPE_DOUBLE: *out = d.double_value; return 0;
    case MMDB_DATA_TYPE_FLOAT: *out = d.float_value; return 0;
    default: return -1;
    }
}

static int get_cc(MMDB_entry_s *e, const char *const *path, char cc[3])
{
    MMDB_entry_data_s d;
    if (MMDB_aget_value(e, &d, path) != MMDB_SUCCESS || !d.has_data ||
        d.type != MMDB_DATA_TYPE_UTF8_STRING || d.data_size != 2)
        return -1;
    cc[0] = (char)(d.utf8_string[0] & ~0x20);
    cc[1] = (char)(d.utf8_string[1] & ~0x20);
    cc[2] = 0;
    return 0;
}

int router_geo_decode(const struct router_geo *g, const struct router_geo_hit *hit,
                      struct router_geo_loc *loc)
{
    static const char *const p_lat[] = {"location", "latitude", NULL};
    static const char *const p_lon[] = {"location", "longitude", NULL};
    static const char *const f_lat[] = {"latitude", NULL};
    static const char *const f_lon[] = {"longitude", NULL};
    static const char *const p_cc[] = {"country", "iso_code", NULL};
    static const char *const p_rcc[] = {"registered_country", "iso_code", NULL};
    static const char *const f_cc[] = {"country_code", NULL};

    memset(loc, 0, sizeof(*loc));
    if (!hit->found || hit->db >= g->n)
        return 0;
    MMDB_entry_s e = {.mmdb = &g->db[hit->db], .offset = hit->offset};
    double lat, lon;
    if (get_cc(&e, p_cc, loc->country) < 0 && get_cc(&e, f_cc, loc->country) < 0 &&
        get_cc(&e, p_rcc, loc->country) < 0)
        loc->country[0] = 0;
    if ((get_number(&e, p_lat, &lat) == 0 && get_number(&e, p_lon, &lon) == 0) ||
        (get_number(&e, f_lat, &lat) == 0 && get_number(&e, f_lon, &lon) == 0)) {
        if (lat >= -90 && lat <= 90 && lon >= -180 && lon <= 180) {
            loc->src = GEO_SRC_CITY;
            loc->lat = lat;
            loc->lon = lon;
            return 0;
        }
    }
    if (loc->country[0] && router_geo_country_loc(loc->country, &lat, &lon) == 0) {
        loc->src = GEO_SRC_COUNTRY;
        loc->lat = lat;
        loc->lon = lon;
    }
    return 0;
}

/* ---- country locations ---- */

struct country_loc {
    char cc[3];
    float lat, lon;
};

/* Approximate population centres (mostly the largest city) of the countries with most
 * Internet users; used only for records that carry a country but no coordinates. */
static const struct country_loc builtin_countries[] = {
    {"AE", 25.2f, 55.3f},  {"AR", -34.6f, -58.4f}, {"AT", 48.2f, 16.4f},   {"AU", -33.9f, 151.2f},
    {"BD", 23.8f, 90.4f},  {"BE", 50.8f, 4.4f},    {"BG", 42.7f, 23.3f},   {"BR", -23.5f, -46.6f},
    {"BY", 53.9f, 27.6f},  {"CA", 43.7f, -79.4f},  {"CH", 47.4f, 8.5f},    {"CL", -33.4f, -70.6f},
    {"CN", 31.2f, 121.5f}, {"CO", 4.7f, -74.1f},   {"CZ", 50.1f, 14.4f},   {"DE", 50.1f, 8.7f},
    {"DK", 55.7f, 12.6f},  {"DZ", 36.8f, 3.1f},    {"EC", -2.2f, -79.9f},  {"EG", 30.0f, 31.2f},
    {"ES", 40.4f, -3.7f},  {"FI", 60.2f, 24.9f},   {"FR", 48.9f, 2.4f},    {"GB", 51.5f, -0.1f},
    {"GR", 38.0f, 23.7f},  {"HK", 22.3f, 114.2f},  {"HU", 47.5f, 19.0f},   {"ID", -6.2f, 106.8f},
    {"IE", 53.3f, -6.3f},  {"IL", 32.1f, 34.8f},   {"IN", 19.1f, 72.9f},   {"IQ", 33.3f, 44.4f},
    {"IR", 35.7f, 51.4f},  {"IT", 45.5f, 9.2f},    {"JP", 35.7f, 139.7f},  {"KE", -1.3f, 36.8f},
    {"KR", 37.6f, 127.0f}, {"KZ", 43.2f, 76.9f},   {"LK", 6.9f, 79.9f},    {"MA", 33.6f, -7.6f},
    {"MX", 19.4f, -99.1f}, {"MY", 3.1f, 101.7f},   {"NG", 6.5f, 3.4f},     {"NL", 52.4f, 4.9f},
    {"NO", 59.9f, 10.8f},  {"NZ", -36.8f, 174.8f}, {"PE", -12.0f, -77.0f}, {"PH", 14.6f, 121.0f},
    {"PK", 24.9f, 67.0f},  {"PL", 52.2f, 21.0f},   {"PT", 38.7f, -9.1f},   {"RO", 44.4f, 26.1f},
    {"RS", 44.8f, 20.5f},  {"RU", 55.8f, 37.6f},   {"SA", 24.7f, 46.7f},   {"SE", 59.3f, 18.1f},
    {"SG", 1.35f, 103.8f}, {"TH", 13.8f, 100.5f},  {"TR", 41.0f, 29.0f},   {"TW", 25.0f, 121.5f},
    {"UA", 50.5f, 30.5f},  {"US", 39.8f, -98.6f},  {"UY", -34.9f, -56.2f}, {"VE", 10.5f, -66.9f},
    {"VN", 10.8f, 106.7f}, {"ZA", -26.2f, 28.0f},
};

#define COUNTRY_OVERRIDES_MAX 256
static struct country_loc overrides[COUNTRY_OVERRIDES_MAX];
static size_t noverrides;

int router_geo_country_set(const char *cc, double lat, double lon)
{
    if (strlen(cc) != 2 || lat < -90 || lat > 90 || lon < -180 || lon > 180)
        return -EINVAL;
    char up[3] = {(char)(cc[0] & ~0x20), (char)(cc[1] & ~0x20), 0};
    for (size_t i = 0; i < noverrides; i++)
        if (!memcmp(overrides[i].cc, up, 2)) {
            overrides[i].lat = (float)lat;
            overrides[i].lon = (float)lon;
            return 0;
        }
    if (noverrides >= COUNTRY_OVERRIDES_MAX)
        return -ENOSPC;
    memcpy(overrides[noverrides].cc, up, 3);
    overrides[noverrides].lat = (float)lat;
    overrides[noverrides].lon = (float)lon;
    noverrides++;
    return 0;
}

int router_geo_country_loc(const char *cc, double *lat, double *lon)
{
    for (size_t i = 0; i < noverrides; i++)
        if (!memcmp(overrides[i].cc, cc, 2)) {
            *lat = overrides[i].lat;
            *lon = overrides[i].lon;
            return 0;
        }
    for (size_t i = 0; i < MC_ARRAY_SIZE(builtin_countries); i++)
        if (!memcmp(builtin_countries[i].cc, cc, 2)) {
            *lat = builtin_countries[i].lat;
            *lon = builtin_countries[i].lon;
            return 0;
        }
    return -ENOENT;
}
