/* src/router/router_zone.c: zone contents and the answer logic (see router_zone.h).
 *
 * Owner names in answers are compression pointers into the question, so they carry the
 * client's spelling (case preserved, as resolvers using 0x20 randomisation expect). The
 * apex is found as a label-aligned suffix of the question name; its offset in the message
 * is then 12 + the suffix start, which serves as the pointer target for SOA/NS names. */
#include "router/router_zone.h"

#include "core/mc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

int router_zone_init(struct router_zone *z, const char *apex)
{
    int n;

    memset(z, 0, sizeof(*z));
    n = router_dns_name_from_text(apex, z->apex, sizeof(z->apex));
    if (n <= 1)
        return -EINVAL;
    z->apex_len = (size_t)n;
    router_dns_name_lower(z->apex, z->apex_len);
    z->ttl = 20;
    z->zone_ttl = 3600;
    z->neg_ttl = 20;
    z->serial = 1;
    z->edns_size = 1232;
    snprintf(z->ns_label, sizeof(z->ns_label), "ns1");
    snprintf(z->mbox_label, sizeof(z->mbox_label), "hostmaster");
    memcpy(z->names[0].wire, z->apex, z->apex_len);
    z->names[0].wire_len = z->apex_len;
    z->names[0].kind = RZ_GEO;
    z->nnames = 1;
    return 0;
}

/* Offset of the apex inside the lower-case name, or -1 when the name is not in the zone. */
static int apex_offset(const struct router_zone *z, const uint8_t *name, size_t len)
{
    size_t i = 0;
    while (i < len) {
        if (len - i == z->apex_len && !memcmp(name + i, z->apex, z->apex_len))
            return (int)i;
        if (name[i] == 0)
            break;
        i += (size_t)name[i] + 1;
    }
    return -1;
}

int router_zone_add(struct router_zone *z, const char *name, enum router_name_kind kind,
                    const char *addr)
{
    uint8_t wire[DNS_NAME_MAX];
    char full[600];
    int n;

    /* A relative name gets the apex appended; a full name must end in it. */
    n = router_dns_name_from_text(name, wire, sizeof(wire));
    if (n <= 1)
        return -EINVAL;
    router_dns_name_lower(wire, (size_t)n);
    if (apex_offset(z, wire, (size_t)n) < 0) {
        char apex[300];
        if (router_dns_name_to_text(z->apex, z->apex_len, apex, sizeof(apex)) < 0)
            return -EINVAL;
        snprintf(full, sizeof(full), "%s.%s", name, apex);
        n = router_dns_name_from_text(full, wire, sizeof(wire));
        if (n <= 1)
            return -EINVAL;
        router_dns_name_lower(wire, (size_t)n);
    }
    struct router_zone_name *e = NULL;
    for (size_t i = 0; i < z->nnames; i++)
        if (z->names[i].wire_len == (size_t)n && !memcmp(z->names[i].wire, wire, (size_t)n))
            e = &z->names[i];
    if (e == NULL) {
        if (z->nnames >= ROUTER_ZONE_MAX_NAMES)
            return -ENOSPC;
        e = &z->names[z->nnames++];
        memset(e, 0, sizeof(*e));
        memcpy(e->wire, wire, (size_t)n);
        e->wire_len = (size_t)n;
        e->kind = kind;
    } else if (e->kind != kind) {
        return -EINVAL;
    }
    if (kind == RZ_STATIC) {
        if (addr && inet_pton(AF_INET, addr, e->addr4) == 1)
            e->have4 = 1;
        else if (addr && inet_pton(AF_INET6, addr, e->addr6) == 1)
            e->have6 = 1;
        else
            return -EINVAL;
    }
    return 0;
}

static const struct router_zone_name *find_name(const struct router_zone *z, const uint8_t *lc,
                                                size_t len)
{
    for (size_t i = 0; i < z->nnames; i++)
        if (z->names[i].wire_len == len && !memcmp(z->names[i].wire, lc, len))
            return &z->names[i];
    return NULL;
}

/* Whether lc is an empty non-terminal: no name of its own, but an ancestor of one (as
 * b.zone is of a.b.zone). Such a name exists, so it gets NODATA, not NXDOMAIN: RFC 8020
 * lets a resolver drop the whole subtree below an NXDOMAIN, a.b.zone included. */
static int is_empty_nonterminal(const struct router_zone *z, const uint8_t *lc, size_t len)
{
    for (size_t i = 0; i < z->nnames; i++) {
        const uint8_t *w = z->names[i].wire;
        size_t wl = z->names[i].wire_len, off = 0;
        while (off < wl && w[off] != 0) {
            off += (size_t)w[off] + 1;
            if (wl - off == len && !memcmp(w + off, lc, len))
                return 1;
        }
    }
    return 0;
}

/* The name server host (ns_label.apex) answers with the static addresses of a name the
 * configuration gives it, like any static name; nothing special is needed here. */

static void write_soa(const struct router_zone *z, struct dns_writer *w, enum dns_section s,
                      uint16_t apex_off, uint32_t ttl)
{
    router_dns_w_soa(w, s, apex_off, ttl, apex_off, z->ns_label, z->mbox_label, z->serial, 7200,
                     1800, 259200, z->neg_ttl);
}

size_t router_zone_answer(const struct router_zone *z, const struct dns_query *q, int parse_rc,
                          router_zone_select_f *sel, void *arg, uint8_t *out, size_t cap,
                          size_t limit, struct router_zone_result *res)
{
    struct dns_writer w;
    struct dns_ecs ecs;
    int rcode = DNS_R_NOERROR, aa = 1;
    const struct router_zone_name *n = NULL;
    int aoff = -1;

    memset(res, 0, sizeof(*res));
    if (parse_rc == DNS_PARSE_DROP)
        return 0;
    ecs = q->ecs; /* scope stays 0 unless the answer depends on the client's location */
    ecs.scope = 0;
    if (parse_rc > 0) {
        rcode = parse_rc;
        aa = 0;
    } else if (q->qclass != DNS_CLASS_IN && q->qclass != 255) {
        rcode = DNS_R_REFUSED;
        aa = 0;
    } else if ((aoff = apex_offset(z, q->qname_lc, q->qname_len)) < 0) {
        rcode = DNS_R_REFUSED; /* not authoritative, and no recursion: RFC 1035 §4.1.1 */
        aa = 0;
    } else if (q->qtype == DNS_T_AXFR || q->qtype == DNS_T_IXFR) {
        rcode = DNS_R_REFUSED; /* zone transfers are not offered */
        aa = 0;
    } else if ((n = find_name(z, q->qname_lc, q->qname_len)) == NULL &&
               !is_empty_nonterminal(z, q->qname_lc, q->qname_len)) {
        rcode = DNS_R_NXDOMAIN;
    }
    res->rcode = rcode;

    /* The answer section is built first into `out`; a geo selection writes scope into ecs. */
    router_dns_w_begin(&w, out, cap, q, aa, rcode);
    uint16_t apex_off = (uint16_t)(DNS_QNAME_OFF + (aoff < 0 ? 0 : aoff));
    if (rcode == DNS_R_NOERROR && n != NULL) {
        int is_apex = n == &z->names[0];
        int want4 = q->qtype == DNS_T_A || q->qtype == DNS_T_ANY;
        int want6 = q->qtype == DNS_T_AAAA || q->qtype == DNS_T_ANY;
        if (n->kind == RZ_GEO && (want4 || want6)) {
            uint8_t addr[16], scope = 0;
            res->geo = 1;
            if (want4 && sel(arg, q, 4, addr, &scope) == 0) {
                router_dns_w_a(&w, DNS_SEC_AN, DNS_QNAME_OFF, z->ttl, addr);
                ecs.scope = MC_MAX(ecs.scope, scope);
            }
            if (want6 && sel(arg, q, 6, addr, &scope) == 0) {
                router_dns_w_aaaa(&w, DNS_SEC_AN, DNS_QNAME_OFF, z->ttl, addr);
                ecs.scope = MC_MAX(ecs.scope, scope);
            }
        } else if (n->kind == RZ_STATIC && (want4 || want6)) {
            if (want4 && n->have4)
                router_dns_w_a(&w, DNS_SEC_AN, DNS_QNAME_OFF, z->zone_ttl, n->addr4);
            if (want6 && n->have6)
                router_dns_w_aaaa(&w, DNS_SEC_AN, DNS_QNAME_OFF, z->zone_ttl, n->addr6);
        }
        if (is_apex && (q->qtype == DNS_T_SOA || q->qtype == DNS_T_ANY))
            write_soa(z, &w, DNS_SEC_AN, apex_off, z->zone_ttl);
        if (is_apex && (q->qtype == DNS_T_NS || q->qtype == DNS_T_ANY))
            router_dns_w_ns(&w, DNS_SEC_AN, apex_off, z->zone_ttl, z->ns_label, apex_off);
    }
    if (rcode == DNS_R_NOERROR) {
        res->answers = w.counts[DNS_SEC_AN];
        if (w.counts[DNS_SEC_AN] == 0) /* NODATA: the SOA lets resolvers cache it (RFC 2308) */
            write_soa(z, &w, DNS_SEC_NS, apex_off, z->neg_ttl);
    } else if (rcode == DNS_R_NXDOMAIN) {
        write_soa(z, &w, DNS_SEC_NS, apex_off, z->neg_ttl);
    }
    /* RFC 7871 §7.2.1: an ECS option in the query gets one back (with the scope the answer
     * is valid for, 0 when it does not depend on the client). FORMERR caused by the option
     * itself has ecs.present cleared by the parser. */
    int have_opt = q->edns != 0;
    if (have_opt)
        router_dns_w_opt(&w, z->edns_size, rcode, &ecs);
    size_t len = router_dns_finish(&w, limit, z->edns_size, rcode, &ecs, have_opt);
    res->truncated = len > 2 && (out[2] & 0x02) != 0;
    return len;
}
