/* driver: how a sidecar is told to re-read its live file. converge.c calls
 * br_driver_reload and never looks at a driver's kind; each driver lives in
 * its own driver_<name>.c. Drivers block (they run off the loop thread). */
#ifndef BR_RECONCILER_DRIVER_H
#define BR_RECONCILER_DRIVER_H

#include <stdint.h>

#include "common/buf.h"
#include "config/config.h"

enum br_reload_status {
  BR_RELOAD_OK,          /* the sidecar was told and re-reads the file now */
  BR_RELOAD_NOT_NEEDED,  /* nothing to tell: driver none, or the sidecar
                            started after the write and so read the new file */
  BR_RELOAD_NOT_RUNNING, /* no sidecar runs and none is expected to be told:
                            it reads the file when it starts (docker) */
  BR_RELOAD_DEFER,       /* the sidecar is too young to be signalled safely;
                            try again after retry_after_ms */
  BR_RELOAD_TRANSIENT,   /* failed (sidecar gone, timeout, I/O): retry with backoff */
  BR_RELOAD_PERMANENT,   /* misconfigured: retrying cannot help until config changes */
};

struct br_reload_request {
  const struct br_config *config;
  const struct br_reload_config *reload; /* the sidecar's reload section */
  const char *sidecar;                   /* "pipelock" or "egress" */
  const char *slug;
  const char *project;
  const char *file;      /* the live file, expanded */
  int64_t written_at_ns; /* CLOCK_REALTIME of the write being announced, or 0
                            when the file was not written by this converge */
};

struct br_reload_result {
  enum br_reload_status status;
  unsigned retry_after_ms; /* DEFER: when to try again */
  struct br_buf message;   /* what happened, for status and the audit log */
};

void br_reload_result_init(struct br_reload_result *res);
void br_reload_result_free(struct br_reload_result *res);
/* Runs the configured driver. Always fills res; returns 0 unless memory ran out. */
int br_driver_reload(const struct br_reload_request *req, struct br_reload_result *res);
const char *br_reload_status_name(enum br_reload_status status);

/* Expands a driver template ({state_dir}, {slug}, {project}, {sidecar}) into out. */
int br_driver_expand(const struct br_reload_request *req, const char *tmpl, struct br_buf *out);

/* The drivers, one per file. */
int br_driver_signal_reload(const struct br_reload_request *req, struct br_reload_result *res);
int br_driver_exec_reload(const struct br_reload_request *req, struct br_reload_result *res);
int br_driver_docker_reload(const struct br_reload_request *req, struct br_reload_result *res);

#endif
