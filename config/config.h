/* config: the daemon's own configuration: schema, defaults and strict loading
 * from YAML. Knows the shape of the settings, not what the reconciler does
 * with them. */
#ifndef BR_CONFIG_CONFIG_H
#define BR_CONFIG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "common/buf.h"
#include "common/fileio.h"
#include "common/strv.h"

/* The two sidecars of a bottle, in the order a widening converge tells
 * them: the inner gate first. br_sidecar_name() is the one name table: the
 * config key, the value of {sidecar}, and the word in messages, records and
 * the audit log. */
enum br_sidecar {
  BR_SIDECAR_PIPELOCK, /* hostname allowlist with data-loss scanning: the inner gate */
  BR_SIDECAR_EGRESS,   /* path-aware routes and credentials: the outer gate */
  BR_SIDECAR_COUNT
};

/* "pipelock" or "egress". */
const char *br_sidecar_name(enum br_sidecar sidecar);

/* How a sidecar is told to re-read its live file. */
enum br_driver_kind {
  BR_DRIVER_NONE,   /* write only: the sidecar watches the file itself */
  BR_DRIVER_SIGNAL, /* kill(2) the pid read from a pidfile */
  BR_DRIVER_EXEC,   /* run an argv (no shell); exit 0 is success */
  BR_DRIVER_DOCKER, /* Docker Engine API on its unix socket */
};

struct br_reload_config {
  enum br_driver_kind driver;
  char *pidfile;               /* signal: template; owned */
  int signo;                   /* signal, docker: default SIGHUP */
  struct br_strv argv;         /* exec: templates, argv[0] is the program */
  unsigned timeout_ms;         /* exec: default 5000; the process group is killed after it */
  char *container;             /* docker: template, default "{project}-<sidecar>-1"; owned;
                                  NULL for the other drivers, as pidfile is unless signal */
  unsigned grace_ms;           /* signal, docker: a sidecar younger than this is not
                                  signalled yet (it may not have its SIGHUP handler);
                                  default 2000 */
  bool verify;                 /* docker: after the reload, read the file as the
                                  container sees it and compare; default false */
  unsigned confirm_timeout_ms; /* docker, signal, exec: after the reload, wait this
                                  long for the sidecar to report the file's
                                  SHA-256 (docker: a container log line; the
                                  others: confirm_status_file or confirm_log_file);
                                  0 (the default) = do not wait */
  char *confirm_status_file;   /* signal, exec: path template of a JSON file whose
                                  "sha256" is the hash of the bytes the sidecar
                                  runs; owned, NULL when not set */
  char *confirm_log_file;      /* signal, exec: path template of a log the sidecar
                                  appends a line to after each load; owned */
  char *confirm_match;         /* with confirm_log_file: the text of that line,
                                  "{sha256}" standing for the hash; owned */
  /* signal: what the process the pidfile names must be before it is
   * signalled; each NULL (the default) is not checked; owned. */
  char *expect_exe;     /* its executable (readlink /proc/PID/exe): this absolute
                           path or what it resolves to */
  char *expect_comm;    /* its name (/proc/PID/comm), at most 15 bytes */
  char *expect_cmdline; /* template: its command line, arguments joined by
                           spaces, contains the expansion */
};

enum br_mirror_mode {
  BR_MIRROR_ADDITIVE, /* hosts are only ever added to pipelock */
  BR_MIRROR_PRUNE,    /* hosts this tool added and no route needs are removed */
};

struct br_sidecar_config {
  enum br_sidecar which;
  char *file;         /* live file template; owned */
  unsigned settle_ms; /* wait after a reload before the next step */
  struct br_reload_config reload;
  struct br_strv validate; /* optional argv run on the staged temp file;
                              "{file}" is replaced by its path; empty = none */
};

/* What the fragments of one source directory may say (a `sources` entry
 * written as a mapping); a plain string allows everything. */
struct br_source_rules {
  bool may_bind_credentials; /* default true: its routes may carry auth_scheme/token_env */
  bool may_allow_every_path; /* default true: "/" in path_allowlist, or none at all */
  size_t max_routes;         /* routes its fragments may declare for one bottle; 0 = no bound */
  /* Where the config file sets each rule, "FILE:LINE:COLUMN", for the
   * message of a fragment that breaks it; NULL while at the default. Owned. */
  char *bind_at, *every_path_at, *max_routes_at;
};

/* One credential shared on purpose (policy.shared_credentials). */
struct br_shared_credential {
  char *token_env;      /* owned */
  struct br_strv hosts; /* lowercase host names it may serve, at least two */
  char *at;             /* "FILE:LINE:COLUMN" of the entry; owned */
};

/* The operator's policy: rules on a bottle's desired routes, checked before
 * anything of the bottle is written. Lists are parallel to their _at lists,
 * which say where the config file names each entry ("FILE:LINE:COLUMN"). */
struct br_policy_config {
  struct br_strv deny_hosts, deny_hosts_at;         /* lowercase names and "*.suffix" patterns */
  struct br_strv deny_ip_ranges, deny_ip_ranges_at; /* CIDR text, valid for br_cidr_parse */
  size_t max_routes_per_bottle;                     /* 0 = no bound (null, the default) */
  char *max_routes_per_bottle_at;                   /* owned; NULL while at the default */
  struct br_shared_credential *shared;              /* owned array */
  size_t n_shared;
};

struct br_config {
  char *state_dir;                      /* default /var/lib/bot-bottle/state; owned */
  struct br_strv sources;               /* templates, merge order; default {state_dir}/{slug}/routes.d */
  struct br_source_rules *source_rules; /* parallel to sources (one each); owned */
  unsigned debounce_ms;                 /* default 20 */
  unsigned max_wait_ms;                 /* default 1000 */
  unsigned resync_interval_s;           /* default 300, 0 = off */
  unsigned backoff_initial_ms;          /* default 100 */
  unsigned backoff_max_ms;              /* default 30000 */
  unsigned workers;                     /* slugs converged at once, default 4 */
  size_t max_file_bytes;                /* fragment size limit, default 1 MiB */
  size_t max_routes;                    /* default 4096 */
  size_t max_paths;                     /* default 1024 per route */
  enum br_mirror_mode mirror;           /* pipelock.mirror, default additive */
  struct br_sidecar_config pipelock;    /* default settle 150 ms, docker driver */
  struct br_sidecar_config egress;      /* default settle 0, docker driver */
  char *audit_log;                      /* default {state_dir}/.reconciler/audit.jsonl; owned */
  char *metrics_file;                   /* Prometheus textfile; default none (NULL); owned */
  struct br_policy_config policy;       /* default: no rules */
  /* Absolute directories whose own paths may pass through symlinks
   * (follow_symlinks): a deployment's documented choice, default none.
   * Every other path of a live file, record or audit log is opened through
   * no symlink at all (see br_config_path_rule). */
  struct br_strv follow_symlinks;
};

/* Template names by key, checked by br_config_load (any other "{name}" is an
 * error there, so expansion can only fail on a bad slug or project):
 *   state_dir                               none
 *   audit_log, metrics_file                 {state_dir}
 *   sources                                 {state_dir} {slug} {project}
 *   <sidecar>.file, <sidecar>.reload.*      {state_dir} {slug} {project} {sidecar}
 *   <sidecar>.validate                      the same and {file}
 * Path templates (sources, audit_log, metrics_file, file, pidfile) start with
 * "/" or "{state_dir}"; state_dir is absolute, without a trailing "/". */

/* Fills cfg with the defaults of DESIGN.md. Returns 0 or -ENOMEM (cfg is
 * then freed). */
int br_config_defaults(struct br_config *cfg);
/* Loads defaults, then overlays the YAML file at path (NULL = defaults only;
 * an empty file or "{}" also gives the defaults). A given sidecar reload
 * mapping replaces the default one: its driver (default docker) decides which
 * keys it may have, the others take that driver's defaults.
 * Returns 0, or a negative errno after appending one line to err: -EINVAL
 * for bad content ("FILE:LINE:COLUMN: KEY: what is wrong, what was
 * expected"; also for a path that is not a regular file), -EFBIG over 64 KiB,
 * -E2BIG for too many YAML nodes, -ENOENT, -EISDIR or another open/read error
 * ("FILE: cannot read: reason"). -ENOMEM may come without a line. On any
 * error cfg is freed and must be loaded or defaulted again before use
 * (freeing it again is safe).
 * Templates in string values are left unexpanded; they are checked for
 * unknown {names} here. */
int br_config_load(struct br_config *cfg, const char *path, struct br_buf *err);
/* Frees everything cfg owns and zeroes it; safe to call twice. */
void br_config_free(struct br_config *cfg);
/* Appends cfg as YAML that br_config_load reads back to an equal config, in
 * the order of the example file (for "show the effective config" and tests).
 * Returns 0, -EFBIG or -ENOMEM. */
int br_config_format(const struct br_config *cfg, struct br_buf *out);

/* The rule every live file, record and audit log is opened under: beneath
 * the state directory (resolved with realpath by whoever loads the config,
 * see br_config_resolve_state_dir) or from "/", through no symlink, except
 * in the paths of the follow_symlinks directories. Borrows from cfg. */
struct br_path_rule br_config_path_rule(const struct br_config *cfg);
/* The rule a source directory is read under: rule when dir lies beneath the
 * state directory (routes.d), else NULL: a source elsewhere, such as a git
 * checkout published by swapping a symlink, is only read, and read as its
 * layout has it. */
const struct br_path_rule *br_config_source_rule(const struct br_config *cfg, const char *dir,
                                                 const struct br_path_rule *rule);
/* Replaces cfg->state_dir with its realpath, once, so that the rule's root
 * is a fixed directory and the paths derived from it lie beneath it
 * textually. Returns 0 or -errno (with a line in err). */
int br_config_resolve_state_dir(struct br_config *cfg, struct br_buf *err);

/* Whether a source or a live file's path names {project}: only then does
 * finding them need the slug's metadata.json. */
bool br_config_paths_use_project(const struct br_config *cfg);

/* Appends tmpl expanded with {state_dir}, {slug} and {project} to out. slug
 * may be NULL or "" (not given: for audit_log and metrics_file, which cannot
 * name it); project NULL or "" means the slug, as DESIGN.md says for bottles
 * without a compose_project. A given slug or project must be a single path
 * component (no "/", not "." or ".."): -EINVAL otherwise, and for a template
 * naming a value not given. -EFBIG/-ENOMEM from out. */
int br_config_expand(const struct br_config *cfg, const char *tmpl, const char *slug, const char *project,
                     struct br_buf *out);
/* The same for a template of the sidecar sc (&cfg->pipelock or &cfg->egress),
 * which may also name {sidecar}, and {file} when file is not NULL (the staged
 * path, for validate argv). */
int br_config_expand_sidecar(const struct br_config *cfg, const struct br_sidecar_config *sc, const char *tmpl,
                             const char *slug, const char *project, const char *file, struct br_buf *out);
/* "pipelock" or "egress" for &cfg->pipelock or &cfg->egress, else NULL: the
 * value of {sidecar} and the word used in messages. */
const char *br_config_sidecar_name(const struct br_config *cfg, const struct br_sidecar_config *sc);
/* &cfg->pipelock or &cfg->egress. */
const struct br_sidecar_config *br_config_sidecar(const struct br_config *cfg, enum br_sidecar sidecar);
/* "none", "signal", "exec", "docker". */
const char *br_driver_name(enum br_driver_kind driver);

/* Parses a signal name ("HUP", "SIGHUP", "usr2"; case-insensitive) into a
 * number; -EINVAL for unknown names and for USR1, which toggles pipelock's
 * kill switch. Known: HUP, USR2, TERM, INT, QUIT, WINCH. */
int br_signal_parse(const char *name);
/* "HUP" for SIGHUP (no "SIG" prefix); NULL for a signal it does not know. */
const char *br_signal_name(int signo);

#endif
