/* src/origin/origin.h: `mlcdn origin`, the reference origin behind the edge in the demo,
 * the end-to-end tests and the benchmarks. See docs/origin.md. */
#ifndef MLCDN_ORIGIN_ORIGIN_H
#define MLCDN_ORIGIN_ORIGIN_H

/* `mlcdn origin --listen ADDR:PORT --root DIR [...]` (argv[0] == "origin"). Serves until
 * SIGTERM/SIGINT, then stops gracefully. Returns the process exit status. */
int origin_main(int argc, char **argv);

#endif
