/* driver: dispatch from a sidecar's configured driver to its implementation.
 * Adding a driver means a new file and a case here, not a change to converge. */
#include "reconciler/drivers/driver.h"

#include <errno.h>

#include <string.h>

void br_reload_result_init(struct br_reload_result *res) {
  res->status = BR_RELOAD_OK;
  res->retry_after_ms = 0;
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

int br_driver_expand(const struct br_reload_request *req, const char *tmpl, struct br_buf *out) {
  const struct br_config *cfg = req->config;
  const struct br_sidecar_config *sc = strcmp(req->sidecar, "pipelock") == 0 ? &cfg->pipelock : &cfg->egress;
  br_buf_reset(out);
  return br_config_expand_sidecar(cfg, sc, tmpl, req->slug, req->project, NULL, out);
}

int br_driver_reload(const struct br_reload_request *req, struct br_reload_result *res) {
  br_buf_reset(&res->message);
  res->retry_after_ms = 0;
  switch (req->reload->driver) {
  case BR_DRIVER_NONE:
    res->status = BR_RELOAD_NOT_NEEDED;
    br_buf_adds(&res->message, "driver none: the sidecar watches its file");
    return 0;
  case BR_DRIVER_SIGNAL:
    return br_driver_signal_reload(req, res);
  case BR_DRIVER_EXEC:
    return br_driver_exec_reload(req, res);
  case BR_DRIVER_DOCKER:
    return br_driver_docker_reload(req, res);
  }
  res->status = BR_RELOAD_PERMANENT;
  br_buf_adds(&res->message, "unknown reload driver");
  return 0;
}
