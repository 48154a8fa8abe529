/* status: the control protocol's content: what `status` answers and how the
 * client prints it, and the client side of `status` and `resync`. The
 * transport is control.c; what a request makes the daemon do is daemon.c. */
#ifndef BR_RECONCILER_DAEMON_STATUS_H
#define BR_RECONCILER_DAEMON_STATUS_H

#include <jansson.h>
#include <stdbool.h>

#include "config/config.h"
#include "reconciler/daemon/queue.h"
#include "reconciler/daemon/tracked.h"

/* The answer to "status" (slug NULL: every bottle, sorted by slug):
 * {"ready", "counts": {phase: n}, "slugs": [{slug, phase, attempts,
 * next_try, last_converge, desired_hash, message, credentials}]}, where
 * credentials ({token_env: [hosts]}) and expiring ([{host, path_allowlist
 * or every_path, expires, fragment}], soonest first) are from the last
 * converge that loaded the desired state, absent until one did. New
 * reference. */
json_t *br_status_answer(const struct br_tracked_table *bottles, const struct br_queue *q, const char *slug,
                         bool ready);

/* `status` and `resync`: asks a running daemon over its control socket and
 * prints the answer. Returns the exit code. */
int br_daemon_client(const struct br_config *cfg, const char *command, const char *slug, bool json);

#endif
