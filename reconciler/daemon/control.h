/* control: the daemon's control socket (a unix stream socket, mode 0600):
 * one request line in, one JSON document out. Transport only; what a request
 * means is the daemon's business. */
#ifndef BR_RECONCILER_CONTROL_H
#define BR_RECONCILER_CONTROL_H

#include <uv.h>

#include "common/buf.h"

/* One client connection, for an answer given later (br_control_defer). */
struct br_control_conn;

/* Answers one request line (without its newline) into response, or defers
 * the answer (br_control_defer) and gives it later with br_control_answer.
 * Loop thread. */
typedef void (*br_control_handler_fn)(void *ctx, struct br_control_conn *conn, const char *request,
                                      struct br_buf *response);

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
/* Called by a handler: the answer comes later, from br_control_answer. The
 * connection stays open until then. */
void br_control_defer(struct br_control_conn *conn);
/* The deferred answer (a line of JSON); closes the connection. */
void br_control_answer(struct br_control_conn *conn, const char *answer);

/* Stops listening and removes the socket file. */
void br_control_close(struct br_control *c, void (*on_closed)(struct br_control *c));

/* Client side (blocking, for the CLI): sends request, reads the whole answer
 * into response, waiting at most timeout_ms between reads. Returns 0,
 * -ECONNREFUSED/-ENOENT when no daemon listens, -ETIMEDOUT, or -errno. */
int br_control_request(const char *path, const char *request, unsigned timeout_ms, struct br_buf *response);

#endif
