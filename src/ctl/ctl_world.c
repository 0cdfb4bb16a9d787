/* src/ctl/ctl_world.c: regions, round-trip times, addresses and the city database of the
 * demo world (see ctl_world.h).
 *
 * The round-trip times are the one table of them (docs/operations.md quotes it): measured
 * figures between cloud regions, rounded. Generated regions take theirs from the
 * great-circle distance to the origin, by the same rule the table follows (about 72 km of
 * distance per millisecond of round trip, light in fibre over real, indirect routes).
 *
 * The city database is a MaxMind DB (format 2.0: a binary search tree over the address
 * bits with 32-bit records, 16 zero bytes, the data section, then the metadata map after
 * "\xab\xcd\xefMaxMind.com"), written here so the demo needs no download. */
#include "ctl/ctl_world.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/mc.h"

const double world_origin_lat = 39.04, world_origin_lon = -77.49;

/* name, title, country, lat, lon, RTT edge <-> origin (ms), RTT user <-> edge (ms) */
static const struct world_region named[] = {
    {"tokyo", "Tokyo", "JP", 35.68, 139.69, 150, 10},
    {"london", "London", "GB", 51.51, -0.13, 75, 8},
    {"virginia", "N. Virginia", "US", 39.04, -77.49, 2, 5},
    {"mumbai", "Mumbai", "IN", 19.08, 72.88, 190, 20},
    {"saopaulo", "Sao Paulo", "BR", -23.55, -46.63, 115, 15},
    {"sydney", "Sydney", "AU", -33.87, 151.21, 200, 15},
};

#define WORLD_KM_PER_RTT_MS 72.0

static double great_circle_km(double lat1, double lon1, double lat2, double lon2)
{
    const double r = M_PI / 180.0;
    double dlat = (lat2 - lat1) * r, dlon = (lon2 - lon1) * r;
    double a = sin(dlat / 2) * sin(dlat / 2) +
               cos(lat1 * r) * cos(lat2 * r) * sin(dlon / 2) * sin(dlon / 2);
    return 2 * 6371.0 * asin(sqrt(MC_MIN(1.0, a)));
}

void world_regions(struct world_region *out, size_t n)
{
    MC_ASSERT(n >= 1 && n <= WORLD_MAX_REGIONS);
    for (size_t i = 0; i < n && i < MC_ARRAY_SIZE(named); i++)
        out[i] = named[i];
    /* The rest on a Fibonacci lattice (even spacing, no clusters), kept between 60 S and
     * 70 N where people live. */
    size_t m = n > MC_ARRAY_SIZE(named) ? n - MC_ARRAY_SIZE(named) : 0;
    for (size_t k = 0; k < m; k++) {
        struct world_region *g = &out[MC_ARRAY_SIZE(named) + k];
        double z = 1.0 - (2.0 * (double)k + 1.0) / (double)m;
        double lat = asin(z) * 180.0 / M_PI * (65.0 / 90.0) + 5.0;
        double lon = fmod((double)k * 137.50776405, 360.0) - 180.0;
        memset(g, 0, sizeof(*g));
        g->lat = round(lat * 100) / 100;
        g->lon = round(lon * 100) / 100;
        snprintf(g->name, sizeof(g->name), "r%03zu-%c%02d%c%03d", MC_ARRAY_SIZE(named) + k + 1,
                 g->lat < 0 ? 's' : 'n', (int)fabs(g->lat), g->lon < 0 ? 'w' : 'e',
                 (int)fabs(g->lon));
        snprintf(g->title, sizeof(g->title), "%.2f,%.2f", g->lat, g->lon);
        snprintf(g->cc, sizeof(g->cc), "ZZ");
        double km = great_circle_km(g->lat, g->lon, world_origin_lat, world_origin_lon);
        g->rtt_origin_ms = 2 + (unsigned)(km / WORLD_KM_PER_RTT_MS);
        g->rtt_user_ms = 5 + (unsigned)(k % 4) * 5;
    }
}

unsigned world_rtt_user_origin(const struct world_region *r)
{
    return r->rtt_user_ms + r->rtt_origin_ms;
}

void world_ip(int part, size_t i, char *out, size_t outlen)
{
    snprintf(out, outlen, "127.%d.%zu.%zu", part, (i + 1) / 256, (i + 1) % 256);
}

void world_users_net(size_t i, char *out, size_t outlen)
{
    snprintf(out, outlen, "10.%zu.0.0/16", i + 1);
}

/* ---- MaxMind DB writer ---- */

struct mm_buf {
    unsigned char *p;
    size_t n, cap;
};

static void mm_put(struct mm_buf *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = MC_MAX(b->cap * 2, b->n + n + 256);
        b->p = mc_xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

/* The control byte(s) of a field: type (1..15) and payload size. */
static void mm_ctrl(struct mm_buf *b, unsigned type, size_t size)
{
    unsigned char c[5];
    size_t n = 0;
    unsigned first = type <= 7 ? type << 5 : 0;

    if (size < 29) {
        c[n++] = (unsigned char)(first | size);
    } else if (size < 29 + 256) {
        c[n++] = (unsigned char)(first | 29);
    } else {
        c[n++] = (unsigned char)(first | 30);
    }
    if (type > 7)
        c[n++] = (unsigned char)(type - 7);
    if (size >= 29 + 256) {
        c[n++] = (unsigned char)((size - 285) >> 8);
        c[n++] = (unsigned char)(size - 285);
    } else if (size >= 29) {
        c[n++] = (unsigned char)(size - 29);
    }
    mm_put(b, c, n);
}

static void mm_str(struct mm_buf *b, const char *s)
{
    mm_ctrl(b, 2, strlen(s));
    mm_put(b, s, strlen(s));
}

static void mm_double(struct mm_buf *b, double v)
{
    unsigned char d[8];
    uint64_t u;
    memcpy(&u, &v, 8);
    for (int i = 0; i < 8; i++)
        d[i] = (unsigned char)(u >> (56 - 8 * i));
    mm_ctrl(b, 3, 8);
    mm_put(b, d, 8);
}

/* Unsigned integers: type 5 (uint16), 6 (uint32) or 9 (uint64), big-endian, no leading 0s. */
static void mm_uint(struct mm_buf *b, unsigned type, uint64_t v)
{
    unsigned char d[8];
    size_t n = 0;
    for (int sh = 56; sh >= 0; sh -= 8)
        if (n || (v >> sh) & 0xff)
            d[n++] = (unsigned char)(v >> sh);
    mm_ctrl(b, type, n);
    mm_put(b, d, n);
}

static void mm_record(struct mm_buf *b, const char *city, const char *cc, double lat, double lon)
{
    mm_ctrl(b, 7, 3);
    mm_str(b, "city");
    mm_ctrl(b, 7, 1);
    mm_str(b, "names");
    mm_ctrl(b, 7, 1);
    mm_str(b, "en");
    mm_str(b, city);
    mm_str(b, "country");
    mm_ctrl(b, 7, 1);
    mm_str(b, "iso_code");
    mm_str(b, cc);
    mm_str(b, "location");
    mm_ctrl(b, 7, 2);
    mm_str(b, "latitude");
    mm_double(b, lat);
    mm_str(b, "longitude");
    mm_double(b, lon);
}

/* Search tree: node k has records rec[2k] (bit 0) and rec[2k+1] (bit 1). A record is a
 * node index, "empty" or data (MM_DATA | region index) until the layout is known. */
#define MM_EMPTY 0xffffffffu
#define MM_DATA 0x80000000u

struct mm_tree {
    uint32_t *rec;
    size_t nodes, cap;
};

static uint32_t mm_node_new(struct mm_tree *t)
{
    if (t->nodes == t->cap) {
        t->cap = MC_MAX(t->cap * 2, 64);
        t->rec = mc_xrealloc(t->rec, t->cap * 2 * sizeof(*t->rec));
    }
    t->rec[2 * t->nodes] = t->rec[2 * t->nodes + 1] = MM_EMPTY;
    return (uint32_t)t->nodes++;
}

static int mm_insert(struct mm_tree *t, uint32_t addr, unsigned prefix, uint32_t data)
{
    uint32_t node = 0;
    for (unsigned i = 0; i < prefix; i++) {
        unsigned bit = (addr >> (31 - i)) & 1;
        uint32_t *rec = &t->rec[2 * node + bit];
        if (i == prefix - 1) {
            if (*rec != MM_EMPTY)
                return -EEXIST;
            *rec = MM_DATA | data;
            return 0;
        }
        if (*rec == MM_EMPTY) {
            uint32_t nn = mm_node_new(t); /* may move t->rec */
            t->rec[2 * node + bit] = nn;
            node = nn;
        } else if (*rec & MM_DATA) {
            return -EEXIST;
        } else {
            node = *rec;
        }
    }
    return -EINVAL;
}

int world_mmdb_write(const char *path, const struct world_region *r, size_t n,
                     const struct world_place *places, size_t nplaces)
{
    struct mm_tree t = {0};
    struct mm_buf data = {0}, out = {0}, meta = {0};
    size_t *off = mc_xcalloc(n + nplaces, sizeof(*off));
    int err = 0, fd = -1;

    mm_node_new(&t);
    for (size_t i = 0; i < n && !err; i++) {
        off[i] = data.n;
        mm_record(&data, r[i].title, r[i].cc, r[i].lat, r[i].lon);
        err = mm_insert(&t, (uint32_t)(10u << 24 | (uint32_t)(i + 1) << 16), 16, (uint32_t)i);
    }
    if (!err)
        err = mm_insert(&t, 127u << 24, 8, n > 2 ? 2 : 0);
    for (size_t k = 0; k < nplaces && !err; k++) {
        const struct world_place *p = &places[k];
        off[n + k] = data.n;
        mm_record(&data, p->city, p->cc, p->lat, p->lon);
        err = mm_insert(&t, p->net, 24, (uint32_t)(n + k));
        if (err == -EEXIST)
            err = 0; /* the same /24 twice: the first place stays */
    }
    if (err)
        goto out;
    for (size_t k = 0; k < 2 * t.nodes; k++) {
        uint32_t v = t.rec[k], w;
        if (v == MM_EMPTY)
            w = (uint32_t)t.nodes;
        else if (v & MM_DATA)
            w = (uint32_t)(t.nodes + 16 + off[v & ~MM_DATA]);
        else
            w = v;
        unsigned char be[4] = {(unsigned char)(w >> 24), (unsigned char)(w >> 16),
                               (unsigned char)(w >> 8), (unsigned char)w};
        mm_put(&out, be, 4);
    }
    static const unsigned char zero[16];
    mm_put(&out, zero, 16);
    mm_put(&out, data.p, data.n);
    mm_put(&out, "\xab\xcd\xefMaxMind.com", 14);
    mm_ctrl(&meta, 7, 9);
    mm_str(&meta, "node_count");
    mm_uint(&meta, 6, t.nodes);
    mm_str(&meta, "record_size");
    mm_uint(&meta, 5, 32);
    mm_str(&meta, "ip_version");
    mm_uint(&meta, 5, 4);
    mm_str(&meta, "database_type");
    mm_str(&meta, "mlcdn-demo-City");
    mm_str(&meta, "languages");
    mm_ctrl(&meta, 11, 1);
    mm_str(&meta, "en");
    mm_str(&meta, "binary_format_major_version");
    mm_uint(&meta, 5, 2);
    mm_str(&meta, "binary_format_minor_version");
    mm_uint(&meta, 5, 0);
    mm_str(&meta, "build_epoch");
    mm_uint(&meta, 9, (uint64_t)time(NULL));
    mm_str(&meta, "description");
    mm_ctrl(&meta, 7, 1);
    mm_str(&meta, "en");
    mm_str(&meta, "mlcdn run: the demo regions' users");
    mm_put(&out, meta.p, meta.n);

    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        err = -errno;
        goto out;
    }
    for (size_t w = 0; w < out.n;) {
        ssize_t k = write(fd, out.p + w, out.n - w);
        if (k < 0) {
            err = -errno;
            break;
        }
        w += (size_t)k;
    }
    if (close(fd) != 0 && !err)
        err = -errno;
out:
    free(t.rec);
    free(data.p);
    free(out.p);
    free(meta.p);
    free(off);
    return err;
}

/* ---- places from a CSV file ---- */

/* Splits a CSV line (no quoting: the files hold plain fields) in place. */
static size_t csv_split(char *line, char **f, size_t max)
{
    size_t n = 0;
    line[strcspn(line, "\r\n")] = '\0';
    for (char *p = line; n < max;) {
        f[n++] = p;
        p = strchr(p, ',');
        if (!p)
            break;
        *p++ = '\0';
    }
    return n;
}

int world_places_load(const char *path, struct world_place **out, size_t *n, char *err,
                      size_t errlen)
{
    FILE *f = fopen(path, "r");
    char line[1024], *fld[32];
    int col_ip = -1, col_lat = -1, col_lon = -1, col_cc = -1, col_city = -1, rc = 0;
    struct world_place *v = NULL;
    size_t nv = 0, cap = 0, lineno = 1;

    if (!f) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return rc;
    }
    if (!fgets(line, sizeof(line), f)) {
        snprintf(err, errlen, "%s: empty", path);
        fclose(f);
        return -EINVAL;
    }
    size_t nf = csv_split(line, fld, MC_ARRAY_SIZE(fld));
    for (size_t i = 0; i < nf; i++) {
        int *c = !strcmp(fld[i], "ip")      ? &col_ip
               : !strcmp(fld[i], "lat")     ? &col_lat
               : !strcmp(fld[i], "lon")     ? &col_lon
               : !strcmp(fld[i], "country") ? &col_cc
               : !strcmp(fld[i], "city")    ? &col_city
                                            : NULL;
        if (c)
            *c = (int)i;
    }
    if (col_ip < 0 || col_lat < 0 || col_lon < 0) {
        snprintf(err, errlen, "%s: the header names no ip, lat and lon columns", path);
        fclose(f);
        return -EINVAL;
    }
    while (fgets(line, sizeof(line), f)) {
        struct world_place p = {0};
        struct in_addr a;
        char *end1, *end2;
        lineno++;
        if (line[strspn(line, " \t\r\n")] == '\0')
            continue;
        nf = csv_split(line, fld, MC_ARRAY_SIZE(fld));
        int maxcol = MC_MAX(col_ip, MC_MAX(col_lat, col_lon));
        if ((int)nf <= maxcol || inet_pton(AF_INET, fld[col_ip], &a) != 1) {
            snprintf(err, errlen, "%s:%zu: expected an IPv4 address in column ip", path, lineno);
            rc = -EINVAL;
            break;
        }
        p.lat = strtod(fld[col_lat], &end1);
        p.lon = strtod(fld[col_lon], &end2);
        if (*end1 || *end2 || end1 == fld[col_lat] || end2 == fld[col_lon] || fabs(p.lat) > 90 ||
            fabs(p.lon) > 180) {
            snprintf(err, errlen, "%s:%zu: lat and lon must be degrees", path, lineno);
            rc = -EINVAL;
            break;
        }
        p.net = ntohl(a.s_addr) & 0xffffff00u;
        if (p.net >> 24 == 10 || p.net >> 24 == 127) {
            snprintf(err, errlen, "%s:%zu: %s is in the regions' user networks (10/8, 127/8)", path,
                     lineno, fld[col_ip]);
            rc = -EINVAL;
            break;
        }
        snprintf(p.cc, sizeof(p.cc), "%s",
                 col_cc >= 0 && (int)nf > col_cc && strlen(fld[col_cc]) == 2 ? fld[col_cc] : "ZZ");
        snprintf(p.city, sizeof(p.city), "%s",
                 col_city >= 0 && (int)nf > col_city ? fld[col_city] : fld[col_ip]);
        if (nv == cap) {
            cap = MC_MAX(64, cap * 2);
            v = mc_xrealloc(v, cap * sizeof(*v));
        }
        v[nv++] = p;
    }
    fclose(f);
    if (rc) {
        free(v);
        return rc;
    }
    *out = v;
    *n = nv;
    return 0;
}
