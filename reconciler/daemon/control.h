/* control: the daemon's control socket (a unix stream socket, mode 0600):
 * one request line in, one JSON document out. Transport only; what a request
 * means is the daemon's business. */
#ifndef BR_RECONCILER_CONTROL_H
#define BR_RECONCILER_CONTROL_H

#include <uv.h>

#include "common/buf.h"

/* Answers one request line (without its newline) into response. Loop thread. */
typedef void (*br_control_handler_fn)(void *ctx, const char *request, struct br_buf *response);

struct br_control {
  uv_pipe_t server;
  br_control_handler_fn handle;
  void *ctx;
  char path[108]; /* sun_path */
  void (*on_closed)(struct br_control *c);
};

/* Listens on path (a stale socket file is replaced). Returns 0 or -errno. */
int br_control_start(struct br_control *c, uv_loop_t *loop, const char *path, br_control_handler_fn handle,
                     void *ctx);
/* Stops listening and removes the socket file. */
void br_control_close(struct br_control *c, void (*on_closed)(struct br_control *c));

/* Client side (blocking, for the CLI): sends request, reads the whole answer
 * into response. Returns 0, -ECONNREFUSED/-ENOENT when no daemon listens, or
 * -errno. */
int br_control_request(const char *path, const char *request, struct br_buf *response);

#endif
