/* test_http: common/http_unix rule by rule: the answer's parser over the table
 * in tests/data/http (each case whole, byte by byte and split at every byte),
 * its limits, and the client against a unix-socket server thread of its own. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cases.h"
#include "check.h"
#include "common/fileio.h"
#include "common/http_unix.h"
#include "common/strv.h"

/* ---- the parser ----------------------------------------------------------- */

struct outcome {
  int rc; /* BR_HTTP_END or a negative errno */
  int status;
  int heads;           /* BR_HTTP_HEAD events seen: one, or none on failure */
  bool end_before_eof; /* the framing ended the answer, not the close */
  const char *why;
  struct br_buf body;
};

static void outcome_init(struct outcome *o) {
  memset(o, 0, sizeof *o);
  br_buf_init(&o->body, 4 * 1024 * 1024);
}

/* Feeds wire[0..n) as one piece of split bytes, then pieces of step bytes,
 * then the close, and records what came out. Every call must consume only
 * what it was given, and body pieces must point into it. */
static void feed(const char *wire, size_t n, size_t split, size_t step, struct outcome *o) {
  struct br_http_parser p;
  br_http_parser_init(&p);
  br_buf_reset(&o->body);
  o->rc = BR_HTTP_MORE;
  o->status = o->heads = 0;
  o->end_before_eof = false;
  for (size_t pos = 0; pos < n && o->rc == BR_HTTP_MORE;) {
    size_t len = pos < split ? split - pos : (step < n - pos ? step : n - pos);
    const char *in = wire + pos;
    size_t left = len;
    for (;;) {
      size_t used = 0;
      struct br_http_piece piece;
      int event = br_http_parse(&p, in, left, &used, &piece);
      CHECK(used <= left);
      in += used;
      left -= used;
      if (event < 0 || event == BR_HTTP_END) {
        o->rc = event;
        break;
      }
      if (event == BR_HTTP_MORE) {
        CHECK(left == 0);
        break;
      }
      if (event == BR_HTTP_HEAD) {
        o->heads++;
        o->status = p.status;
        CHECK(o->body.len == 0);
      } else {
        CHECK(event == BR_HTTP_BODY);
        CHECK(o->heads == 1);
        CHECK(piece.len > 0 && piece.bytes >= wire && piece.bytes + piece.len <= wire + n);
        CHECK(piece.bytes + piece.len == in);
        br_buf_add(&o->body, piece.bytes, piece.len);
      }
    }
    pos += len;
  }
  if (o->rc == BR_HTTP_END)
    o->end_before_eof = true;
  else if (o->rc == BR_HTTP_MORE)
    o->rc = br_http_parse_eof(&p);
  o->why = p.why;
  if (o->rc < 0) {
    /* A failed parser stays failed, whatever comes next. */
    size_t used;
    struct br_http_piece piece;
    CHECK(br_http_parse(&p, "HTTP/1.1 200 OK\r\n\r\n", 19, &used, &piece) == o->rc);
    CHECK(br_http_parse_eof(&p) == o->rc);
    CHECK(p.why != NULL);
  }
}

static bool same_outcome(const struct outcome *a, const struct outcome *b) {
  return a->rc == b->rc && a->status == b->status && a->heads == b->heads &&
         a->end_before_eof == b->end_before_eof && a->body.len == b->body.len &&
         (a->body.len == 0 || memcmp(a->body.data, b->body.data, a->body.len) == 0);
}

static int errno_named(const char *name) {
  if (strcmp(name, "EPROTO") == 0)
    return -EPROTO;
  if (strcmp(name, "EMSGSIZE") == 0)
    return -EMSGSIZE;
  if (strcmp(name, "ECONNRESET") == 0)
    return -ECONNRESET;
  return 0;
}

/* NAME.http is an answer as it comes off the wire; NAME.expect says
 * "STATUS" (the framing ends it), "STATUS close" (the close does) or an
 * errno's name; NAME.body, when there, is the body expected. */
static void run_case(const char *dir, const char *name) {
  char path[512];
  struct br_buf wire, expect, want_body;
  br_buf_init(&wire, 1 << 20);
  br_buf_init(&expect, 256);
  br_buf_init(&want_body, 1 << 20);
  int failures = check_failures;
  snprintf(path, sizeof path, "%s/%s.http", dir, name);
  CHECK(br_file_read(path, 1 << 20, false, &wire) == 0);
  snprintf(path, sizeof path, "%s/%s.expect", dir, name);
  CHECK(br_file_read(path, 256, false, &expect) == 0);
  snprintf(path, sizeof path, "%s/%s.body", dir, name);
  int body_rc = br_file_read(path, 1 << 20, false, &want_body);
  CHECK(body_rc == 0 || body_rc == -ENOENT);

  int want_status = 0, want_rc = BR_HTTP_END;
  bool want_close = false;
  char word[32] = "";
  if (expect.data && sscanf(expect.data, "%d %31s", &want_status, word) >= 1) {
    want_close = strcmp(word, "close") == 0;
  } else if (expect.data && sscanf(expect.data, "%31s", word) == 1) {
    want_rc = errno_named(word);
    CHECK(want_rc < 0);
  }

  struct outcome whole, other;
  outcome_init(&whole);
  outcome_init(&other);
  const char *bytes = br_buf_str(&wire);
  feed(bytes, wire.len, wire.len, wire.len, &whole);
  CHECK(whole.rc == want_rc);
  if (want_rc == BR_HTTP_END) {
    CHECK(whole.status == want_status);
    CHECK(whole.heads == 1);
    CHECK(whole.end_before_eof == !want_close);
    CHECK(whole.body.len == want_body.len &&
          (!want_body.len || memcmp(whole.body.data, want_body.data, want_body.len) == 0));
  } else {
    CHECK(whole.why != NULL);
  }
  /* However the bytes are cut, the answer reads the same. */
  feed(bytes, wire.len, 0, 1, &other);
  CHECK(same_outcome(&whole, &other));
  for (size_t split = 0; split <= wire.len; split++) {
    feed(bytes, wire.len, split, wire.len, &other);
    if (!same_outcome(&whole, &other)) {
      fprintf(stderr, "  split at byte %zu differs\n", split);
      check_failures++;
      break;
    }
  }
  if (check_failures != failures)
    fprintf(stderr, "  in case %s: rc %d status %d why %s\n", name, whole.rc, whole.status,
            whole.why ? whole.why : "-");
  br_buf_free(&whole.body);
  br_buf_free(&other.body);
  br_buf_free(&wire);
  br_buf_free(&expect);
  br_buf_free(&want_body);
}

static void test_table(void) {
  const char *dir = "http";
  struct br_strv names;
  case_stems(dir, ".http", &names);
  CHECK(names.n >= 40);
  for (size_t i = 0; i < names.n; i++)
    run_case(dir, names.v[i]);
  br_strv_free(&names);
}

/* An answer with headers of filler up to total bytes of head. */
static void build_head(struct br_buf *out, size_t total, const char *after) {
  br_buf_reset(out);
  br_buf_adds(out, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n");
  while (out->len + 2 < total) {
    size_t left = total - 2 - out->len; /* room for the last CRLF */
    size_t line = left > 4000 ? 4000 : left;
    if (line < 6) { /* too short for a header of its own: lengthen the last one */
      out->len -= 2;
      for (size_t i = 0; i < line; i++)
        br_buf_add(out, "b", 1);
      br_buf_adds(out, "\r\n");
      break;
    }
    br_buf_adds(out, "X-F:");
    for (size_t i = 0; i < line - 6; i++)
      br_buf_add(out, "a", 1);
    br_buf_adds(out, "\r\n");
  }
  br_buf_adds(out, "\r\n");
  br_buf_adds(out, after);
}

static void test_limits(void) {
  struct outcome o;
  struct br_buf wire;
  outcome_init(&o);
  br_buf_init(&wire, 1 << 20);

  /* The head may be 64 KiB to the byte, not one more. */
  build_head(&wire, BR_HTTP_HEAD_MAX, "ok");
  CHECK(wire.len == BR_HTTP_HEAD_MAX + 2);
  feed(wire.data, wire.len, wire.len, wire.len, &o);
  CHECK(o.rc == BR_HTTP_END && o.status == 200 && o.body.len == 2);
  build_head(&wire, BR_HTTP_HEAD_MAX + 1, "ok");
  feed(wire.data, wire.len, wire.len, wire.len, &o);
  CHECK(o.rc == -EMSGSIZE);
  feed(wire.data, wire.len, 0, 7, &o);
  CHECK(o.rc == -EMSGSIZE);

  /* One line may be 8 KiB with its CRLF. */
  const char *start = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n";
  for (size_t line = BR_HTTP_LINE_MAX; line <= BR_HTTP_LINE_MAX + 1; line++) {
    br_buf_reset(&wire);
    br_buf_adds(&wire, start);
    br_buf_adds(&wire, "X-Long: ");
    while (wire.len < strlen(start) + line - 2)
      br_buf_add(&wire, "v", 1);
    br_buf_adds(&wire, "\r\n\r\n");
    feed(wire.data, wire.len, wire.len, 100, &o);
    CHECK(o.rc == (line == BR_HTTP_LINE_MAX ? BR_HTTP_END : -EMSGSIZE));
  }

  /* A chunk-size line is a line too, however its extensions run on. */
  br_buf_reset(&wire);
  br_buf_adds(&wire, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;x=");
  for (int i = 0; i < BR_HTTP_LINE_MAX; i++)
    br_buf_add(&wire, "e", 1);
  br_buf_adds(&wire, "\r\na\r\n0\r\n\r\n");
  feed(wire.data, wire.len, wire.len, wire.len, &o);
  CHECK(o.rc == -EMSGSIZE);

  /* Interim answers count towards the head: endless ones are refused. */
  br_buf_reset(&wire);
  while (wire.len <= BR_HTTP_HEAD_MAX)
    br_buf_adds(&wire, "HTTP/1.1 100 Continue\r\n\r\n");
  br_buf_adds(&wire, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  feed(wire.data, wire.len, wire.len, wire.len, &o);
  CHECK(o.rc == -EMSGSIZE);

  /* Trailers have a maximum of their own. */
  br_buf_reset(&wire);
  br_buf_adds(&wire, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n");
  for (int i = 0; i < 20; i++) {
    br_buf_adds(&wire, "X-Trailer: ");
    for (int j = 0; j < 4000; j++)
      br_buf_add(&wire, "t", 1);
    br_buf_adds(&wire, "\r\n");
  }
  br_buf_adds(&wire, "\r\n");
  feed(wire.data, wire.len, wire.len, wire.len, &o);
  CHECK(o.rc == -EMSGSIZE && o.status == 200 && o.body.len == 2);

  br_buf_free(&wire);
  br_buf_free(&o.body);
}

static void test_parser_edges(void) {
  struct br_http_parser p;
  size_t used;
  struct br_http_piece piece;

  /* What follows a complete answer is not read, and the end is sticky. */
  const char *answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 500 Oops\r\n\r\n";
  size_t n = strlen(answer), off = 0;
  br_http_parser_init(&p);
  CHECK(br_http_parse(&p, answer, n, &used, &piece) == BR_HTTP_HEAD);
  off += used;
  CHECK(p.status == 200 && p.has_length && p.content_length == 2 && !p.chunked && p.minor_version == 1);
  CHECK(br_http_parse(&p, answer + off, n - off, &used, &piece) == BR_HTTP_BODY);
  CHECK(piece.len == 2 && memcmp(piece.bytes, "ok", 2) == 0);
  off += used;
  CHECK(br_http_parse(&p, answer + off, n - off, &used, &piece) == BR_HTTP_END);
  CHECK(used == 0);
  CHECK(br_http_parse(&p, "x", 1, &used, &piece) == BR_HTTP_END && used == 0);
  CHECK(br_http_parse_eof(&p) == BR_HTTP_END);

  /* No bytes is no news. */
  br_http_parser_init(&p);
  CHECK(br_http_parse(&p, "", 0, &used, &piece) == BR_HTTP_MORE && used == 0);
  CHECK(br_http_parse_eof(&p) == -ECONNRESET);
  CHECK(p.why && strstr(p.why, "without answering"));

  /* The head says how the body is framed. */
  const char *chunked = "HTTP/1.1 404 Not Found\r\nTRANSFER-ENCODING: chunked\r\n\r\n";
  br_http_parser_init(&p);
  CHECK(br_http_parse(&p, chunked, strlen(chunked), &used, &piece) == BR_HTTP_HEAD);
  CHECK(p.status == 404 && p.chunked && !p.has_length && p.phase == BR_HTTP_CHUNK_SIZE);
  CHECK(br_http_parse_eof(&p) == -ECONNRESET && strstr(p.why, "body"));

  /* A body too large for memory is still only streamed. */
  const char *huge = "HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\nabc";
  br_http_parser_init(&p);
  CHECK(br_http_parse(&p, huge, strlen(huge), &used, &piece) == BR_HTTP_HEAD);
  CHECK(p.content_length == UINT64_MAX);
  CHECK(br_http_parse(&p, huge + used, strlen(huge) - used, &used, &piece) == BR_HTTP_BODY && piece.len == 3);
  CHECK(p.left == UINT64_MAX - 3);
}

static void test_escape(void) {
  struct br_buf out;
  br_buf_init(&out, 1024);
  /* What the events filter must look like on the wire (as curl escaped it). */
  CHECK(br_http_escape("{\"type\":[\"container\"],\"event\":[\"start\",\"unpause\"]}", &out) == 0);
  CHECK_STR(out.data,
            "%7B%22type%22%3A%5B%22container%22%5D%2C%22event%22%3A%5B%22start%22%2C%22unpause%22%5D%7D");
  br_buf_reset(&out);
  CHECK(br_http_escape("a b/c?d=e&f~g-h_i.j\xc3\xa9+%", &out) == 0);
  CHECK_STR(out.data, "a%20b%2Fc%3Fd%3De%26f~g-h_i.j%C3%A9%2B%25");
  br_buf_free(&out);
  br_buf_init(&out, 4);
  CHECK(br_http_escape("{}", &out) == -EFBIG);
  br_buf_free(&out);
}

/* ---- the client against a server --------------------------------------- */

enum after { THEN_CLOSE, THEN_HOLD };

/* A server for one connection: it reads the request's head, sends pieces
 * (byte by byte when trickle is set) with gap_ms before each, then closes or
 * holds the connection until the client closes it. */
struct server {
  char dir[64];
  char path[96];
  int listen_fd;
  pthread_t thread;
  const char *const *pieces;
  unsigned gap_ms;
  bool trickle;
  enum after after;
  char request[4096];
  size_t request_len;
};

static void pause_ms(unsigned ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
  nanosleep(&ts, NULL);
}

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool wait_in(int fd, int ms) {
  struct pollfd pfd = {.fd = fd, .events = POLLIN};
  return poll(&pfd, 1, ms) == 1;
}

static void *serve(void *arg) {
  struct server *s = arg;
  if (!wait_in(s->listen_fd, 10000))
    return NULL;
  int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
  if (fd < 0)
    return NULL;
  while (s->request_len < sizeof s->request - 1 && !strstr(s->request, "\r\n\r\n") && wait_in(fd, 5000)) {
    ssize_t got = recv(fd, s->request + s->request_len, sizeof s->request - 1 - s->request_len, 0);
    if (got <= 0)
      break;
    s->request_len += (size_t)got;
    s->request[s->request_len] = '\0';
  }
  bool open = true;
  for (size_t i = 0; open && s->pieces && s->pieces[i]; i++) {
    const char *piece = s->pieces[i];
    size_t len = strlen(piece);
    for (size_t off = 0; open && off < len;) {
      size_t take = s->trickle ? 1 : len;
      if (s->gap_ms)
        pause_ms(s->gap_ms);
      open = send(fd, piece + off, take, MSG_NOSIGNAL) == (ssize_t)take;
      off += take;
    }
  }
  if (open && s->after == THEN_HOLD) {
    char sink[256];
    while (wait_in(fd, 10000) && recv(fd, sink, sizeof sink, 0) > 0)
      ;
  }
  close(fd);
  return NULL;
}

static void server_start(struct server *s, const char *const *pieces, unsigned gap_ms, bool trickle,
                         enum after after) {
  memset(s, 0, sizeof *s);
  snprintf(s->dir, sizeof s->dir, "/tmp/br-test-http.XXXXXX");
  CHECK(mkdtemp(s->dir) != NULL);
  snprintf(s->path, sizeof s->path, "%s/engine.sock", s->dir);
  s->pieces = pieces;
  s->gap_ms = gap_ms;
  s->trickle = trickle;
  s->after = after;
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", s->path);
  s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  CHECK(s->listen_fd >= 0);
  CHECK(bind(s->listen_fd, (struct sockaddr *)&sa, sizeof sa) == 0);
  CHECK(listen(s->listen_fd, 8) == 0);
  CHECK(pthread_create(&s->thread, NULL, serve, s) == 0);
}

static void server_finish(struct server *s) {
  pthread_join(s->thread, NULL);
  close(s->listen_fd);
  unlink(s->path);
  rmdir(s->dir);
}

/* What a client callback saw. */
struct received {
  int heads;
  int pieces;
  int status;
  int stop_after; /* pieces of body after which to return stop_with; 0: never */
  int stop_with;
  struct br_buf body;
};

static int on_piece(void *ctx, int status, const char *piece, size_t len) {
  struct received *r = ctx;
  r->status = status;
  if (!piece) {
    CHECK(len == 0 && r->heads == 0 && r->pieces == 0);
    r->heads++;
    return 0;
  }
  CHECK(r->heads == 1 && len > 0);
  r->pieces++;
  br_buf_add(&r->body, piece, len);
  return r->stop_after && r->pieces >= r->stop_after ? r->stop_with : 0;
}

/* A GET for r, which must be zeroed or used before: its body is dropped. */
static struct br_http_request request_to(const char *target, unsigned timeout_ms, struct received *r) {
  br_buf_free(&r->body);
  memset(r, 0, sizeof *r);
  br_buf_init(&r->body, 8 * 1024 * 1024);
  return (struct br_http_request){
      .method = "GET", .target = target, .timeout_ms = timeout_ms, .wake_fd = -1, .on_piece = on_piece, .ctx = r};
}

static void test_client_answers(void) {
  struct server s;
  struct received r = {0};
  struct br_http_result res;

  /* A plain answer, and the request exactly as sent. */
  const char *const plain[] = {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", NULL};
  server_start(&s, plain, 0, false, THEN_CLOSE);
  struct br_http_request req = request_to("/v1/x?y=%7B1%7D", 5000, &r);
  CHECK(br_http_unix_request(s.path, &req, &res) == 0);
  server_finish(&s);
  CHECK(res.status == 200 && res.connected && r.heads == 1 && r.status == 200);
  CHECK_STR(r.body.data, "hello");
  CHECK_STR(s.request, "GET /v1/x?y=%7B1%7D HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
  br_buf_free(&r.body);

  /* POST says its empty body's length; an answer without a body is complete
   * at its head, even while the server keeps the connection open. */
  const char *const no_content[] = {"HTTP/1.1 204 No Content\r\nServer: test\r\n\r\n", NULL};
  server_start(&s, no_content, 0, false, THEN_HOLD);
  req = request_to("/containers/x/kill?signal=SIGHUP", 5000, &r);
  req.method = "POST";
  req.host = "docker";
  long long started = now_ms();
  CHECK(br_http_unix_request(s.path, &req, &res) == 0);
  CHECK(now_ms() - started < 2500);
  server_finish(&s);
  CHECK(res.status == 204 && r.heads == 1 && r.pieces == 0);
  CHECK_STR(s.request, "POST /containers/x/kill?signal=SIGHUP HTTP/1.1\r\nHost: docker\r\nContent-Length: "
                       "0\r\nConnection: close\r\n\r\n");
  br_buf_free(&r.body);

  /* Chunked with extensions and trailers, arriving a byte at a time; the
   * last chunk ends it although the connection stays open. */
  const char *const slow[] = {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                              "4;ext=1\r\nslow\r\n",
                              "1\r\n,\r\n",
                              "6\r\n bytes\r\n",
                              "0\r\nX-T: 1\r\n\r\n",
                              NULL};
  server_start(&s, slow, 1, true, THEN_HOLD);
  req = request_to("/", 5000, &r);
  CHECK(br_http_unix_request(s.path, &req, &res) == 0);
  server_finish(&s);
  CHECK(res.status == 200 && r.pieces >= 3);
  CHECK_STR(r.body.data, "slow, bytes");
  br_buf_free(&r.body);

  /* HTTP/1.0: the body ends with the connection. */
  const char *const old[] = {"HTTP/1.0 200 OK\r\n\r\nuntil ", "the close", NULL};
  server_start(&s, old, 5, false, THEN_CLOSE);
  req = request_to("/", 5000, &r);
  CHECK(br_http_unix_request(s.path, &req, &res) == 0);
  server_finish(&s);
  CHECK_STR(r.body.data, "until the close");
  br_buf_free(&r.body);

  /* A body of many reads. */
  static char big[1 << 20];
  memset(big, 'x', sizeof big - 1);
  char big_head[128];
  snprintf(big_head, sizeof big_head, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", sizeof big - 1);
  const char *const large[] = {big_head, big, NULL};
  server_start(&s, large, 0, false, THEN_HOLD);
  req = request_to("/", 5000, &r);
  CHECK(br_http_unix_request(s.path, &req, &res) == 0);
  server_finish(&s);
  CHECK(r.body.len == sizeof big - 1 && r.pieces > 1);
  br_buf_free(&r.body);

  /* No request target that could end its line early is sent. */
  req = request_to("/a b", 5000, &r);
  CHECK(br_http_unix_request("/nonexistent/x.sock", &req, &res) == -EINVAL && !res.connected && res.why);
  req = request_to("/a\r\nX-Evil: 1", 5000, &r);
  CHECK(br_http_unix_request("/nonexistent/x.sock", &req, &res) == -EINVAL);
  req = request_to("/", 5000, &r);
  req.host = "docker\r\nX-Evil: 1";
  CHECK(br_http_unix_request("/nonexistent/x.sock", &req, &res) == -EINVAL);
  req = request_to("/", 5000, &r);
  req.method = "GET /";
  CHECK(br_http_unix_request("/nonexistent/x.sock", &req, &res) == -EINVAL);
  br_buf_free(&r.body);
}

static void test_client_stops(void) {
  struct server s;
  struct received r = {0};
  struct br_http_result res;
  static const char *const stream[] = {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                                       "2\r\n{}\r\n",
                                       "2\r\n{}\r\n",
                                       "2\r\n{}\r\n",
                                       "2\r\n{}\r\n",
                                       "2\r\n{}\r\n",
                                       "2\r\n{}\r\n",
                                       "2\r\n{}\r\n",
                                       "2\r\n{}\r\n",
                                       "2\r\n{}\r\n",
                                       "2\r\n{}\r\n",
                                       "2\r\n{}\r\n",
                                       "2\r\n{}\r\n",
                                       "2\r\n{}\r\n",
                                       "2\r\n{}\r\n",
                                       "2\r\n{}\r\n",
                                       "2\r\n{}\r\n",
                                       "2\r\n{}\r\n",
                                       "2\r\n{}\r\n",
                                       "2\r\n{}\r\n",
                                       "2\r\n{}\r\n",
                                       "2\r\n{}\r\n",
                                       "2\r\n{}\r\n",
                                       "2\r\n{}\r\n",
                                       "2\r\n{}\r\n",
                                       "2\r\n{}\r\n",
                                       "2\r\n{}\r\n",
                                       "2\r\n{}\r\n",
                                       "2\r\n{}\r\n",
                                       "2\r\n{}\r\n",
                                       "2\r\n{}\r\n",
                                       NULL};

  /* The callback has what it wanted: the stream is left at once. */
  server_start(&s, stream, 20, false, THEN_HOLD);
  struct br_http_request req = request_to("/events", 5000, &r);
  r.stop_after = 2;
  r.stop_with = BR_HTTP_STOP;
  long long started = now_ms();
  CHECK(br_http_unix_request(s.path, &req, &res) == 0);
  CHECK(now_ms() - started < 400);
  CHECK(r.pieces == 2 && res.status == 200);
  server_finish(&s);
  br_buf_free(&r.body);

  /* Its own error ends it too, and is returned. */
  server_start(&s, stream, 0, false, THEN_HOLD);
  req = request_to("/events", 5000, &r);
  r.stop_after = 1;
  r.stop_with = -EFBIG;
  CHECK(br_http_unix_request(s.path, &req, &res) == -EFBIG);
  server_finish(&s);
  br_buf_free(&r.body);

  /* The deadline bounds the whole exchange, not each read: a stream that
   * trickles on forever still ends on time. */
  server_start(&s, stream, 30, false, THEN_HOLD);
  req = request_to("/events", 300, &r);
  started = now_ms();
  CHECK(br_http_unix_request(s.path, &req, &res) == -ETIMEDOUT);
  long long took = now_ms() - started;
  CHECK(took >= 299 && took < 1500);
  CHECK(res.status == 200 && r.pieces > 0);
  server_finish(&s);
  br_buf_free(&r.body);
}

static void test_client_failures(void) {
  struct server s;
  struct received r = {0};
  struct br_http_result res;
  struct br_buf text;
  br_buf_init(&text, 1024);

  /* Nothing at the path; a socket file nobody listens on. */
  struct br_http_request req = request_to("/", 1000, &r);
  CHECK(br_http_unix_request("/nonexistent/br-test-http.sock", &req, &res) == -ENOENT && !res.connected);
  br_http_describe(-ENOENT, &res, &text);
  CHECK_STR(text.data, "connecting (No such file or directory)");
  char dir[] = "/tmp/br-test-http.XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s/bound.sock", dir);
  int bound = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  CHECK(bound >= 0 && bind(bound, (struct sockaddr *)&sa, sizeof sa) == 0);
  CHECK(br_http_unix_request(sa.sun_path, &req, &res) == -ECONNREFUSED && !res.connected);
  close(bound);
  unlink(sa.sun_path);
  rmdir(dir);
  char long_path[200];
  memset(long_path, 'p', sizeof long_path - 1);
  long_path[0] = '/';
  long_path[sizeof long_path - 1] = '\0';
  CHECK(br_http_unix_request(long_path, &req, &res) == -ENAMETOOLONG);

  /* Closed without a word, and closed in the middle of the body. */
  server_start(&s, NULL, 0, false, THEN_CLOSE);
  CHECK(br_http_unix_request(s.path, &req, &res) == -ECONNRESET && res.connected && res.status == 0);
  server_finish(&s);
  const char *const cut[] = {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", NULL};
  server_start(&s, cut, 0, false, THEN_CLOSE);
  CHECK(br_http_unix_request(s.path, &req, &res) == -ECONNRESET && res.status == 200);
  CHECK(res.why && strstr(res.why, "middle of the body"));
  server_finish(&s);

  /* Malformed. */
  const char *const bare_lf[] = {"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", NULL};
  server_start(&s, bare_lf, 0, false, THEN_HOLD);
  CHECK(br_http_unix_request(s.path, &req, &res) == -EPROTO && res.why);
  server_finish(&s);

  /* Never answers. */
  server_start(&s, NULL, 0, false, THEN_HOLD);
  req = request_to("/", 200, &r);
  long long started = now_ms();
  CHECK(br_http_unix_request(s.path, &req, &res) == -ETIMEDOUT && res.connected);
  long long took = now_ms() - started;
  CHECK(took >= 199 && took < 1500);
  br_buf_reset(&text);
  br_http_describe(-ETIMEDOUT, &res, &text);
  CHECK_STR(text.data, "waiting for the answer (Connection timed out)");
  server_finish(&s);
  br_buf_free(&text);
  br_buf_free(&r.body);
}

struct waker {
  int fd;
  unsigned after_ms;
};

static void *wake_later(void *arg) {
  struct waker *w = arg;
  pause_ms(w->after_ms);
  uint64_t one = 1;
  CHECK(write(w->fd, &one, sizeof one) == sizeof one);
  return NULL;
}

static void test_client_wake(void) {
  struct server s;
  struct received r = {0};
  struct br_http_result res;
  int wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  CHECK(wake >= 0);

  /* No deadline at all (a stream): only the wake fd ends the wait. */
  server_start(&s, NULL, 0, false, THEN_HOLD);
  struct br_http_request req = request_to("/events", 0, &r);
  req.wake_fd = wake;
  struct waker w = {.fd = wake, .after_ms = 100};
  pthread_t thread;
  CHECK(pthread_create(&thread, NULL, wake_later, &w) == 0);
  long long started = now_ms();
  CHECK(br_http_unix_request(s.path, &req, &res) == -ECANCELED);
  long long took = now_ms() - started;
  CHECK(took >= 99 && took < 2000);
  pthread_join(thread, NULL);
  server_finish(&s);

  /* Once readable, it wins even over an answer that is ready. */
  const char *const plain[] = {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", NULL};
  server_start(&s, plain, 0, false, THEN_CLOSE);
  req = request_to("/", 5000, &r);
  req.wake_fd = wake;
  CHECK(br_http_unix_request(s.path, &req, &res) == -ECANCELED && r.heads == 0);
  server_finish(&s);
  close(wake);
  br_buf_free(&r.body);
}

int main(void) {
  test_table();
  test_limits();
  test_parser_edges();
  test_escape();
  test_client_answers();
  test_client_stops();
  test_client_failures();
  test_client_wake();
  CHECK_DONE();
}
