/* src/router/router.h: `mlcdn router`, the GeoDNS and HTTP router (docs/router.md).
 *
 * The library side is split by topic: router_dns.h (wire codec), router_zone.h (answer
 * logic), router_geo.h (mmdb lookups), router_select.h (scoring and choice). */
#ifndef MLCDN_ROUTER_ROUTER_H
#define MLCDN_ROUTER_ROUTER_H

/* argv[0] is "router". Returns the process exit status: 0 after a clean stop (SIGINT or
 * SIGTERM), 1 on a start-up failure, 2 on bad options. */
int router_main(int argc, char **argv);

#endif
