/* src/router/router_zone.h: the authoritative zone the router serves, and the answer logic.
 *
 * A zone is its apex (the CDN name, e.g. cdn.example.test), the names under it that the
 * configuration lists (geo-routed names answered with the chosen edge, static names with
 * fixed addresses), the name server host and the SOA parameters. router_zone_answer() turns
 * a parsed query into the response bytes: REFUSED outside the zone, NXDOMAIN for unknown
 * names inside it (with the SOA for negative caching, RFC 2308), NODATA for other types,
 * SOA/NS at the apex, and A/AAAA from the caller's selection callback for geo names. Pure:
 * the only outside input is the callback, so unit tests and the fuzz target drive it
 * without sockets. The struct is filled once at start-up and read-only afterwards, so any
 * number of threads may answer from it. */
#ifndef MLCDN_ROUTER_ROUTER_ZONE_H
#define MLCDN_ROUTER_ROUTER_ZONE_H

#include <stddef.h>
#include <stdint.h>

#include "router/router_dns.h"

#define ROUTER_ZONE_MAX_NAMES 64

enum router_name_kind {
    RZ_GEO,    /* answered with the selected edge (the apex is always one) */
    RZ_STATIC, /* fixed addresses */
};

struct router_zone_name {
    uint8_t wire[DNS_NAME_MAX]; /* full name, lower case */
    size_t wire_len;
    enum router_name_kind kind;
    int have4, have6;
    uint8_t addr4[4];
    uint8_t addr6[16];
};

struct router_zone {
    uint8_t apex[DNS_NAME_MAX]; /* lower case wire form */
    size_t apex_len;
    uint32_t ttl;      /* geo answers (default 20 s) */
    uint32_t zone_ttl; /* SOA, NS, static records */
    uint32_t neg_ttl;  /* SOA minimum and TTL of the SOA in negative answers */
    uint32_t serial;
    uint16_t edns_size; /* our advertised UDP payload size */
    char ns_label[64];  /* name server host: ns_label.apex */
    char mbox_label[64];
    struct router_zone_name names[ROUTER_ZONE_MAX_NAMES]; /* [0] is the apex (geo) */
    size_t nnames;
};

/* Initialises z for `apex` (text) with defaults: TTL 20, zone TTL 3600, negative TTL 20,
 * ns1 / hostmaster, EDNS size 1232. Returns 0 or -EINVAL. */
int router_zone_init(struct router_zone *z, const char *apex);
/* Adds a name under the apex ("edge" or "edge.cdn.example.test"). For RZ_STATIC, `addr`
 * is an IPv4 or IPv6 literal (call twice for both families). Returns 0, -EINVAL (not a
 * name under the apex, bad address) or -ENOSPC. */
int router_zone_add(struct router_zone *z, const char *name, enum router_name_kind kind,
                    const char *addr);

/* Selection callback for geo names: writes the chosen address of `family` (4 or 6) into
 * addr and the ECS scope prefix into *scope. Returns 0, or -ENOENT when no edge of that
 * family can be answered. */
typedef int router_zone_select_f(void *arg, const struct dns_query *q, int family, uint8_t addr[16],
                                 uint8_t *scope);

/* What an answer was, for metrics. */
struct router_zone_result {
    int rcode;
    int geo;     /* a geo name was asked (a selection happened) */
    int answers; /* records in the answer section */
    int truncated;
};

/* Builds the response to q into out (cap bytes; `limit` is the client's size limit: 512
 * or the EDNS size over UDP, 65535 over TCP). parse_rc is router_dns_parse()'s result.
 * Returns the response length, or 0 when nothing must be sent. */
size_t router_zone_answer(const struct router_zone *z, const struct dns_query *q, int parse_rc,
                          router_zone_select_f *sel, void *arg, uint8_t *out, size_t cap,
                          size_t limit, struct router_zone_result *res);

#endif
