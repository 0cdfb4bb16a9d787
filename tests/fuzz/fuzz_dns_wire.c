/* tests/fuzz/fuzz_dns_wire.c: libFuzzer target for the router's DNS wire codec.
 *
 * Every input goes through the parser and then the whole answer path (zone lookup, the
 * response writer, truncation) with a stub edge selection, once with the UDP limit the
 * query asks for and once with a tiny buffer, so both the reader and the bounded writer
 * are exercised. Invariants checked: the answer fits its limit, echoes the query id, and
 * has QR set. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "router/router_dns.h"
#include "router/router_zone.h"

static struct router_zone zone;
static int zone_ready;

static int sel(void *arg, const struct dns_query *q, int family, uint8_t addr[16], uint8_t *scope)
{
    memset(addr, family == 4 ? 127 : 0, 16);
    *scope = q->ecs.present ? q->ecs.source : 0;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t out[DNS_MSG_MAX];
    struct dns_query q;
    struct router_zone_result res;

    if (!zone_ready) {
        router_zone_init(&zone, "cdn.example.test");
        router_zone_add(&zone, "edge", RZ_GEO, NULL);
        router_zone_add(&zone, "static", RZ_STATIC, "127.0.0.9");
        router_zone_add(&zone, "static", RZ_STATIC, "::9");
        zone_ready = 1;
    }
    int rc = router_dns_parse(data, size, &q);
    size_t limit = router_dns_udp_limit(&q, 4096);
    size_t n = router_zone_answer(&zone, &q, rc, sel, NULL, out, sizeof(out), limit, &res);
    if (rc == DNS_PARSE_DROP && n != 0)
        abort();
    if (n > 0 &&
        (n > limit || n < DNS_HDR_LEN || !(out[2] & 0x80) || ((out[0] << 8) | out[1]) != q.id))
        abort();
    n = router_zone_answer(&zone, &q, rc, sel, NULL, out, 40, 40, &res);
    if (n > 40)
        abort();
    /* A response must itself parse as a (dropped) response, never crash the reader. */
    if (n > 0 && router_dns_parse(out, n, &q) != DNS_PARSE_DROP)
        abort();
    return 0;
}
