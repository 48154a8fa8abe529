/* reload: what every driver shares: the request to tell a sidecar to re-read
 * its live file, the result, template expansion, the live file's hash and
 * the rules on a process's start time and state. The drivers depend on this
 * file; driver.c depends on the drivers; nothing here knows a driver. Drivers
 * block (they run off the loop thread). */
#ifndef BR_RECONCILER_DRIVERS_RELOAD_H
#define BR_RECONCILER_DRIVERS_RELOAD_H

#include <stdbool.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/sha256.h"
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
  enum br_sidecar sidecar;
  const char *slug;
  const char *project;
  const char *file;      /* the live file, expanded */
  int64_t written_at_ns; /* CLOCK_REALTIME of the write being announced, or 0
                            when the file was not written by this converge */
  /* The most to wait for a confirmation when a next step waits on it (the
   * sidecar's settle time); 0: the confirm's own timeout_ms. */
  unsigned confirm_within_ms;
};

struct br_reload_result {
  enum br_reload_status status;
  unsigned retry_after_ms; /* DEFER: when to try again */
  bool confirmed;          /* OK, and the sidecar reported the SHA-256 of the live
                              file's bytes (confirm): it runs them now, so the next
                              step need not wait out the settle time */
  bool confirm_late;       /* OK as far as it went: told, but not confirmed within
                              confirm_within_ms; the reload is not done yet (the
                              caller delivers it again later) */
  struct br_buf message;   /* what happened, for status and the audit log */
};

/* Live files may be larger than one fragment (they hold a merge of many). */
#define BR_RELOAD_LIVE_FILE_MAX (64u * 1024 * 1024)

/* One driver: how it tells a sidecar. reload always fills res and returns 0
 * unless memory ran out. */
struct br_driver_ops {
  const char *name;
  int (*reload)(const struct br_reload_request *req, struct br_reload_result *res);
};

void br_reload_result_init(struct br_reload_result *res);
void br_reload_result_free(struct br_reload_result *res);
const char *br_reload_status_name(enum br_reload_status status);

/* The SHA-256 of the file at path (at most BR_RELOAD_LIVE_FILE_MAX bytes), as
 * 64 lowercase hex digits: what confirm and verify compare a sidecar's
 * report with. Returns 0 or -errno. */
int br_reload_file_sha256(const char *path, char hex[BR_SHA256_HEX_LEN + 1]);

/* Expands a driver template ({state_dir}, {slug}, {project}, {sidecar}) into out. */
int br_reload_expand(const struct br_reload_request *req, const char *tmpl, struct br_buf *out);

/* Process start times come in clock ticks (10 ms here): two times closer
 * than this cannot be ordered. */
#define BR_TICK_SLACK_NS (20 * 1000000LL)

/* The start-time rule of every driver that signals a process. A sidecar
 * that started after the write read the new file: NOT_NEEDED. One younger
 * than grace_ms may not have its SIGHUP handler yet, and real proxies die of
 * an early SIGHUP: DEFER until the grace is over. started_ns is when it
 * started at the latest (compared with the write), age_from_ns when its
 * grace began; what names it in the message ("pid 12", "container x").
 * Returns true when it decided res; false when the sidecar may be told now. */
bool br_reload_too_early(const struct br_reload_request *req, int64_t started_ns, int64_t age_from_ns,
                         const char *what, struct br_reload_result *res);

/* How long to wait for the confirmation of req: its confirm timeout_ms,
 * or less when the request bounds it (*bounded then). */
unsigned br_reload_confirm_budget(const struct br_reload_request *req, bool *bounded);

/* The state rule of every driver that signals a process it can see: a
 * stopped process (state T, or t under a debugger) only queues the signal
 * until it is continued, and a zombie (Z) or dead one (X) drops it, so
 * neither reloads now. state is /proc/PID/stat's letter; what names the
 * process ("pid 12"). Returns true with res TRANSIENT for those (the
 * bottle retries with backoff; status says why); false when it may be told. */
bool br_reload_not_running_state(char state, const char *what, struct br_reload_result *res);

#endif
