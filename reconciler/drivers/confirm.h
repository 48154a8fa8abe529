/* confirm: after a reload was delivered, waits until the sidecar reports that
 * it runs the bytes of its live file: a status file whose "sha256" is their
 * hash, or a log whose latest load line carries it. By content hash, never
 * by counting: SIGHUPs sent back to back can arrive as one. For the signal
 * and exec drivers (docker reads the container's log, docker_engine.h). It
 * blocks up to the timeout: drivers run on worker threads. */
#ifndef BR_RECONCILER_DRIVERS_CONFIRM_H
#define BR_RECONCILER_DRIVERS_CONFIRM_H

#include "reconciler/drivers/reload.h"

/* Whether the request's reload has a confirm with a status or log file. */
bool br_confirm_configured(const struct br_reload_request *req);

/* Call with res OK after the sidecar was told. Waits up to the confirm's
 * timeout_ms for the sidecar to report the SHA-256 of req->file. Confirmed:
 * res stays OK, res->confirmed is set and the message says so. Otherwise
 * res becomes TRANSIENT: "<what was done>, but SIDECAR did not confirm
 * sha256 X within N ms; it reports Y" (PERMANENT when the path template does
 * not expand). Returns 0, or -ENOMEM. */
int br_confirm_reload(const struct br_reload_request *req, struct br_reload_result *res);

#endif
