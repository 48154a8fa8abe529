/* docker_engine: HTTP over the engine's unix socket with libcurl. It knows
 * the wire (URLs, statuses, log framing), not what the driver decides. */
#include "reconciler/docker_engine.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define ANSWER_MAX (4u * 1024 * 1024)
/* The longest text a log is searched for (a SHA-256 in hex is 64). */
#define NEEDLE_MAX 128

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_OK;

static void curl_init(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_NOTHING); }

int br_docker_global_init(void) {
  pthread_once(&curl_once, curl_init);
  return curl_init_rc == CURLE_OK ? 0 : -ENOMEM;
}

int br_docker_socket(const char *docker_host, struct br_buf *path, struct br_buf *err) {
  br_buf_reset(path);
  if (!docker_host || !*docker_host)
    return br_buf_adds(path, BR_DOCKER_DEFAULT_SOCKET);
  if (strncmp(docker_host, "unix://", 7) == 0 && docker_host[7] == '/')
    return br_buf_adds(path, docker_host + 7);
  br_buf_printf(err, "DOCKER_HOST=%.200s: only unix:///PATH is supported (the daemon signals local "
                     "containers through the engine's socket)", docker_host);
  return -EINVAL;
}

void br_docker_answer_init(struct br_docker_answer *ans) {
  ans->status = 0;
  br_buf_init(&ans->body, ANSWER_MAX);
}

void br_docker_answer_free(struct br_docker_answer *ans) { br_buf_free(&ans->body); }

static size_t collect(char *bytes, size_t size, size_t n, void *arg) {
  struct br_buf *body = arg;
  /* A short count makes curl fail the transfer with CURLE_WRITE_ERROR. */
  return br_buf_add(body, bytes, size * n) ? 0 : size * n;
}

/* The options every request shares. The socket is the engine's; a proxy from
 * the environment (http_proxy) must not capture it. */
static CURL *easy_new(const char *socket, const char *path, unsigned timeout_ms, char *errbuf) {
  if (br_docker_global_init())
    return NULL;
  CURL *h = curl_easy_init();
  if (!h)
    return NULL;
  char url[1024];
  snprintf(url, sizeof url, "http://docker%s%s", BR_DOCKER_API_PREFIX, path);
  errbuf[0] = '\0';
  curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, socket);
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_PROXY, "");
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* worker threads: no SIGALRM timeouts */
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
  return h;
}

static int transport_error(CURLcode code, const char *socket, const char *errbuf, struct br_buf *err) {
  const char *why = errbuf[0] ? errbuf : curl_easy_strerror(code);
  switch (code) {
  case CURLE_COULDNT_CONNECT:
    br_buf_printf(err, "Docker engine not reachable on %s: %s", socket, why);
    return -ECONNREFUSED;
  case CURLE_OPERATION_TIMEDOUT:
    br_buf_printf(err, "Docker engine on %s did not answer in time: %s", socket, why);
    return -ETIMEDOUT;
  case CURLE_OUT_OF_MEMORY:
    return -ENOMEM;
  default:
    br_buf_printf(err, "Docker engine on %s: %s", socket, why);
    return -EIO;
  }
}

int br_docker_request(const char *socket, const char *method, const char *path, unsigned timeout_ms,
                      struct br_docker_answer *ans, struct br_buf *err) {
  char errbuf[CURL_ERROR_SIZE];
  br_buf_reset(&ans->body);
  ans->status = 0;
  CURL *h = easy_new(socket, path, timeout_ms, errbuf);
  if (!h)
    return -ENOMEM;
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &ans->body);
  if (strcmp(method, "POST") == 0) {
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
  }
  CURLcode code = curl_easy_perform(h);
  int rc = 0;
  if (code == CURLE_WRITE_ERROR) {
    br_buf_printf(err, "Docker engine answer to %s %s is over %u bytes", method, path, ANSWER_MAX);
    rc = -EFBIG;
  } else if (code != CURLE_OK) {
    rc = transport_error(code, socket, errbuf, err);
  } else {
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &ans->status);
  }
  curl_easy_cleanup(h);
  return rc;
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
  const char *needle;      /* at most NEEDLE_MAX bytes, without a newline */
  size_t needle_len;
  bool found;
  char window[NEEDLE_MAX]; /* the last needle_len bytes of the stream */
  size_t window_len;
  unsigned char header[8]; /* a frame header being read, when multiplexed */
  size_t header_have;
  size_t frame_left;       /* payload bytes left in the current frame */
  struct br_buf refusal;   /* a non-200 answer's body */
  long status;
  CURL *easy;
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
 * the payload. Curl hands us arbitrary slices of that. */
static size_t log_chunk(char *bytes, size_t size, size_t n, void *arg) {
  struct log_scan *s = arg;
  size_t total = size * n;
  if (!s->status)
    curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &s->status);
  if (s->status != 200) {
    br_buf_add(&s->refusal, bytes, total);
    return total;
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
  return s->found ? 0 : total; /* 0 ends the transfer: we have what we came for */
}

int br_docker_log_wait(const char *socket, const char *id, bool tty, int64_t since_ns, const char *needle,
                       unsigned timeout_ms, struct br_buf *err) {
  char path[256], errbuf[CURL_ERROR_SIZE];
  if (since_ns < 0)
    since_ns = 0;
  snprintf(path, sizeof path, "/containers/%s/logs?follow=1&stdout=1&stderr=1&since=%lld.%09lld", id,
           (long long)(since_ns / 1000000000), (long long)(since_ns % 1000000000));
  struct log_scan s = {.tty = tty, .needle = needle, .needle_len = strlen(needle)};
  if (!s.needle_len || s.needle_len > NEEDLE_MAX || strchr(needle, '\n'))
    return -EINVAL;
  br_buf_init(&s.refusal, 64 * 1024);
  CURL *h = easy_new(socket, path, timeout_ms, errbuf);
  if (!h) {
    br_buf_free(&s.refusal);
    return -ENOMEM;
  }
  s.easy = h;
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, log_chunk);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
  CURLcode code = curl_easy_perform(h);
  int rc;
  if (s.found) {
    rc = 0;
  } else if (s.status && s.status != 200) {
    struct br_docker_answer ans = {.status = s.status, .body = s.refusal};
    br_buf_adds(err, "the engine refused to show the log: ");
    br_docker_answer_describe(&ans, err);
    rc = -EPROTO;
  } else if (code == CURLE_OK) {
    br_buf_adds(err, "the log ended (the container stopped) before the line appeared");
    rc = -ENODATA;
  } else if (code == CURLE_OPERATION_TIMEDOUT) {
    br_buf_printf(err, "no log line with %s within %u ms", needle, timeout_ms);
    rc = -ETIMEDOUT;
  } else {
    rc = transport_error(code, socket, errbuf, err);
  }
  curl_easy_cleanup(h);
  br_buf_free(&s.refusal);
  return rc;
}
