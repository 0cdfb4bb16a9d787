/* src/core/sdnotify.c: sd_notify(3)'s datagram, written here rather than linking
 * libsystemd: the protocol is one sendto() of text to an AF_UNIX socket, documented by
 * systemd as a stable interface for exactly this use, and doing it ourselves keeps
 * libsystemd out of the binary's dependencies (containers and non-systemd hosts run the
 * same build). The socket is opened per call: notifications are a handful per process
 * lifetime, and no descriptor stays open for a worker to inherit or close by mistake. */
#include "core/sdnotify.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/log.h"
#include "core/units.h"

int sdnotify_send(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa;
    socklen_t salen;
    size_t plen;
    ssize_t n;
    int fd, err = 0;

    if (!path || !path[0])
        return 0;
    /* systemd also accepts vsock: addresses (for virtual machines); not ours to reach. */
    if (path[0] != '/' && path[0] != '@')
        return -EAFNOSUPPORT;
    plen = strlen(path);
    if (plen >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, plen);
    /* "@name" is the abstract namespace: a leading NUL, and the length counts only the
     * name's bytes (no terminating NUL, which would become part of the name). */
    if (sa.sun_path[0] == '@')
        sa.sun_path[0] = '\0';
    salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
    if (n < 0)
        err = -errno;
    close(fd);
    return err;
}

/* The daemon goes on after a failed notification (a manager that misses READY times the
 * start out itself), so the reason is logged here, where it is known. */
static int sent(const char *what, int err)
{
    if (err < 0)
        log_warn("cannot notify the service manager", "state=%s NOTIFY_SOCKET=\"%s\" error=\"%s\"",
                 what, getenv("NOTIFY_SOCKET"), strerror(-err));
    return err;
}

int sdnotify_ready(const char *status)
{
    char msg[512];

    if (!status)
        return sent("READY", sdnotify_send("READY=1"));
    /* STATUS= is one line: anything after a newline would be read as another key. */
    snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%.*s", (int)strcspn(status, "\n"), status);
    return sent("READY", sdnotify_send(msg));
}

int sdnotify_stopping(void)
{
    return sent("STOPPING", sdnotify_send("STOPPING=1"));
}

int sdnotify_reloading(void)
{
    char msg[64];

    snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%" PRIu64, units_now_us());
    return sent("RELOADING", sdnotify_send(msg));
}
