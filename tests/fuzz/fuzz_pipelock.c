/* fuzz_pipelock: libFuzzer target for reconciler/pipelock: read the allowlist,
 * splice fixed and derived lists, and abort when a splice that succeeded does
 * not read back as the list it was given, is not a fixed point, or changes
 * the bytes of a file whose list it leaves as it was. Not part of the build.
 *
 * Build and run (from the repository root; seeds from the unit-test table):
 *   mkdir -p build-fuzz/corpus && cp tests/data/pipelock/[a-z]*.in.yaml build-fuzz/corpus/
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
 *     -std=c11 -D_GNU_SOURCE -I. tests/fuzz/fuzz_pipelock.c reconciler/model/pipelock.c \
 *     common/yamldoc.c common/diag.c common/buf.c common/strv.c $(pkg-config --cflags --libs yaml-0.1) \
 *     -o build-fuzz/fuzz_pipelock
 *   build-fuzz/fuzz_pipelock -max_total_time=60 -max_len=4096 build-fuzz/corpus
 * tests/fuzz/replay.c gives it a main() for replaying a corpus without clang. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reconciler/model/pipelock.h"

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size);

static void expect(int ok, const char *what) {
  if (!ok) {
    fprintf(stderr, "fuzz_pipelock: %s\n", what);
    abort();
  }
}

static int same_list(const struct br_strv *a, const struct br_strv *b) {
  if (a->n != b->n)
    return 0;
  for (size_t i = 0; i < a->n; i++)
    if (strcmp(a->v[i], b->v[i]) != 0)
      return 0;
  return 1;
}

/* Splices list into data; when that succeeds, the result must read back as
 * list and splicing it again must change nothing. Returns the rc. */
static int splice_checked(const char *data, size_t size, const struct br_strv *list, struct br_buf *out) {
  struct br_buf err;
  br_buf_init(&err, 1 << 16);
  int rc = br_pipelock_splice("fuzz.yaml", data, size, list, out, &err);
  if (rc == 0) {
    struct br_strv back;
    br_strv_init(&back);
    expect(br_pipelock_allowlist("out.yaml", out->data, out->len, &back, &err) == 0,
           "a spliced file does not read back");
    expect(same_list(&back, list), "a spliced file reads back as another list");
    br_strv_free(&back);
    struct br_buf again;
    br_buf_init(&again, BR_PIPELOCK_MAX_BYTES);
    expect(br_pipelock_splice("out.yaml", out->data, out->len, list, &again, &err) == 0,
           "a spliced file cannot be spliced again with the same list");
    expect(again.len == out->len && memcmp(again.data, out->data, out->len) == 0,
           "splicing the same list twice changes the file twice");
    br_buf_free(&again);
  } else {
    expect(out->len == 0, "a failed splice wrote output");
    expect(err.len > 0, "a failed splice gave no message");
  }
  br_buf_free(&err);
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size) {
  const char *data = (const char *)bytes;
  struct br_buf err, out;
  br_buf_init(&err, 1 << 16);
  br_buf_init(&out, BR_PIPELOCK_MAX_BYTES);
  struct br_strv old;
  br_strv_init(&old);
  int read_rc = br_pipelock_allowlist("fuzz.yaml", data, size, &old, &err);

  static const char *const fixed[] = {"api.github.com",
                                      "*.example.com",
                                      "yes",
                                      "b\xC3\xBC"
                                      "cher.example",
                                      "x:443",
                                      "quote\"d",
                                      NULL};
  struct br_strv list;
  br_strv_init(&list);
  for (size_t i = 0; fixed[i]; i++)
    br_strv_add(&list, fixed[i]);
  int rc = splice_checked(data, size, &list, &out);
  expect(rc != 0 || read_rc == 0, "a file that does not read was spliced");
  br_buf_reset(&out);
  br_strv_free(&list);

  if (read_rc == 0) {
    /* The same list leaves a list's bytes as they were. */
    rc = splice_checked(data, size, &old, &out);
    if (rc == 0 && old.n > 0)
      expect(out.len == size && memcmp(out.data, data, size) == 0,
             "splicing the list a file has changed its bytes");
    br_buf_reset(&out);
    /* The empty list, and what plan produces: one removed, one appended. */
    splice_checked(data, size, &list, &out);
    br_buf_reset(&out);
    br_strv_init(&list);
    for (size_t i = 1; i < old.n; i++)
      br_strv_add(&list, old.v[i]);
    br_strv_add(&list, "new.example");
    splice_checked(data, size, &list, &out);
    br_strv_free(&list);
  }
  br_strv_free(&old);
  br_buf_free(&out);
  br_buf_free(&err);
  return 0;
}
