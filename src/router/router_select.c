/* src/router/router_select.c: scoring, choice and the location cache (see router_select.h). */
#include "router/router_select.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/mc.h"

double router_haversine_km(double lat1, double lon1, double lat2, double lon2)
{
    const double rad = M_PI / 180.0;
    double dlat = (lat2 - lat1) * rad, dlon = (lon2 - lon1) * rad;
    double a = sin(dlat / 2) * sin(dlat / 2) +
               cos(lat1 * rad) * cos(lat2 * rad) * sin(dlon / 2) * sin(dlon / 2);
    if (a > 1)
        a = 1;
    return 2 * ROUTER_EARTH_RADIUS_KM * asin(sqrt(a));
}

double router_distance_score(double km)
{
    double s = 1.0 - km / ROUTER_HALF_CIRCUMFERENCE_KM;
    return s < 0 ? 0 : s > 1 ? 1 : s;
}

void router_view_publish(struct router_edge_view *v, int eligible, double load, double hit,
                         double capacity, double deadband, int first)
{
    double pl = atomic_load_explicit(&v->load, memory_order_relaxed);
    double ph = atomic_load_explicit(&v->hit, memory_order_relaxed);

    load = load < 0 ? 0 : load > 1 ? 1 : load;
    hit = hit < 0 ? 0 : hit > 1 ? 1 : hit;
    if (first || fabs(load - pl) >= deadband)
        atomic_store_explicit(&v->load, load, memory_order_relaxed);
    if (first || fabs(hit - ph) >= deadband)
        atomic_store_explicit(&v->hit, hit, memory_order_relaxed);
    int over = atomic_load_explicit(&v->over, memory_order_relaxed);
    if (!over && load >= capacity)
        over = 1;
    else if (over && load < capacity - deadband)
        over = 0;
    atomic_store_explicit(&v->over, over, memory_order_relaxed);
    atomic_store_explicit(&v->eligible, eligible, memory_order_relaxed);
}

int router_select(const struct router_edge_cfg *cfg, struct router_edge_view *view, size_t n,
                  const float *dist, const struct router_weights *w, int family,
                  struct router_score *scores)
{
    /* Three pools, best first: eligible and under capacity; eligible; any. */
    int best[3] = {-1, -1, -1};
    double best_total[3] = {0, 0, 0};

    for (size_t i = 0; i < n; i++) {
        int el = atomic_load_explicit(&view[i].eligible, memory_order_relaxed);
        int over = atomic_load_explicit(&view[i].over, memory_order_relaxed);
        double load = atomic_load_explicit(&view[i].load, memory_order_relaxed);
        double hit = atomic_load_explicit(&view[i].hit, memory_order_relaxed);
        double total = w->distance * dist[i] + w->load * (1.0 - load) + w->hit * hit;
        int cand = cfg[i].family == family;
        if (scores) {
            scores[i].distance_score = dist[i];
            scores[i].distance_km = (1.0 - dist[i]) * ROUTER_HALF_CIRCUMFERENCE_KM;
            scores[i].load = load;
            scores[i].hit = hit;
            scores[i].total = total;
            scores[i].eligible = el;
            scores[i].over = over;
            scores[i].candidate = cand;
        }
        if (!cand)
            continue;
        int pool = el && !over ? 0 : el ? 1 : 2;
        for (int p = pool; p < 3; p++) {
            int b = best[p];
            /* Totals within 1e-9 are equal: prefer the nearer edge, then the lower index. */
            if (b < 0 || total > best_total[p] + 1e-9 ||
                (fabs(total - best_total[p]) <= 1e-9 && dist[i] > dist[b])) {
                best[p] = (int)i;
                best_total[p] = total;
            }
        }
    }
    for (int p = 0; p < 3; p++)
        if (best[p] >= 0)
            return best[p];
    return -1;
}

struct router_loc_cache *router_loc_cache_new(const struct router_geo *geo,
                                              const struct router_edge_cfg *edges, size_t n,
                                              int have_default, double dlat, double dlon)
{
    struct router_loc_cache *c = mc_xcalloc(1, sizeof(*c));
    MC_INIT_OBJ(c, ROUTER_LOC_CACHE_MAGIC);
    MC_ASSERT(n <= ROUTER_MAX_EDGES);
    c->geo = geo;
    c->edges = edges;
    c->nedges = n;
    c->have_default = have_default;
    c->default_lat = dlat;
    c->default_lon = dlon;
    return c;
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

static void fill_dist(struct router_loc_cache *c, struct router_loc_entry *e, int have_loc,
                      double lat, double lon)
{
    for (size_t i = 0; i < c->nedges; i++)
        e->dist[i] = have_loc ? (float)router_distance_score(
                                    router_haversine_km(lat, lon, c->edges[i].lat, c->edges[i].lon))
                              : 0.5f;
}

const struct router_loc_entry *router_loc_lookup(struct router_loc_cache *c, int family,
                                                 const uint8_t *addr, uint8_t *netmask)
{
    struct router_geo_hit hit = {0};
    uint64_t key;

    MC_CHECK_OBJ_NOTNULL(c, ROUTER_LOC_CACHE_MAGIC);
    size_t alen = family == 4 ? 4 : 16;
    uint64_t h = (uint64_t)family;
    for (size_t i = 0; i < alen; i += 4)
        h = mix64(h ^
                  ((uint64_t)addr[i] << 24 | (uint64_t)addr[i + 1] << 16 |
                   (uint64_t)addr[i + 2] << 8 | addr[i + 3]) ^
                  (i << 40));
    struct router_addr_entry *ae = &c->a[h & (ROUTER_ADDR_CACHE_SIZE - 1)];
    int geo_rc = 0;
    if (ae->valid && ae->family == family && !memcmp(ae->addr, addr, alen)) {
        c->addr_hits++;
        hit.found = ae->found;
        hit.db = ae->db;
        hit.offset = ae->offset;
        hit.netmask = ae->netmask;
    } else if (c->geo != NULL && (geo_rc = router_geo_find(c->geo, family, addr, &hit)) == 0) {
        ae->valid = 1;
        ae->family = (uint8_t)family;
        memcpy(ae->addr, addr, alen);
        ae->found = (uint8_t)hit.found;
        ae->db = hit.db;
        ae->offset = hit.offset;
        ae->netmask = hit.netmask;
    }
    if (c->geo == NULL || geo_rc < 0 || !hit.found) {
        if (c->geo == NULL)
            hit.netmask = 0;
        hit.found = 0;
        key = 1; /* every unknown address shares the default entry */
    } else {
        key = ((uint64_t)(hit.db + 1) << 32 | hit.offset) + 2;
    }
    *netmask = hit.netmask;
    struct router_loc_entry *e = &c->e[mix64(key) & (ROUTER_LOC_CACHE_SIZE - 1)];
    if (e->key == key) {
        c->hits++;
        return e;
    }
    c->misses++;
    memset(&e->loc, 0, sizeof(e->loc));
    if (hit.found && router_geo_decode(c->geo, &hit, &e->loc) < 0)
        e->loc.src = GEO_SRC_NONE;
    if (e->loc.src != GEO_SRC_NONE)
        fill_dist(c, e, 1, e->loc.lat, e->loc.lon);
    else if (c->have_default)
        fill_dist(c, e, 1, c->default_lat, c->default_lon);
    else
        fill_dist(c, e, 0, 0, 0);
    e->key = key;
    return e;
}
