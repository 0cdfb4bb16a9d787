/* tests/unit/router/test_router_dns.c: DNS wire codec and the zone's answer logic. */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "router/router_dns.h"
#include "router/router_zone.h"

/* ---- query builder ---- */
struct qb {
    uint8_t b[1024];
    size_t n;
};

static void put16(struct qb *q, uint16_t v)
{
    q->b[q->n++] = (uint8_t)(v >> 8);
    q->b[q->n++] = (uint8_t)v;
}

static void put_name(struct qb *q, const char *name)
{
    int n = router_dns_name_from_text(name, q->b + q->n, sizeof(q->b) - q->n);
    assert_true(n > 0);
    q->n += (size_t)n;
}

/* Header + question; ar = 1 when an OPT follows (add_opt). */
static void query_begin(struct qb *q, uint16_t id, const char *name, uint16_t type, int ar)
{
    q->n = 0;
    put16(q, id);
    put16(q, 0x0100); /* RD */
    put16(q, 1);
    put16(q, 0);
    put16(q, 0);
    put16(q, (uint16_t)ar);
    put_name(q, name);
    put16(q, type);
    put16(q, DNS_CLASS_IN);
}

/* OPT with an optional ECS option: family, source prefix, address bytes (alen). */
static void add_opt(struct qb *q, uint16_t size, uint8_t version, int ecs_family, uint8_t src,
                    const uint8_t *addr, size_t alen, uint8_t scope)
{
    q->b[q->n++] = 0;
    put16(q, DNS_T_OPT);
    put16(q, size);
    q->b[q->n++] = 0;
    q->b[q->n++] = version;
    put16(q, 0);
    if (ecs_family) {
        put16(q, (uint16_t)(4 + 4 + alen));
        put16(q, DNS_OPT_ECS);
        put16(q, (uint16_t)(4 + alen));
        put16(q, (uint16_t)ecs_family);
        q->b[q->n++] = src;
        q->b[q->n++] = scope;
        memcpy(q->b + q->n, addr, alen);
        q->n += alen;
    } else {
        put16(q, 0);
    }
}

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

/* ---- codec ---- */

static void test_parse_basic(void **st)
{
    struct qb q;
    struct dns_query dq;
    query_begin(&q, 0x1234, "Edge.CDN.example.TEST", DNS_T_A, 0);
    assert_int_equal(router_dns_parse(q.b, q.n, &dq), 0);
    assert_int_equal(dq.id, 0x1234);
    assert_int_equal(dq.qtype, DNS_T_A);
    assert_false(dq.edns);
    assert_memory_equal(dq.qname,
                        "\x04"
                        "Edge\x03"
                        "CDN",
                        9);
    assert_memory_equal(dq.qname_lc,
                        "\x04"
                        "edge\x03"
                        "cdn",
                        9);
    assert_int_equal(router_dns_udp_limit(&dq, 4096), 512);
}

static void test_parse_edns_ecs(void **st)
{
    struct qb q;
    struct dns_query dq;
    uint8_t a[3] = {49, 165, 200};
    query_begin(&q, 7, "cdn.example.test", DNS_T_A, 1);
    add_opt(&q, 4096, 0, 1, 24, a, 3, 0);
    assert_int_equal(router_dns_parse(q.b, q.n, &dq), 0);
    assert_true(dq.edns);
    assert_int_equal(dq.udp_size, 4096);
    assert_true(dq.ecs.present);
    assert_int_equal(dq.ecs.family, 1);
    assert_int_equal(dq.ecs.source, 24);
    assert_memory_equal(dq.ecs.addr, "\x31\xa5\xc8\x00", 4);
    assert_int_equal(router_dns_udp_limit(&dq, 1232), 1232);
    /* a tiny advertised size means 512 (RFC 6891 §6.2.5) */
    query_begin(&q, 7, "cdn.example.test", DNS_T_A, 1);
    add_opt(&q, 100, 0, 0, 0, NULL, 0, 0);
    assert_int_equal(router_dns_parse(q.b, q.n, &dq), 0);
    assert_int_equal(router_dns_udp_limit(&dq, 1232), 512);
}

static void test_parse_ecs_invalid(void **st)
{
    struct qb q;
    struct dns_query dq;
    uint8_t a[4] = {10, 1, 2, 3};
    /* bits set past the prefix */
    query_begin(&q, 1, "cdn.example.test", DNS_T_A, 1);
    add_opt(&q, 1232, 0, 1, 24, a, 4, 0);
    assert_int_equal(router_dns_parse(q.b, q.n, &dq), DNS_R_FORMERR);
    query_begin(&q, 1, "cdn.example.test", DNS_T_A, 1);
    add_opt(&q, 1232, 0, 1, 20, a, 3, 0); /* 10.1.2.0/20: 2 has bits past /20 */
    assert_int_equal(router_dns_parse(q.b, q.n, &dq), DNS_R_FORMERR);
    /* prefix longer than the family */
    query_begin(&q, 1, "cdn.example.test", DNS_T_A, 1);
    add_opt(&q, 1232, 0, 1, 33, a, 4, 0);
    assert_int_equal(router_dns_parse(q.b, q.n, &dq), DNS_R_FORMERR);
    /* unknown family */
    query_begin(&q, 1, "cdn.example.test", DNS_T_A, 1);
    add_opt(&q, 1232, 0, 3, 8, a, 1, 0);
    assert_int_equal(router_dns_parse(q.b, q.n, &dq), DNS_R_FORMERR);
    /* non-zero scope in a query */
    query_begin(&q, 1, "cdn.example.test", DNS_T_A, 1);
    add_opt(&q, 1232, 0, 1, 8, a, 1, 8);
    assert_int_equal(router_dns_parse(q.b, q.n, &dq), DNS_R_FORMERR);
    assert_false(dq.ecs.present);
    /* /0 is valid: no address bytes */
    query_begin(&q, 1, "cdn.example.test", DNS_T_A, 1);
    add_opt(&q, 1232, 0, 2, 0, a, 0, 0);
    assert_int_equal(router_dns_parse(q.b, q.n, &dq), 0);
    assert_true(dq.ecs.present);
    assert_int_equal(dq.ecs.family, 2);
}

static void test_parse_badvers_and_drop(void **st)
{
    struct qb q;
    struct dns_query dq;
    query_begin(&q, 1, "cdn.example.test", DNS_T_A, 1);
    add_opt(&q, 1232, 1, 0, 0, NULL, 0, 0);
    assert_int_equal(router_dns_parse(q.b, q.n, &dq), DNS_R_BADVERS);
    assert_true(dq.have_question);
    /* too short, and responses, are dropped */
    assert_int_equal(router_dns_parse(q.b, 11, &dq), DNS_PARSE_DROP);
    q.b[2] |= 0x80;
    assert_int_equal(router_dns_parse(q.b, q.n, &dq), DNS_PARSE_DROP);
    /* opcode other than QUERY */
    query_begin(&q, 1, "cdn.example.test", DNS_T_A, 0);
    q.b[2] = (uint8_t)(q.b[2] | (4 << 3)); /* NOTIFY */
    assert_int_equal(router_dns_parse(q.b, q.n, &dq), DNS_R_NOTIMP);
}

static void test_parse_formerr(void **st)
{
    struct qb q;
    struct dns_query dq;
    /* QDCOUNT 2 */
    query_begin(&q, 1, "cdn.example.test", DNS_T_A, 0);
    q.b[5] = 2;
    assert_int_equal(router_dns_parse(q.b, q.n, &dq), DNS_R_FORMERR);
    /* truncated question */
    query_begin(&q, 1, "cdn.example.test", DNS_T_A, 0);
    assert_int_equal(router_dns_parse(q.b, q.n - 1, &dq), DNS_R_FORMERR);
    /* trailing garbage */
    query_begin(&q, 1, "cdn.example.test", DNS_T_A, 0);
    q.b[q.n++] = 0;
    assert_int_equal(router_dns_parse(q.b, q.n, &dq), DNS_R_FORMERR);
    /* ARCOUNT says 1, nothing there */
    query_begin(&q, 1, "cdn.example.test", DNS_T_A, 1);
    assert_int_equal(router_dns_parse(q.b, q.n, &dq), DNS_R_FORMERR);
    /* two OPT records */
    query_begin(&q, 1, "cdn.example.test", DNS_T_A, 2);
    add_opt(&q, 1232, 0, 0, 0, NULL, 0, 0);
    add_opt(&q, 1232, 0, 0, 0, NULL, 0, 0);
    assert_int_equal(router_dns_parse(q.b, q.n, &dq), DNS_R_FORMERR);
    /* label length running past the end */
    query_begin(&q, 1, "cdn.example.test", DNS_T_A, 0);
    q.b[12] = 60;
    assert_int_equal(router_dns_parse(q.b, q.n, &dq), DNS_R_FORMERR);
    /* a qtype of OPT */
    query_begin(&q, 1, "cdn.example.test", DNS_T_OPT, 0);
    assert_int_equal(router_dns_parse(q.b, q.n, &dq), DNS_R_FORMERR);
}

static void test_name_compression(void **st)
{
    uint8_t out[DNS_NAME_MAX];
    /* "a" then a pointer back to offset 0 ("x.y") */
    const uint8_t ok[] = {1, 'x', 1, 'y', 0, 1, 'a', 0xc0, 0x00};
    size_t off = 5;
    assert_int_equal(router_dns_name_read(ok, sizeof(ok), &off, out), 7);
    assert_int_equal(off, sizeof(ok));
    assert_memory_equal(out,
                        "\x01"
                        "a\x01x\x01y",
                        7);
    /* self pointer and forward pointer are refused (loops) */
    const uint8_t self[] = {0xc0, 0x00};
    off = 0;
    assert_int_equal(router_dns_name_read(self, sizeof(self), &off, out), -1);
    const uint8_t fwd[] = {0xc0, 0x02, 1, 'a', 0};
    off = 0;
    assert_int_equal(router_dns_name_read(fwd, sizeof(fwd), &off, out), -1);
    /* two pointers pointing at each other: the second points forward */
    const uint8_t loop[] = {1, 'a', 0xc0, 0x04, 0xc0, 0x02};
    off = 4;
    assert_int_equal(router_dns_name_read(loop, sizeof(loop), &off, out), -1);
    /* pointer cut short */
    const uint8_t cut[] = {1, 'a', 0xc0};
    off = 0;
    assert_int_equal(router_dns_name_read(cut, sizeof(cut), &off, out), -1);
    /* extended label type */
    const uint8_t ext[] = {0x41, 'a', 0};
    off = 0;
    assert_int_equal(router_dns_name_read(ext, sizeof(ext), &off, out), -1);
    /* names longer than 255 bytes */
    uint8_t lng[400];
    size_t n = 0;
    for (int i = 0; i < 5; i++) {
        lng[n++] = 60;
        memset(lng + n, 'a', 60);
        n += 60;
    }
    lng[n++] = 0;
    off = 0;
    assert_int_equal(router_dns_name_read(lng, n, &off, out), -1);
    /* a compressed question name is read and answered in full */
    struct qb q;
    struct dns_query dq;
    query_begin(&q, 1, "cdn.example.test", DNS_T_A, 0);
    assert_int_equal(router_dns_parse(q.b, q.n, &dq), 0);
}

static void test_name_text(void **st)
{
    uint8_t w[DNS_NAME_MAX];
    char t[300];
    int n = router_dns_name_from_text("Foo.Example.", w, sizeof(w));
    assert_int_equal(n, 13);
    assert_int_equal(router_dns_name_to_text(w, (size_t)n, t, sizeof(t)), 0);
    assert_string_equal(t, "Foo.Example");
    const uint8_t odd[] = {3, 'a', '.', 0x01, 0};
    assert_int_equal(router_dns_name_to_text(odd, sizeof(odd), t, sizeof(t)), 0);
    assert_string_equal(t, "a\\046\\001");
    assert_int_equal(router_dns_name_from_text("a..b", w, sizeof(w)), -EINVAL);
    assert_int_equal(router_dns_name_to_text((const uint8_t *)"\0", 1, t, sizeof(t)), 0);
    assert_string_equal(t, ".");
}

/* ---- zone ---- */

struct sel_state {
    int calls;
    uint8_t scope;
    int have6;
};

static int sel_stub(void *arg, const struct dns_query *q, int family, uint8_t addr[16],
                    uint8_t *scope)
{
    struct sel_state *s = arg;
    s->calls++;
    if (family == 4) {
        memcpy(addr, "\x7f\x00\x01\x01", 4);
    } else {
        if (!s->have6)
            return -ENOENT;
        memset(addr, 0, 16);
        addr[15] = 1;
    }
    *scope = s->scope;
    return 0;
}

static struct router_zone zone;

static int zone_setup(void **st)
{
    assert_int_equal(router_zone_init(&zone, "cdn.example.test"), 0);
    assert_int_equal(router_zone_add(&zone, "edge", RZ_GEO, NULL), 0);
    assert_int_equal(router_zone_add(&zone, "static.cdn.example.test", RZ_STATIC, "127.0.0.9"), 0);
    assert_int_equal(router_zone_add(&zone, "ns1", RZ_STATIC, "::1"), 0);
    assert_int_equal(router_zone_add(&zone, "x.other.test", RZ_STATIC, "nonsense"), -EINVAL);
    return 0;
}

static size_t ask(struct qb *q, uint8_t *out, size_t cap, size_t limit, struct sel_state *s,
                  struct router_zone_result *res)
{
    struct dns_query dq;
    int rc = router_dns_parse(q->b, q->n, &dq);
    return router_zone_answer(&zone, &dq, rc, sel_stub, s, out, cap, limit, res);
}

static void test_zone_geo_answer(void **st)
{
    struct qb q;
    uint8_t out[1500];
    struct sel_state s = {.scope = 16};
    struct router_zone_result res;
    uint8_t a[3] = {49, 165, 200};
    query_begin(&q, 0xbeef, "EDGE.cdn.Example.test", DNS_T_A, 1);
    add_opt(&q, 1232, 0, 1, 24, a, 3, 0);
    size_t n = ask(&q, out, sizeof(out), 1232, &s, &res);
    assert_true(n > 0);
    assert_int_equal(res.rcode, 0);
    assert_int_equal(res.answers, 1);
    assert_int_equal(rd16(out), 0xbeef);
    assert_true(out[2] & 0x80); /* QR */
    assert_true(out[2] & 0x04); /* AA */
    assert_true(out[2] & 0x01); /* RD copied */
    assert_int_equal(rd16(out + 6), 1);
    assert_int_equal(rd16(out + 10), 1);
    /* question echoed with its case */
    assert_memory_equal(out + 12,
                        "\x04"
                        "EDGE\x03"
                        "cdn\x07"
                        "Example",
                        17);
    size_t qend = 12 + 23 + 4;
    /* answer: pointer to the question, A, IN, TTL 20, 127.0.1.1 */
    assert_int_equal(rd16(out + qend), 0xc00c);
    assert_int_equal(rd16(out + qend + 2), DNS_T_A);
    assert_int_equal(rd16(out + qend + 8), 20);
    assert_memory_equal(out + qend + 12, "\x7f\x00\x01\x01", 4);
    /* OPT with ECS echo and scope 16 */
    size_t o = qend + 16;
    assert_int_equal(out[o], 0);
    assert_int_equal(rd16(out + o + 1), DNS_T_OPT);
    assert_int_equal(rd16(out + o + 11), DNS_OPT_ECS);
    assert_int_equal(rd16(out + o + 15), 1);
    assert_int_equal(out[o + 17], 24);
    assert_int_equal(out[o + 18], 16);
    assert_memory_equal(out + o + 19, a, 3);
    assert_int_equal(n, o + 22);
}

static void test_zone_rcodes(void **st)
{
    struct qb q;
    uint8_t out[1500];
    struct sel_state s = {0};
    struct router_zone_result res;

    query_begin(&q, 1, "www.other.test", DNS_T_A, 0);
    assert_true(ask(&q, out, sizeof(out), 512, &s, &res) > 0);
    assert_int_equal(res.rcode, DNS_R_REFUSED);
    assert_false(out[2] & 0x04);
    /* a name that only ends like the zone is outside it */
    query_begin(&q, 1, "xcdn.example.test", DNS_T_A, 0);
    ask(&q, out, sizeof(out), 512, &s, &res);
    assert_int_equal(res.rcode, DNS_R_REFUSED);

    query_begin(&q, 1, "nope.cdn.example.test", DNS_T_A, 0);
    assert_true(ask(&q, out, sizeof(out), 512, &s, &res) > 0);
    assert_int_equal(res.rcode, DNS_R_NXDOMAIN);
    assert_true(out[2] & 0x04);
    assert_int_equal(out[3] & 0xf, DNS_R_NXDOMAIN);
    assert_int_equal(rd16(out + 8), 1); /* SOA in authority */
    assert_int_equal(s.calls, 0);

    /* NODATA: TXT at a geo name */
    query_begin(&q, 1, "edge.cdn.example.test", DNS_T_TXT, 0);
    ask(&q, out, sizeof(out), 512, &s, &res);
    assert_int_equal(res.rcode, 0);
    assert_int_equal(rd16(out + 6), 0);
    assert_int_equal(rd16(out + 8), 1);

    /* AAAA with no IPv6 edge: NODATA */
    query_begin(&q, 1, "edge.cdn.example.test", DNS_T_AAAA, 0);
    ask(&q, out, sizeof(out), 512, &s, &res);
    assert_int_equal(rd16(out + 6), 0);
    assert_int_equal(rd16(out + 8), 1);

    /* SOA and NS at the apex */
    query_begin(&q, 1, "cdn.example.test", DNS_T_SOA, 0);
    ask(&q, out, sizeof(out), 512, &s, &res);
    assert_int_equal(res.answers, 1);
    query_begin(&q, 1, "cdn.example.test", DNS_T_NS, 0);
    ask(&q, out, sizeof(out), 512, &s, &res);
    assert_int_equal(res.answers, 1);

    /* static names */
    query_begin(&q, 1, "static.cdn.example.test", DNS_T_A, 0);
    ask(&q, out, sizeof(out), 512, &s, &res);
    assert_int_equal(res.answers, 1);
    query_begin(&q, 1, "ns1.cdn.example.test", DNS_T_AAAA, 0);
    ask(&q, out, sizeof(out), 512, &s, &res);
    assert_int_equal(res.answers, 1);

    /* AXFR refused; FORMERR echoes the id */
    query_begin(&q, 1, "cdn.example.test", DNS_T_AXFR, 0);
    ask(&q, out, sizeof(out), 512, &s, &res);
    assert_int_equal(res.rcode, DNS_R_REFUSED);
    query_begin(&q, 0x4242, "cdn.example.test", DNS_T_A, 1);
    assert_true(ask(&q, out, sizeof(out), 512, &s, &res) > 0);
    assert_int_equal(res.rcode, DNS_R_FORMERR);
    assert_int_equal(rd16(out), 0x4242);

    /* BADVERS: rcode 16 = header 0 + OPT extended 1 */
    query_begin(&q, 1, "cdn.example.test", DNS_T_A, 1);
    add_opt(&q, 1232, 3, 0, 0, NULL, 0, 0);
    size_t n = ask(&q, out, sizeof(out), 512, &s, &res);
    assert_int_equal(res.rcode, DNS_R_BADVERS);
    assert_int_equal(out[3] & 0xf, 0);
    assert_int_equal(out[n - 6], 1);
}

static void test_zone_truncation(void **st)
{
    struct qb q;
    uint8_t out[1500];
    struct sel_state s = {.have6 = 1};
    struct router_zone_result res;
    /* ANY at the apex: A + AAAA + SOA + NS is ~140 bytes; a 100-byte limit truncates */
    query_begin(&q, 1, "cdn.example.test", DNS_T_ANY, 1);
    add_opt(&q, 1232, 0, 0, 0, NULL, 0, 0);
    size_t full = ask(&q, out, sizeof(out), 1232, &s, &res);
    assert_int_equal(res.answers, 4);
    assert_false(res.truncated);
    size_t n = ask(&q, out, sizeof(out), 100, &s, &res);
    assert_true(n > 0 && n <= 100 && n < full);
    assert_true(res.truncated);
    assert_true(out[2] & 0x02);
    assert_int_equal(rd16(out + 6), 0);
    assert_int_equal(rd16(out + 10), 1); /* OPT kept */
    /* a buffer too small for the answers truncates rather than overflows */
    n = ask(&q, out, 60, 1232, &s, &res);
    assert_true(n > 0 && n <= 60);
    assert_true(out[2] & 0x02);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_basic),       cmocka_unit_test(test_parse_edns_ecs),
        cmocka_unit_test(test_parse_ecs_invalid), cmocka_unit_test(test_parse_badvers_and_drop),
        cmocka_unit_test(test_parse_formerr),     cmocka_unit_test(test_name_compression),
        cmocka_unit_test(test_name_text),         cmocka_unit_test(test_zone_geo_answer),
        cmocka_unit_test(test_zone_rcodes),       cmocka_unit_test(test_zone_truncation),
    };
    return cmocka_run_group_tests(tests, zone_setup, NULL);
}
