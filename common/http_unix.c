/* http_unix: the answer's parser (pure: bytes in, events out, no I/O) and the
 * socket code around it. Only the socket code may block, and never without a
 * deadline or a wake fd; neither part keeps state outside its arguments. */
#include "common/http_unix.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"

/* ---- the parser ---------------------------------------------------------- */

void br_http_parser_init(struct br_http_parser *p) {
  memset(p, 0, offsetof(struct br_http_parser, line));
  p->line[0] = '\0';
  p->phase = BR_HTTP_STATUS_LINE;
}

static int fail(struct br_http_parser *p, int error, const char *why) {
  p->phase = BR_HTTP_FAILED;
  p->error = error;
  p->why = why;
  return error;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* RFC 9110 tchar: what a header name (and a method) is made of. */
static bool is_tchar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* A field value's bytes, a reason phrase's, a chunk extension's: visible
 * ASCII, space, tab and obs-text. Above all no CR, LF or NUL, which is what
 * lets one header smuggle another past a less careful reader. */
static bool is_field_char(char c) {
  unsigned char u = (unsigned char)c;
  return u == '\t' || (u >= 0x20 && u != 0x7f);
}

static bool all_field_chars(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!is_field_char(s[i]))
      return false;
  return true;
}

static bool name_is(const char *name, size_t len, const char *want) {
  return len == strlen(want) && strncasecmp(name, want, len) == 0;
}

/* Appends the bytes up to and including the next LF to the line. Returns 1
 * once the line is complete (its CRLF cut off), 0 when it needs more input,
 * or an error. Chunk-size lines do not count towards the head. */
static int take_line(struct br_http_parser *p, const char *in, size_t n, size_t *used, bool counts) {
  const char *lf = memchr(in, '\n', n);
  size_t take = lf ? (size_t)(lf - in) + 1 : n;
  *used = take;
  if (take > BR_HTTP_LINE_MAX - p->line_len)
    return fail(p, -EMSGSIZE, "a line of the answer is over 8 KiB");
  if (counts) {
    if (take > BR_HTTP_HEAD_MAX - p->head_len)
      return fail(p, -EMSGSIZE, "the answer's head is over 64 KiB");
    p->head_len += take;
  }
  memcpy(p->line + p->line_len, in, take);
  p->line_len += take;
  if (!lf)
    return 0;
  if (p->line_len < 2 || p->line[p->line_len - 2] != '\r')
    return fail(p, -EPROTO, "a line of the answer does not end in CRLF");
  p->line_len -= 2;
  p->line[p->line_len] = '\0';
  return 1;
}

/* HTTP/1.x NNN[ reason] */
static int status_line(struct br_http_parser *p, const char *s, size_t n) {
  if (n < 12 || memcmp(s, "HTTP/1.", 7) != 0 || !is_digit(s[7]) || s[8] != ' ' || !is_digit(s[9]) ||
      !is_digit(s[10]) || !is_digit(s[11]) || (n > 12 && s[12] != ' '))
    return fail(p, -EPROTO, "the status line is not HTTP/1.x and a three-digit status");
  if (!all_field_chars(s + 12, n - 12))
    return fail(p, -EPROTO, "the status line holds a control character");
  p->minor_version = s[7] - '0';
  p->status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
  if (p->status < 100)
    return fail(p, -EPROTO, "the status is below 100");
  p->chunked = p->has_length = false;
  p->content_length = 0;
  p->phase = BR_HTTP_HEADERS;
  return 0;
}

/* The headers that frame the body; the others are checked and let be. */
static int framing_header(struct br_http_parser *p, const char *name, size_t name_len, const char *v, size_t n) {
  if (name_is(name, name_len, "Content-Length")) {
    /* Digits only: no sign, no list. A second header must agree with the
     * first, since two lengths are two ways to read where the body ends. */
    uint64_t length = 0;
    if (n == 0)
      return fail(p, -EPROTO, "Content-Length is empty");
    for (size_t i = 0; i < n; i++) {
      if (!is_digit(v[i]))
        return fail(p, -EPROTO, "Content-Length is not a number");
      uint64_t digit = (uint64_t)(v[i] - '0');
      if (length > (UINT64_MAX - digit) / 10)
        return fail(p, -EPROTO, "Content-Length overflows");
      length = length * 10 + digit;
    }
    if (p->has_length && p->content_length != length)
      return fail(p, -EPROTO, "two Content-Length headers disagree");
    p->has_length = true;
    p->content_length = length;
  } else if (name_is(name, name_len, "Transfer-Encoding")) {
    /* Nothing asked for a compressed body, and a coding we cannot undo
     * leaves no way to find the body's end. */
    if (p->chunked || !name_is(v, n, "chunked"))
      return fail(p, -EPROTO, "a transfer coding other than chunked");
    p->chunked = true;
  }
  return 0;
}

/* NAME ":" OWS VALUE OWS. With framing false (trailers), only checked. */
static int header_line(struct br_http_parser *p, const char *s, size_t n, bool framing) {
  if (s[0] == ' ' || s[0] == '\t')
    return fail(p, -EPROTO, "a header line is folded onto the one before");
  size_t name_len = 0;
  while (name_len < n && is_tchar(s[name_len]))
    name_len++;
  if (name_len == 0 || name_len == n || s[name_len] != ':')
    return fail(p, -EPROTO, "a header line is not NAME: VALUE");
  const char *v = s + name_len + 1;
  size_t vn = n - name_len - 1;
  while (vn && (*v == ' ' || *v == '\t'))
    v++, vn--;
  while (vn && (v[vn - 1] == ' ' || v[vn - 1] == '\t'))
    vn--;
  if (!all_field_chars(v, vn))
    return fail(p, -EPROTO, "a header value holds a control character");
  return framing ? framing_header(p, s, name_len, v, vn) : 0;
}

/* The empty line after the headers: decides how the body is framed
 * (RFC 9112 section 6.3). Returns BR_HTTP_HEAD, 0 to read another head
 * after an interim answer, or an error. */
static int head_end(struct br_http_parser *p) {
  if (p->status < 200) {
    /* 100 Continue and its kind come before the real answer; their bytes
     * still count towards the head, so endless ones hit its maximum. */
    if (p->status == 101)
      return fail(p, -EPROTO, "the server switched protocols");
    p->phase = BR_HTTP_STATUS_LINE;
    return 0;
  }
  if (p->chunked && p->has_length)
    return fail(p, -EPROTO, "both Transfer-Encoding and Content-Length");
  if (p->chunked && p->minor_version == 0)
    return fail(p, -EPROTO, "an HTTP/1.0 answer with Transfer-Encoding");
  if (p->status == 204 || p->status == 304)
    p->phase = BR_HTTP_COMPLETE;
  else if (p->chunked)
    p->phase = BR_HTTP_CHUNK_SIZE;
  else if (p->has_length)
    p->phase = p->content_length ? BR_HTTP_LENGTH_BODY : BR_HTTP_COMPLETE;
  else
    p->phase = BR_HTTP_CLOSE_BODY;
  p->left = p->content_length;
  return BR_HTTP_HEAD;
}

/* 1*HEXDIG [ BWS ";" extensions ]. The extensions mean nothing to us; they
 * are only checked for bytes that have no place in a line. */
static int chunk_size_line(struct br_http_parser *p, const char *s, size_t n) {
  uint64_t size = 0;
  size_t i = 0;
  for (; i < n && hex_value(s[i]) >= 0; i++) {
    if (size > UINT64_MAX >> 4)
      return fail(p, -EPROTO, "a chunk size overflows");
    size = size << 4 | (uint64_t)hex_value(s[i]);
  }
  if (i == 0)
    return fail(p, -EPROTO, "a chunk size is not hexadecimal");
  while (i < n && (s[i] == ' ' || s[i] == '\t'))
    i++;
  if (i < n && s[i] != ';')
    return fail(p, -EPROTO, "a chunk size is not hexadecimal");
  if (!all_field_chars(s + i, n - i))
    return fail(p, -EPROTO, "a chunk extension holds a control character");
  if (size == 0) {
    p->phase = BR_HTTP_TRAILERS;
    p->head_len = 0; /* the trailers have a maximum of their own */
  } else {
    p->phase = BR_HTTP_CHUNK_DATA;
    p->left = size;
  }
  return 0;
}

/* A complete line in one of the line phases. Returns an event, 0 to go on,
 * or an error. */
static int line_done(struct br_http_parser *p) {
  const char *s = p->line;
  size_t n = p->line_len;
  switch (p->phase) {
  case BR_HTTP_STATUS_LINE:
    return status_line(p, s, n);
  case BR_HTTP_HEADERS:
    return n ? header_line(p, s, n, true) : head_end(p);
  case BR_HTTP_CHUNK_SIZE:
    return chunk_size_line(p, s, n);
  case BR_HTTP_TRAILERS:
    if (n)
      return header_line(p, s, n, false);
    p->phase = BR_HTTP_COMPLETE;
    return 0;
  default:
    return fail(p, -EPROTO, "internal: a line outside the line phases");
  }
}

/* A piece of at most left bytes of what is given. */
static int body_piece(struct br_http_parser *p, const char *in, size_t n, size_t *used,
                      struct br_http_piece *piece) {
  size_t take = (uint64_t)n < p->left ? n : (size_t)p->left;
  p->left -= take;
  piece->bytes = in;
  piece->len = take;
  *used = take;
  return BR_HTTP_BODY;
}

int br_http_parse(struct br_http_parser *p, const char *in, size_t n, size_t *used, struct br_http_piece *piece) {
  size_t off = 0;
  *used = 0;
  piece->bytes = NULL;
  piece->len = 0;
  if (n)
    p->started = true;
  for (;;) {
    size_t took = 0;
    int rc;
    switch (p->phase) {
    case BR_HTTP_FAILED:
      *used = off;
      return p->error;
    case BR_HTTP_COMPLETE:
      *used = off;
      return BR_HTTP_END;
    case BR_HTTP_LENGTH_BODY:
    case BR_HTTP_CHUNK_DATA:
      if (off == n)
        break;
      rc = body_piece(p, in + off, n - off, &took, piece);
      *used = off + took;
      if (!p->left)
        p->phase = p->phase == BR_HTTP_LENGTH_BODY ? BR_HTTP_COMPLETE : BR_HTTP_CHUNK_CRLF;
      return rc;
    case BR_HTTP_CLOSE_BODY:
      if (off == n)
        break;
      piece->bytes = in + off;
      piece->len = n - off;
      *used = n;
      return BR_HTTP_BODY;
    case BR_HTTP_CHUNK_CRLF:
      /* Byte by byte, so that data longer than its chunk size fails at its
       * first extra byte rather than a line later. */
      if (off == n)
        break;
      if (in[off] != (p->line_len ? '\n' : '\r')) {
        *used = off;
        return fail(p, -EPROTO, "a chunk's data does not end in CRLF where its size says");
      }
      off++;
      if (p->line_len) {
        p->line_len = 0;
        p->phase = BR_HTTP_CHUNK_SIZE;
      } else {
        p->line_len = 1;
      }
      continue;
    default: /* the line phases */
      if (off == n)
        break;
      rc = take_line(p, in + off, n - off, &took, p->phase != BR_HTTP_CHUNK_SIZE);
      off += took;
      if (rc <= 0) {
        *used = off;
        if (rc < 0)
          return rc;
        continue; /* the input is used up: MORE */
      }
      rc = line_done(p);
      p->line_len = 0;
      if (rc) {
        *used = off;
        return rc;
      }
      continue;
    }
    *used = off;
    return BR_HTTP_MORE;
  }
}

int br_http_parse_eof(struct br_http_parser *p) {
  switch (p->phase) {
  case BR_HTTP_FAILED:
    return p->error;
  case BR_HTTP_COMPLETE:
    return BR_HTTP_END;
  case BR_HTTP_CLOSE_BODY:
    p->phase = BR_HTTP_COMPLETE;
    return BR_HTTP_END;
  case BR_HTTP_STATUS_LINE:
    if (!p->started)
      return fail(p, -ECONNRESET, "the server closed the connection without answering");
    /* fall through */
  case BR_HTTP_HEADERS:
    return fail(p, -ECONNRESET, "the server closed the connection in the middle of the head");
  default:
    return fail(p, -ECONNRESET, "the server closed the connection in the middle of the body");
  }
}

/* ---- the socket ---------------------------------------------------------- */

/* A request's own head: method, target and Host. Targets this long are a
 * caller's mistake, not a reason to allocate. */
#define REQUEST_MAX 8192
/* One read's worth; the body is handed on as it comes, so this is no limit. */
#define READ_CHUNK 16384
/* How long to wait before trying again a listener whose backlog is full. */
#define BACKLOG_RETRY_NS (10 * 1000000LL)

/* Waits until fd (may be -1: none) is ready for events, the deadline passes
 * (-ETIMEDOUT; 0 is none) or wake_fd becomes readable (-ECANCELED, which
 * wins over a ready fd so that a stop is never starved by a busy stream). */
static int wait_ready(int fd, short events, int64_t deadline, int wake_fd) {
  for (;;) {
    int timeout = -1;
    if (deadline) {
      int64_t left = deadline - br_monotonic_ns();
      if (left <= 0)
        return -ETIMEDOUT;
      int64_t ms = (left + 999999) / 1000000; /* rounded up: never wake early and spin */
      timeout = ms > INT_MAX ? INT_MAX : (int)ms;
    }
    struct pollfd fds[2] = {{.fd = fd, .events = events}, {.fd = wake_fd, .events = POLLIN}};
    int ready = poll(fds, 2, timeout);
    if (ready < 0 && errno != EINTR)
      return -errno;
    if (ready > 0 && wake_fd >= 0 && fds[1].revents)
      return -ECANCELED;
    if (ready > 0 && fds[0].revents)
      return 0; /* errors and hang-ups too: the next read or write reports them */
  }
}

static int64_t earlier(int64_t a, int64_t b) {
  if (!a)
    return b;
  if (!b)
    return a;
  return a < b ? a : b;
}

static int connect_unix(const char *path, int64_t deadline, int wake_fd, int *out) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  size_t len = strlen(path);
  if (len == 0)
    return -EINVAL;
  if (len >= sizeof sa.sun_path)
    return -ENAMETOOLONG;
  memcpy(sa.sun_path, path, len + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  int rc = 0;
  for (;;) {
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
      break;
    if (errno == EINPROGRESS || errno == EINTR) {
      /* The connection goes on without us; SO_ERROR says how it ended. */
      int error = 0;
      socklen_t error_len = sizeof error;
      if (!(rc = wait_ready(fd, POLLOUT, deadline, wake_fd)) &&
          getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &error_len) < 0)
        rc = -errno;
      else if (!rc)
        rc = -error;
      break;
    }
    if (errno != EAGAIN) {
      rc = -errno;
      break;
    }
    /* A unix listener with a full backlog refuses a non-blocking connect
     * outright instead of queueing it (Linux): try again shortly. */
    int64_t retry_at = earlier(deadline, br_monotonic_ns() + BACKLOG_RETRY_NS);
    rc = wait_ready(-1, 0, retry_at, wake_fd);
    if (rc != -ETIMEDOUT || (deadline && br_monotonic_ns() >= deadline))
      break;
  }
  if (rc) {
    close(fd);
    return rc;
  }
  *out = fd;
  return 0;
}

static bool all_visible(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
      return false;
  return true;
}

/* The request's head, checked so that no caller's string can end a line
 * early and add headers of its own. */
static int compose(const struct br_http_request *req, char *out, size_t cap, size_t *len, const char **why) {
  const char *host = req->host ? req->host : "localhost";
  bool method_ok = req->method && *req->method;
  for (const char *m = req->method; method_ok && *m; m++)
    method_ok = is_tchar(*m);
  if (!method_ok) {
    *why = "the method is not a token";
    return -EINVAL;
  }
  if (!req->target || req->target[0] != '/' || !all_visible(req->target)) {
    *why = "the target does not start with / or holds a space or a control character";
    return -EINVAL;
  }
  if (!*host || !all_visible(host)) {
    *why = "the host holds a space or a control character";
    return -EINVAL;
  }
  bool post = strcmp(req->method, "POST") == 0;
  int n = snprintf(out, cap, "%s %s HTTP/1.1\r\nHost: %s\r\n%sConnection: close\r\n\r\n", req->method, req->target,
                   host, post ? "Content-Length: 0\r\n" : "");
  if (n < 0 || (size_t)n >= cap) {
    *why = "the request's head is over 8 KiB";
    return -EINVAL;
  }
  *len = (size_t)n;
  return 0;
}

static int send_all(int fd, const char *bytes, size_t n, int64_t deadline, int wake_fd) {
  while (n) {
    ssize_t sent = send(fd, bytes, n, MSG_NOSIGNAL);
    if (sent >= 0) {
      bytes += sent;
      n -= (size_t)sent;
    } else if (errno == EAGAIN) {
      int rc = wait_ready(fd, POLLOUT, deadline, wake_fd);
      if (rc)
        return rc;
    } else if (errno != EINTR) {
      return -errno;
    }
  }
  return 0;
}

/* Reads and parses until the answer ends, the callback stops it, or a
 * failure. */
static int receive(int fd, const struct br_http_request *req, int64_t deadline, struct br_http_result *res) {
  struct br_http_parser parser;
  char chunk[READ_CHUNK];
  br_http_parser_init(&parser);
  for (;;) {
    int rc = wait_ready(fd, POLLIN, deadline, req->wake_fd);
    if (rc) {
      res->why = parser.started ? "waiting for the rest of the answer" : "waiting for the answer";
      return rc;
    }
    ssize_t got = recv(fd, chunk, sizeof chunk, 0);
    if (got < 0) {
      if (errno == EINTR || errno == EAGAIN)
        continue;
      res->why = "reading the answer";
      return -errno;
    }
    if (got == 0) {
      rc = br_http_parse_eof(&parser);
      res->why = rc < 0 ? parser.why : NULL;
      return rc < 0 ? rc : 0;
    }
    size_t off = 0;
    for (;;) {
      size_t used;
      struct br_http_piece piece;
      int event = br_http_parse(&parser, chunk + off, (size_t)got - off, &used, &piece);
      off += used;
      if (event < 0) {
        res->why = parser.why;
        return event;
      }
      if (event == BR_HTTP_MORE)
        break;
      if (event == BR_HTTP_END)
        return 0;
      if (event == BR_HTTP_HEAD)
        res->status = parser.status;
      rc = req->on_piece ? req->on_piece(req->ctx, parser.status, piece.bytes, piece.len) : 0;
      if (rc > 0)
        return 0;
      if (rc < 0) {
        res->why = "the receiver refused the answer";
        return rc;
      }
    }
  }
}

int br_http_unix_request(const char *path, const struct br_http_request *req, struct br_http_result *res) {
  char head[REQUEST_MAX];
  size_t head_len = 0;
  res->status = 0;
  res->connected = false;
  res->why = NULL;
  int rc = compose(req, head, sizeof head, &head_len, &res->why);
  if (rc)
    return rc;
  int64_t start = br_monotonic_ns();
  int64_t deadline = req->timeout_ms ? start + (int64_t)req->timeout_ms * 1000000 : 0;
  int64_t connect_deadline =
      earlier(deadline, req->connect_timeout_ms ? start + (int64_t)req->connect_timeout_ms * 1000000 : 0);
  int fd = -1;
  if ((rc = connect_unix(path, connect_deadline, req->wake_fd, &fd))) {
    res->why = "connecting";
    return rc;
  }
  res->connected = true;
  rc = send_all(fd, head, head_len, deadline, req->wake_fd);
  /* A server may answer and close before it has read everything (an error
   * it decided on early): what it said is still there to read. */
  if (rc == 0 || rc == -EPIPE || rc == -ECONNRESET)
    rc = receive(fd, req, deadline, res);
  else
    res->why = "sending the request";
  close(fd);
  return rc;
}

void br_http_describe(int rc, const struct br_http_result *res, struct br_buf *out) {
  if (res->why)
    br_buf_printf(out, "%s (%s)", res->why, strerror(-rc));
  else
    br_buf_adds(out, strerror(-rc));
}

int br_http_escape(const char *s, struct br_buf *out) {
  static const char hex[] = "0123456789ABCDEF";
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    bool unreserved = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit((char)c) || strchr("-._~", c);
    char escaped[3] = {'%', hex[c >> 4], hex[c & 15]};
    int rc = unreserved ? br_buf_add(out, s, 1) : br_buf_add(out, escaped, 3);
    if (rc)
      return rc;
  }
  return 0;
}
