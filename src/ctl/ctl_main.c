/* src/ctl/ctl_main.c: `mlcdn ctl SUBCOMMAND`, the operator's client of the edges, the
 * router and the control stream. One line per subcommand in the table; each lives in its
 * own file (ctl_int.h), and the target flags they share are defined here. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/rand.h>

#include "core/mc.h"
#include "core/redis_util.h"
#include "ctl/ctl.h"
#include "ctl/ctl_int.h"
#include "ctl/ctl_look.h"

struct ctl_cmd {
    const char *name;
    int (*main)(int argc, char **argv);
    void (*usage)(void);
    const char *help;
};

static const struct ctl_cmd cmds[] = {
    {"invalidate", ctl_invalidate_main, ctl_invalidate_usage,
     "purge URLs, prefixes, patterns, tags or a model's keys on every edge"},
    {"stats", ctl_stats_main, ctl_stats_usage,
     "one table per edge: requests/s, tier shares, latency, bytes, models"},
    {"top", ctl_top_main, ctl_top_usage,
     "live view of the edges (terminal), refreshed every second"},
    {"plot", ctl_plot_main, ctl_plot_usage,
     "latency distribution per tier as SVG (live edges or an access log)"},
    {"model", ctl_model_main, ctl_model_usage,
     "publish, roll back, promote and inspect model versions on every edge"},
};

static void usage(FILE *f)
{
    fprintf(f, "Usage: mlcdn ctl COMMAND [options]   (mlcdn ctl COMMAND --help for its options)\n\n"
               "Commands:\n");
    for (size_t i = 0; i < MC_ARRAY_SIZE(cmds); i++)
        fprintf(f, "  %-12s %s\n", cmds[i].name, cmds[i].help);
    fprintf(f, "\nEvery command reaches the edges one of three ways: --edges URL,URL,... (their\n"
               "admin URLs, in parallel, with retries), --router URL (the router's admin\n"
               "listener fans out to every edge it knows) or --redis URL (the control stream\n"
               "the edges read; they acknowledge there). The admin token comes from --token or\n"
               "the environment variable MLCDN_ADMIN_TOKEN. Exit status: 0 when every edge\n"
               "acknowledged, 1 when one did not (it is named), 2 on bad flags.\n");
}

int ctl_main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        if (argc >= 2)
            for (size_t i = 0; i < MC_ARRAY_SIZE(cmds); i++) {
                printf("\n");
                cmds[i].usage();
            }
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < MC_ARRAY_SIZE(cmds); i++)
        if (!strcmp(argv[1], cmds[i].name)) {
            curl_global_init(CURL_GLOBAL_DEFAULT);
            int rc = cmds[i].main(argc - 1, argv + 1);
            curl_global_cleanup();
            return rc;
        }
    fprintf(stderr, "mlcdn ctl: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}

size_t ctl__target_opts(struct ctl_target *t, struct conf_opt *opts)
{
    const struct conf_opt o[CTL_TARGET_NOPTS] = {
        {"router", CONF_STR, &t->router, "the router's admin URL: it fans out to every edge"},
        {"edges", CONF_STR, &t->edges, "URL,URL,...: the edges' admin URLs, reached directly"},
        {"redis", CONF_STR, &t->redis, "redis://HOST:PORT: the control stream the edges read"},
        {"stream", CONF_STR, &t->stream, "the control stream's key (default mlcdn:control)"},
        {"token", CONF_STR, &t->token, "admin bearer token (default: $MLCDN_ADMIN_TOKEN)"},
        {"timeout", CONF_DURATION, &t->timeout_ms,
         "how long every edge has to acknowledge (default 5s)"},
        {"retries", CONF_INT, &t->retries, "more attempts per edge after a failure (default 2)"},
    };
    memcpy(opts, o, sizeof(o));
    return CTL_TARGET_NOPTS;
}

void ctl__target_init(struct ctl_target *t)
{
    memset(t, 0, sizeof(*t));
    t->stream = "mlcdn:control";
    t->timeout_ms = 5000;
    t->retries = 2;
    const char *tok = getenv("MLCDN_ADMIN_TOKEN");
    t->token = tok && *tok ? tok : NULL;
}

static int http_url(const char *u)
{
    return !strncmp(u, "http://", 7) || !strncmp(u, "https://", 8);
}

int ctl__target_check(const struct ctl_target *t, char *err, size_t errlen)
{
    int n = !!t->router + !!t->edges + !!t->redis;
    if (n != 1) {
        snprintf(err, errlen, "%s",
                 n ? "--router, --edges and --redis exclude each other"
                   : "give --router URL, --edges URL,... or --redis URL");
        return -EINVAL;
    }
    if (t->router && !http_url(t->router)) {
        snprintf(err, errlen, "--router '%s': expected http://HOST:PORT", t->router);
        return -EINVAL;
    }
    if (t->redis) {
        struct redis_url u;
        const char *why;
        if (redis_url_parse(t->redis, &u, &why) < 0) {
            snprintf(err, errlen, "--redis '%s': %s", t->redis, why);
            return -EINVAL;
        }
    }
    if (!t->stream || !*t->stream || strlen(t->stream) > 400) {
        snprintf(err, errlen, "--stream: expected a key of 1 to 400 bytes");
        return -EINVAL;
    }
    if (t->timeout_ms == 0) {
        snprintf(err, errlen, "--timeout must be more than 0");
        return -EINVAL;
    }
    if (t->retries < 0 || t->retries > 10) {
        snprintf(err, errlen, "--retries must be between 0 and 10");
        return -EINVAL;
    }
    if (t->edges) {
        char **v;
        size_t n2;
        if (ctl__edges_split(t->edges, &v, &n2, err, errlen) < 0)
            return -EINVAL;
        ctl__strv_free(v, n2);
    }
    return 0;
}

int ctl__edges_split(const char *list, char ***out, size_t *n, char *err, size_t errlen)
{
    char **v = mc_xcalloc(CTL_MAX_TARGETS, sizeof(*v));
    size_t k = 0;
    const char *p = list;

    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        while (len > 0 && p[len - 1] == '/')
            len--;
        if (len == 0) {
            snprintf(err, errlen, "--edges: empty entry in '%s'", list);
            goto fail;
        }
        if (k == CTL_MAX_TARGETS) {
            snprintf(err, errlen, "--edges: at most %d edges", CTL_MAX_TARGETS);
            goto fail;
        }
        v[k] = mc_xmalloc(len + 1);
        memcpy(v[k], p, len);
        v[k][len] = 0;
        if (!http_url(v[k])) {
            snprintf(err, errlen, "--edges: '%s' is not an http:// URL", v[k]);
            k++;
            goto fail;
        }
        k++;
        if (!e)
            break;
        p = e + 1;
        if (!*p) {
            snprintf(err, errlen, "--edges: empty entry in '%s'", list);
            goto fail;
        }
    }
    if (k == 0) {
        snprintf(err, errlen, "--edges: no URL given");
        goto fail;
    }
    *out = v;
    *n = k;
    return 0;
fail:
    ctl__strv_free(v, k);
    return -EINVAL;
}

void ctl__strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void ctl__op_id(char out[17])
{
    unsigned char b[8];
    if (RAND_bytes(b, sizeof(b)) != 1) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t v = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid();
        memcpy(b, &v, 8);
    }
    for (int i = 0; i < 8; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

int64_t ctl__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
