/* src/http/http_cache.c: RFC 9111 rules for a shared cache: storability (§3), freshness
 * lifetime (§4.2.1, heuristics §4.2.2), current age (§4.2.3), reuse (§4, §4.2.4 and
 * RFC 5861 stale-while-revalidate / stale-if-error).
 *
 * Targeted fields (RFC 9213 §2.1): when CDN-Cache-Control (else Surrogate-Control) holds
 * at least one directive, it replaces Cache-Control and Expires for every decision made
 * here; eff_cc() picks the set that applies. Cache-Control still reaches the client
 * unchanged: that is the point of targeting. Policy choices beyond the RFC are listed
 * in docs/internals/http.md ("Caching decisions"). */
#include <stdint.h>
#include <string.h>

#include "http/http_cache.h"

#define DELTA_MAX ((int64_t)2147483648LL)

static const struct http_cc *eff_cc(const struct http_resp_info *ri)
{
    if (ri->cdn_cc.present)
        return &ri->cdn_cc;
    if (ri->surrogate.present)
        return &ri->surrogate;
    return &ri->cc;
}

static int targeted(const struct http_resp_info *ri)
{
    return ri->cdn_cc.present || ri->surrogate.present;
}

/* RFC 9110 §15.1: statuses cacheable by default (heuristically cacheable). */
static int heuristic_status(int s)
{
    switch (s) {
    case 200:
    case 203:
    case 204:
    case 206:
    case 300:
    case 301:
    case 308:
    case 404:
    case 405:
    case 410:
    case 414:
    case 501: return 1;
    default: return 0;
    }
}

/* Statuses whose semantics this cache implements (for must-understand, §5.2.2.3). */
static int understood_status(int s)
{
    return heuristic_status(s) || s == 302 || s == 303 || s == 307 || s == 400 || s == 403 ||
           s == 500 || s == 502 || s == 503 || s == 504;
}

int http_cache_storable(const struct http_req_info *qi, const struct http_resp_info *ri,
                        const char **why)
{
    const struct http_cc *cc = eff_cc(ri);
    const char *w = NULL;
    int explicit_ok;

    /* HEAD responses have no body: storing one under the GET key would serve empty
     * bodies, so a HEAD miss is filled with a GET or passed through. */
    if (qi->method != HTTP_M_GET)
        w = "method";
    /* §3: final status codes only; 206 needs range assembly and 304 only updates a stored
     * response (§4.3.4), so neither is stored as such. */
    else if (ri->status < 200 || ri->status == 206 || ri->status == 304 || ri->status > 599)
        w = "status";
    else if (qi->cc.no_store)
        w = "request no-store";
    /* §5.2.2.3: with must-understand, no-store is overridden for an understood status,
     * and a status we do not understand is never stored. */
    else if (cc->must_understand && !understood_status(ri->status))
        w = "must-understand";
    else if (cc->no_store && !cc->must_understand)
        w = "no-store";
    /* §5.2.2.7: we do not strip the listed fields, so qualified private is private. */
    else if (cc->private_ || cc->private_fields)
        w = "private";
    /* §4.1: a stored Vary: * response never matches a later request. */
    else if (ri->vary_star)
        w = "vary-star";
    else if (qi->has_authorization &&
             !(cc->public_ || cc->s_maxage >= 0 || cc->must_revalidate || ri->cc.public_ ||
               ri->cc.s_maxage >= 0 || ri->cc.must_revalidate))
        w = "authorization"; /* §3.5 */
    if (w == NULL) {
        explicit_ok = cc->public_ || cc->max_age >= 0 || cc->s_maxage >= 0 ||
                      (!targeted(ri) && ri->has_expires);
        /* Set-Cookie does not forbid storing (§3), but a shared cache handing one user's
         * cookie to everybody is a leak; store only when the origin said so explicitly. */
        if (ri->has_set_cookie && !(cc->public_ || cc->s_maxage >= 0 || targeted(ri)))
            w = "set-cookie";
        else if (!explicit_ok && !heuristic_status(ri->status))
            w = "status";
    }
    if (w != NULL) {
        if (why != NULL)
            *why = w;
        return 0;
    }
    return 1;
}

void http_resp_info_finish(struct http_resp_info *ri, int64_t response_time)
{
    /* RFC 9110 §6.6.1: a recipient with a clock uses the time of receipt when Date is
     * absent; without it, Expires could not be turned into a lifetime. */
    if (ri->date < 0)
        ri->date = response_time;
}

int64_t http_freshness_lifetime(const struct http_resp_info *ri, int64_t heuristic_max)
{
    const struct http_cc *cc = eff_cc(ri);
    int64_t lt;

    /* §4.2.1, in order. */
    if (cc->s_maxage >= 0)
        return cc->s_maxage;
    if (cc->max_age >= 0)
        return cc->max_age;
    if (!targeted(ri) && ri->has_expires) {
        if (ri->date < 0 || ri->expires <= ri->date)
            return 0;
        lt = ri->expires - ri->date;
        return lt > DELTA_MAX ? DELTA_MAX : lt;
    }
    /* §4.2.2: heuristics only without explicit expiry, for a heuristically cacheable
     * status or an explicitly public response; 10% of the time since Last-Modified. */
    if (!heuristic_status(ri->status) && !cc->public_)
        return 0;
    if (ri->last_modified < 0 || ri->date < 0 || ri->last_modified >= ri->date)
        return 0;
    lt = (ri->date - ri->last_modified) / 10;
    if (heuristic_max >= 0 && lt > heuristic_max)
        lt = heuristic_max;
    return lt;
}

int64_t http_current_age(const struct http_resp_info *ri, int64_t request_time,
                         int64_t response_time, int64_t now)
{
    int64_t apparent_age, response_delay, corrected_age_value, corrected_initial_age;
    int64_t resident_time, age_value = ri->age >= 0 ? ri->age : 0;

    /* §4.2.3, verbatim; clocks that go backwards count as zero. */
    apparent_age = ri->date >= 0 && response_time > ri->date ? response_time - ri->date : 0;
    response_delay = response_time > request_time ? response_time - request_time : 0;
    corrected_age_value = age_value + response_delay;
    corrected_initial_age = apparent_age > corrected_age_value ? apparent_age : corrected_age_value;
    resident_time = now > response_time ? now - response_time : 0;
    return corrected_initial_age + resident_time;
}

enum http_reuse http_cache_reuse(const struct http_req_info *qi, const struct http_resp_info *ri,
                                 int64_t lifetime, int64_t age)
{
    const struct http_cc *cc = eff_cc(ri);
    int64_t staleness = age - lifetime;
    int no_stale;

    /* §4 / §5.2.2.4: a stored no-cache response is used only after validation; we treat
     * the qualified form alike since we do not strip the listed fields. */
    if (cc->no_cache || cc->no_cache_fields)
        return HTTP_REUSE_REVALIDATE;
    /* §5.2.1.4; Pragma counts only without Cache-Control in the request (§5.4). */
    if (qi->cc.no_cache || (!qi->cc.present && qi->pragma_no_cache))
        return HTTP_REUSE_REVALIDATE;
    /* §5.2.1.1: max-age=0 is the common way to ask for revalidation; whole-second ages
     * cannot tell "just stored" from "stored 0.9 s ago", so 0 always revalidates. */
    if (qi->cc.max_age == 0 || (qi->cc.max_age > 0 && age > qi->cc.max_age))
        return HTTP_REUSE_REVALIDATE;
    /* §5.2.1.3 */
    if (qi->cc.min_fresh >= 0 && lifetime - age < qi->cc.min_fresh)
        return HTTP_REUSE_REVALIDATE;
    if (staleness < 0)
        return HTTP_REUSE_FRESH;

    /* Stale. §5.2.2.2, §5.2.2.8: must-revalidate and (for a shared cache)
     * proxy-revalidate forbid any stale use; s-maxage implies proxy-revalidate
     * (§5.2.2.10), which we apply to the client's max-stale but not to the origin's own
     * explicit stale-while-revalidate, the usual "s-maxage=N, stale-while-revalidate=M"
     * CDN idiom. */
    no_stale = cc->must_revalidate || cc->proxy_revalidate;
    if (no_stale)
        return HTTP_REUSE_REVALIDATE;
    if (cc->stale_while_revalidate >= 0 && staleness <= cc->stale_while_revalidate)
        return HTTP_REUSE_STALE_OK;
    if (qi->cc.max_stale >= 0 && cc->s_maxage < 0 &&
        (qi->cc.max_stale == INT64_MAX || staleness <= qi->cc.max_stale))
        return HTTP_REUSE_STALE_OK;
    return HTTP_REUSE_REVALIDATE;
}

int http_cache_stale_if_error_ok(const struct http_resp_info *ri, int64_t lifetime, int64_t age,
                                 int64_t default_sie)
{
    const struct http_cc *cc = eff_cc(ri);
    int64_t window;

    if (age < lifetime)
        return 1;
    if (cc->must_revalidate || cc->proxy_revalidate)
        return 0;
    if (cc->stale_if_error >= 0)
        window = cc->stale_if_error;
    else if (cc->s_maxage < 0 && !cc->no_cache && !cc->no_cache_fields)
        window = default_sie; /* the configured default only where the origin allowed it */
    else
        window = -1;
    return window >= 0 && age - lifetime <= window;
}
