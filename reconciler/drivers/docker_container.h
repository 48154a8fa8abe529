/* docker_container: what the Docker Engine says about a container, and what
 * the kernel says about its mounts, as plain values. Pure: bytes in, values
 * out; no sockets, no files (driver_docker.c and docker_engine.c do the I/O). */
#ifndef BR_RECONCILER_DOCKER_CONTAINER_H
#define BR_RECONCILER_DOCKER_CONTAINER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "config/config.h"

#define BR_DOCKER_ID_LEN 64
#define BR_DOCKER_NAME_MAX 255

struct br_docker_mount {
  char *type;        /* "bind", "volume", "tmpfs"...; owned */
  char *source;      /* host path; owned */
  char *destination; /* path inside the container; owned */
};

/* The fields of GET /containers/{name}/json the driver decides on. */
struct br_docker_container {
  char id[BR_DOCKER_ID_LEN + 1];
  char name[BR_DOCKER_NAME_MAX + 1]; /* without Docker's leading "/" */
  bool running;
  bool paused;
  bool restarting;
  long pid;                       /* State.Pid: the host pid of its first process, 0 when not running */
  int64_t started_at_ns;          /* State.StartedAt, CLOCK_REALTIME ns; 0 = never started */
  char stop_signal[32];           /* Config.StopSignal as written ("SIGTERM", "15"); "" when unset */
  char restart_policy[32];        /* HostConfig.RestartPolicy.Name: "always", "unless-stopped",
                                     "on-failure"; "" for none ("no") */
  bool tty;                       /* Config.Tty: logs are a raw stream, not multiplexed frames */
  struct br_docker_mount *mounts; /* owned, n_mounts of them */
  size_t n_mounts;
};

/* Parses an inspect answer. Returns 0, or -EINVAL after appending what is
 * missing or malformed to err, or -ENOMEM. out is initialised either way and
 * must be freed with br_docker_container_free. */
int br_docker_container_parse(const char *json, size_t len, struct br_docker_container *out, struct br_buf *err);
void br_docker_container_free(struct br_docker_container *c);

/* RFC 3339 ("2024-05-01T12:00:00.123456789Z", an offset instead of Z, up to 9
 * fraction digits) to nanoseconds since the epoch. Docker writes
 * "0001-01-01T00:00:00Z" for "never", which parses to a negative number.
 * Returns 0 or -EINVAL. */
int br_rfc3339_parse(const char *text, int64_t *ns);

/* The bind or volume mount of c whose Source holds the host path file
 * (longest Source wins, as the kernel's most recent mount would), or NULL.
 * When found and container_path is not NULL, the file's path inside the
 * container is written there. exact tells a mount of file itself (a
 * single-file bind mount when Source is a regular file) from one of a
 * directory above it. */
const struct br_docker_mount *br_docker_mount_for(const struct br_docker_container *c, const char *file,
                                                  bool *exact, struct br_buf *container_path);

/* Finds, in the text of /proc/<pid>/mountinfo, the last mount (the one on
 * top) whose mount point is mount_point, and writes its root (the path of
 * the mounted directory or file inside its filesystem, unescaped) to root.
 * Returns 0, -ENOENT when nothing is mounted there, -EINVAL for a malformed
 * line, -EFBIG/-ENOMEM from root. */
int br_mountinfo_root(const char *mountinfo, size_t len, const char *mount_point, struct br_buf *root);
/* The kernel marks the root of a mount whose source was unlinked on the host
 * (a file replaced by rename, a removed directory) with "//deleted". */
bool br_mount_root_deleted(const char *root);

/* Docker's container name rule: [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 255. */
bool br_docker_name_valid(const char *name);

/* Which sidecar of the slug, if any, the container called name is: its
 * reload driver is docker and its container template expands to name for
 * this slug and project. Returns the sidecar config or NULL. */
const struct br_sidecar_config *br_docker_sidecar_named(const struct br_config *cfg, const char *slug,
                                                        const char *project, const char *name);
/* Whether either sidecar uses the docker driver (then the daemon follows
 * the engine's events). */
bool br_docker_in_use(const struct br_config *cfg);

#endif
