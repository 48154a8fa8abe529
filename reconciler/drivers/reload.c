/* reload: the request, the result and the rules all drivers share (see
 * reload.h). */
#include "reconciler/drivers/reload.h"

#include "common/clock.h"
#include "common/fileio.h"
#include "common/proc.h"

void br_reload_result_init(struct br_reload_result *res) {
  res->status = BR_RELOAD_OK;
  res->retry_after_ms = 0;
  res->confirmed = false;
  res->confirm_late = false;
  br_buf_init(&res->message, 4096);
}

void br_reload_result_free(struct br_reload_result *res) { br_buf_free(&res->message); }

const char *br_reload_status_name(enum br_reload_status status) {
  switch (status) {
  case BR_RELOAD_OK:
    return "ok";
  case BR_RELOAD_NOT_NEEDED:
    return "not-needed";
  case BR_RELOAD_NOT_RUNNING:
    return "not-running";
  case BR_RELOAD_DEFER:
    return "deferred";
  case BR_RELOAD_TRANSIENT:
    return "failed";
  case BR_RELOAD_PERMANENT:
    return "misconfigured";
  }
  return "?";
}

int br_reload_file_sha256(const char *path, char hex[BR_SHA256_HEX_LEN + 1]) {
  struct br_buf bytes;
  br_buf_init(&bytes, BR_RELOAD_LIVE_FILE_MAX);
  int rc = br_file_read(path, bytes.max, false, &bytes);
  if (!rc)
    br_sha256_hex(br_buf_str(&bytes), bytes.len, hex);
  br_buf_free(&bytes);
  return rc;
}

int br_reload_expand(const struct br_reload_request *req, const char *tmpl, struct br_buf *out) {
  br_buf_reset(out);
  return br_config_expand_sidecar(req->config, br_config_sidecar(req->config, req->sidecar), tmpl, req->slug,
                                  req->project, NULL, out);
}

bool br_reload_too_early(const struct br_reload_request *req, int64_t started_ns, int64_t age_from_ns,
                         const char *what, struct br_reload_result *res) {
  if (req->written_at_ns && started_ns > req->written_at_ns + BR_TICK_SLACK_NS) {
    res->status = BR_RELOAD_NOT_NEEDED;
    br_buf_reset(&res->message);
    br_buf_printf(&res->message, "%s started after the write and read the new file", what);
    return true;
  }
  int64_t age_ms = (br_realtime_ns() - age_from_ns) / 1000000;
  if (age_ms < 0)
    age_ms = 0;
  if (age_ms >= (int64_t)req->reload->grace_ms)
    return false;
  res->status = BR_RELOAD_DEFER;
  res->retry_after_ms = (unsigned)(req->reload->grace_ms - age_ms);
  br_buf_reset(&res->message);
  br_buf_printf(&res->message, "%s started %lld ms ago; signalling after its %u ms grace", what, (long long)age_ms,
                req->reload->grace_ms);
  return true;
}

bool br_reload_not_running_state(char state, const char *what, struct br_reload_result *res) {
  if (br_proc_state_runs(state))
    return false;
  res->status = BR_RELOAD_TRANSIENT;
  br_buf_reset(&res->message);
  br_buf_printf(&res->message, "%s is %s (state %c); not counted as reloaded", what, br_proc_state_name(state),
                state);
  return true;
}

unsigned br_reload_confirm_budget(const struct br_reload_request *req, bool *bounded) {
  unsigned timeout = req->reload->confirm_timeout_ms;
  *bounded = req->confirm_within_ms && req->confirm_within_ms < timeout;
  return *bounded ? req->confirm_within_ms : timeout;
}
