/* src/core/sdnotify.h: the service manager's readiness protocol (systemd's Type=notify).
 *
 * Each call sends one datagram of newline-separated KEY=VALUE assignments to the AF_UNIX
 * socket named by $NOTIFY_SOCKET (a path, or "@name" for the abstract namespace), as
 * sd_notify(3) describes. Without $NOTIFY_SOCKET every call does nothing and returns 0,
 * so daemons call these unconditionally. Safe from any thread; no state is kept. */
#ifndef MLCDN_CORE_SDNOTIFY_H
#define MLCDN_CORE_SDNOTIFY_H

/* Sends `state` as is ("READY=1\nSTATUS=..."). Returns 0 (sent, or no $NOTIFY_SOCKET),
 * -EAFNOSUPPORT for an address that is neither a path nor "@name", -ENAMETOOLONG, or
 * the -errno of socket()/sendto(). */
int sdnotify_send(const char *state);

/* READY=1 with STATUS=`status` (may be NULL): every listener is bound and requests are
 * served. Same returns as sdnotify_send(); these three also log a failure at warn. */
int sdnotify_ready(const char *status);
/* STOPPING=1: the daemon has begun to shut down (or drain). */
int sdnotify_stopping(void);
/* RELOADING=1 with MONOTONIC_USEC=now (CLOCK_MONOTONIC, what Type=notify-reload
 * checks): a configuration reload has begun; send sdnotify_ready() when it is done. */
int sdnotify_reloading(void);

#endif
