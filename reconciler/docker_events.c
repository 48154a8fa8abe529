/* docker_events: GET /events, filtered to containers that start or unpause,
 * read by one thread with curl's multi interface (so that stopping can wake
 * it), handed to the loop through a uv_async_t. Never blocks the loop. */
#include "reconciler/docker_events.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/strv.h"
#include "reconciler/docker_engine.h"

#define BACKOFF_INITIAL_MS 250
#define BACKOFF_MAX_MS 30000
#define EVENT_LINE_MAX (1024 * 1024)
/* Names waiting for the loop. More than this means the loop is far behind:
 * drop them and say "lost" instead, which makes the daemon look at all. */
#define PENDING_MAX 4096
/* Ask for events from a little before the stream was lost: the engine keeps
 * times in seconds, and a start reported twice only converges once more. */
#define SINCE_SLACK_S 2

struct br_docker_events {
  uv_loop_t *loop;
  uv_async_t async;            /* wakes the loop when names are pending */
  br_docker_started_fn started;
  void *ctx;
  pthread_t thread;
  bool thread_running;
  CURLM *multi;                /* created before the thread, so stop can wake it */
  atomic_bool stopping;
  char socket[PATH_MAX];

  pthread_mutex_t lock;        /* guards pending and lost */
  struct br_strv pending;
  bool lost;

  /* The thread's own. */
  bool down;                   /* the last attempt failed or the stream was lost */
  struct br_buf line;
  bool line_too_long;          /* skipping to the end of an oversize line */
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

static size_t on_bytes(char *bytes, size_t size, size_t n, void *arg) {
  struct br_docker_events *ev = arg;
  size_t total = size * n;
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
  return total;
}

/* Sleeps up to ms, or less when stop wakes the thread. */
static void nap(struct br_docker_events *ev, unsigned ms) {
  if (!atomic_load(&ev->stopping))
    curl_multi_poll(ev->multi, NULL, 0, (int)ms, NULL);
}

/* One connection: follows the stream until it ends, fails or stop is asked.
 * Returns the HTTP status (0 when none came) and the failure in err. */
static long follow(struct br_docker_events *ev, time_t since, struct br_buf *err) {
  char errbuf[CURL_ERROR_SIZE] = "";
  char url[PATH_MAX];
  CURL *h = curl_easy_init();
  if (!h) {
    br_buf_adds(err, "out of memory");
    return 0;
  }
  char *filters = curl_easy_escape(h, "{\"type\":[\"container\"],\"event\":[\"start\",\"unpause\"]}", 0);
  int n = snprintf(url, sizeof url, "http://docker%s/events?filters=%s", BR_DOCKER_API_PREFIX,
                   filters ? filters : "");
  if (since && n > 0 && (size_t)n < sizeof url)
    snprintf(url + n, sizeof url - (size_t)n, "&since=%lld", (long long)since);
  curl_free(filters);
  br_buf_reset(&ev->line);
  ev->line_too_long = false;
  curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, ev->socket);
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_PROXY, "");
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)BR_DOCKER_REQUEST_TIMEOUT_MS);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_bytes);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, ev);
  curl_multi_add_handle(ev->multi, h);
  long status = 0;
  CURLcode result = CURLE_OK;
  bool done = false;
  while (!done && !atomic_load(&ev->stopping)) {
    int running = 0;
    curl_multi_perform(ev->multi, &running);
    if (!status) {
      curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
      if (status == 200 && ev->down)
        br_log(BR_LOG_INFO, NULL, "following Docker events on %s again", ev->socket);
      if (status == 200)
        ev->down = false;
    }
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(ev->multi, &left)))
      if (msg->msg == CURLMSG_DONE) {
        done = true;
        result = msg->data.result;
      }
    if (!done)
      curl_multi_poll(ev->multi, NULL, 0, 60000, NULL);
  }
  if (!status)
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  if (done && result != CURLE_OK)
    br_buf_printf(err, "%s", errbuf[0] ? errbuf : curl_easy_strerror(result));
  else if (done && status != 200)
    br_buf_printf(err, "the engine answered HTTP %ld", status);
  else if (done)
    br_buf_adds(err, "the engine closed the stream");
  curl_multi_remove_handle(ev->multi, h);
  curl_easy_cleanup(h);
  return status;
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
  if (ev->multi)
    curl_multi_cleanup(ev->multi);
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
  if (!ev || br_docker_global_init() || !(ev->multi = curl_multi_init())) {
    free(ev);
    br_buf_free(&socket);
    return -ENOMEM;
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
    curl_multi_cleanup(ev->multi);
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
    curl_multi_wakeup(ev->multi);
    pthread_join(ev->thread, NULL);
    ev->thread_running = false;
  }
  if (!uv_is_closing((uv_handle_t *)&ev->async))
    uv_close((uv_handle_t *)&ev->async, on_closed);
}
