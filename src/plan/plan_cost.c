/* src/plan/plan_cost.c: the monthly cost of an L1/L2 pair, the choice, and latency.
 *
 * Cost per month = l1 price x L1 GiB + l2 price x L2 GiB + origin price x GiB the origin
 * sends in a month (the bytes that miss both tiers, at the trace's byte rate, over 30
 * days). The choice is the cheapest pair that meets the hit-ratio target; latency is the
 * mixture of the tiers' latency distributions weighted by the share of requests each
 * tier answers. All pure functions of their arguments. */
#include <math.h>
#include <stddef.h>

#include "plan/plan.h"
#include "plan/plan_int.h"

#define GIB (1024.0 * 1024.0 * 1024.0)

void plan__cost_of(const struct plan__cell *c, const struct plan__prices *p, struct plan__cost *out)
{
    out->origin_gib_month = c->origin_bytes_per_s * PLAN_MONTH_S / GIB;
    out->l1 = p->l1 * (double)c->l1 / GIB;
    out->l2 = p->l2 * (double)c->l2 / GIB;
    out->origin = p->origin * out->origin_gib_month;
    out->total = out->l1 + out->l2 + out->origin;
}

size_t plan__choose(const struct plan__cell *cells, size_t n, const struct plan__prices *p,
                    double target, int *met)
{
    size_t best = n, top = 0;
    double best_cost = INFINITY, top_cost = INFINITY, top_hit = -1;

    for (size_t k = 0; k < n; k++) {
        struct plan__cost c;
        double h = cells[k].hit;

        plan__cost_of(&cells[k], p, &c);
        /* A hair of tolerance: a target of 0.8 is met by 0.79999999 from a division. */
        if (h + 1e-12 >= target && c.total < best_cost) {
            best = k;
            best_cost = c.total;
        }
        if (h > top_hit + 1e-12 || (fabs(h - top_hit) <= 1e-12 && c.total < top_cost)) {
            top = k;
            top_hit = h;
            top_cost = c.total;
        }
    }
    *met = best < n;
    return best < n ? best : top;
}

double plan__lat_mean(const struct plan__lat lat[PLAN_NTIERS], const double w[PLAN_NTIERS])
{
    double m = 0;

    for (int k = 0; k < PLAN_NTIERS; k++) {
        double s = 0;
        if (w[k] <= 0 || lat[k].n == 0)
            continue;
        for (size_t i = 0; i < lat[k].n; i++)
            s += lat[k].v[i];
        m += w[k] * s / (double)lat[k].n;
    }
    return m;
}

/* Share of the mixture at or below x. */
static double mix_cdf(const struct plan__lat lat[PLAN_NTIERS], const double w[PLAN_NTIERS],
                      double x)
{
    double f = 0;

    for (int k = 0; k < PLAN_NTIERS; k++) {
        size_t lo = 0, hi = lat[k].n;
        if (w[k] <= 0 || lat[k].n == 0)
            continue;
        while (lo < hi) { /* first sample > x */
            size_t mid = lo + (hi - lo) / 2;
            if (lat[k].v[mid] <= x)
                lo = mid + 1;
            else
                hi = mid;
        }
        f += w[k] * (double)lo / (double)lat[k].n;
    }
    return f;
}

double plan__lat_quantile(const struct plan__lat lat[PLAN_NTIERS], const double w[PLAN_NTIERS],
                          double q)
{
    double best = NAN;

    /* The quantile is one of the samples: the smallest whose CDF reaches q. */
    for (int k = 0; k < PLAN_NTIERS; k++) {
        size_t lo = 0, hi = lat[k].n;
        if (w[k] <= 0 || lat[k].n == 0)
            continue;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (mix_cdf(lat, w, lat[k].v[mid]) + 1e-12 >= q)
                hi = mid;
            else
                lo = mid + 1;
        }
        if (lo < lat[k].n && !(lat[k].v[lo] >= best))
            best = lat[k].v[lo];
    }
    return best;
}
