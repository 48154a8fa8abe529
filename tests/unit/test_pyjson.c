/* test_pyjson: common/pyjson byte for byte against Python's json.dumps
 * (pyjson/NAME.json beside NAME.expected.json, made by make_expected.py), and
 * the input it refuses. */
#include "common/pyjson.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cases.h"
#include "check.h"
#include "common/fileio.h"

#define BIG (1u << 20)

/* Table: json.dumps(json.load(NAME.json), indent=2) + "\n" is NAME.expected.json. */
static void test_like_python_table(void) {
  struct br_strv names;
  case_stems("pyjson", ".expected.json", &names);
  CHECK(names.n >= 3);
  for (size_t i = 0; i < names.n; i++) {
    char in[512], want_path[512];
    snprintf(in, sizeof in, "pyjson/%s.json", names.v[i]);
    snprintf(want_path, sizeof want_path, "pyjson/%s.expected.json", names.v[i]);
    struct br_buf src, want, out;
    br_buf_init(&src, BIG);
    br_buf_init(&want, BIG);
    br_buf_init(&out, BIG);
    CHECK(br_file_read(in, src.max, false, &src) == 0);
    CHECK(br_file_read(want_path, want.max, false, &want) == 0);
    json_error_t jerr;
    json_t *value = json_loadb(br_buf_str(&src), src.len, 0, &jerr);
    if (!value)
      fprintf(stderr, "%s:%d:%d: %s\n", in, jerr.line, jerr.column, jerr.text);
    CHECK(value != NULL);
    CHECK(value && br_pyjson_value(&out, value, 0) == 0 && br_buf_adds(&out, "\n") == 0);
    if (out.len != want.len || memcmp(br_buf_str(&out), br_buf_str(&want), out.len) != 0) {
      size_t at = 0;
      while (at < out.len && at < want.len && out.data[at] == want.data[at])
        at++;
      fprintf(stderr, "%s: differs from %s at byte %zu; got:\n%.200s\n", in, want_path, at, br_buf_str(&out) + at);
      check_failures++;
    }
    json_decref(value);
    br_buf_free(&src);
    br_buf_free(&want);
    br_buf_free(&out);
  }
  br_strv_free(&names);
}

/* A value nested in a document its caller writes: lines indented for its
 * depth, the closing bracket one level less; scalars alike at any depth. */
static void test_nested_at_depth(void) {
  struct br_buf out;
  br_buf_init(&out, 4096);
  json_t *v = json_pack("{s:[i,s], s:{}}", "a", 1, "b", "b");
  CHECK(br_pyjson_value(&out, v, 2) == 0);
  CHECK_STR(br_buf_str(&out), "{\n      \"a\": [\n        1,\n        \"b\"\n      ],\n      \"b\": {}\n    }");
  json_decref(v);

  br_buf_reset(&out);
  CHECK(br_buf_adds(&out, "{") == 0);
  CHECK(br_pyjson_member(&out, "k", 1, true, 1) == 0);
  CHECK(br_pyjson_string(&out, "v", 1) == 0);
  CHECK(br_pyjson_member(&out, "caf\xc3\xa9", 5, false, 1) == 0);
  v = json_real(-0.0);
  CHECK(br_pyjson_value(&out, v, 1) == 0);
  json_decref(v);
  CHECK(br_pyjson_newline(&out, 0) == 0 && br_buf_adds(&out, "}") == 0);
  CHECK_STR(br_buf_str(&out), "{\n  \"k\": \"v\",\n  \"caf\\u00e9\": -0.0\n}");
  br_buf_free(&out);
}

static void test_refuses(void) {
  struct br_buf out;
  br_buf_init(&out, 4096);
  /* Not UTF-8: a stray continuation byte, an overlong form, a surrogate, a
   * code point past U+10FFFF, a sequence cut short. */
  const char *bad[] = {"\x80", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "ok\xe2\x82"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    br_buf_reset(&out);
    CHECK(br_pyjson_string(&out, bad[i], strlen(bad[i])) == -EINVAL);
  }
  /* Bytes past a NUL are part of the string. */
  br_buf_reset(&out);
  CHECK(br_pyjson_string(&out, "a\0b", 3) == 0);
  CHECK(out.len == 10 && memcmp(out.data, "\"a\\u0000b\"", 10) == 0);

  /* Deeper than the guard: a hand-built document jansson would never parse. */
  json_t *root = json_array(), *at = root;
  for (int i = 0; i < 4100 && at; i++) {
    json_t *inner = json_array();
    json_array_append_new(at, inner);
    at = inner;
  }
  br_buf_free(&out);
  br_buf_init(&out, 64u << 20); /* room for the 4096 levels before it */
  CHECK(br_pyjson_value(&out, root, 0) == -EINVAL);
  json_decref(root);
  br_buf_free(&out);

  /* Output is bounded by the buffer's maximum. */
  struct br_buf small;
  br_buf_init(&small, 8);
  json_t *v = json_pack("[s]", "longer than eight bytes");
  CHECK(br_pyjson_value(&small, v, 0) == -EFBIG);
  json_decref(v);
  br_buf_free(&small);
}

int main(void) {
  test_like_python_table();
  test_nested_at_depth();
  test_refuses();
  CHECK_DONE();
}
