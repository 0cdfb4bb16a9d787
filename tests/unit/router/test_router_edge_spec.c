/* tests/unit/router/test_router_edge_spec.c: `--edge NAME=LAT,LON,IP,HEALTH_URL[,CAPACITY]`
 * parsing and the client-address rule (ECS subnet, else the peer, v4-mapped peers as IPv4). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "router/router_int.h"

static void test_edge_spec_ok(void **st)
{
    struct router_edge_cfg e;
    char err[256];
    assert_int_equal(router__edge_parse("tokyo=35.68,139.69,127.0.1.1,http://127.0.0.1:9/health",
                                        &e, err, sizeof(err)),
                     0);
    assert_string_equal(e.name, "tokyo");
    assert_int_equal(e.family, 4);
    assert_memory_equal(e.addr, "\x7f\x00\x01\x01", 4);
    assert_true(e.capacity == 1.0);
    assert_string_equal(e.health_url, "http://127.0.0.1:9/health");
    assert_int_equal(router__edge_parse("fra=50.11,8.68,2001:db8::7,http://[2001:db8::7]:9/h,0.75",
                                        &e, err, sizeof(err)),
                     0);
    assert_int_equal(e.family, 6);
    assert_string_equal(e.addr_text, "2001:db8::7");
    assert_true(e.capacity == 0.75);
    assert_int_equal(router__edge_parse("b=1,2,[::1],https://x/health", &e, err, sizeof(err)), 0);
    assert_int_equal(e.family, 6);
}

static void test_edge_spec_bad(void **st)
{
    struct router_edge_cfg e;
    char err[256];
    const char *bad[] = {
        "noequals",
        "=1,2,127.0.0.1,http://x/",
        "a=1,2,127.0.0.1",              /* no URL */
        "a=91,2,127.0.0.1,http://x/",   /* latitude */
        "a=1,181,127.0.0.1,http://x/",  /* longitude */
        "a=1,2,host.example,http://x/", /* not an address */
        "a=1,2,127.0.0.1,ftp://x/",     /* scheme */
        "a=1,2,127.0.0.1,http://x/,0",  /* capacity */
        "a=1,2,127.0.0.1,http://x/,1,extra",
        "a=x,2,127.0.0.1,http://x/",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = 0;
        assert_int_equal(router__edge_parse(bad[i], &e, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "--edge"));
    }
}

static void test_client_addr(void **st)
{
    struct dns_query q;
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
    struct sockaddr_in s4 = {.sin_family = AF_INET};
    uint8_t a[16];
    int fam;

    memset(&q, 0, sizeof(q));
    inet_pton(AF_INET6, "::ffff:192.0.2.9", &s6.sin6_addr);
    router__client_addr(&q, (struct sockaddr *)&s6, &fam, a);
    assert_int_equal(fam, 4);
    assert_memory_equal(a, "\xc0\x00\x02\x09", 4);
    inet_pton(AF_INET, "198.51.100.1", &s4.sin_addr);
    router__client_addr(&q, (struct sockaddr *)&s4, &fam, a);
    assert_int_equal(fam, 4);
    /* ECS wins over the peer; /0 does not */
    q.ecs.present = 1;
    q.ecs.family = 2;
    q.ecs.source = 48;
    q.ecs.addr[0] = 0x20;
    q.ecs.addr[1] = 0x01;
    router__client_addr(&q, (struct sockaddr *)&s4, &fam, a);
    assert_int_equal(fam, 6);
    assert_int_equal(a[0], 0x20);
    q.ecs.source = 0;
    router__client_addr(&q, (struct sockaddr *)&s4, &fam, a);
    assert_int_equal(fam, 4);
    assert_memory_equal(a, "\xc6\x33\x64\x01", 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_edge_spec_ok),
        cmocka_unit_test(test_edge_spec_bad),
        cmocka_unit_test(test_client_addr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
