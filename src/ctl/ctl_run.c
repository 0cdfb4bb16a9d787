/* src/ctl/ctl_run.c: `mlcdn run`, the whole CDN on this machine with embedded defaults.
 *
 * Starts each part as its own process (the same binary with a subcommand), exactly as an
 * operator would run them on separate machines: a reference origin "in N. Virginia" with
 * its added latency (the slow API), a model server next to it, one edge per region (each
 * with its L1, an L2 directory and, when redis-server is installed, the region's Redis),
 * the GeoDNS/HTTP router over all edges, and one `mlcdn delay` process whose relays put the
 * regions' distances between users, edges and the origin. Every region has its own
 * loopback addresses (ctl_world.h), so the router's DNS answers name a region's edge by
 * address, as it would on the Internet, and the same port numbers serve every region.
 *
 * Once everything is up (the router reports every edge healthy), a short workload is
 * replayed from each region's users and its table printed (ctl_workload.c); then the demo
 * keeps serving. The parts are watched: an edge that exits is reported and its users fail
 * over (the router's health checks); any other part exiting stops the rest. SIGINT/SIGTERM
 * stop them all with SIGINT (nobody waits for a drain in a demo), then a bounded wait. */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/conf.h"
#include "core/log.h"
#include "core/mc.h"
#include "ctl/ctl.h"
#include "ctl/ctl_int.h"
#include "ctl/ctl_world.h"

extern char **environ;

struct child {
    char name[48];
    pid_t pid;
    int is_edge;
};

struct run {
    struct child *ch;
    size_t nch, cap;
    char self[4096];
};

/* Port of each role; the same number on every region's address. */
struct run_ports {
    int pub, adm, origin, origin_adm, model, model_adm, dns, http, radm, redis;
};

/* What the workload knows how to ask of the reference models. */
static const struct {
    const char *name;
    unsigned dims;
} wl_models[] = {{"logreg", 32}, {"mlp", 64}};

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
    got_signal = sig;
}

static int write_file(const char *dir, const char *rel, const void *data, size_t n)
{
    char path[4096];
    int fd;

    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    for (char *p = path + strlen(dir) + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(path, 0755) != 0 && errno != EEXIST)
                return -errno;
            *p = '/';
        }
    }
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    const char *s = data;
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w < 0) {
            int e = -errno;
            close(fd);
            return e;
        }
        s += w;
        n -= (size_t)w;
    }
    return close(fd) == 0 ? 0 : -errno;
}

/* Deterministic pseudo-random bytes stand in for model weights and embeddings. */
static int write_blob(const char *dir, const char *rel, size_t n, uint64_t seed)
{
    unsigned char *b = malloc(n);
    int err;

    if (!b)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        b[i] = (unsigned char)seed;
    }
    err = write_file(dir, rel, b, n);
    free(b);
    return err;
}

static int write_demo(const char *dir)
{
    static const char config[] =
        "{\"model\": \"ranker\", \"version\": 3, \"inputs\": {\"x\": [1, 64]}, "
        "\"threshold\": 0.42}\n";
    static const char index[] =
        "mlcdn demo origin\n"
        "  /models/ranker/3/config.json   model config (cached 1 h)\n"
        "  /models/ranker/3/weights.bin   4 MiB of weights (cached 1 h)\n"
        "  /embeddings/items.bin          1 MiB embedding table (cached 1 h)\n"
        "  /api/features.json             API response (cached 10 s, stale-while-revalidate)\n"
        "  /api/items/1..20.json          API responses (cached 60 s)\n"
        "  /api/private.json              per-user response (never shared)\n";
    static const char features[] = "{\"user\": 42, \"features\": [0.1, 0.7, 0.3]}\n";
    static const char priv[] = "{\"user\": 42, \"token\": \"per-user\"}\n";
    static const char fh[] = "Cache-Control: public, max-age=10, stale-while-revalidate=30\n";
    static const char ih[] = "Cache-Control: public, max-age=60\n";
    static const char ph[] = "Cache-Control: private, max-age=60\n";
    int err = 0;

    err = err ? err : write_file(dir, "index.txt", index, sizeof(index) - 1);
    err = err ? err : write_file(dir, "models/ranker/3/config.json", config, sizeof(config) - 1);
    err = err ? err
              : write_blob(dir, "models/ranker/3/weights.bin", 4u << 20, 0x9e3779b97f4a7c15ull);
    err = err ? err : write_blob(dir, "embeddings/items.bin", 1u << 20, 0x2545f4914f6cdd1dull);
    err = err ? err : write_file(dir, "api/features.json", features, sizeof(features) - 1);
    err = err ? err : write_file(dir, "api/features.json.hdrs", fh, sizeof(fh) - 1);
    for (int k = 1; k <= 20 && !err; k++) {
        char rel[64], body[128];
        int n = snprintf(body, sizeof(body), "{\"item\": %d, \"score\": %.3f}\n", k,
                         (double)((k * 37) % 100) / 100.0);
        snprintf(rel, sizeof(rel), "api/items/%d.json", k);
        err = write_file(dir, rel, body, (size_t)n);
        snprintf(rel, sizeof(rel), "api/items/%d.json.hdrs", k);
        err = err ? err : write_file(dir, rel, ih, sizeof(ih) - 1);
    }
    err = err ? err : write_file(dir, "api/private.json", priv, sizeof(priv) - 1);
    err = err ? err : write_file(dir, "api/private.json.hdrs", ph, sizeof(ph) - 1);
    return err;
}

/* The edge reads DIR/NAME/VERSION/model.onnx; the reference models are DIR/NAME/model.onnx.
 * For those, a directory of version 1 links is made under work. The result is in out. */
static int models_dir(const char *dir, const char *work, char *out, size_t outlen)
{
    char p[4200], abs_dir[4096];
    int flat = 0, err = 0;

    if (!realpath(dir, abs_dir))
        return -errno;
    for (size_t i = 0; i < MC_ARRAY_SIZE(wl_models); i++) {
        snprintf(p, sizeof(p), "%s/%s/model.onnx", abs_dir, wl_models[i].name);
        flat |= access(p, R_OK) == 0;
    }
    if (!flat) {
        snprintf(out, outlen, "%s", abs_dir);
        return 0;
    }
    snprintf(out, outlen, "%s/models", work);
    if (mkdir(out, 0755) != 0 && errno != EEXIST)
        return -errno;
    for (size_t i = 0; i < MC_ARRAY_SIZE(wl_models) && !err; i++) {
        char link[4200];
        snprintf(p, sizeof(p), "%s/%s/model.onnx", abs_dir, wl_models[i].name);
        if (access(p, R_OK) != 0)
            continue;
        snprintf(link, sizeof(link), "%s/%s", out, wl_models[i].name);
        mkdir(link, 0755);
        snprintf(link, sizeof(link), "%s/%s/1", out, wl_models[i].name);
        mkdir(link, 0755);
        snprintf(link, sizeof(link), "%s/%s/1/model.onnx", out, wl_models[i].name);
        if (symlink(p, link) != 0 && errno != EEXIST)
            err = -errno;
    }
    return err;
}

static int has_model(const char *models, const char *name)
{
    char p[4096];
    snprintf(p, sizeof(p), "%s/%s", models, name);
    return access(p, R_OK) == 0;
}

/* Waits until something accepts connections on ADDR:PORT (the child bound it). */
static int wait_listening(const char *addr, int timeout_ms)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    struct sockaddr_in sa = {0};

    if (!colon || (size_t)(colon - addr) >= sizeof(host))
        return -EINVAL;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host[0] ? host : "127.0.0.1", &sa.sin_addr) != 1)
        return -EINVAL;
    for (int waited = 0; waited < timeout_ms && !got_signal; waited += 50) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -errno;
        int ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
        close(fd);
        if (ok)
            return 0;
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return -ETIMEDOUT;
}

/* A port nothing listens on now (the kernel's pick). */
static int free_port(void)
{
    struct sockaddr_in sa = {0};
    socklen_t sl = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* Starts argv (argv[0] the program) as a child named name; its output goes to ours. */
static int run_spawn(struct run *r, const char *name, int is_edge, const char *prog,
                     char *const argv[], const char *log)
{
    pid_t pid;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_t fa;
    sigset_t none;
    int err;

    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_init(&fa);
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
    if (log) {
        posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        posix_spawn_file_actions_adddup2(&fa, 1, 2);
    }
    err = posix_spawn(&pid, prog, &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (err) {
        fprintf(stderr, "mlcdn run: cannot start the %s: %s\n", name, strerror(err));
        return -err;
    }
    if (r->nch == r->cap) {
        r->cap = MC_MAX(16, r->cap * 2);
        r->ch = mc_xrealloc(r->ch, r->cap * sizeof(*r->ch));
    }
    struct child *c = &r->ch[r->nch++];
    memset(c, 0, sizeof(*c));
    snprintf(c->name, sizeof(c->name), "%s", name);
    c->pid = pid;
    c->is_edge = is_edge;
    return 0;
}

static void stop_all(struct run *r)
{
    for (size_t i = 0; i < r->nch; i++)
        if (r->ch[i].pid > 0)
            kill(r->ch[i].pid, SIGINT); /* stop without the drain: nothing routes here */
    for (int waited = 0; waited < 150; waited++) {
        int left = 0;
        for (size_t i = 0; i < r->nch; i++) {
            if (r->ch[i].pid > 0 && waitpid(r->ch[i].pid, NULL, WNOHANG) == r->ch[i].pid)
                r->ch[i].pid = 0;
            left += r->ch[i].pid > 0;
        }
        if (!left)
            return;
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    for (size_t i = 0; i < r->nch; i++) {
        if (r->ch[i].pid > 0) {
            kill(r->ch[i].pid, SIGKILL);
            waitpid(r->ch[i].pid, NULL, 0);
        }
    }
}

/* Reaps children that exited; an edge's exit is reported (its users fail over), any other
 * part's ends the run (returns 1). */
static int reap(struct run *r, int block)
{
    int st, rc = 0;
    pid_t pid;

    while ((pid = waitpid(-1, &st, block ? 0 : WNOHANG)) > 0) {
        for (size_t i = 0; i < r->nch; i++) {
            struct child *c = &r->ch[i];
            if (c->pid != pid)
                continue;
            c->pid = 0;
            int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            if (got_signal) {
                /* Ctrl-C reaches the whole process group: the parts stop on their own. */
            } else if (c->is_edge) {
                fprintf(stderr,
                        "mlcdn run: the %s exited (status %d); the router moves its users to "
                        "the next nearest edge\n",
                        c->name, code);
            } else {
                fprintf(stderr, "mlcdn run: the %s exited (status %d); stopping the rest\n",
                        c->name, code);
                rc = 1;
            }
        }
        block = 0;
    }
    return rc;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    char **buf = arg;
    size_t have = *buf ? strlen(*buf) : 0, add = size * n;
    if (have + add > (8u << 20))
        return 0;
    *buf = mc_xrealloc(*buf, have + add + 1);
    memcpy(*buf + have, p, add);
    (*buf)[have + add] = '\0';
    return add;
}

/* GETs url (a JSON object) and counts the members of its array `list` whose `field` is
 * true; -1 when nothing came back. */
static int count_true(const char *url, const char *list, const char *field)
{
    char *body = NULL;
    int n = -1;
    CURL *h = curl_easy_init();

    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 5L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    if (curl_easy_perform(h) == CURLE_OK && body) {
        json_t *j = json_loads(body, 0, NULL), *e;
        size_t i;
        n = 0;
        json_array_foreach(json_object_get(j, list), i, e)
        {
            n += json_is_true(json_object_get(e, field));
        }
        json_decref(j);
    }
    free(body);
    curl_easy_cleanup(h);
    return n;
}

/* How many edges the router reports healthy, or -1. */
static int router_healthy(const char *http)
{
    char url[160];
    snprintf(url, sizeof(url), "http://%s/edges", http);
    return count_true(url, "edges", "healthy");
}

/* How many models an edge's admin listener reports ready, or -1. */
static int models_ready(const char *admin)
{
    char url[160];
    snprintf(url, sizeof(url), "%s/admin/models", admin);
    return count_true(url, "models", "ready");
}

/* utime + stime in clock ticks, and the resident set in KiB, of a process. */
static int proc_usage(pid_t pid, unsigned long long *ticks, unsigned long *rss_kib)
{
    char path[64], buf[2048];
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (!(f = fopen(path, "r")))
        return -errno;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the name may hold spaces */
    unsigned long long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -EINVAL;
    *ticks = ut + st;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    if (!(f = fopen(path, "r")))
        return -errno;
    *rss_kib = 0;
    while (fgets(buf, sizeof(buf), f))
        if (!strncmp(buf, "VmRSS:", 6))
            *rss_kib = strtoul(buf + 6, NULL, 10);
    fclose(f);
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int cmp_ulong(const void *a, const void *b)
{
    unsigned long x = *(const unsigned long *)a, y = *(const unsigned long *)b;
    return x < y ? -1 : x > y;
}

/* RSS and CPU of the idle edges over `ms`. */
static void idle_report(struct run *r, uint64_t ms)
{
    size_t n = 0;
    unsigned long long *t0 = mc_xcalloc(r->nch, sizeof(*t0));
    unsigned long *rss = mc_xcalloc(r->nch, sizeof(*rss));
    double cpu_sum = 0, cpu_max = 0, tick = (double)sysconf(_SC_CLK_TCK);

    for (size_t i = 0; i < r->nch; i++)
        if (r->ch[i].is_edge && r->ch[i].pid > 0)
            proc_usage(r->ch[i].pid, &t0[i], &rss[i]);
    printf("measuring the idle edges for %.1f s ...\n", (double)ms / 1000.0);
    fflush(stdout);
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !got_signal)
        ;
    for (size_t i = 0; i < r->nch; i++) {
        unsigned long long t1;
        unsigned long kib;
        if (!r->ch[i].is_edge || r->ch[i].pid <= 0 || proc_usage(r->ch[i].pid, &t1, &kib) != 0)
            continue;
        double pct = 100.0 * (double)(t1 - t0[i]) / tick / ((double)ms / 1000.0);
        cpu_sum += pct;
        cpu_max = MC_MAX(cpu_max, pct);
        rss[n++] = kib;
    }
    if (n) {
        qsort(rss, n, sizeof(*rss), cmp_ulong);
        unsigned long long total = 0;
        for (size_t i = 0; i < n; i++)
            total += rss[i];
        printf("idle edges: %zu, RSS per edge median %.1f MiB (min %.1f, max %.1f; all %.0f MiB), "
               "CPU per edge mean %.2f%% of a core (max %.2f%%) over %.1f s\n",
               n, (double)rss[n / 2] / 1024.0, (double)rss[0] / 1024.0, (double)rss[n - 1] / 1024.0,
               (double)total / 1024.0, cpu_sum / (double)n, cpu_max, (double)ms / 1000.0);
    }
    free(t0);
    free(rss);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* A growing argv of strings owned by a pool freed at the end. */
struct args {
    char **v;
    size_t n, cap;
};

static void args_add(struct args *a, const char *s)
{
    if (a->n + 2 > a->cap) {
        a->cap = MC_MAX(32, a->cap * 2);
        a->v = mc_xrealloc(a->v, a->cap * sizeof(*a->v));
    }
    a->v[a->n++] = s ? strdup(s) : NULL;
    a->v[a->n] = NULL;
}

static void args_addf(struct args *a, const char *fmt, ...) MC_PRINTF(2, 3);
static void args_addf(struct args *a, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    args_add(a, buf);
}

static void args_free(struct args *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->v[i]);
    free(a->v);
    memset(a, 0, sizeof(*a));
}

/* Runs argv to its end, its output into log; returns its exit status (or -errno). */
static int run_to_end(const char *prog, char *const argv[], const char *log)
{
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int st, err;

    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    err = posix_spawn(&pid, prog, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (err)
        return -err;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -errno;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Publishes every model of the models directory (DIR/NAME/VERSION/model.onnx, versions in
 * order) to the origin's model store with `mlcdn ctl model publish`, the model server
 * beside the origin its one edge; the regional edges read the store when they start.
 * Returns how many versions were published, or -1 (the failing command's output printed). */
static int publish_models(const char *self, const char *models, const char *origin_url,
                          const char *model_admin, const char *token, const char *work)
{
    char log[4200], file[4200], ver[16];
    DIR *d = opendir(models);
    struct dirent *de;
    int n = 0;

    if (!d)
        return -1;
    snprintf(log, sizeof(log), "%s/publish.log", work);
    while ((de = readdir(d)) && n >= 0) {
        if (de->d_name[0] == '.')
            continue;
        for (int v = 1; v <= 64 && n >= 0; v++) {
            snprintf(file, sizeof(file), "%s/%s/%d/model.onnx", models, de->d_name, v);
            if (access(file, R_OK) != 0)
                continue;
            snprintf(ver, sizeof(ver), "%d", v);
            char *const argv[] = {(char *)self,
                                  "ctl",
                                  "model",
                                  "publish",
                                  de->d_name,
                                  ver,
                                  file,
                                  "--origin",
                                  (char *)origin_url,
                                  "--edges",
                                  (char *)model_admin,
                                  "--token",
                                  (char *)token,
                                  "--wait",
                                  "60s",
                                  NULL};
            int rc = run_to_end(self, argv, log);
            if (rc != 0) {
                fprintf(stderr,
                        "mlcdn run: publishing %s version %d to the model store failed "
                        "(status %d):\n",
                        de->d_name, v, rc);
                FILE *f = fopen(log, "r");
                char line[512];
                while (f && fgets(line, sizeof(line), f))
                    fputs(line, stderr);
                if (f)
                    fclose(f);
                n = -1;
            } else {
                n++;
            }
        }
    }
    closedir(d);
    return n;
}

/* The control plane reaches every edge: one invalidation (of a path the workload does not
 * use) sent to the router's admin listener, which fans it out to every edge, as `mlcdn ctl
 * invalidate --router` does; the router answers each edge's acknowledgement time, its
 * propagation time. Returns how many edges acknowledged. */
static size_t control_check(const char *router_admin, size_t n, const char *token)
{
    char id[17], body[128];
    const char *base[1] = {router_admin};
    struct ctl_reply rep = {0};
    double *ms = mc_xcalloc(n, sizeof(*ms));
    size_t ok = 0, seen = 0;
    json_t *j = NULL, *e;

    ctl__op_id(id);
    snprintf(body, sizeof(body), "{\"urls\":[\"/mlcdn-run/control-check\"],\"id\":\"%s\"}", id);
    struct ctl_call c = {"POST", "/admin/invalidate", body, strlen(body), token, 10000, 0};
    if (ctl_fanout(&c, base, 1, &rep) == 0 && rep.status == 200)
        j = json_loads(rep.body, 0, NULL);
    size_t i;
    json_array_foreach(json_object_get(j, "edges"), i, e)
    {
        seen++;
        if (json_integer_value(json_object_get(e, "status")) == 200 && ok < n)
            ms[ok++] = json_number_value(json_object_get(e, "ms"));
        else if (seen - ok <= 3) {
            const char *name = json_string_value(json_object_get(e, "edge"));
            const char *why = json_string_value(json_object_get(e, "error"));
            fprintf(stderr, "mlcdn run: the invalidation did not reach %s: %s\n",
                    name ? name : "an edge", why && why[0] ? why : "not acknowledged");
        }
    }
    if (ok) {
        qsort(ms, ok, sizeof(*ms), cmp_double);
        printf("control plane: an invalidation through the router reached %zu of %zu edges, "
               "acknowledged in p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
               ok, n, ms[(ok - 1) / 2], ms[(size_t)((double)(ok - 1) * 0.99 + 0.5)], ms[ok - 1]);
    } else {
        printf("control plane: the invalidation reached none of the %zu edges (router: %s)\n", n,
               rep.status ? "answered without edges" : rep.error);
    }
    fflush(stdout);
    json_decref(j);
    ctl_replies_fini(&rep, 1);
    free(ms);
    return ok;
}

int ctl_run_main(int argc, char **argv)
{
    const char *root = NULL, *token = "demo-token", *models = NULL;
    const char *mem = NULL, *disk = NULL, *redis = "auto", *zone = "cdn.mlcdn.test";
    const char *places_csv = NULL;
    struct world_place *places = NULL;
    size_t nplaces = 0;
    long nregions = 4, port_base = 8080, threads = 1, requests = -1, users = 8;
    uint64_t idle_ms = UINT64_MAX, latency_ms = 250;
    struct conf c;
    char err[512], work[256] = "", rootbuf[4096], modelsbuf[4096] = "";
    struct run r = {0};
    struct run_ports pt;
    struct world_region *reg = NULL;
    struct world_target *tg = NULL;
    int rc = 1, made_work = 0, use_redis = 0;
    const struct conf_opt opts[] = {
        {"regions", CONF_INT, &nregions,
         "regions, one edge each (default 4: Tokyo, London, N. Virginia, Mumbai; then Sao Paulo, "
         "Sydney and generated ones; at most 128)"},
        {"port-base", CONF_INT, &port_base,
         "ports: edges BASE (admin +1), origin +10, model server +12, router DNS +53, "
         "HTTP +54 and admin +55, Redis +20 (default 8080; 0: free ports picked at start)"},
        {"root", CONF_STR, &root, "files the origin serves (default: fresh demo assets)"},
        {"latency", CONF_DURATION, &latency_ms,
         "origin's added latency, the slow API (default 250ms)"},
        {"models", CONF_STR, &models,
         "models every edge serves, published first to the origin's model store (under its "
         "root's models/): DIR/NAME/VERSION/model.onnx or the reference models' "
         "DIR/NAME/model.onnx (default: none)"},
        {"mem", CONF_STR, &mem, "L1 memory cache per edge (default 64M; 16M above 8 regions)"},
        {"disk", CONF_STR, &disk, "L2 disk cache per edge (default 256M; 32M above 8 regions)"},
        {"threads", CONF_INT, &threads, "worker threads per edge (default 1)"},
        {"redis", CONF_STR, &redis,
         "a Redis per region: auto (when redis-server is installed, up to 8 regions), on, off"},
        {"admin-token", CONF_STR, &token, "edges' admin token (default demo-token)"},
        {"zone", CONF_STR, &zone, "router zone (default cdn.mlcdn.test)"},
        {"workload", CONF_INT, &requests,
         "requests per region and way in the workload (default 100; 0 above 8 regions)"},
        {"users", CONF_INT, &users, "concurrent users per region in the workload (default 8)"},
        {"geo-places", CONF_STR, &places_csv,
         "CSV file (columns ip, lat, lon; country, city) of more addresses the router's city "
         "database places, each /24 at its coordinates (e.g. tests/fixtures/geo/test-ips.csv)"},
        {"idle-report", CONF_DURATION, &idle_ms,
         "measure the idle edges' memory and CPU this long (default 10s above 8 regions, else "
         "0: off)"},
    };

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            conf_usage("run", "[options]", opts, MC_ARRAY_SIZE(opts));
            return 0;
        }
    }
    if (conf_parse(&c, opts, MC_ARRAY_SIZE(opts), argc, argv, 0, err, sizeof(err)) != 0 ||
        conf_check_keys(&c, opts, MC_ARRAY_SIZE(opts), NULL, 0, err, sizeof(err)) != 0) {
        fprintf(stderr, "mlcdn run: %s\n", err);
        conf_fini(&c);
        return 2;
    }
    const char *bad = nregions < 1 || nregions > WORLD_MAX_REGIONS ? "--regions: 1 to 128"
                    : port_base < 0 || port_base > 65535 - 60      ? "--port-base: 0 to 65475"
                    : threads < 1 || threads > 64                  ? "--threads: 1 to 64"
                    : users < 1 || users > 64                      ? "--users: 1 to 64"
                    : requests > 100000                            ? "--workload: at most 100000"
                    : strcmp(redis, "auto") && strcmp(redis, "on") && strcmp(redis, "off")
                        ? "--redis: auto, on or off"
                        : NULL;
    if (bad) {
        fprintf(stderr, "mlcdn run: %s\n", bad);
        conf_fini(&c);
        return 2;
    }
    int small = nregions > 8;
    if (!mem)
        mem = small ? "16M" : "64M";
    if (!disk)
        disk = small ? "32M" : "256M";
    if (requests < 0)
        requests = small ? 0 : 100;
    if (idle_ms == UINT64_MAX)
        idle_ms = small ? 10000 : 0;
    char redis_bin[4096] = "";
    if (strcmp(redis, "off")) {
        const char *path = getenv("PATH");
        char dirs[4096];
        snprintf(dirs, sizeof(dirs), "%s", path ? path : "/usr/bin:/bin");
        for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d && !redis_bin[0];
             d = strtok_r(NULL, ":", &save)) {
            char p[4096];
            snprintf(p, sizeof(p), "%s/redis-server", d);
            if (access(p, X_OK) == 0)
                snprintf(redis_bin, sizeof(redis_bin), "%s", p);
        }
        use_redis = redis_bin[0] && (!strcmp(redis, "on") || !small);
        if (!strcmp(redis, "on") && !redis_bin[0]) {
            fprintf(stderr, "mlcdn run: --redis on: redis-server is not installed\n");
            conf_fini(&c);
            return 2;
        }
    }
    if (port_base) {
        pt = (struct run_ports){(int)port_base,      (int)port_base + 1,  (int)port_base + 10,
                                (int)port_base + 11, (int)port_base + 12, (int)port_base + 13,
                                (int)port_base + 53, (int)port_base + 54, (int)port_base + 55,
                                (int)port_base + 20};
    } else {
        int *p[] = {&pt.pub,       &pt.adm, &pt.origin, &pt.origin_adm, &pt.model,
                    &pt.model_adm, &pt.dns, &pt.http,   &pt.radm,       &pt.redis};
        for (size_t i = 0; i < MC_ARRAY_SIZE(p); i++) {
            int v;
            int dup;
            do {
                v = free_port();
                dup = 0;
                for (size_t j = 0; j < i; j++)
                    dup |= *p[j] == v;
            } while (dup && v > 0);
            if (v <= 0) {
                fprintf(stderr, "mlcdn run: no free port on 127.0.0.1\n");
                conf_fini(&c);
                return 1;
            }
            *p[i] = v;
        }
    }

    snprintf(work, sizeof(work), "/tmp/mlcdn-run-XXXXXX");
    if (!mkdtemp(work)) {
        fprintf(stderr, "mlcdn run: cannot make a directory under /tmp: %s\n", strerror(errno));
        conf_fini(&c);
        return 1;
    }
    made_work = 1;
    if (!root) {
        snprintf(rootbuf, sizeof(rootbuf), "%s/origin", work);
        int e = mkdir(rootbuf, 0755) != 0 ? -errno : write_demo(rootbuf);
        if (e) {
            fprintf(stderr, "mlcdn run: cannot write the demo assets under %s: %s\n", work,
                    strerror(-e));
            goto out;
        }
        root = rootbuf;
    }
    if (models) {
        int e = models_dir(models, work, modelsbuf, sizeof(modelsbuf));
        if (e) {
            fprintf(stderr, "mlcdn run: --models %s: %s\n", models, strerror(-e));
            goto out;
        }
    }
    ssize_t sl = readlink("/proc/self/exe", r.self, sizeof(r.self) - 1);
    if (sl <= 0) {
        fprintf(stderr, "mlcdn run: cannot find its own binary\n");
        goto out;
    }
    r.self[sl] = '\0';

    size_t n = (size_t)nregions;
    reg = mc_xcalloc(n, sizeof(*reg));
    tg = mc_xcalloc(n, sizeof(*tg));
    world_regions(reg, n);
    char geo[4096];
    snprintf(geo, sizeof(geo), "%s/world.mmdb", work);
    if (places_csv) {
        char perr[512];
        if (world_places_load(places_csv, &places, &nplaces, perr, sizeof(perr)) != 0) {
            fprintf(stderr, "mlcdn run: --geo-places %s\n", perr);
            rc = 2;
            goto out;
        }
    }
    int ge = world_mmdb_write(geo, reg, n, places, nplaces);
    if (ge) {
        fprintf(stderr, "mlcdn run: cannot write %s: %s\n", geo, strerror(-ge));
        goto out;
    }

    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    curl_global_init(CURL_GLOBAL_DEFAULT);

    /* The origin, its model server, the delay relays and the regions' Redis. */
    char addr[128], addr2[128], ip[32], ip2[32];
    struct args a = {0};
    args_add(&a, r.self);
    args_add(&a, "origin");
    args_addf(&a, "--listen=127.0.0.1:%d", pt.origin);
    args_addf(&a, "--admin=127.0.0.1:%d", pt.origin_adm);
    args_addf(&a, "--root=%s", root);
    args_addf(&a, "--latency=%llums", (unsigned long long)latency_ms);
    args_addf(&a, "--token=%s", token); /* the model store's uploads */
    int e = run_spawn(&r, "origin", 0, r.self, a.v, NULL);
    args_free(&a);
    if (e)
        goto out;
    if (modelsbuf[0]) {
        args_add(&a, r.self);
        args_add(&a, "edge");
        args_addf(&a, "--listen=127.0.0.1:%d", pt.model);
        args_addf(&a, "--admin=127.0.0.1:%d", pt.model_adm);
        args_addf(&a, "--origin=http://127.0.0.1:%d", pt.origin);
        args_addf(&a, "--model-store=http://127.0.0.1:%d", pt.origin);
        args_addf(&a, "--admin-token=%s", token);
        args_add(&a, "--region=origin");
        args_add(&a, "--infer-threads=1");
        args_add(&a, "--drain-time=0");
        args_add(&a, "--log-level=warn");
        e = run_spawn(&r, "model server", 0, r.self, a.v, NULL);
        args_free(&a);
        if (e)
            goto out;
    }
    args_add(&a, r.self);
    args_add(&a, "delay");
    for (size_t i = 0; i < n; i++) {
        world_ip(WORLD_IP_USER_EDGE, i, ip, sizeof(ip));
        world_ip(WORLD_IP_EDGE, i, ip2, sizeof(ip2));
        args_addf(&a, "--relay=%s:%d=%s:%d@%u", ip, pt.pub, ip2, pt.pub, reg[i].rtt_user_ms);
        world_ip(WORLD_IP_USER_ORIGIN, i, ip, sizeof(ip));
        args_addf(&a, "--relay=%s:%d=127.0.0.1:%d@%u", ip, pt.origin, pt.origin,
                  world_rtt_user_origin(&reg[i]));
        if (modelsbuf[0])
            args_addf(&a, "--relay=%s:%d=127.0.0.1:%d@%u", ip, pt.model, pt.model,
                      world_rtt_user_origin(&reg[i]));
        world_ip(WORLD_IP_EDGE_ORIGIN, i, ip, sizeof(ip));
        args_addf(&a, "--relay=%s:%d=127.0.0.1:%d@%u", ip, pt.origin, pt.origin,
                  reg[i].rtt_origin_ms);
    }
    size_t nrelays = a.n - 2;
    e = run_spawn(&r, "delay", 0, r.self, a.v, NULL);
    args_free(&a);
    if (e)
        goto out;
    for (size_t i = 0; use_redis && i < n; i++) {
        char name[64], dir[4096];
        world_ip(WORLD_IP_REDIS, i, ip, sizeof(ip));
        snprintf(dir, sizeof(dir), "%s/redis-%s", work, reg[i].name);
        mkdir(dir, 0755);
        args_add(&a, redis_bin);
        args_add(&a, "--port");
        args_addf(&a, "%d", pt.redis);
        args_add(&a, "--bind");
        args_add(&a, ip);
        args_add(&a, "--save");
        args_add(&a, "");
        args_add(&a, "--appendonly");
        args_add(&a, "no");
        args_add(&a, "--dir");
        args_add(&a, dir);
        args_add(&a, "--loglevel");
        args_add(&a, "warning");
        snprintf(name, sizeof(name), "redis %s", reg[i].name);
        snprintf(dir, sizeof(dir), "%s/redis-%s/redis.log", work, reg[i].name);
        e = run_spawn(&r, name, 0, redis_bin, a.v, dir);
        args_free(&a);
        if (e)
            goto out;
    }
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", pt.origin);
    if (wait_listening(addr, 15000) != 0) {
        fprintf(stderr, "mlcdn run: the origin did not start listening on %s\n", addr);
        goto out;
    }
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", pt.model);
    if (modelsbuf[0] && wait_listening(addr, 30000) != 0) {
        fprintf(stderr, "mlcdn run: the model server did not start listening on %s\n", addr);
        goto out;
    }
    /* The models go to the origin's model store, as an operator publishes them; the edges
     * then fetch them through their own caches, from across the emulated distance. */
    char store_names[1024] = "";
    int nmodels = 0, nnames = 0;
    if (modelsbuf[0]) {
        char ourl[64], madm[64];
        snprintf(ourl, sizeof(ourl), "http://127.0.0.1:%d", pt.origin);
        snprintf(madm, sizeof(madm), "http://127.0.0.1:%d", pt.model_adm);
        if ((nmodels = publish_models(r.self, modelsbuf, ourl, madm, token, work)) <= 0) {
            fprintf(stderr, "mlcdn run: --models %s: no model could be published\n", models);
            goto out;
        }
        DIR *d = opendir(modelsbuf);
        for (struct dirent *de; d && (de = readdir(d));) {
            if (de->d_name[0] == '.' ||
                strlen(store_names) + strlen(de->d_name) + 2 >= sizeof(store_names))
                continue;
            if (store_names[0])
                strcat(store_names, ",");
            strcat(store_names, de->d_name);
            nnames++;
        }
        if (d)
            closedir(d);
    }
    for (size_t i = 0; i < n; i++) {
        world_ip(WORLD_IP_EDGE_ORIGIN, i, ip, sizeof(ip));
        snprintf(addr, sizeof(addr), "%s:%d", ip, pt.origin);
        if (wait_listening(addr, 15000) != 0) {
            fprintf(stderr, "mlcdn run: the delay relays did not start listening (%s)\n", addr);
            goto out;
        }
        world_ip(WORLD_IP_REDIS, i, ip, sizeof(ip));
        snprintf(addr, sizeof(addr), "%s:%d", ip, pt.redis);
        if (use_redis && wait_listening(addr, 15000) != 0) {
            fprintf(stderr, "mlcdn run: redis-server did not start listening on %s\n", addr);
            goto out;
        }
    }

    /* The edges, all started before any is waited for. */
    for (size_t i = 0; i < n; i++) {
        char name[64], dir[4096];
        world_ip(WORLD_IP_EDGE, i, ip, sizeof(ip));
        world_ip(WORLD_IP_EDGE_ORIGIN, i, ip2, sizeof(ip2));
        snprintf(dir, sizeof(dir), "%s/edge-%s", work, reg[i].name);
        mkdir(dir, 0755);
        args_add(&a, r.self);
        args_add(&a, "edge");
        args_addf(&a, "--listen=%s:%d", ip, pt.pub);
        args_addf(&a, "--admin=%s:%d", ip, pt.adm);
        args_addf(&a, "--origin=http://%s:%d", ip2, pt.origin);
        args_addf(&a, "--region=%s", reg[i].name);
        args_addf(&a, "--name=mlcdn-%s", reg[i].name);
        args_addf(&a, "--mem=%s", mem);
        args_addf(&a, "--disk-dir=%s/l2", dir);
        args_addf(&a, "--disk=%s", disk);
        args_addf(&a, "--threads=%ld", threads);
        args_addf(&a, "--admin-token=%s", token);
        args_add(&a, "--drain-time=0");
        args_add(&a, "--log-level=warn");
        if (modelsbuf[0]) {
            world_ip(WORLD_IP_EDGE_ORIGIN, i, ip2, sizeof(ip2));
            args_addf(&a, "--model-store=http://%s:%d", ip2, pt.origin);
            args_addf(&a, "--model-store-models=%s", store_names);
            args_add(&a, "--infer-threads=1");
        }
        if (use_redis) {
            world_ip(WORLD_IP_REDIS, i, ip2, sizeof(ip2));
            args_addf(&a, "--redis=redis://%s:%d", ip2, pt.redis);
        }
        snprintf(name, sizeof(name), "edge %s", reg[i].name);
        e = run_spawn(&r, name, 1, r.self, a.v, NULL);
        args_free(&a);
        if (e)
            goto out;
    }
    for (size_t i = 0; i < n; i++) {
        world_ip(WORLD_IP_EDGE, i, ip, sizeof(ip));
        snprintf(addr, sizeof(addr), "%s:%d", ip, pt.adm);
        snprintf(addr2, sizeof(addr2), "%s:%d", ip, pt.pub);
        if (wait_listening(addr, 30000) != 0 || wait_listening(addr2, 5000) != 0) {
            fprintf(stderr, "mlcdn run: the edge %s did not start listening on %s\n", reg[i].name,
                    addr2);
            goto out;
        }
        if (reap(&r, 0))
            goto out;
    }

    /* The router over every edge: users are sent to the address of their region's relay. */
    args_add(&a, r.self);
    args_add(&a, "router");
    args_addf(&a, "--dns=127.0.0.1:%d", pt.dns);
    args_addf(&a, "--http=127.0.0.1:%d", pt.http);
    args_addf(&a, "--admin=127.0.0.1:%d", pt.radm);
    args_addf(&a, "--admin-token=%s", token);
    args_addf(&a, "--zone=%s", zone);
    args_addf(&a, "--geoip=%s", geo);
    args_addf(&a, "--redirect-port=%d", pt.pub);
    /* Nearest first: the demo's edges differ in hit ratio after the workload, which must
     * not send a Tokyo user to Mumbai; load still counts a little. */
    args_add(&a, "--w-distance=1");
    args_add(&a, "--w-load=0.1");
    args_add(&a, "--w-hit=0");
    args_add(&a, "--log-level=warn");
    for (size_t i = 0; i < n; i++) {
        world_ip(WORLD_IP_USER_EDGE, i, ip, sizeof(ip));
        world_ip(WORLD_IP_EDGE, i, ip2, sizeof(ip2));
        args_addf(&a, "--edge=%s=%.2f,%.2f,%s,http://%s:%d/health", reg[i].name, reg[i].lat,
                  reg[i].lon, ip, ip2, pt.adm);
    }
    e = run_spawn(&r, "router", 0, r.self, a.v, NULL);
    args_free(&a);
    if (e)
        goto out;
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", pt.http);
    if (wait_listening(addr, 15000) != 0) {
        fprintf(stderr, "mlcdn run: the router did not start listening on %s\n", addr);
        goto out;
    }
    int healthy = 0;
    for (int waited = 0; waited < 30000 && !got_signal; waited += 200) {
        if ((healthy = router_healthy(addr)) == (int)n)
            break;
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (reap(&r, 0))
            goto out;
    }
    /* Every edge has fetched, checked and loaded the store's models before users come. */
    for (size_t i = 0; nnames > 0 && i < n && !got_signal; i++) {
        char admin[64];
        world_ip(WORLD_IP_EDGE, i, ip, sizeof(ip));
        snprintf(admin, sizeof(admin), "http://%s:%d", ip, pt.adm);
        int waited = 0;
        while (models_ready(admin) < nnames && waited < 60000 && !got_signal) {
            struct timespec ts = {0, 100 * 1000 * 1000};
            nanosleep(&ts, NULL);
            waited += 100;
        }
        if (waited >= 60000)
            fprintf(stderr, "mlcdn run: the edge %s has not loaded every model in 60 s\n",
                    reg[i].name);
    }
    if (got_signal)
        goto out;

    for (size_t i = 0; i < n; i++) {
        tg[i].region = &reg[i];
        world_ip(WORLD_IP_USER_EDGE, i, ip, sizeof(ip));
        snprintf(tg[i].edge_url, sizeof(tg[i].edge_url), "http://%s:%d", ip, pt.pub);
        world_ip(WORLD_IP_USER_ORIGIN, i, ip, sizeof(ip));
        snprintf(tg[i].origin_url, sizeof(tg[i].origin_url), "http://%s:%d", ip, pt.origin);
        if (modelsbuf[0])
            snprintf(tg[i].model_url, sizeof(tg[i].model_url), "http://%s:%d", ip, pt.model);
        world_ip(WORLD_IP_EDGE_ORIGIN, i, ip, sizeof(ip));
        snprintf(tg[i].edge_origin_url, sizeof(tg[i].edge_origin_url), "http://%s:%d", ip,
                 pt.origin);
        world_ip(WORLD_IP_EDGE, i, ip, sizeof(ip));
        snprintf(tg[i].edge_direct_url, sizeof(tg[i].edge_direct_url), "http://%s:%d", ip, pt.pub);
        snprintf(tg[i].origin_direct_url, sizeof(tg[i].origin_direct_url), "http://127.0.0.1:%d",
                 pt.origin);
    }

    printf("\nmlcdn run: %zu regions, every part its own process (Ctrl-C stops them all)\n", n);
    printf("  origin   http://127.0.0.1:%d  in N. Virginia, %llu ms added latency, files under %s  "
           "(pid %d)\n",
           pt.origin, (unsigned long long)latency_ms, root, (int)r.ch[0].pid);
    for (size_t i = 0; i < r.nch; i++) {
        if (!strcmp(r.ch[i].name, "model server"))
            printf("  models   http://127.0.0.1:%d  the origin's model server  (pid %d)\n",
                   pt.model, (int)r.ch[i].pid);
        if (!strcmp(r.ch[i].name, "delay"))
            printf("  delay    %zu relays adding the round-trip times  (pid %d)\n", nrelays,
                   (int)r.ch[i].pid);
        if (!strcmp(r.ch[i].name, "router"))
            printf("  router   dns 127.0.0.1:%d  http://127.0.0.1:%d  admin http://127.0.0.1:%d  "
                   "zone %s, %d of %zu edges healthy  (pid %d)\n",
                   pt.dns, pt.http, pt.radm, zone, healthy, n, (int)r.ch[i].pid);
    }
    size_t shown = 0;
    for (size_t i = 0, k = 0; i < r.nch; i++) {
        if (!r.ch[i].is_edge)
            continue;
        const struct world_region *g = &reg[k];
        char net[32];
        world_users_net(k, net, sizeof(net));
        world_ip(WORLD_IP_EDGE, k, ip, sizeof(ip));
        world_ip(WORLD_IP_REDIS, k, ip2, sizeof(ip2));
        if (n <= 8 || shown < 6 || k == n - 1) {
            printf("  region %-14s %7.2f,%8.2f  users %-13s edge %s (direct http://%s:%d, admin "
                   "http://%s:%d, pid %d)  origin via %s  rtt user-edge %u ms, edge-origin %u "
                   "ms\n",
                   g->name, g->lat, g->lon, net, tg[k].edge_url, ip, pt.pub, ip, pt.adm,
                   (int)r.ch[i].pid, tg[k].origin_url, g->rtt_user_ms, g->rtt_origin_ms);
            if (use_redis)
                printf("         %s's Redis: redis://%s:%d\n", g->name, ip2, pt.redis);
            shown++;
        } else if (shown == 6) {
            printf("  ... %zu more regions (GET http://127.0.0.1:%d/edges lists them all)\n", n - 7,
                   pt.http);
            shown++;
        }
        k++;
    }
    printf("  children");
    for (size_t i = 0; i < r.nch; i++)
        printf(" %d", (int)r.ch[i].pid);
    printf("\n");
    fflush(stdout);

    if (requests > 0) {
        const char *names[MC_ARRAY_SIZE(wl_models) + 1] = {0};
        unsigned dims[MC_ARRAY_SIZE(wl_models)];
        size_t nm = 0;
        char om[128];
        for (size_t i = 0; modelsbuf[0] && i < MC_ARRAY_SIZE(wl_models); i++) {
            if (has_model(modelsbuf, wl_models[i].name)) {
                names[nm] = wl_models[i].name;
                dims[nm++] = wl_models[i].dims;
            }
        }
        snprintf(om, sizeof(om), "http://127.0.0.1:%d/metrics", pt.origin_adm);
        struct world_workload_cfg wc = {(size_t)requests, (unsigned)users, names, dims, om};
        world_workload_run(tg, n, &wc);
    }
    if (!got_signal) {
        struct world_rtt *rtt = mc_xcalloc(n, sizeof(*rtt));
        world_rtt_measure(tg, n, 10, rtt);
        world_rtt_print(tg, n, rtt);
        free(rtt);
    }
    if (idle_ms > 0 && !got_signal)
        idle_report(&r, idle_ms);

    /* Every edge's admin URL: the control plane's targets, and the commands printed. */
    char radm[64];
    snprintf(radm, sizeof(radm), "http://127.0.0.1:%d", pt.radm);
    if (!got_signal)
        control_check(radm, n, token);

    world_ip(WORLD_IP_EDGE, 0, ip, sizeof(ip));
    printf("\nhow to look:\n"
           "  http://127.0.0.1:%d/dashboard/   # open in a browser: the edges on a world map, "
           "latency per tier, bandwidth saved, invalidations\n"
           "  %s ctl top --router http://127.0.0.1:%d --token %s   # every edge, live\n"
           "  %s ctl stats --router http://127.0.0.1:%d --token %s  # per edge: requests/s, hit "
           "ratio and p50/p99 per tier, bytes saved\n"
           "  curl -s http://127.0.0.1:%d/edges               # the router's view of every edge\n"
           "  curl -s 'http://127.0.0.1:%d/route?ip=10.1.0.7'  # where a user of %s is sent, and "
           "why\n"
           "  dig @127.0.0.1 -p %d %s +subnet=10.2.0.0/24 +short  # DNS for a user of %s\n"
           "  curl -si %s/models/ranker/3/config.json  # as a user of %s (X-Cache, "
           "X-Cache-Level)\n"
           "  curl -s http://%s:%d/metrics  # %s's edge metrics\n",
           pt.http, r.self, pt.http, token, r.self, pt.http, token, pt.http, pt.http, reg[0].name,
           pt.dns, zone, n > 1 ? reg[1].name : reg[0].name, tg[0].edge_url, reg[0].name, ip, pt.adm,
           reg[0].name);
    if (nplaces)
        printf("  dig @127.0.0.1 -p %d %s +subnet=%u.%u.%u.0/24 +short  # DNS for a user in %s "
               "(--geo-places)\n",
               pt.dns, zone, places[0].net >> 24, (places[0].net >> 16) & 0xff,
               (places[0].net >> 8) & 0xff, places[0].city);
    printf("try an invalidation on every edge (the router fans it out; each edge's "
           "acknowledgement time is printed):\n"
           "  %s ctl invalidate --router %s --token %s --url /api/features.json\n",
           r.self, radm, token);
    char v1[4200];
    snprintf(v1, sizeof(v1), "%s/logreg/1/model.onnx", modelsbuf);
    if (modelsbuf[0] && access(v1, R_OK) == 0)
        printf("try a model roll-out (published to the origin's model store; every edge "
               "fetches, verifies, loads and swaps it):\n"
               "  %s ctl model publish logreg 2 %s --origin http://127.0.0.1:%d --router %s "
               "--token %s\n"
               "  %s ctl model status logreg --router %s --token %s\n",
               r.self, v1, pt.origin, radm, token, r.self, radm, token);
    printf("\nmlcdn run ready\n");
    fflush(stdout);

    rc = 0;
    while (!got_signal) {
        if (reap(&r, 1)) {
            rc = 1;
            break;
        }
        int left = 0;
        for (size_t i = 0; i < r.nch; i++)
            left += r.ch[i].pid > 0;
        if (!left)
            break;
    }
out:
    if (got_signal && rc == 1)
        rc = 0;
    stop_all(&r);
    if (made_work)
        nftw(work, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(r.ch);
    free(reg);
    free(places);
    free(tg);
    curl_global_cleanup();
    conf_fini(&c);
    return rc;
}
