/* http_unix: an HTTP/1.1 client for servers on a local unix socket: one request
 * per connection, the answer's body handed over piece by piece. It must not
 * grow TLS, proxies, redirects or any knowledge of who listens on the socket. */
#ifndef BR_COMMON_HTTP_UNIX_H
#define BR_COMMON_HTTP_UNIX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

/* ---- the answer's parser: bytes in, head and body pieces out ------------ */

/* One line of the head (status line, header, chunk size, trailer). */
#define BR_HTTP_LINE_MAX 8192
/* The status line and headers together, and likewise the trailers. */
#define BR_HTTP_HEAD_MAX (64 * 1024)

enum br_http_phase {
  BR_HTTP_STATUS_LINE, /* before or within a status line */
  BR_HTTP_HEADERS,     /* header lines, up to the empty one */
  BR_HTTP_LENGTH_BODY, /* a body of Content-Length bytes; left of it remain */
  BR_HTTP_CHUNK_SIZE,  /* a chunk-size line, with any extensions */
  BR_HTTP_CHUNK_DATA,  /* a chunk's data; left of it remain */
  BR_HTTP_CHUNK_CRLF,  /* the CRLF after a chunk's data */
  BR_HTTP_TRAILERS,    /* trailer lines after the last chunk, up to the empty one */
  BR_HTTP_CLOSE_BODY,  /* a body that ends when the connection closes */
  BR_HTTP_COMPLETE,    /* the answer is complete: later bytes are not looked at */
  BR_HTTP_FAILED,      /* malformed: every call returns the same error */
};

enum br_http_event {
  BR_HTTP_MORE, /* every byte given was consumed and nothing is to report: feed more */
  BR_HTTP_HEAD, /* the head is complete: status, minor_version and the framing are set */
  BR_HTTP_BODY, /* a piece of the body, pointing into the bytes given */
  BR_HTTP_END,  /* the answer is complete */
};

struct br_http_parser {
  enum br_http_phase phase;
  int status;        /* the final status (1xx answers are skipped), once the head is complete */
  int minor_version; /* HTTP/1.x */
  bool chunked;      /* Transfer-Encoding: chunked */
  bool has_length;   /* a Content-Length header was given */
  uint64_t content_length;
  uint64_t left;   /* bytes left of the Content-Length body or of the current chunk */
  size_t head_len; /* bytes of the head (or of the trailers) so far */
  bool started;    /* any byte has arrived */
  int error;       /* the negative errno, once failed */
  const char *why; /* once failed: what was wrong, a static phrase */
  size_t line_len;
  char line[BR_HTTP_LINE_MAX + 1]; /* the line being read, NUL-terminated once complete */
};

struct br_http_piece {
  const char *bytes;
  size_t len;
};

/* An empty parser, for one answer. It allocates nothing: nothing to free. */
void br_http_parser_init(struct br_http_parser *p);
/* Consumes bytes from in[0..n) up to the next thing to report and sets *used
 * to how many it took; call again with the rest (even when none is left)
 * until it says BR_HTTP_MORE. Returns an enum br_http_event, with *piece set
 * for BR_HTTP_BODY; or -EPROTO for a malformed answer, -EMSGSIZE for a line or
 * head over its maximum (p->why says which rule was broken). Strict where
 * RFC 9112 lets a client choose: lines end in CRLF, folded headers and
 * transfer codings other than chunked are refused. */
int br_http_parse(struct br_http_parser *p, const char *in, size_t n, size_t *used, struct br_http_piece *piece);
/* The connection closed: BR_HTTP_END when that completes the answer (a body
 * delimited by the close, or an answer already complete), else -ECONNRESET
 * (p->why says where it was cut) or the parser's earlier error. */
int br_http_parse_eof(struct br_http_parser *p);

/* ---- the client ---------------------------------------------------------- */

/* A callback's positive return: the caller has what it wanted. */
#define BR_HTTP_STOP 1

/* Called once with the head (piece NULL, len 0) when the status is known,
 * then with each piece of the body as it arrives. Returns 0 to go on,
 * BR_HTTP_STOP to end the exchange early (the request then returns 0), or a
 * negative errno to abort it (the request returns that). */
typedef int (*br_http_piece_fn)(void *ctx, int status, const char *piece, size_t len);

struct br_http_request {
  const char *method;          /* a token: "GET", "POST" (sent with Content-Length: 0) */
  const char *target;          /* origin form, "/a/b?c=d": visible ASCII only, escaped by the caller */
  const char *host;            /* the Host header; NULL sends "localhost" */
  unsigned connect_timeout_ms; /* for the connection alone; 0: only timeout_ms bounds it */
  unsigned timeout_ms;         /* the whole exchange, connect to the body's end; 0: none (a stream) */
  int wake_fd;                 /* -1, or an fd (eventfd, pipe) whose readability cancels any wait */
  br_http_piece_fn on_piece;   /* NULL discards the body */
  void *ctx;
};

struct br_http_result {
  int status;      /* the answer's status; 0 when no head arrived */
  bool connected;  /* false: the failure was in reaching the socket */
  const char *why; /* on failure, what failed: a static phrase */
};

/* Connects to the unix socket at path, sends the request (Connection: close)
 * and reads the answer, blocking the calling thread. Returns 0 once the
 * answer is complete or the callback stopped it; otherwise -ENOENT or
 * -ECONNREFUSED when nothing listens at path (-EACCES when this process may
 * not connect to it), -ETIMEDOUT, -ECANCELED when wake_fd became readable,
 * -EPROTO or -EMSGSIZE for a malformed answer, -ECONNRESET when the server
 * closed before the answer was complete, -EINVAL for an unsendable request,
 * -ENAMETOOLONG for a path over sockaddr_un's, a callback's own error, or
 * another -errno. Never raises SIGPIPE. Thread-safe: it shares no state. */
int br_http_unix_request(const char *path, const struct br_http_request *req, struct br_http_result *res);

/* Appends what failed: "connecting (Connection refused)". */
void br_http_describe(int rc, const struct br_http_result *res, struct br_buf *out);

/* Appends s percent-encoded for a query component: every byte but ALPHA,
 * DIGIT and "-._~" as %XX. Returns 0 or the buffer's error. */
int br_http_escape(const char *s, struct br_buf *out);

#endif
