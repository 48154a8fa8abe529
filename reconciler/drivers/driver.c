/* driver: dispatch from a sidecar's configured driver to its implementation
 * through one table. Adding a driver means a new file and a row here, not a
 * change to converge. */
#include "reconciler/drivers/driver.h"

static int none_reload(const struct br_reload_request *req, struct br_reload_result *res) {
  (void)req;
  res->status = BR_RELOAD_NOT_NEEDED;
  return br_buf_adds(&res->message, "driver none: the sidecar watches its file");
}

static const struct br_driver_ops driver_none = {.name = "none", .reload = none_reload};

static const struct br_driver_ops *const drivers[] = {
    [BR_DRIVER_NONE] = &driver_none,
    [BR_DRIVER_SIGNAL] = &br_driver_signal,
    [BR_DRIVER_EXEC] = &br_driver_exec,
    [BR_DRIVER_DOCKER] = &br_driver_docker,
};

int br_driver_reload(const struct br_reload_request *req, struct br_reload_result *res) {
  br_buf_reset(&res->message);
  res->retry_after_ms = 0;
  res->confirmed = false;
  unsigned kind = req->reload->driver;
  if (kind >= sizeof drivers / sizeof *drivers || !drivers[kind]) {
    res->status = BR_RELOAD_PERMANENT;
    br_buf_adds(&res->message, "unknown reload driver");
    return 0;
  }
  return drivers[kind]->reload(req, res);
}
