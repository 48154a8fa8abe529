/* docker_engine: the Engine API over the engine's unix socket (common/http_unix).
 * It knows the wire (paths, statuses, log framing), not what the driver decides. */
#include "reconciler/drivers/docker_engine.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "common/http_unix.h"

#define ANSWER_MAX (4u * 1024 * 1024)
/* The longest text a log is searched for (a SHA-256 in hex is 64). */
#define NEEDLE_MAX 128
/* The API prefix and a path below it: container names and ids are short. */
#define TARGET_MAX 1024
/* What the engine said when it refused to show a log: its message is short. */
#define REFUSAL_MAX (64 * 1024)

int br_docker_socket(const char *docker_host, struct br_buf *path, struct br_buf *err) {
  br_buf_reset(path);
  if (!docker_host || !*docker_host)
    return br_buf_adds(path, BR_DOCKER_DEFAULT_SOCKET);
  if (strncmp(docker_host, "unix://", 7) == 0 && docker_host[7] == '/')
    return br_buf_adds(path, docker_host + 7);
  br_buf_printf(err,
                "DOCKER_HOST=%.200s: only unix:///PATH is supported (the daemon signals local "
                "containers through the engine's socket)",
                docker_host);
  return -EINVAL;
}

void br_docker_answer_init(struct br_docker_answer *ans) {
  ans->status = 0;
  br_buf_init(&ans->body, ANSWER_MAX);
}

void br_docker_answer_free(struct br_docker_answer *ans) { br_buf_free(&ans->body); }

/* Every request is one connection to the socket: no pool to keep, and the
 * engine answers inspect in about a millisecond. Host is what the engine's
 * own client sends; the engine does not look at it. */
static int engine_request(const char *socket, const char *method, const char *path, unsigned timeout_ms,
                          br_http_piece_fn on_piece, void *ctx, struct br_http_result *res) {
  char target[TARGET_MAX];
  int n = snprintf(target, sizeof target, "%s%s", BR_DOCKER_API_PREFIX, path);
  if (n < 0 || (size_t)n >= sizeof target) {
    *res = (struct br_http_result){.why = "the request's path is over 1 KiB"};
    return -EINVAL;
  }
  struct br_http_request req = {
      .method = method,
      .target = target,
      .host = "docker",
      .timeout_ms = timeout_ms,
      .wake_fd = -1,
      .on_piece = on_piece,
      .ctx = ctx,
  };
  return br_http_unix_request(socket, &req, res);
}

static int transport_error(int rc, const struct br_http_result *res, const char *socket, struct br_buf *err) {
  if (rc == -ENOMEM)
    return -ENOMEM;
  if (rc == -ETIMEDOUT) {
    br_buf_printf(err, "Docker engine on %s did not answer in time: ", socket);
    br_http_describe(rc, res, err);
    return -ETIMEDOUT;
  }
  /* Whatever kept us from connecting (no socket file, nobody listening, no
   * permission) means the same to the driver: no engine to ask for now. */
  if (!res->connected && rc != -EINVAL) {
    br_buf_printf(err, "Docker engine not reachable on %s: %s", socket, strerror(-rc));
    return -ECONNREFUSED;
  }
  br_buf_printf(err, "Docker engine on %s: ", socket);
  br_http_describe(rc, res, err);
  return -EIO;
}

static int collect(void *ctx, int status, const char *piece, size_t len) {
  (void)status;
  return br_buf_add(ctx, piece, len); /* -EFBIG past ANSWER_MAX ends the transfer */
}

int br_docker_request(const char *socket, const char *method, const char *path, unsigned timeout_ms,
                      struct br_docker_answer *ans, struct br_buf *err) {
  struct br_http_result res;
  br_buf_reset(&ans->body);
  ans->status = 0;
  int rc = engine_request(socket, method, path, timeout_ms, collect, &ans->body, &res);
  if (rc == -EFBIG) {
    br_buf_printf(err, "Docker engine answer to %s %s is over %u bytes", method, path, ANSWER_MAX);
    return -EFBIG;
  }
  if (rc)
    return transport_error(rc, &res, socket, err);
  ans->status = res.status;
  return 0;
}

void br_docker_answer_describe(const struct br_docker_answer *ans, struct br_buf *out) {
  json_t *doc = ans->body.len ? json_loadb(ans->body.data, ans->body.len, 0, NULL) : NULL;
  const char *message = json_string_value(json_object_get(doc, "message"));
  if (message)
    br_buf_printf(out, "%.300s (HTTP %ld)", message, ans->status);
  else
    br_buf_printf(out, "HTTP %ld", ans->status);
  json_decref(doc);
}

/* ---- following a log ---------------------------------------------------- */

struct log_scan {
  bool tty;
  const char *needle; /* at most NEEDLE_MAX bytes, without a newline */
  size_t needle_len;
  bool found;
  char window[NEEDLE_MAX]; /* the last needle_len bytes of the stream */
  size_t window_len;
  unsigned char header[8]; /* a frame header being read, when multiplexed */
  size_t header_have;
  size_t frame_left;     /* payload bytes left in the current frame */
  struct br_buf refusal; /* a non-200 answer's body */
  int status;
};

/* The needle (a hash) holds no newline, so it can only ever match within one
 * line: a window over the demultiplexed bytes is all the state needed. */
static void scan_bytes(struct log_scan *s, const char *p, size_t n) {
  for (size_t i = 0; i < n && !s->found; i++) {
    if (s->window_len == s->needle_len) {
      memmove(s->window, s->window + 1, s->needle_len - 1);
      s->window_len--;
    }
    s->window[s->window_len++] = p[i];
    s->found = s->window_len == s->needle_len && memcmp(s->window, s->needle, s->needle_len) == 0;
  }
}

/* Docker multiplexes a non-TTY container's stdout and stderr into frames:
 * an 8-byte header (stream, 3 zero bytes, big-endian payload length), then
 * the payload. The body arrives in arbitrary slices of that. */
static int log_piece(void *ctx, int status, const char *bytes, size_t total) {
  struct log_scan *s = ctx;
  s->status = status;
  if (status != 200) {
    br_buf_add(&s->refusal, bytes, total); /* past its maximum the rest is dropped */
    return 0;
  }
  if (s->tty) {
    scan_bytes(s, bytes, total);
  } else {
    for (size_t i = 0; i < total && !s->found;) {
      if (s->frame_left == 0) {
        s->header[s->header_have++] = (unsigned char)bytes[i++];
        if (s->header_have == 8) {
          s->frame_left = (size_t)s->header[4] << 24 | (size_t)s->header[5] << 16 | (size_t)s->header[6] << 8 |
                          (size_t)s->header[7];
          s->header_have = 0;
        }
        continue;
      }
      size_t take = total - i < s->frame_left ? total - i : s->frame_left;
      scan_bytes(s, bytes + i, take);
      s->frame_left -= take;
      i += take;
    }
  }
  return s->found ? BR_HTTP_STOP : 0; /* we have what we came for: the stream is closed */
}

int br_docker_log_wait(const char *socket, const char *id, bool tty, int64_t since_ns, const char *needle,
                       unsigned timeout_ms, struct br_buf *err) {
  char path[256];
  if (since_ns < 0)
    since_ns = 0;
  snprintf(path, sizeof path, "/containers/%s/logs?follow=1&stdout=1&stderr=1&since=%lld.%09lld", id,
           (long long)(since_ns / 1000000000), (long long)(since_ns % 1000000000));
  struct log_scan s = {.tty = tty, .needle = needle, .needle_len = strlen(needle)};
  if (!s.needle_len || s.needle_len > NEEDLE_MAX || strchr(needle, '\n'))
    return -EINVAL;
  br_buf_init(&s.refusal, REFUSAL_MAX);
  struct br_http_result res;
  int rc = engine_request(socket, "GET", path, timeout_ms, log_piece, &s, &res);
  if (s.found) {
    rc = 0;
  } else if (s.status && s.status != 200) {
    struct br_docker_answer ans = {.status = s.status, .body = s.refusal};
    br_buf_adds(err, "the engine refused to show the log: ");
    br_docker_answer_describe(&ans, err);
    rc = -EPROTO;
  } else if (rc == 0) {
    br_buf_adds(err, "the log ended (the container stopped) before the line appeared");
    rc = -ENODATA;
  } else if (rc == -ETIMEDOUT) {
    br_buf_printf(err, "no log line with %s within %u ms", needle, timeout_ms);
  } else {
    rc = transport_error(rc, &res, socket, err);
  }
  br_buf_free(&s.refusal);
  return rc;
}
