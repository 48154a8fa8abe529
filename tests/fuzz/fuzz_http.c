/* fuzz_http: libFuzzer target for the answer parser of common/http_unix: feed
 * the input whole and in pieces whose sizes the input picks, and abort when
 * the two readings differ, a call takes more than it was given, a body piece
 * points outside the input, the body outgrows the input, or a failure does
 * not stick. Opens no socket. Not part of the build.
 *
 * Build and run (from the repository root; seeds from the unit-test table):
 *   mkdir -p build-fuzz/corpus && cp tests/data/http/[a-z]*.http build-fuzz/corpus/
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
 *     -std=c11 -D_GNU_SOURCE -I. tests/fuzz/fuzz_http.c common/http_unix.c common/buf.c \
 *     -o build-fuzz/fuzz_http
 *   build-fuzz/fuzz_http -max_total_time=60 -max_len=4096 build-fuzz/corpus
 * tests/fuzz/replay.c gives it a main() for replaying a corpus without clang. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/http_unix.h"

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size);

static void expect(int ok, const char *what) {
  if (!ok) {
    fprintf(stderr, "fuzz_http: %s\n", what);
    abort();
  }
}

struct reading {
  int rc; /* BR_HTTP_END or a negative errno */
  int status;
  int heads;
  size_t body_len;
  uint64_t body_hash; /* FNV-1a of the body: enough to tell two bodies apart */
};

/* Reads data[0..size) in pieces of step bytes (0: whole), then the close. */
static void read_answer(const char *data, size_t size, size_t step, struct reading *r) {
  struct br_http_parser p;
  br_http_parser_init(&p);
  memset(r, 0, sizeof *r);
  r->rc = BR_HTTP_MORE;
  r->body_hash = 14695981039346656037ull;
  for (size_t pos = 0; pos < size && r->rc == BR_HTTP_MORE;) {
    size_t len = step && step < size - pos ? step : size - pos;
    const char *in = data + pos;
    size_t left = len;
    for (;;) {
      size_t used = 0;
      struct br_http_piece piece;
      int event = br_http_parse(&p, in, left, &used, &piece);
      expect(used <= left, "a call took more bytes than it was given");
      in += used;
      left -= used;
      if (event < 0 || event == BR_HTTP_END) {
        r->rc = event;
        break;
      }
      if (event == BR_HTTP_MORE) {
        expect(left == 0, "more asked for with bytes left");
        break;
      }
      if (event == BR_HTTP_HEAD) {
        r->heads++;
        r->status = p.status;
        expect(r->heads == 1, "two heads");
        expect(p.status >= 100 && p.status <= 999, "a status outside 100-999");
        continue;
      }
      expect(event == BR_HTTP_BODY, "an unknown event");
      expect(r->heads == 1, "a body before the head");
      expect(piece.len > 0, "an empty body piece");
      expect(piece.bytes >= data && piece.bytes + piece.len == in, "a body piece outside what was used");
      r->body_len += piece.len;
      for (size_t i = 0; i < piece.len; i++)
        r->body_hash = (r->body_hash ^ (unsigned char)piece.bytes[i]) * 1099511628211ull;
    }
    pos += len;
  }
  if (r->rc == BR_HTTP_MORE)
    r->rc = br_http_parse_eof(&p);
  expect(r->body_len <= size, "a body larger than the answer");
  if (r->rc < 0) {
    expect(r->rc == -EPROTO || r->rc == -EMSGSIZE || r->rc == -ECONNRESET, "an error outside the contract");
    expect(p.why != NULL, "a failure without a reason");
    size_t used;
    struct br_http_piece piece;
    expect(br_http_parse(&p, "HTTP/1.1 200 OK\r\n\r\n", 19, &used, &piece) == r->rc, "a failure did not stick");
    expect(br_http_parse_eof(&p) == r->rc, "a failure did not stick at the close");
  } else {
    expect(r->rc == BR_HTTP_END && r->heads == 1, "an answer ended without a head");
    expect(br_http_parse_eof(&p) == BR_HTTP_END, "a complete answer is not complete at the close");
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size) {
  const char *data = (const char *)bytes;
  struct reading whole, cut;
  read_answer(data, size, 0, &whole);
  size_t steps[] = {1, 2, 3, size ? 1 + bytes[0] % 31 : 1, size ? 1 + bytes[size / 2] % 257 : 1};
  for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
    read_answer(data, size, steps[i], &cut);
    expect(cut.rc == whole.rc, "cut differently, the answer ends differently");
    expect(cut.status == whole.status && cut.heads == whole.heads, "cut differently, the head differs");
    expect(cut.body_len == whole.body_len && cut.body_hash == whole.body_hash,
           "cut differently, the body differs");
  }
  return 0;
}
