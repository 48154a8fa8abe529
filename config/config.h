/* config: the daemon's own configuration: schema, defaults and strict loading
 * from YAML. Knows the shape of the settings, not what the reconciler does
 * with them. */
#ifndef BR_CONFIG_CONFIG_H
#define BR_CONFIG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "common/buf.h"
#include "common/strv.h"

/* How a sidecar is told to re-read its live file. */
enum br_driver_kind {
  BR_DRIVER_NONE,   /* write only: the sidecar watches the file itself */
  BR_DRIVER_SIGNAL, /* kill(2) the pid read from a pidfile */
  BR_DRIVER_EXEC,   /* run an argv (no shell); exit 0 is success */
  BR_DRIVER_DOCKER, /* Docker Engine API on its unix socket */
};

struct br_reload_config {
  enum br_driver_kind driver;
  char *pidfile;        /* signal: template; owned */
  int signo;            /* signal, docker: default SIGHUP */
  struct br_strv argv;  /* exec: templates, argv[0] is the program */
  unsigned timeout_ms;  /* exec: default 5000; the process group is killed after it */
  char *container;      /* docker: template, default "{project}-<sidecar>-1"; owned */
  unsigned grace_ms;    /* signal, docker: a sidecar younger than this is not
                           signalled yet (it may not have its SIGHUP handler);
                           default 2000 */
};

enum br_mirror_mode {
  BR_MIRROR_ADDITIVE, /* hosts are only ever added to pipelock */
  BR_MIRROR_PRUNE,    /* hosts this tool added and no route needs are removed */
};

struct br_sidecar_config {
  char *file;                  /* live file template; owned */
  unsigned settle_ms;          /* wait after a reload before the next step */
  struct br_reload_config reload;
  struct br_strv validate;     /* optional argv run on the staged temp file;
                                  "{file}" is replaced by its path; empty = none */
};

struct br_config {
  char *state_dir;             /* default /var/lib/bot-bottle/state; owned */
  struct br_strv sources;      /* templates, merge order; default {state_dir}/{slug}/routes.d */
  unsigned debounce_ms;        /* default 20 */
  unsigned max_wait_ms;        /* default 1000 */
  unsigned resync_interval_s;  /* default 300, 0 = off */
  unsigned backoff_initial_ms; /* default 100 */
  unsigned backoff_max_ms;     /* default 30000 */
  unsigned workers;            /* slugs converged at once, default 4 */
  size_t max_file_bytes;       /* fragment size limit, default 1 MiB */
  size_t max_routes;           /* default 4096 */
  size_t max_paths;            /* default 1024 per route */
  enum br_mirror_mode mirror;  /* pipelock.mirror, default additive */
  struct br_sidecar_config pipelock; /* default settle 150 ms, docker driver */
  struct br_sidecar_config egress;   /* default settle 0, docker driver */
  char *audit_log;             /* default {state_dir}/.reconciler/audit.jsonl; owned */
  char *metrics_file;          /* Prometheus textfile; default none (NULL); owned */
};

/* Fills cfg with the defaults of DESIGN.md. Returns 0 or -ENOMEM. */
int br_config_defaults(struct br_config *cfg);
/* Loads defaults, then overlays the YAML file at path (NULL = defaults only).
 * On a domain error returns -EINVAL and appends "FILE:LINE:COLUMN: KEY: what
 * is wrong, what was expected" to err; cfg is then freed and unusable.
 * Templates in string values are left unexpanded; they are checked for
 * unknown {names} here. */
int br_config_load(struct br_config *cfg, const char *path, struct br_buf *err);
/* Frees everything cfg owns. */
void br_config_free(struct br_config *cfg);
/* Parses a signal name ("HUP", "SIGHUP", "USR2") into a number; -EINVAL for
 * unknown names and for USR1, which toggles pipelock's kill switch. */
int br_signal_parse(const char *name);
const char *br_signal_name(int signo);

#endif
