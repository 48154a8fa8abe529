/* driver_docker: placeholder until the Docker Engine driver lands (issue 4).
 * It refuses plainly instead of pretending to signal anything. */
#include "reconciler/driver.h"

int br_driver_docker_reload(const struct br_reload_request *req, struct br_reload_result *res) {
  (void)req;
  res->status = BR_RELOAD_PERMANENT;
  br_buf_adds(&res->message, "the docker reload driver is not implemented in this build; "
                             "configure driver signal, exec or none");
  return 0;
}
