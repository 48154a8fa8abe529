/* docker_events: GET /events, filtered to containers that start or unpause,
 * read by one thread that polls the socket and an eventfd (so that stopping
 * can wake it), handed to the loop through a uv_async_t. Never blocks the loop. */
#include "reconciler/drivers/docker_events.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/http_unix.h"
#include "common/log.h"
#include "common/strv.h"
#include "reconciler/drivers/docker_engine.h"

#define BACKOFF_INITIAL_MS 250
#define BACKOFF_MAX_MS 30000
#define EVENT_LINE_MAX (1024 * 1024)
/* Names waiting for the loop. More than this means the loop is far behind:
 * drop them and say "lost" instead, which makes the daemon look at all. */
#define PENDING_MAX 4096
/* Ask for events from a little before the stream was lost: the engine keeps
 * times in seconds, and a start reported twice only converges once more. */
#define SINCE_SLACK_S 2
/* Only what can bring a sidecar up with an old file: starts and unpauses. */
#define EVENTS_FILTER "{\"type\":[\"container\"],\"event\":[\"start\",\"unpause\"]}"
#define TARGET_MAX 512

struct br_docker_events {
  uv_loop_t *loop;
  uv_async_t async; /* wakes the loop when names are pending */
  br_docker_started_fn started;
  void *ctx;
  pthread_t thread;
  bool thread_running;
  int wake_fd; /* an eventfd: stop makes it readable, which wakes the thread */
  atomic_bool stopping;
  char socket[PATH_MAX];

  pthread_mutex_t lock; /* guards pending and lost */
  struct br_strv pending;
  bool lost;

  /* The thread's own. */
  bool down; /* the last attempt failed or the stream was lost */
  struct br_buf line;
  bool line_too_long; /* skipping to the end of an oversize line */
};

static void push(struct br_docker_events *ev, const char *name) {
  pthread_mutex_lock(&ev->lock);
  if (ev->pending.n >= PENDING_MAX || br_strv_add(&ev->pending, name))
    ev->lost = true;
  pthread_mutex_unlock(&ev->lock);
  uv_async_send(&ev->async);
}

/* {"Type":"container","Action":"start","Actor":{"Attributes":{"name":"x"}},...} */
static void handle_line(struct br_docker_events *ev, const char *text, size_t len) {
  json_t *doc = json_loadb(text, len, 0, NULL);
  const char *type = json_string_value(json_object_get(doc, "Type"));
  const char *action = json_string_value(json_object_get(doc, "Action"));
  json_t *attributes = json_object_get(json_object_get(doc, "Actor"), "Attributes");
  const char *name = json_string_value(json_object_get(attributes, "name"));
  if (type && action && name && strcmp(type, "container") == 0 &&
      (strcmp(action, "start") == 0 || strcmp(action, "unpause") == 0))
    push(ev, name);
  json_decref(doc);
}

/* The head, then the stream's pieces: newline-delimited JSON objects. */
static int on_piece(void *arg, int status, const char *bytes, size_t total) {
  struct br_docker_events *ev = arg;
  if (status != 200)
    return BR_HTTP_STOP; /* the engine's reason is not an event: the status says enough */
  if (!bytes) {
    if (ev->down)
      br_log(BR_LOG_INFO, NULL, "following Docker events on %s again", ev->socket);
    ev->down = false;
    return 0;
  }
  for (size_t i = 0; i < total; i++) {
    if (bytes[i] == '\n') {
      if (!ev->line_too_long && ev->line.len)
        handle_line(ev, ev->line.data, ev->line.len);
      br_buf_reset(&ev->line);
      ev->line_too_long = false;
    } else if (!ev->line_too_long && br_buf_add(&ev->line, &bytes[i], 1)) {
      ev->line_too_long = true;
      br_buf_reset(&ev->line);
    }
  }
  return 0;
}

/* Sleeps up to ms, or less when stop wakes the thread. */
static void nap(struct br_docker_events *ev, unsigned ms) {
  struct pollfd wake = {.fd = ev->wake_fd, .events = POLLIN};
  if (!atomic_load(&ev->stopping))
    poll(&wake, 1, (int)ms); /* an interruption only shortens the nap */
}

/* One connection: follows the stream until it ends, fails or stop is asked.
 * Returns the HTTP status (0 when none came) and the failure in err. The
 * stream has no deadline of its own: an idle engine sends nothing for hours,
 * and stop wakes the wait through wake_fd. */
static long follow(struct br_docker_events *ev, time_t since, struct br_buf *err) {
  struct br_buf target;
  br_buf_init(&target, TARGET_MAX);
  if (br_buf_adds(&target, BR_DOCKER_API_PREFIX "/events?filters=") || br_http_escape(EVENTS_FILTER, &target) ||
      (since && br_buf_printf(&target, "&since=%lld", (long long)since))) {
    br_buf_free(&target);
    br_buf_adds(err, "out of memory");
    return 0;
  }
  br_buf_reset(&ev->line);
  ev->line_too_long = false;
  struct br_http_request req = {
      .method = "GET",
      .target = target.data,
      .host = "docker",
      .connect_timeout_ms = BR_DOCKER_REQUEST_TIMEOUT_MS,
      .wake_fd = ev->wake_fd,
      .on_piece = on_piece,
      .ctx = ev,
  };
  struct br_http_result res;
  int rc = br_http_unix_request(ev->socket, &req, &res);
  br_buf_free(&target);
  if (rc == -ECANCELED)
    return res.status; /* stop asked: nobody reads err */
  if (rc)
    br_http_describe(rc, &res, err);
  else if (res.status != 200)
    br_buf_printf(err, "the engine answered HTTP %d", res.status);
  else
    br_buf_adds(err, "the engine closed the stream");
  return res.status;
}

static void *thread_main(void *arg) {
  struct br_docker_events *ev = arg;
  unsigned backoff = BACKOFF_INITIAL_MS;
  time_t since = 0; /* 0: only what happens from now on */
  struct br_buf err;
  br_buf_init(&err, 4096);
  while (!atomic_load(&ev->stopping)) {
    br_buf_reset(&err);
    time_t connected_at = time(NULL);
    long status = follow(ev, since, &err);
    if (atomic_load(&ev->stopping))
      break;
    const char *why = err.data ? err.data : "no answer";
    if (status == 200) {
      /* It was live until now: resume from here, whatever happens next. */
      since = time(NULL) - SINCE_SLACK_S;
      backoff = BACKOFF_INITIAL_MS;
      br_log(BR_LOG_WARN, NULL, "Docker events on %s: %s; following again from %lld", ev->socket, why,
             (long long)since);
      ev->down = true;
      /* An engine that ends every stream at once must not make us spin. */
      if (time(NULL) - connected_at < 1)
        nap(ev, 1000);
      continue;
    }
    if (!ev->down)
      br_log(BR_LOG_WARN, NULL,
             "cannot follow Docker events on %s: %s; retrying with backoff (until then a sidecar container "
             "that starts is noticed by the periodic resync)",
             ev->socket, why);
    else
      br_log(BR_LOG_DEBUG, NULL, "Docker events on %s: %s", ev->socket, why);
    ev->down = true;
    nap(ev, backoff);
    backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
  }
  br_buf_free(&err);
  return NULL;
}

static void on_async(uv_async_t *async) {
  struct br_docker_events *ev = async->data;
  pthread_mutex_lock(&ev->lock);
  struct br_strv names = ev->pending;
  bool lost = ev->lost;
  br_strv_init(&ev->pending);
  ev->lost = false;
  pthread_mutex_unlock(&ev->lock);
  if (lost)
    ev->started(ev->ctx, NULL);
  for (size_t i = 0; i < names.n && !lost; i++)
    ev->started(ev->ctx, names.v[i]);
  br_strv_free(&names);
}

static void on_closed(uv_handle_t *handle) {
  struct br_docker_events *ev = handle->data;
  br_strv_free(&ev->pending);
  br_buf_free(&ev->line);
  pthread_mutex_destroy(&ev->lock);
  close(ev->wake_fd);
  free(ev);
}

int br_docker_events_start(struct br_docker_events **out, uv_loop_t *loop, br_docker_started_fn started,
                           void *ctx) {
  *out = NULL;
  struct br_buf socket, err;
  br_buf_init(&socket, PATH_MAX - 1);
  br_buf_init(&err, 1024);
  int rc = br_docker_socket(getenv("DOCKER_HOST"), &socket, &err);
  if (rc) {
    br_log(BR_LOG_ERROR, NULL, "Docker events not followed: %s", err.data);
    br_buf_free(&socket);
    br_buf_free(&err);
    return rc;
  }
  br_buf_free(&err);
  struct br_docker_events *ev = calloc(1, sizeof *ev);
  if (!ev) {
    br_buf_free(&socket);
    return -ENOMEM;
  }
  if ((ev->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
    rc = -errno;
    free(ev);
    br_buf_free(&socket);
    return rc;
  }
  snprintf(ev->socket, sizeof ev->socket, "%s", socket.data);
  br_buf_free(&socket);
  ev->loop = loop;
  ev->started = started;
  ev->ctx = ctx;
  br_strv_init(&ev->pending);
  br_buf_init(&ev->line, EVENT_LINE_MAX);
  pthread_mutex_init(&ev->lock, NULL);
  ev->async.data = ev;
  if ((rc = uv_async_init(loop, &ev->async, on_async))) {
    close(ev->wake_fd);
    pthread_mutex_destroy(&ev->lock);
    free(ev);
    return rc;
  }
  if ((rc = -pthread_create(&ev->thread, NULL, thread_main, ev))) {
    uv_close((uv_handle_t *)&ev->async, on_closed);
    return rc;
  }
  ev->thread_running = true;
  *out = ev;
  return 0;
}

void br_docker_events_stop(struct br_docker_events *ev) {
  if (!ev)
    return;
  atomic_store(&ev->stopping, true);
  if (ev->thread_running) {
    /* Stays readable (nobody reads it), so every wait from here on ends. */
    uint64_t one = 1;
    if (write(ev->wake_fd, &one, sizeof one) < 0)
      br_log(BR_LOG_ERROR, NULL, "cannot wake the Docker events thread: %s", strerror(errno));
    pthread_join(ev->thread, NULL);
    ev->thread_running = false;
  }
  if (!uv_is_closing((uv_handle_t *)&ev->async))
    uv_close((uv_handle_t *)&ev->async, on_closed);
}
