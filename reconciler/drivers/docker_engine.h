/* docker_engine: requests to the Docker Engine API over its unix socket
 * (common/http_unix), each bounded by a timeout. Every call blocks: use them
 * on worker threads or the events thread, never on the loop thread. */
#ifndef BR_RECONCILER_DOCKER_ENGINE_H
#define BR_RECONCILER_DOCKER_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "common/buf.h"

/* API 1.41 is Docker 20.10 (Debian 12's docker.io); later engines accept it. */
#define BR_DOCKER_API_PREFIX "/v1.41"
#define BR_DOCKER_DEFAULT_SOCKET "/var/run/docker.sock"
/* Inspect takes about a millisecond; an engine that needs longer than this
 * for one request is treated as unreachable for now. */
#define BR_DOCKER_REQUEST_TIMEOUT_MS 5000

/* The engine's socket: the path of DOCKER_HOST=unix://PATH (docker_host is
 * the variable's value, NULL or "" when unset), else /var/run/docker.sock.
 * Other schemes (tcp://, ssh://) are -EINVAL with a line in err. */
int br_docker_socket(const char *docker_host, struct br_buf *path, struct br_buf *err);

struct br_docker_answer {
  long status;        /* HTTP status */
  struct br_buf body; /* at most 4 MiB */
};

void br_docker_answer_init(struct br_docker_answer *ans);
void br_docker_answer_free(struct br_docker_answer *ans);

/* One request (method GET or POST, path below the API prefix, e.g.
 * "/containers/x/json"). Returns 0 when the engine answered, whatever the
 * status; otherwise -ECONNREFUSED (nothing to connect to on the socket:
 * no file, no listener, no permission), -ETIMEDOUT, -EFBIG (answer too
 * large), -ENOMEM or -EIO (a malformed or cut-off answer), with a line in err
 * that names the socket. */
int br_docker_request(const char *socket, const char *method, const char *path, unsigned timeout_ms,
                      struct br_docker_answer *ans, struct br_buf *err);

/* Appends the engine's own words for a failed request ({"message": ...}),
 * or the status when the body has none. */
void br_docker_answer_describe(const struct br_docker_answer *ans, struct br_buf *out);

/* Follows container id's log (stdout and stderr) from since_ns on, until a
 * line contains needle or timeout_ms pass. tty: the container has a TTY, so
 * the log is raw bytes rather than Docker's multiplexed frames. Returns 0
 * when seen, -ETIMEDOUT, -ENODATA when the log ended first (the container
 * stopped), -EPROTO with the engine's message in err when it refused, or a
 * transport error as br_docker_request. */
int br_docker_log_wait(const char *socket, const char *id, bool tty, int64_t since_ns, const char *needle,
                       unsigned timeout_ms, struct br_buf *err);

#endif
