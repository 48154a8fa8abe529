/* control: a tiny request/response protocol on a unix socket. Each client
 * sends one line and reads until the daemon closes the connection. */
#include "reconciler/daemon/control.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define REQUEST_MAX 1024

struct br_control_conn {
  uv_pipe_t pipe;
  struct br_control *control;
  struct br_buf request;
  struct br_buf response;
  uv_write_t write;
  bool deferred;
};

static void conn_closed(uv_handle_t *handle) {
  struct br_control_conn *c = handle->data;
  br_buf_free(&c->request);
  br_buf_free(&c->response);
  free(c);
}

static void conn_written(uv_write_t *req, int status) {
  (void)status;
  struct br_control_conn *c = req->data;
  uv_close((uv_handle_t *)&c->pipe, conn_closed);
}

static void send_response(struct br_control_conn *c) {
  if (!c->response.data)
    br_buf_adds(&c->response, "{}\n");
  uv_buf_t out = uv_buf_init(c->response.data, (unsigned)c->response.len);
  c->write.data = c;
  if (uv_write(&c->write, (uv_stream_t *)&c->pipe, &out, 1, conn_written))
    uv_close((uv_handle_t *)&c->pipe, conn_closed);
}

static void conn_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
  (void)handle;
  (void)suggested;
  static char scratch[REQUEST_MAX]; /* the loop is single-threaded; data is copied out at once */
  *buf = uv_buf_init(scratch, sizeof scratch);
}

static void conn_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  struct br_control_conn *c = stream->data;
  if (nread < 0) {
    uv_close((uv_handle_t *)&c->pipe, conn_closed);
    return;
  }
  if (br_buf_add(&c->request, buf->base, (size_t)nread)) {
    uv_close((uv_handle_t *)&c->pipe, conn_closed); /* over-long request */
    return;
  }
  char *nl = c->request.data ? memchr(c->request.data, '\n', c->request.len) : NULL;
  if (!nl)
    return;
  *nl = '\0';
  uv_read_stop(stream);
  c->control->handle(c->control->ctx, c, c->request.data, &c->response);
  if (!c->deferred)
    send_response(c);
}

void br_control_defer(struct br_control_conn *c) { c->deferred = true; }

void br_control_answer(struct br_control_conn *c, const char *answer) {
  br_buf_reset(&c->response);
  br_buf_printf(&c->response, "%s\n", answer);
  send_response(c);
}

static void on_connection(uv_stream_t *server, int status) {
  struct br_control *control = server->data;
  if (status < 0)
    return;
  struct br_control_conn *c = calloc(1, sizeof *c);
  if (!c)
    return;
  c->control = control;
  br_buf_init(&c->request, REQUEST_MAX);
  br_buf_init(&c->response, 64 * 1024 * 1024);
  uv_pipe_init(server->loop, &c->pipe, 0);
  c->pipe.data = c;
  if (uv_accept(server, (uv_stream_t *)&c->pipe) || uv_read_start((uv_stream_t *)&c->pipe, conn_alloc, conn_read))
    uv_close((uv_handle_t *)&c->pipe, conn_closed);
}

int br_control_start(struct br_control *c, uv_loop_t *loop, const char *path, br_control_handler_fn handle,
                     void *ctx) {
  memset(c, 0, sizeof *c);
  if (strlen(path) >= sizeof c->path)
    return -ENAMETOOLONG;
  snprintf(c->path, sizeof c->path, "%s", path);
  c->handle = handle;
  c->ctx = ctx;
  int rc = uv_pipe_init(loop, &c->server, 0);
  if (rc)
    return rc;
  c->server.data = c;
  /* A socket file left by a killed daemon would make bind fail. */
  unlink(path);
  /* The socket is created with the umask's mode: tighten it before bind so
   * no other user can ever connect, even for an instant. */
  mode_t old = umask(0077);
  rc = uv_pipe_bind(&c->server, path);
  umask(old);
  if (!rc)
    rc = uv_listen((uv_stream_t *)&c->server, 16, on_connection);
  if (!rc)
    chmod(path, 0600);
  return rc;
}

static void server_closed(uv_handle_t *handle) {
  struct br_control *c = handle->data;
  if (c->on_closed)
    c->on_closed(c);
}

void br_control_close(struct br_control *c, void (*on_closed)(struct br_control *c)) {
  c->on_closed = on_closed;
  unlink(c->path);
  uv_close((uv_handle_t *)&c->server, server_closed);
}

int br_control_request(const char *path, const char *request, unsigned timeout_ms, struct br_buf *response) {
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof addr.sun_path)
    return -ENAMETOOLONG;
  snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  int rc = 0;
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
    rc = -errno;
    goto out;
  }
  size_t len = strlen(request);
  if (write(fd, request, len) != (ssize_t)len || write(fd, "\n", 1) != 1) {
    rc = -errno;
    goto out;
  }
  char chunk[65536];
  for (;;) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n = poll(&p, 1, timeout_ms > INT_MAX ? INT_MAX : (int)timeout_ms);
    if (n < 0 && errno == EINTR)
      continue;
    if (n == 0) {
      rc = -ETIMEDOUT;
      break;
    }
    ssize_t got = read(fd, chunk, sizeof chunk);
    if (got < 0 && errno == EINTR)
      continue;
    if (got < 0) {
      rc = -errno;
      break;
    }
    if (got == 0)
      break;
    if ((rc = br_buf_add(response, chunk, (size_t)got)))
      break;
  }
out:
  close(fd);
  return rc;
}
