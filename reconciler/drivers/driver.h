/* driver: the table from a sidecar's configured driver to its
 * implementation. converge.c calls br_driver_reload and never looks at a
 * driver's kind; each driver lives in its own file and knows only reload.h,
 * so adding one is a new file and a row in driver.c. */
#ifndef BR_RECONCILER_DRIVERS_DRIVER_H
#define BR_RECONCILER_DRIVERS_DRIVER_H

#include "reconciler/drivers/reload.h"

/* Runs the configured driver. Always fills res; returns 0 unless memory ran out. */
int br_driver_reload(const struct br_reload_request *req, struct br_reload_result *res);

/* The drivers, one per file. */
extern const struct br_driver_ops br_driver_signal; /* signal.c */
extern const struct br_driver_ops br_driver_exec;   /* exec.c */
extern const struct br_driver_ops br_driver_docker; /* docker.c */

#endif
