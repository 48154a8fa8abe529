/* daemon: `bottle-reconciler run` and the control-socket client. It decides
 * when a slug converges, never how (that is converge.c). */
#ifndef BR_RECONCILER_DAEMON_H
#define BR_RECONCILER_DAEMON_H

#include <stdbool.h>

#include "config/config.h"

/* Runs until SIGTERM/SIGINT; returns the exit code. cfg is taken over (the
 * daemon frees and replaces it on SIGHUP); config_path and state_dir_override
 * are kept to re-read it. */
int br_daemon_run(struct br_config *cfg, const char *config_path, const char *state_dir_override);

#endif
