/* tests/unit/router/test_router_zone.c: the zone's contents (router_zone_init / _add) and what
 * router_zone_answer says about each name: in the zone or REFUSED outside it, NXDOMAIN and
 * NODATA with the SOA (RFC 2308), NODATA at empty non-terminals (RFC 8020), the SOA and NS
 * records' data and TTLs, static and geo names. The wire codec itself is tested in test_router_dns.c. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "router/router_dns.h"
#include "router/router_zone.h"

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A query without EDNS: header, one question. */
static size_t query(uint8_t *b, const char *name, uint16_t type, uint16_t qclass)
{
    static const uint8_t hdr[12] = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0};
    memcpy(b, hdr, 12);
    int n = router_dns_name_from_text(name, b + 12, DNS_NAME_MAX);
    assert_true(n > 0);
    size_t off = 12 + (size_t)n;
    b[off++] = (uint8_t)(type >> 8);
    b[off++] = (uint8_t)type;
    b[off++] = (uint8_t)(qclass >> 8);
    b[off++] = (uint8_t)qclass;
    return off;
}

struct sel {
    int calls4, calls6;
    int have4, have6;
};

static int sel_fn(void *arg, const struct dns_query *q, int family, uint8_t addr[16],
                  uint8_t *scope)
{
    struct sel *s = arg;
    (void)q;
    *scope = 0;
    if (family == 4) {
        s->calls4++;
        if (!s->have4)
            return -ENOENT;
        memcpy(addr, "\xc0\x00\x02\x01", 4);
    } else {
        s->calls6++;
        if (!s->have6)
            return -ENOENT;
        memset(addr, 0, 16);
        addr[0] = 0x20;
        addr[1] = 0x01;
        addr[15] = 6;
    }
    return 0;
}

/* One resource record of a response, names in text form. */
struct rr {
    char owner[300];
    uint16_t type, rclass;
    uint32_t ttl;
    uint8_t rdata[64];
    uint16_t rdlen;
    char n1[300], n2[300]; /* NS: n1; SOA: mname, rname */
    uint32_t soa[5];       /* serial, refresh, retry, expire, minimum */
};

struct resp {
    int rcode, aa;
    uint16_t an, ns, ar;
    struct rr rr[8];
};

static void name_at(const uint8_t *pkt, size_t len, size_t *off, char *text)
{
    uint8_t w[DNS_NAME_MAX];
    int n = router_dns_name_read(pkt, len, off, w);
    assert_true(n > 0);
    assert_int_equal(router_dns_name_to_text(w, (size_t)n, text, 300), 0);
}

static void parse(const uint8_t *p, size_t len, struct resp *r)
{
    memset(r, 0, sizeof(*r));
    assert_true(len >= 12);
    assert_int_equal(rd16(p), 0x1234);
    assert_true(p[2] & 0x80);
    r->aa = (p[2] & 0x04) != 0;
    r->rcode = p[3] & 0xf;
    assert_int_equal(rd16(p + 4), 1);
    r->an = rd16(p + 6);
    r->ns = rd16(p + 8);
    r->ar = rd16(p + 10);
    size_t off = 12;
    char q[300];
    name_at(p, len, &off, q);
    off += 4;
    unsigned total = (unsigned)r->an + r->ns + r->ar;
    assert_true(total <= 8);
    for (unsigned i = 0; i < total; i++) {
        struct rr *x = &r->rr[i];
        name_at(p, len, &off, x->owner);
        assert_true(off + 10 <= len);
        x->type = rd16(p + off);
        x->rclass = rd16(p + off + 2);
        x->ttl = rd32(p + off + 4);
        x->rdlen = rd16(p + off + 8);
        off += 10;
        assert_true(off + x->rdlen <= len);
        memcpy(x->rdata, p + off, x->rdlen < sizeof(x->rdata) ? x->rdlen : sizeof(x->rdata));
        size_t ro = off;
        if (x->type == DNS_T_NS) {
            name_at(p, len, &ro, x->n1);
            assert_int_equal(ro, off + x->rdlen);
        } else if (x->type == DNS_T_SOA) {
            name_at(p, len, &ro, x->n1);
            name_at(p, len, &ro, x->n2);
            for (int k = 0; k < 5; k++, ro += 4)
                x->soa[k] = rd32(p + ro);
            assert_int_equal(ro, off + x->rdlen);
        }
        off += x->rdlen;
    }
    assert_int_equal(off, len);
}

static struct router_zone Z;

static void ask(const struct router_zone *z, const char *name, uint16_t type, uint16_t qclass,
                struct sel *s, struct resp *r)
{
    uint8_t q[300], out[1500];
    struct dns_query dq;
    struct router_zone_result res;
    size_t qn = query(q, name, type, qclass);
    int rc = router_dns_parse(q, qn, &dq);
    size_t n = router_zone_answer(z, &dq, rc, sel_fn, s, out, sizeof(out), 512, &res);
    assert_true(n > 0);
    parse(out, n, r);
    assert_int_equal(res.rcode, r->rcode);
    assert_int_equal(res.answers, r->an);
}

static int setup(void **st)
{
    (void)st;
    if (router_zone_init(&Z, "cdn.example.test") != 0)
        return -1;
    if (router_zone_add(&Z, "edge", RZ_GEO, NULL) != 0 ||
        router_zone_add(&Z, "ns1", RZ_STATIC, "192.0.2.53") != 0 ||
        router_zone_add(&Z, "ns1.cdn.example.test", RZ_STATIC, "2001:db8::53") != 0 ||
        router_zone_add(&Z, "v6only", RZ_STATIC, "2001:db8::1") != 0 ||
        router_zone_add(&Z, "a.b", RZ_GEO, NULL) != 0)
        return -1;
    return 0;
}

static void test_init_and_add(void **st)
{
    struct router_zone z;

    assert_int_equal(router_zone_init(&z, ""), -EINVAL);
    assert_int_equal(router_zone_init(&z, "."), -EINVAL);
    assert_int_equal(router_zone_init(&z, "a..b"), -EINVAL);
    assert_int_equal(router_zone_init(&z, "CDN.Example.Test."), 0);
    /* Defaults as documented. */
    assert_int_equal(z.ttl, 20);
    assert_int_equal(z.zone_ttl, 3600);
    assert_int_equal(z.neg_ttl, 20);
    assert_int_equal(z.edns_size, 1232);
    assert_string_equal(z.ns_label, "ns1");
    assert_string_equal(z.mbox_label, "hostmaster");
    /* The apex is always a geo name, stored lower case. */
    assert_int_equal(z.nnames, 1);
    assert_int_equal(z.names[0].kind, RZ_GEO);
    assert_memory_equal(z.names[0].wire,
                        "\x03"
                        "cdn\x07"
                        "example\x04"
                        "test",
                        18);

    /* Relative and full spellings, in any case, are the same name. */
    assert_int_equal(router_zone_add(&z, "Edge", RZ_GEO, NULL), 0);
    assert_int_equal(router_zone_add(&z, "edge.CDN.example.test", RZ_GEO, NULL), 0);
    assert_int_equal(z.nnames, 2);
    /* ... and cannot change kind. */
    assert_int_equal(router_zone_add(&z, "edge", RZ_STATIC, "192.0.2.1"), -EINVAL);
    /* A static name needs an address; both families by two calls. */
    assert_int_equal(router_zone_add(&z, "s", RZ_STATIC, NULL), -EINVAL);
    assert_int_equal(router_zone_add(&z, "s", RZ_STATIC, "192.0.2.300"), -EINVAL);
    assert_int_equal(router_zone_add(&z, "s", RZ_STATIC, "192.0.2.7"), 0);
    assert_int_equal(router_zone_add(&z, "s", RZ_STATIC, "2001:db8::7"), 0);
    const struct router_zone_name *s = &z.names[z.nnames - 1];
    assert_true(s->have4 && s->have6);
    assert_memory_equal(s->addr4, "\xc0\x00\x02\x07", 4);
    assert_int_equal(s->addr6[15], 7);
    /* Bad names. */
    assert_int_equal(router_zone_add(&z, "", RZ_GEO, NULL), -EINVAL);
    assert_int_equal(router_zone_add(&z, "a..b", RZ_GEO, NULL), -EINVAL);
    /* A name written absolute (trailing dot) must be under the apex; one without a trailing
     * dot that does not end in the apex is relative to it. */
    assert_int_equal(router_zone_add(&z, "www.other.test.", RZ_GEO, NULL), -EINVAL);
    assert_int_equal(router_zone_add(&z, "edge.cdn.example.test.", RZ_GEO, NULL), 0);
    assert_int_equal(z.nnames, 3);
    assert_int_equal(router_zone_add(&z, "www.other.test", RZ_GEO, NULL), 0);
    assert_memory_equal(z.names[z.nnames - 1].wire,
                        "\x03"
                        "www\x05"
                        "other\x04"
                        "test\x03"
                        "cdn\x07"
                        "example\x04"
                        "test",
                        33);
    /* The table is bounded. */
    size_t added = z.nnames;
    char nm[32];
    int rc = 0;
    for (int i = 0; rc == 0 && i < 2 * ROUTER_ZONE_MAX_NAMES; i++) {
        snprintf(nm, sizeof(nm), "n%d", i);
        rc = router_zone_add(&z, nm, RZ_GEO, NULL);
        if (rc == 0)
            added++;
    }
    assert_int_equal(rc, -ENOSPC);
    assert_int_equal(added, ROUTER_ZONE_MAX_NAMES);
    assert_int_equal(z.nnames, ROUTER_ZONE_MAX_NAMES);
    /* A known name can still get another address when full. */
    assert_int_equal(router_zone_add(&z, "s", RZ_STATIC, "192.0.2.8"), 0);
}

static void test_in_zone_or_refused(void **st)
{
    struct sel s = {.have4 = 1};
    struct resp r;
    static const char *const outside[] = {
        "example.test",      /* the parent */
        "test",              /* the TLD */
        ".",                 /* the root */
        "xcdn.example.test", /* ends like the apex, not on a label boundary */
        "cdn-example.test",
        "cdn.example.test.evil", /* the apex as a prefix */
        "edge.example.test",
    };
    for (size_t i = 0; i < sizeof(outside) / sizeof(outside[0]); i++) {
        ask(&Z, outside[i], DNS_T_A, DNS_CLASS_IN, &s, &r);
        assert_int_equal(r.rcode, DNS_R_REFUSED);
        assert_false(r.aa);
        assert_int_equal(r.an + r.ns, 0);
    }
    assert_int_equal(s.calls4, 0);
    /* Another class: REFUSED; class ANY (255) is answered. */
    ask(&Z, "cdn.example.test", DNS_T_A, 3 /* CH */, &s, &r);
    assert_int_equal(r.rcode, DNS_R_REFUSED);
    ask(&Z, "cdn.example.test", DNS_T_A, 255, &s, &r);
    assert_int_equal(r.rcode, DNS_R_NOERROR);
    assert_int_equal(r.an, 1);

    /* Inside, in any case: authoritative answers. */
    static const char *const inside[] = {"cdn.example.test", "CDN.EXAMPLE.TEST",
                                         "Edge.Cdn.example.test", "a.b.cdn.example.test"};
    for (size_t i = 0; i < sizeof(inside) / sizeof(inside[0]); i++) {
        ask(&Z, inside[i], DNS_T_A, DNS_CLASS_IN, &s, &r);
        assert_int_equal(r.rcode, DNS_R_NOERROR);
        assert_true(r.aa);
        assert_int_equal(r.an, 1);
        assert_int_equal(r.rr[0].type, DNS_T_A);
        assert_string_equal(r.rr[0].owner, inside[i]); /* the client's spelling */
        assert_int_equal(r.rr[0].ttl, 20);
        assert_memory_equal(r.rr[0].rdata, "\xc0\x00\x02\x01", 4);
    }
    /* Unknown names inside: NXDOMAIN, authoritative, with the SOA. */
    static const char *const unknown[] = {"nope.cdn.example.test", "x.edge.cdn.example.test",
                                          "ns2.cdn.example.test"};
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        ask(&Z, unknown[i], DNS_T_A, DNS_CLASS_IN, &s, &r);
        assert_int_equal(r.rcode, DNS_R_NXDOMAIN);
        assert_true(r.aa);
        assert_int_equal(r.an, 0);
        assert_int_equal(r.ns, 1);
        assert_int_equal(r.rr[0].type, DNS_T_SOA);
        assert_string_equal(r.rr[0].owner, "cdn.example.test");
    }
    /* An empty non-terminal (b above a.b) exists: NODATA with the SOA, not NXDOMAIN, which
     * would deny a.b too (RFC 8020). Every type, and in any case. */
    static const char *const ent[] = {"b.cdn.example.test", "B.Cdn.Example.Test"};
    static const uint16_t types[] = {DNS_T_A, DNS_T_AAAA, DNS_T_TXT};
    for (size_t i = 0; i < sizeof(ent) / sizeof(ent[0]); i++)
        for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
            ask(&Z, ent[i], types[t], DNS_CLASS_IN, &s, &r);
            assert_int_equal(r.rcode, DNS_R_NOERROR);
            assert_true(r.aa);
            assert_int_equal(r.an, 0);
            assert_int_equal(r.ns, 1);
            assert_int_equal(r.rr[0].type, DNS_T_SOA);
        }
    /* Below the name that exists, and beside it: NXDOMAIN again. */
    ask(&Z, "c.a.b.cdn.example.test", DNS_T_A, DNS_CLASS_IN, &s, &r);
    assert_int_equal(r.rcode, DNS_R_NXDOMAIN);
    ask(&Z, "c.b.cdn.example.test", DNS_T_A, DNS_CLASS_IN, &s, &r);
    assert_int_equal(r.rcode, DNS_R_NXDOMAIN);
    /* Zone transfers: REFUSED. */
    ask(&Z, "cdn.example.test", DNS_T_AXFR, DNS_CLASS_IN, &s, &r);
    assert_int_equal(r.rcode, DNS_R_REFUSED);
    ask(&Z, "cdn.example.test", DNS_T_IXFR, DNS_CLASS_IN, &s, &r);
    assert_int_equal(r.rcode, DNS_R_REFUSED);
}

static void check_soa(const struct rr *x, const char *apex, uint32_t ttl, uint32_t serial,
                      uint32_t minimum)
{
    char ns[300], mbox[300];
    snprintf(ns, sizeof(ns), "ns1.%s", apex);
    snprintf(mbox, sizeof(mbox), "hostmaster.%s", apex);
    assert_int_equal(x->type, DNS_T_SOA);
    assert_int_equal(x->rclass, DNS_CLASS_IN);
    assert_string_equal(x->owner, apex);
    assert_int_equal(x->ttl, ttl);
    assert_string_equal(x->n1, ns);
    assert_string_equal(x->n2, mbox);
    assert_int_equal(x->soa[0], serial);
    assert_int_equal(x->soa[1], 7200);   /* refresh */
    assert_int_equal(x->soa[2], 1800);   /* retry */
    assert_int_equal(x->soa[3], 259200); /* expire */
    assert_int_equal(x->soa[4], minimum);
}

static void test_soa_ns_data(void **st)
{
    struct sel s = {.have4 = 1};
    struct resp r;

    ask(&Z, "cdn.example.test", DNS_T_SOA, DNS_CLASS_IN, &s, &r);
    assert_int_equal(r.an, 1);
    check_soa(&r.rr[0], "cdn.example.test", 3600, 1, 20);
    ask(&Z, "cdn.example.test", DNS_T_NS, DNS_CLASS_IN, &s, &r);
    assert_int_equal(r.an, 1);
    assert_int_equal(r.rr[0].type, DNS_T_NS);
    assert_int_equal(r.rr[0].ttl, 3600);
    assert_string_equal(r.rr[0].owner, "cdn.example.test");
    assert_string_equal(r.rr[0].n1, "ns1.cdn.example.test");
    assert_int_equal(s.calls4 + s.calls6, 0); /* no selection for SOA/NS */

    /* The SOA follows the zone's settings; a negative answer's SOA has the negative TTL (its
     * TTL and MINIMUM, RFC 2308 §5). */
    struct router_zone z = Z;
    z.serial = 2026120701;
    z.zone_ttl = 600;
    z.neg_ttl = 45;
    ask(&z, "cdn.example.test", DNS_T_SOA, DNS_CLASS_IN, &s, &r);
    check_soa(&r.rr[0], "cdn.example.test", 600, 2026120701, 45);
    ask(&z, "missing.cdn.example.test", DNS_T_A, DNS_CLASS_IN, &s, &r);
    assert_int_equal(r.rcode, DNS_R_NXDOMAIN);
    check_soa(&r.rr[0], "cdn.example.test", 45, 2026120701, 45);
    /* Names in the records are relative to the client's spelling of the apex. */
    ask(&z, "x.CDN.example.TEST", DNS_T_A, DNS_CLASS_IN, &s, &r);
    check_soa(&r.rr[0], "CDN.example.TEST", 45, 2026120701, 45);

    /* SOA/NS below the apex: NODATA (only the apex has them). */
    ask(&Z, "edge.cdn.example.test", DNS_T_SOA, DNS_CLASS_IN, &s, &r);
    assert_int_equal(r.rcode, DNS_R_NOERROR);
    assert_int_equal(r.an, 0);
    assert_int_equal(r.ns, 1);
    check_soa(&r.rr[0], "cdn.example.test", 20, 1, 20);
    ask(&Z, "edge.cdn.example.test", DNS_T_NS, DNS_CLASS_IN, &s, &r);
    assert_int_equal(r.an, 0);
    assert_int_equal(r.ns, 1);

    /* ANY at the apex: the edge's A and AAAA, then SOA and NS. */
    s.have6 = 1;
    ask(&Z, "cdn.example.test", DNS_T_ANY, DNS_CLASS_IN, &s, &r);
    assert_int_equal(r.an, 4);
    assert_int_equal(r.rr[0].type, DNS_T_A);
    assert_int_equal(r.rr[1].type, DNS_T_AAAA);
    assert_int_equal(r.rr[2].type, DNS_T_SOA);
    assert_int_equal(r.rr[3].type, DNS_T_NS);
    /* ANY below the apex: the addresses only. */
    ask(&Z, "edge.cdn.example.test", DNS_T_ANY, DNS_CLASS_IN, &s, &r);
    assert_int_equal(r.an, 2);
}

static void test_static_and_geo_names(void **st)
{
    struct sel s = {.have4 = 1};
    struct resp r;

    /* Static: both families, zone TTL, no selection. */
    ask(&Z, "ns1.cdn.example.test", DNS_T_A, DNS_CLASS_IN, &s, &r);
    assert_int_equal(r.an, 1);
    assert_int_equal(r.rr[0].ttl, 3600);
    assert_memory_equal(r.rr[0].rdata, "\xc0\x00\x02\x35", 4);
    ask(&Z, "ns1.cdn.example.test", DNS_T_AAAA, DNS_CLASS_IN, &s, &r);
    assert_int_equal(r.an, 1);
    assert_int_equal(r.rr[0].rdata[15], 0x53);
    assert_int_equal(s.calls4 + s.calls6, 0);
    /* A at a name with only an IPv6 address: NODATA, with the SOA at the negative TTL. */
    ask(&Z, "v6only.cdn.example.test", DNS_T_A, DNS_CLASS_IN, &s, &r);
    assert_int_equal(r.rcode, DNS_R_NOERROR);
    assert_true(r.aa);
    assert_int_equal(r.an, 0);
    assert_int_equal(r.ns, 1);
    check_soa(&r.rr[0], "cdn.example.test", 20, 1, 20);
    /* Other types at a static name: NODATA. */
    ask(&Z, "ns1.cdn.example.test", DNS_T_TXT, DNS_CLASS_IN, &s, &r);
    assert_int_equal(r.an, 0);
    assert_int_equal(r.ns, 1);

    /* Geo: one selection per asked family; no edge of the family is NODATA. */
    memset(&s, 0, sizeof(s));
    s.have4 = 1;
    ask(&Z, "edge.cdn.example.test", DNS_T_AAAA, DNS_CLASS_IN, &s, &r);
    assert_int_equal(s.calls6, 1);
    assert_int_equal(s.calls4, 0);
    assert_int_equal(r.rcode, DNS_R_NOERROR);
    assert_int_equal(r.an, 0);
    assert_int_equal(r.ns, 1);
    s.have4 = 0;
    ask(&Z, "edge.cdn.example.test", DNS_T_A, DNS_CLASS_IN, &s, &r);
    assert_int_equal(r.an, 0);
    assert_int_equal(r.ns, 1);
    s.have6 = 1;
    ask(&Z, "edge.cdn.example.test", DNS_T_AAAA, DNS_CLASS_IN, &s, &r);
    assert_int_equal(r.an, 1);
    assert_int_equal(r.rr[0].type, DNS_T_AAAA);
    assert_int_equal(r.rr[0].ttl, 20);
    assert_int_equal(r.rr[0].rdata[15], 6);
    /* Geo TTL follows the zone's setting. */
    struct router_zone z = Z;
    z.ttl = 7;
    ask(&z, "edge.cdn.example.test", DNS_T_AAAA, DNS_CLASS_IN, &s, &r);
    assert_int_equal(r.rr[0].ttl, 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_and_add),
        cmocka_unit_test(test_in_zone_or_refused),
        cmocka_unit_test(test_soa_ns_data),
        cmocka_unit_test(test_static_and_geo_names),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
