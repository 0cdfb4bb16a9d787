/* src/router/router_dash.h: the router's web dashboard (internal to src/router).
 *
 * The page and its script are files of src/router/dash/, embedded in the binary at build
 * time (cmake/mod_router.cmake writes them into a generated C file as arrays). */
#ifndef MLCDN_ROUTER_ROUTER_DASH_H
#define MLCDN_ROUTER_ROUTER_DASH_H

#include <stddef.h>

struct router_dash_file {
    const char *name; /* "index.html", "dash.js" ... */
    const char *type; /* Content-Type */
    const unsigned char *data;
    size_t len;
};

/* Generated: every file of src/router/dash/. */
extern const struct router_dash_file router_dash_files[];
extern const size_t router_dash_nfiles;

#endif
