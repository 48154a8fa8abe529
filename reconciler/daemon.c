/* daemon: placeholder until the daemon lands (issue 3); says so plainly. */
#include "reconciler/daemon.h"

#include <stdio.h>

int br_daemon_run(struct br_config *cfg, const char *config_path, const char *state_dir_override) {
  (void)cfg, (void)config_path, (void)state_dir_override;
  fputs("bottle-reconciler: run: the daemon is not built yet; use `once`\n", stderr);
  return 1;
}

int br_daemon_client(const struct br_config *cfg, const char *command, const char *slug, bool json) {
  (void)cfg, (void)slug, (void)json;
  fprintf(stderr, "bottle-reconciler: %s: the daemon is not built yet\n", command);
  return 1;
}
