/* src/ctl/ctl.h: operator commands (`mlcdn run`, `mlcdn ctl ...`). */
#ifndef MLCDN_CTL_CTL_H
#define MLCDN_CTL_CTL_H

/* `mlcdn run`: the whole CDN on this machine with embedded defaults. */
int ctl_run_main(int argc, char **argv);

/* `mlcdn ctl COMMAND ...`: the operator's client (invalidate, ...). Returns the exit
 * status: 0 every edge acknowledged, 1 one did not (named on stderr), 2 bad flags. */
int ctl_main(int argc, char **argv);

/* `mlcdn delay`: TCP relays that add a round-trip time (the demo's network distance). */
int ctl_delay_main(int argc, char **argv);

#endif
