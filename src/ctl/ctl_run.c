/* src/ctl/ctl_run.c: `mlcdn run`, the whole CDN on this machine with embedded defaults.
 *
 * Starts each part as its own process (the same binary with a subcommand), exactly as an
 * operator would run them on separate machines: a reference origin with an added latency
 * standing in for a far-away origin, and an edge in front of it. Demo assets are written
 * to a fresh directory unless --root is given. The parts are watched: if one exits, the
 * others are stopped; SIGINT/SIGTERM stop them all (SIGINT, then a bounded wait). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/conf.h"
#include "core/log.h"
#include "core/mc.h"
#include "ctl/ctl.h"

extern char **environ;

#define RUN_MAX_CHILDREN 8

struct child {
    const char *name;
    pid_t pid;
};

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
        "  /api/private.json              per-user response (never shared)\n";
    static const char features[] = "{\"user\": 42, \"features\": [0.1, 0.7, 0.3]}\n";
    static const char priv[] = "{\"user\": 42, \"token\": \"per-user\"}\n";
    int err = 0;

    err = err ? err : write_file(dir, "index.txt", index, sizeof(index) - 1);
    err = err ? err : write_file(dir, "models/ranker/3/config.json", config, sizeof(config) - 1);
    err = err ? err
              : write_blob(dir, "models/ranker/3/weights.bin", 4u << 20, 0x9e3779b97f4a7c15ull);
    err = err ? err : write_blob(dir, "embeddings/items.bin", 1u << 20, 0x2545f4914f6cdd1dull);
    err = err ? err : write_file(dir, "api/features.json", features, sizeof(features) - 1);
    static const char fh[] = "Cache-Control: public, max-age=10, stale-while-revalidate=30\n";
    err = err ? err : write_file(dir, "api/features.json.hdrs", fh, sizeof(fh) - 1);
    err = err ? err : write_file(dir, "api/private.json", priv, sizeof(priv) - 1);
    static const char ph[] = "Cache-Control: private, max-age=60\n";
    err = err ? err : write_file(dir, "api/private.json.hdrs", ph, sizeof(ph) - 1);
    return err;
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
    for (int waited = 0; waited < timeout_ms; waited += 50) {
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

static pid_t spawn(const char *self, char *const argv[])
{
    pid_t pid;
    posix_spawnattr_t attr;
    sigset_t none;

    posix_spawnattr_init(&attr);
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
    int err = posix_spawn(&pid, self, NULL, &attr, argv, environ);
    posix_spawnattr_destroy(&attr);
    return err ? -err : pid;
}

static void stop_all(struct child *ch, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ch[i].pid > 0)
            kill(ch[i].pid, SIGINT); /* stop without the drain: nothing routes here */
    for (int waited = 0; waited < 150; waited++) {
        int left = 0;
        for (size_t i = 0; i < n; i++) {
            if (ch[i].pid > 0 && waitpid(ch[i].pid, NULL, WNOHANG) == ch[i].pid)
                ch[i].pid = 0;
            left += ch[i].pid > 0;
        }
        if (!left)
            return;
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    for (size_t i = 0; i < n; i++) {
        if (ch[i].pid > 0) {
            kill(ch[i].pid, SIGKILL);
            waitpid(ch[i].pid, NULL, 0);
        }
    }
}

int ctl_run_main(int argc, char **argv)
{
    const char *listen = "127.0.0.1:8080", *admin = "127.0.0.1:8081";
    const char *origin_listen = "127.0.0.1:8090", *root = NULL, *token = "demo-token";
    const char *latency = "250ms", *mem = "256M", *region = "local-1";
    const char *geoip = NULL, *dns = "127.0.0.1:8053", *router_http = "127.0.0.1:8054";
    const char *zone = "cdn.mlcdn.test", *edge_loc = "53.35,-6.26", *models = NULL;
    long threads = 1;
    struct conf c;
    char err[512], rootbuf[256], threads_s[16];
    struct child ch[RUN_MAX_CHILDREN];
    size_t nch = 0;
    const struct conf_opt opts[] = {
        {"listen", CONF_STR, &listen, "edge public address (default 127.0.0.1:8080)"},
        {"admin", CONF_STR, &admin, "edge admin address (default 127.0.0.1:8081)"},
        {"origin-listen", CONF_STR, &origin_listen, "origin address (default 127.0.0.1:8090)"},
        {"root", CONF_STR, &root, "files the origin serves (default: fresh demo assets)"},
        {"latency", CONF_STR, &latency, "origin's added latency (default 250ms)"},
        {"mem", CONF_STR, &mem, "edge memory cache (default 256M)"},
        {"threads", CONF_INT, &threads, "edge worker threads (default 1)"},
        {"region", CONF_STR, &region, "edge region name (default local-1)"},
        {"admin-token", CONF_STR, &token, "edge admin token (default demo-token)"},
        {"models", CONF_STR, &models, "models directory for edge predictions (optional)"},
        {"geoip", CONF_STR, &geoip, "mmdb file: also start the GeoDNS router (optional)"},
        {"dns", CONF_STR, &dns, "router DNS address (default 127.0.0.1:8053)"},
        {"router-http", CONF_STR, &router_http, "router HTTP address (default 127.0.0.1:8054)"},
        {"zone", CONF_STR, &zone, "router zone (default cdn.mlcdn.test)"},
        {"edge-location", CONF_STR, &edge_loc, "LAT,LON of the edge for the router"},
    };

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            conf_usage("run", "[options]", opts, MC_ARRAY_SIZE(opts));
            return 0;
        }
    }
    if (conf_parse(&c, opts, MC_ARRAY_SIZE(opts), argc, argv, 0, err, sizeof(err)) != 0) {
        fprintf(stderr, "mlcdn run: %s\n", err);
        conf_fini(&c);
        return 2;
    }
    if (!root) {
        snprintf(rootbuf, sizeof(rootbuf), "/tmp/mlcdn-run-XXXXXX");
        if (!mkdtemp(rootbuf) || write_demo(rootbuf) != 0) {
            fprintf(stderr, "mlcdn run: cannot write the demo assets under /tmp: %s\n",
                    strerror(errno));
            conf_fini(&c);
            return 1;
        }
        root = rootbuf;
    }
    snprintf(threads_s, sizeof(threads_s), "%ld", threads);

    char self[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (sl <= 0) {
        fprintf(stderr, "mlcdn run: cannot find its own binary\n");
        conf_fini(&c);
        return 1;
    }
    self[sl] = '\0';

    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    char origin_url[300];
    snprintf(origin_url, sizeof(origin_url), "http://%s", origin_listen);
    char *origin_argv[] = {self,     "origin",     "--listen",  (char *)origin_listen,
                           "--root", (char *)root, "--latency", (char *)latency,
                           NULL};
    char *edge_argv[] = {self,
                         "edge",
                         "--listen",
                         (char *)listen,
                         "--admin",
                         (char *)admin,
                         "--origin",
                         origin_url,
                         "--mem",
                         (char *)mem,
                         "--threads",
                         threads_s,
                         "--region",
                         (char *)region,
                         "--admin-token",
                         (char *)token,
                         models ? "--models" : NULL,
                         (char *)models,
                         NULL};
    /* The router sends clients to the edge's address; its health URL is the admin's. */
    char edge_spec[1024], edge_ip[256];
    snprintf(edge_ip, sizeof(edge_ip), "%s", listen);
    char *colon = strrchr(edge_ip, ':');
    if (colon)
        *colon = '\0';
    snprintf(edge_spec, sizeof(edge_spec), "%s=%s,%s,http://%s/health", region, edge_loc,
             edge_ip[0] ? edge_ip : "127.0.0.1", admin);
    char *router_argv[] = {self,          "router",     "--dns",
                           (char *)dns,   "--http",     (char *)router_http,
                           "--zone",      (char *)zone, "--geoip",
                           (char *)geoip, "--edge",     edge_spec,
                           NULL};
    char *const *argvs[] = {origin_argv, edge_argv, router_argv};
    const char *names[] = {"origin", "edge", "router"};
    const char *listens[] = {origin_listen, listen, router_http};
    size_t nparts = geoip ? 3 : 2;
    for (size_t i = 0; i < nparts; i++) {
        pid_t pid = spawn(self, argvs[i]);
        if (pid < 0) {
            fprintf(stderr, "mlcdn run: cannot start the %s: %s\n", names[i], strerror((int)-pid));
            stop_all(ch, nch);
            conf_fini(&c);
            return 1;
        }
        ch[nch++] = (struct child){names[i], pid};
        if (wait_listening(listens[i], 10000) != 0) {
            fprintf(stderr, "mlcdn run: the %s did not start listening on %s\n", names[i],
                    listens[i]);
            stop_all(ch, nch);
            conf_fini(&c);
            return 1;
        }
    }
    printf("\nmlcdn is running (Ctrl-C stops it)\n"
           "  edge      http://%s        (region %s, %s memory cache)\n"
           "  admin     http://%s        (GET /health, GET /metrics, PURGE with the token)\n"
           "  origin    http://%s        (%s added latency, files under %s)\n\n"
           "try:\n"
           "  curl -si http://%s/models/ranker/3/config.json   # MISS, then HIT\n"
           "  curl -s http://%s/health\n"
           "  curl -s -X PURGE -H 'Authorization: Bearer %s' "
           "http://%s/models/ranker/3/config.json\n\n",
           listen, region, mem, admin, origin_listen, latency, root, listen, admin, token, admin);
    if (geoip)
        printf("  router    dns %s, http://%s   (zone %s)\n"
               "  dig @%.*s -p %s %s +subnet=127.0.0.1/32\n"
               "  curl -s 'http://%s/route?ip=127.0.0.1'\n\n",
               dns, router_http, zone, (int)(strrchr(dns, ':') ? strrchr(dns, ':') - dns : 0), dns,
               strrchr(dns, ':') ? strrchr(dns, ':') + 1 : "53", zone, router_http);
    else
        printf("  (start with --geoip FILE.mmdb to add the GeoDNS router; make run does)\n\n");
    fflush(stdout);

    int rc = 0;
    while (!got_signal) {
        int st;
        pid_t pid = waitpid(-1, &st, 0);
        if (pid < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (size_t i = 0; i < nch; i++) {
            if (ch[i].pid == pid) {
                ch[i].pid = 0;
                fprintf(stderr, "mlcdn run: the %s exited (status %d); stopping the rest\n",
                        ch[i].name, WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
                rc = 1;
                got_signal = SIGTERM;
            }
        }
    }
    stop_all(ch, nch);
    conf_fini(&c);
    return rc;
}
