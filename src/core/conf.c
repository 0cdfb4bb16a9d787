/* src/core/conf.c: see conf.h. */
#include "core/conf.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mc.h"
#include "core/metrics.h"
#include "core/units.h"

static char *keep(struct conf *c, const char *s)
{
    c->strings = mc_xrealloc(c->strings, (c->nstrings + 1) * sizeof(*c->strings));
    return c->strings[c->nstrings++] = mc_xstrdup(s);
}

/* Appends to a list; c->lists tracks each live array so conf_fini() can free it. */
static void list_append(struct conf *c, struct conf_strlist *l, const char *s)
{
    const void *old = l->v;
    size_t idx = (size_t)-1;
    for (size_t i = 0; i < c->nlists; i++)
        if (c->lists[i] == old && old != NULL)
            idx = i;
    if (idx == (size_t)-1) {
        l->n = 0;
        l->v = mc_xmalloc(sizeof(*l->v));
        c->lists = mc_xrealloc(c->lists, (c->nlists + 1) * sizeof(*c->lists));
        c->lists[c->nlists++] = (void *)l->v;
        l->v[l->n++] = keep(c, s);
        return;
    }
    l->v = mc_xrealloc((void *)l->v, (l->n + 1) * sizeof(*l->v));
    c->lists[idx] = (void *)l->v;
    l->v[l->n++] = keep(c, s);
}

static int set_value(struct conf *c, const struct conf_opt *o, const char *val, char *err,
                     size_t errlen, const char *where)
{
    char *end;

    switch (o->type) {
    case CONF_STR: *(const char **)o->dst = keep(c, val); return 0;
    case CONF_STRLIST: list_append(c, (struct conf_strlist *)o->dst, val); return 0;
    case CONF_INT: {
        errno = 0;
        long v = strtol(val, &end, 10);
        if (errno || end == val || *end) {
            snprintf(err, errlen, "%s --%s: '%s' is not an integer", where, o->name, val);
            return -EINVAL;
        }
        *(long *)o->dst = v;
        return 0;
    }
    case CONF_DOUBLE: {
        errno = 0;
        double v = strtod(val, &end);
        if (errno || end == val || *end) {
            snprintf(err, errlen, "%s --%s: '%s' is not a number", where, o->name, val);
            return -EINVAL;
        }
        *(double *)o->dst = v;
        return 0;
    }
    case CONF_SIZE:
        if (units_parse_size(val, (uint64_t *)o->dst)) {
            snprintf(err, errlen, "%s --%s: '%s' is not a size (like 512K, 64M, 2G)", where,
                     o->name, val);
            return -EINVAL;
        }
        return 0;
    case CONF_DURATION:
        if (units_parse_duration_ms(val, (uint64_t *)o->dst)) {
            snprintf(err, errlen, "%s --%s: '%s' is not a duration (like 500ms, 2s, 5m)", where,
                     o->name, val);
            return -EINVAL;
        }
        return 0;
    case CONF_BOOL:
        if (!strcmp(val, "1") || !strcmp(val, "true") || !strcmp(val, "yes") || !strcmp(val, "on"))
            *(int *)o->dst = 1;
        else if (!strcmp(val, "0") || !strcmp(val, "false") || !strcmp(val, "no") ||
                 !strcmp(val, "off"))
            *(int *)o->dst = 0;
        else {
            snprintf(err, errlen, "%s --%s: '%s' is not a boolean", where, o->name, val);
            return -EINVAL;
        }
        return 0;
    }
    return -EINVAL;
}

static const struct conf_opt *find_opt(const struct conf_opt *opts, size_t n, const char *name,
                                       size_t namelen)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(opts[i].name) == namelen && strncmp(opts[i].name, name, namelen) == 0)
            return &opts[i];
    return NULL;
}

/* Renders a scalar setting as the text a flag would carry, so one parser serves both. */
static int setting_text(config_setting_t *s, char *out, size_t outlen)
{
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_STRING: snprintf(out, outlen, "%s", config_setting_get_string(s)); return 0;
    case CONFIG_TYPE_INT: snprintf(out, outlen, "%d", config_setting_get_int(s)); return 0;
    case CONFIG_TYPE_INT64: snprintf(out, outlen, "%lld", config_setting_get_int64(s)); return 0;
    case CONFIG_TYPE_FLOAT: snprintf(out, outlen, "%.17g", config_setting_get_float(s)); return 0;
    case CONFIG_TYPE_BOOL:
        snprintf(out, outlen, "%s", config_setting_get_bool(s) ? "true" : "false");
        return 0;
    default: return -EINVAL;
    }
}

static int load_file(struct conf *c, const char *path, const struct conf_opt *opts, size_t nopts,
                     char *err, size_t errlen)
{
    char where[512], text[1024], key[128];

    config_init(&c->file);
    c->have_file = 1;
    c->path = mc_xstrdup(path);
    if (config_read_file(&c->file, path) != CONFIG_TRUE) {
        if (config_error_type(&c->file) == CONFIG_ERR_FILE_IO)
            snprintf(err, errlen, "--config %s: cannot read the file", path);
        else
            snprintf(err, errlen, "--config %s:%d: %s", path, config_error_line(&c->file),
                     config_error_text(&c->file));
        return -EINVAL;
    }
    for (size_t i = 0; i < nopts; i++) {
        const struct conf_opt *o = &opts[i];
        size_t k;
        for (k = 0; o->name[k] && k + 1 < sizeof(key); k++)
            key[k] = o->name[k] == '-' ? '_' : o->name[k];
        key[k] = '\0';
        config_setting_t *s = config_lookup(&c->file, key);
        if (!s)
            continue;
        snprintf(where, sizeof(where), "%s:%d:", path, config_setting_source_line(s));
        if (o->type == CONF_STRLIST && (config_setting_is_list(s) || config_setting_is_array(s))) {
            for (int j = 0; j < config_setting_length(s); j++) {
                if (setting_text(config_setting_get_elem(s, (unsigned)j), text, sizeof(text))) {
                    snprintf(err, errlen, "%s setting '%s': element %d is not a scalar", where, key,
                             j);
                    return -EINVAL;
                }
                list_append(c, (struct conf_strlist *)o->dst, text);
            }
            continue;
        }
        if (setting_text(s, text, sizeof(text))) {
            snprintf(err, errlen, "%s setting '%s' must be a scalar", where, key);
            return -EINVAL;
        }
        int e = set_value(c, o, text, err, errlen, where);
        if (e)
            return e;
    }
    return 0;
}

int conf_parse(struct conf *c, const struct conf_opt *opts, size_t nopts, int argc, char **argv,
               int allow_positional, char *err, size_t errlen)
{
    const char *cfg = NULL;
    int err_code;

    memset(c, 0, sizeof(*c));
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "--config needs a file");
                return -EINVAL;
            }
            cfg = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            cfg = argv[i] + 9;
        }
    }
    if (cfg && (err_code = load_file(c, cfg, opts, nopts, err, errlen)) != 0)
        return err_code;

    /* File lists are replaced, not extended, by the first flag of the same name. */
    const void *file_lists[64];
    size_t nfile_lists = 0;
    for (size_t i = 0; i < nopts && nfile_lists < MC_ARRAY_SIZE(file_lists); i++)
        if (opts[i].type == CONF_STRLIST && ((struct conf_strlist *)opts[i].dst)->n)
            file_lists[nfile_lists++] = opts[i].dst;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            if (!allow_positional || strcmp(a, "--") == 0) {
                snprintf(err, errlen, "unexpected argument '%s'", a);
                return -EINVAL;
            }
            c->positional = mc_xrealloc(c->positional, (c->npositional + 1) * sizeof(char *));
            c->positional[c->npositional++] = mc_xstrdup(a);
            continue;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t namelen = eq ? (size_t)(eq - name) : strlen(name);
        if (namelen == 6 && strncmp(name, "config", 6) == 0) {
            if (!eq)
                i++;
            continue;
        }
        const struct conf_opt *o = find_opt(opts, nopts, name, namelen);
        if (!o) {
            snprintf(err, errlen, "unknown flag --%.*s", (int)namelen, name);
            return -EINVAL;
        }
        const char *val;
        if (eq)
            val = eq + 1;
        else if (o->type == CONF_BOOL &&
                 (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0 ||
                  (strcmp(argv[i + 1], "true") && strcmp(argv[i + 1], "false"))))
            val = "true";
        else if (i + 1 < argc)
            val = argv[++i];
        else {
            snprintf(err, errlen, "--%s needs a value", o->name);
            return -EINVAL;
        }
        if (o->type == CONF_STRLIST) {
            for (size_t k = 0; k < nfile_lists; k++) {
                if (file_lists[k] == o->dst) {
                    ((struct conf_strlist *)o->dst)->n = 0;
                    file_lists[k] = NULL;
                }
            }
        }
        if ((err_code = set_value(c, o, val, err, errlen, "")) != 0) {
            /* set_value's messages start with the location; drop the empty one. */
            if (err[0] == ' ')
                memmove(err, err + 1, strlen(err));
            return err_code;
        }
    }
    return 0;
}

void conf_fini(struct conf *c)
{
    for (size_t i = 0; i < c->nstrings; i++)
        free(c->strings[i]);
    free(c->strings);
    for (size_t i = 0; i < c->nlists; i++)
        free(c->lists[i]);
    free(c->lists);
    for (size_t i = 0; i < c->npositional; i++)
        free(c->positional[i]);
    free(c->positional);
    if (c->have_file)
        config_destroy(&c->file);
    free(c->path);
    memset(c, 0, sizeof(*c));
}

const char *conf_file(const struct conf *c)
{
    return c->path;
}

config_setting_t *conf_file_root(struct conf *c)
{
    return c->have_file ? config_root_setting(&c->file) : NULL;
}

int conf_check_keys(struct conf *c, const struct conf_opt *opts, size_t nopts,
                    const char *const *groups, size_t ngroups, char *err, size_t errlen)
{
    config_setting_t *root = conf_file_root(c);
    char key[128];

    if (!root)
        return 0;
    for (int i = 0; i < config_setting_length(root); i++) {
        config_setting_t *s = config_setting_get_elem(root, (unsigned)i);
        const char *name = config_setting_name(s);
        int known = 0;
        for (size_t j = 0; j < nopts && !known; j++) {
            size_t k;
            for (k = 0; opts[j].name[k] && k + 1 < sizeof(key); k++)
                key[k] = opts[j].name[k] == '-' ? '_' : opts[j].name[k];
            key[k] = '\0';
            known = name && !strcmp(name, key);
        }
        for (size_t j = 0; j < ngroups && !known; j++)
            known = name && !strcmp(name, groups[j]);
        if (!known) {
            snprintf(err, errlen, "%s:%d: unknown setting '%s'", c->path,
                     config_setting_source_line(s), name ? name : "");
            return -EINVAL;
        }
    }
    return 0;
}

void conf_locate(struct conf *c, const char *const *argv, int argc, char *err, size_t errlen)
{
    char key[128], flag[132], copy[1024];
    size_t k = 0;
    const char *p = err + 2;

    if (!c->have_file || strncmp(err, "--", 2) != 0)
        return;
    for (; *p && (isalnum((unsigned char)*p) || *p == '-') && k + 1 < sizeof(key); p++)
        key[k++] = *p == '-' ? '_' : *p;
    key[k] = '\0';
    snprintf(flag, sizeof(flag), "--%.*s", (int)k, err + 2);
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], flag) ||
            (!strncmp(argv[i], flag, strlen(flag)) && argv[i][strlen(flag)] == '='))
            return; /* the flag's value, not the file's */
    config_setting_t *s = k ? config_lookup(&c->file, key) : NULL;
    if (!s)
        return;
    snprintf(copy, sizeof(copy), "%s", err);
    snprintf(err, errlen, "%s:%d: %s", c->path, config_setting_source_line(s), copy);
}

static int same_value(const struct conf_opt *a, const struct conf_opt *b)
{
    switch (a->type) {
    case CONF_STR: {
        const char *x = *(const char **)a->dst, *y = *(const char **)b->dst;
        return x == y || (x && y && !strcmp(x, y));
    }
    case CONF_INT: return *(long *)a->dst == *(long *)b->dst;
    case CONF_SIZE:
    case CONF_DURATION: return *(uint64_t *)a->dst == *(uint64_t *)b->dst;
    case CONF_BOOL: return *(int *)a->dst == *(int *)b->dst;
    case CONF_DOUBLE: return *(double *)a->dst == *(double *)b->dst;
    case CONF_STRLIST: {
        const struct conf_strlist *x = a->dst, *y = b->dst;
        if (x->n != y->n)
            return 0;
        for (size_t i = 0; i < x->n; i++)
            if (strcmp(x->v[i], y->v[i]))
                return 0;
        return 1;
    }
    }
    return 0;
}

static size_t type_size(enum conf_type t)
{
    switch (t) {
    case CONF_STR: return sizeof(const char *);
    case CONF_INT: return sizeof(long);
    case CONF_SIZE:
    case CONF_DURATION: return sizeof(uint64_t);
    case CONF_BOOL: return sizeof(int);
    case CONF_DOUBLE: return sizeof(double);
    case CONF_STRLIST: return sizeof(struct conf_strlist);
    }
    return 0;
}

size_t conf_keep_restart_only(const struct conf_opt *old_opts, const struct conf_opt *new_opts,
                              size_t nopts, char *names, size_t nameslen)
{
    size_t kept = 0, len = 0;

    if (nameslen)
        names[0] = '\0';
    for (size_t i = 0; i < nopts; i++) {
        MC_ASSERT(!strcmp(old_opts[i].name, new_opts[i].name));
        if ((old_opts[i].flags & CONF_RELOAD) || same_value(&old_opts[i], &new_opts[i]))
            continue;
        memcpy(new_opts[i].dst, old_opts[i].dst, type_size(old_opts[i].type));
        if (len < nameslen) {
            int n = snprintf(names + len, nameslen - len, "%s%s", kept ? "," : "",
                             old_opts[i].name);
            len += n > 0 ? (size_t)n : 0;
        }
        kept++;
    }
    return kept;
}

static struct metrics_counter *m_reload_ok, *m_reload_err;
static struct metrics_gauge *m_reload_ts;

void conf_reload_metrics_init(void)
{
    m_reload_ok = metrics_counter("mlcdn_config_reloads_total",
                                  "Configuration reloads (SIGHUP), by result", "result=\"ok\"");
    m_reload_err = metrics_counter("mlcdn_config_reloads_total",
                                   "Configuration reloads (SIGHUP), by result", "result=\"error\"");
    m_reload_ts = metrics_gauge("mlcdn_config_last_reload_success_timestamp_seconds",
                                "Unix time of the last configuration load that succeeded (the "
                                "start, or a reload)",
                                "");
    metrics_gauge_set(m_reload_ts, (double)units_wall_s());
}

void conf_reload_count(int ok)
{
    if (!m_reload_ok)
        conf_reload_metrics_init();
    metrics_counter_add(ok ? m_reload_ok : m_reload_err, 1);
    if (ok)
        metrics_gauge_set(m_reload_ts, (double)units_wall_s());
}

void conf_usage(const char *cmd, const char *synopsis, const struct conf_opt *opts, size_t nopts)
{
    static const char *const tnames[] = {"STR", "N", "SIZE", "DURATION", "", "X", "STR"};
    char lhs[64];

    /* GNU layout (a "Usage:" line, an "Options:" paragraph, "--flag ARG" then two spaces):
     * the man pages are generated from this text by help2man. */
    printf("Usage: mlcdn %s %s\n\n"
           "Every option is also a setting of the --config FILE (libconfig syntax): --foo-bar\n"
           "is foo_bar; flags win over the file.\n\nOptions:\n",
           cmd, synopsis ? synopsis : "[options]");
    for (size_t i = 0; i < nopts; i++) {
        snprintf(lhs, sizeof(lhs), "--%s%s%s", opts[i].name, tnames[opts[i].type][0] ? " " : "",
                 tnames[opts[i].type]);
        printf("  %-33s %s\n", lhs, opts[i].help ? opts[i].help : "");
    }
    printf("  %-33s %s\n", "--config FILE", "read settings from FILE (flags win)");
}
