/* src/core/conf.h: a subcommand's options from a config file, overridden by flags.
 *
 * A subcommand declares a table of struct conf_opt. conf_parse() loads `--config FILE`
 * (libconfig syntax; a flag `--foo-bar` is the setting `foo_bar`), then applies the
 * command-line flags in order, so a flag always wins over the file. Errors name the flag
 * or the file and line. Strings written to `dst` are owned by the struct conf passed in
 * and live until conf_fini(). */
#ifndef MLCDN_CORE_CONF_H
#define MLCDN_CORE_CONF_H

#include <stddef.h>
#include <stdint.h>

#include <libconfig.h>

enum conf_type {
    CONF_STR,      /* const char **dst */
    CONF_INT,      /* long *dst */
    CONF_SIZE,     /* uint64_t *dst, bytes ("64M") */
    CONF_DURATION, /* uint64_t *dst, milliseconds ("500ms", "2s") */
    CONF_BOOL,     /* int *dst; a flag without value sets 1 */
    CONF_DOUBLE,   /* double *dst */
    CONF_STRLIST,  /* struct conf_strlist *dst; a repeated flag appends, a list in the file */
};

struct conf_strlist {
    const char **v;
    size_t n;
};

/* conf_opt.flags */
#define CONF_RELOAD 1u /* a reload (SIGHUP) applies a new value; others need a restart */

struct conf_opt {
    const char *name; /* flag name without the leading "--" */
    enum conf_type type;
    void *dst;
    const char *help;
    unsigned flags; /* CONF_RELOAD */
};

struct conf {
    config_t file; /* the loaded file, for nested settings a module reads itself */
    int have_file;
    char *path;     /* the --config file's path (owned), NULL without one */
    char **strings; /* owned copies handed out through dst */
    size_t nstrings;
    void **lists;
    size_t nlists;
    char **positional; /* arguments that are not flags, in order; owned */
    size_t npositional;
};

/* Parses argv (argv[0] is the subcommand name). Unknown flags are errors unless
 * `allow_positional` and the argument does not start with "--". On error returns -EINVAL
 * and writes a message naming the flag or file into err. conf_fini() must be called
 * in both cases. */
int conf_parse(struct conf *c, const struct conf_opt *opts, size_t nopts, int argc, char **argv,
               int allow_positional, char *err, size_t errlen);
void conf_fini(struct conf *c);
/* err is a message about an option ("--origin: ..."), found after parsing (a check of
 * several options, a URL...): when the value came from the file (and no flag of the same
 * name overrode it), prefixes "FILE:LINE: " so the operator finds the line. */
void conf_locate(struct conf *c, const char *const *argv, int argc, char *err, size_t errlen);
/* A reload parsed the same flags and the file again into new_opts (the same table as
 * old_opts, pointing at other variables). For every option without CONF_RELOAD whose new
 * value differs from the running one (old_opts), the running value is written back into
 * new_opts' variable and the option's name is appended to names (comma-separated), so
 * the caller can log what needs a restart. Strings and lists are copied as pointers: the
 * struct conf behind old_opts must outlive new_opts'. Returns how many were kept. */
size_t conf_keep_restart_only(const struct conf_opt *old_opts, const struct conf_opt *new_opts,
                              size_t nopts, char *names, size_t nameslen);
/* Counts a configuration reload in /metrics: mlcdn_config_reloads_total{result="ok"} or
 * {result="error"}, and on success mlcdn_config_last_reload_success_timestamp_seconds.
 * conf_reload_metrics_init() registers them (with the start as the first success). */
void conf_reload_metrics_init(void);
void conf_reload_count(int ok);
/* Prints the options table as usage text to stdout. */
void conf_usage(const char *cmd, const char *synopsis, const struct conf_opt *opts, size_t nopts);
/* The --config file's path, or NULL when none was given (valid until conf_fini). */
const char *conf_file(const struct conf *c);
/* The loaded config file's root setting, or NULL when no --config was given. */
config_setting_t *conf_file_root(struct conf *c);
/* Refuses a top-level setting of the loaded file that is neither an option of opts nor
 * named in groups[0..ngroups) (settings a module reads itself, like "routes"), so a typo
 * is an error rather than a setting silently ignored. 0, or -EINVAL with "FILE:LINE:
 * unknown setting 'x'" in err. Without a file, 0. */
int conf_check_keys(struct conf *c, const struct conf_opt *opts, size_t nopts,
                    const char *const *groups, size_t ngroups, char *err, size_t errlen);

#endif
