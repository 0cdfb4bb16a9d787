/* src/main.c: `mlcdn <subcommand>`. Wiring only: every subcommand lives in its module and
 * is reached through this table. */
#include <stdio.h>
#include <string.h>

#include "build_info.h"
#include "core/mc.h"
#include "core/metrics.h"
#include "ctl/ctl.h"
#include "edge/edge.h"
#include "infer/infer.h"
#include "origin/origin.h"
#include "plan/plan.h"
#include "router/router.h"

struct subcmd {
    const char *name;
    int (*main)(int argc, char **argv);
    const char *help;
};

static const struct subcmd subcmds[] = {
    /* one line per subcommand; keep in the order of the README */
    {"run", ctl_run_main, "the whole CDN on this machine with embedded defaults"},
    {"delay", ctl_delay_main, "TCP relay adding a round-trip time (emulated distance)"},
    {"edge", edge_main, "HTTP reverse-proxy cache for ML assets and API responses"},
    {"origin", origin_main, "reference origin: assets, slow responses, model store"},
    {"router", router_main, "GeoDNS and HTTP router to the best healthy edge"},
    {"cachesim", cachesim_main, "replay a trace through the edge's eviction policies"},
    {"plan", plan_main, "size the L1 and L2 tiers and their cost from a trace or access log"},
    {"infer", infer_cli_main, "run or benchmark an ONNX model with the edge's engine"},
    {"ctl", ctl_main,
     "operator client: invalidate and model roll-out on every edge; stats, top, plot"},
};

static void usage(FILE *f)
{
    fprintf(f, "Usage: mlcdn <command> [options]   (mlcdn <command> --help for its options)\n\n"
               "Commands:\n");
    for (const struct subcmd *s = subcmds; s < subcmds + MC_ARRAY_SIZE(subcmds); s++)
        fprintf(f, "  %-10s %s\n", s->name, s->help);
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("mlcdn %s\n", MLCDN_VERSION);
        return 0;
    }
    /* Every daemon exports these on its /metrics. */
    metrics_process_register(MLCDN_VERSION, MLCDN_COMMIT);
    for (const struct subcmd *s = subcmds; s < subcmds + MC_ARRAY_SIZE(subcmds); s++)
        if (!strcmp(argv[1], s->name))
            return s->main(argc - 1, argv + 1);
    fprintf(stderr, "mlcdn: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
