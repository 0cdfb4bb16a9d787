/* tests/unit/core/test_sdnotify.c: the notify datagram reaches a real AF_UNIX socket,
 * by path and in the abstract namespace, with the text sd_notify(3) specifies; without
 * $NOTIFY_SOCKET nothing is sent, and addresses we cannot reach are refused by name. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/sdnotify.h"

/* Binds a datagram socket at `name` (a path, or "@x" abstract) and sets $NOTIFY_SOCKET. */
static int bind_notify(const char *name)
{
    struct sockaddr_un sa;
    size_t len = strlen(name);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    assert_true(len < sizeof(sa.sun_path));
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, name, len);
    if (name[0] == '@')
        sa.sun_path[0] = '\0';
    assert_int_equal(bind(fd, (struct sockaddr *)&sa,
                          (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)),
                     0);
    setenv("NOTIFY_SOCKET", name, 1);
    return fd;
}

/* The next datagram, NUL-terminated; a test that sent nothing fails here, not hangs. */
static void recv_msg(int fd, char *out, size_t cap)
{
    ssize_t n = recv(fd, out, cap - 1, MSG_DONTWAIT);
    assert_true(n >= 0);
    out[n] = '\0';
}

static void test_path_socket(void **state)
{
    char dir[] = "/tmp/mlcdn-sdnotify-XXXXXX", path[64], msg[256];
    (void)state;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/notify", dir);
    int fd = bind_notify(path);

    assert_int_equal(sdnotify_ready(NULL), 0);
    recv_msg(fd, msg, sizeof(msg));
    assert_string_equal(msg, "READY=1");
    /* STATUS= ends at the first newline: a second line would be read as another key. */
    assert_int_equal(sdnotify_ready("serving on :8080\nSTOPPING=1"), 0);
    recv_msg(fd, msg, sizeof(msg));
    assert_string_equal(msg, "READY=1\nSTATUS=serving on :8080");
    assert_int_equal(sdnotify_stopping(), 0);
    recv_msg(fd, msg, sizeof(msg));
    assert_string_equal(msg, "STOPPING=1");

    close(fd);
    unlink(path);
    rmdir(dir);
    unsetenv("NOTIFY_SOCKET");
}

static void test_abstract_socket_reloading(void **state)
{
    char name[64], msg[256];
    struct timespec ts;
    unsigned long long before, usec;
    (void)state;

    snprintf(name, sizeof(name), "@mlcdn-sdnotify-test-%ld", (long)getpid());
    int fd = bind_notify(name);

    clock_gettime(CLOCK_MONOTONIC, &ts);
    before = (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000;
    assert_int_equal(sdnotify_reloading(), 0);
    recv_msg(fd, msg, sizeof(msg));
    /* Type=notify-reload wants the reload's start on CLOCK_MONOTONIC, in microseconds. */
    assert_int_equal(sscanf(msg, "RELOADING=1\nMONOTONIC_USEC=%llu", &usec), 1);
    assert_true(usec >= before);
    clock_gettime(CLOCK_MONOTONIC, &ts);
    assert_true(usec <=
                (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000);

    close(fd);
    unsetenv("NOTIFY_SOCKET");
}

static void test_no_socket_and_bad_addresses(void **state)
{
    char longpath[200];
    (void)state;

    unsetenv("NOTIFY_SOCKET");
    assert_int_equal(sdnotify_ready(NULL), 0);
    setenv("NOTIFY_SOCKET", "", 1);
    assert_int_equal(sdnotify_stopping(), 0);
    setenv("NOTIFY_SOCKET", "vsock:2:1234", 1);
    assert_int_equal(sdnotify_ready(NULL), -EAFNOSUPPORT);
    memset(longpath, 'a', sizeof(longpath) - 1);
    longpath[0] = '/';
    longpath[sizeof(longpath) - 1] = '\0';
    setenv("NOTIFY_SOCKET", longpath, 1);
    assert_int_equal(sdnotify_ready(NULL), -ENAMETOOLONG);
    /* Nobody listening: the error comes back instead of vanishing. */
    setenv("NOTIFY_SOCKET", "/nonexistent-dir/notify", 1);
    assert_int_equal(sdnotify_stopping(), -ENOENT);
    unsetenv("NOTIFY_SOCKET");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_socket),
        cmocka_unit_test(test_abstract_socket_reloading),
        cmocka_unit_test(test_no_socket_and_bad_addresses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
