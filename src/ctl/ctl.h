/* src/ctl/ctl.h: operator commands (`mlcdn run`, and later `mlcdn ctl ...`). */
#ifndef MLCDN_CTL_CTL_H
#define MLCDN_CTL_CTL_H

/* `mlcdn run`: the whole CDN on this machine with embedded defaults. */
int ctl_run_main(int argc, char **argv);

#endif
