/* test_egress: the live egress file rule by rule, and its rendering byte for
 * byte against Python's json.dumps (expected files made by make_expected.py).
 * The JSON writer underneath, on its own: test_pyjson. */
#include "reconciler/model/egress.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cases.h"
#include "check.h"

#define BIG (16u << 20)

static int slurp(const char *path, struct br_buf *out) {
  br_buf_init(out, BIG);
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "cannot open %s\n", path);
    return -errno;
  }
  char chunk[4096];
  size_t n;
  int rc = 0;
  while (rc == 0 && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
    rc = br_buf_add(out, chunk, n);
  fclose(f);
  if (rc == 0 && !out->data)
    rc = br_buf_add(out, "", 0);
  return rc;
}

static int parse_str(const char *text, struct br_egress_live *live, struct br_buf *err) {
  return br_egress_parse("t.json", text, strlen(text), live, err);
}

/* render(parse(file in)) must equal the bytes of file want. */
static void check_rerender(const char *in, const char *want) {
  struct br_buf src, expected, out, err;
  br_buf_init(&out, BIG);
  br_buf_init(&err, 4096);
  CHECK(slurp(in, &src) == 0);
  CHECK(slurp(want, &expected) == 0);
  struct br_egress_live live;
  int rc = br_egress_parse(in, src.data, src.len, &live, &err);
  if (rc)
    fprintf(stderr, "%s\n", err.data);
  CHECK(rc == 0);
  CHECK(br_egress_render(&live.routes, live.doc, &out) == 0);
  CHECK(out.len == expected.len);
  if (out.len != expected.len || memcmp(out.data, expected.data, out.len) != 0) {
    fprintf(stderr, "%s: rendering differs from %s; got:\n%s\n", in, want, out.data);
    check_failures++;
  }
  br_egress_live_free(&live);
  br_buf_free(&src);
  br_buf_free(&expected);
  br_buf_free(&out);
  br_buf_free(&err);
}

static void test_canonical_round_trip(void) {
  check_rerender("egress/canonical.json", "egress/canonical.json");
  /* An already normalised doc with foreign keys is a fixed point too. */
  check_rerender("egress/extra_keys.expected.json", "egress/extra_keys.expected.json");
  check_rerender("egress/floats.expected.json", "egress/floats.expected.json");
}

static void test_foreign_keys_kept_like_python(void) {
  check_rerender("egress/extra_keys.in.json", "egress/extra_keys.expected.json");
}

static void test_reals_shortest_like_python(void) {
  check_rerender("egress/floats.in.json", "egress/floats.expected.json");
}

static void test_routes_appended_when_doc_lacks_them(void) {
  struct br_buf canonical, doc_text, expected, out, err;
  br_buf_init(&out, BIG);
  br_buf_init(&err, 4096);
  CHECK(slurp("egress/canonical.json", &canonical) == 0);
  CHECK(slurp("egress/no_routes_key.doc.json", &doc_text) == 0);
  CHECK(slurp("egress/no_routes_key.expected.json", &expected) == 0);
  struct br_egress_live live;
  CHECK(br_egress_parse("canonical.json", canonical.data, canonical.len, &live, &err) == 0);
  json_t *doc = json_loads(doc_text.data, 0, NULL);
  CHECK(doc != NULL);
  CHECK(br_egress_render(&live.routes, doc, &out) == 0);
  CHECK_STR(out.data, expected.data);
  json_decref(doc);
  br_egress_live_free(&live);
  br_buf_free(&canonical);
  br_buf_free(&doc_text);
  br_buf_free(&expected);
  br_buf_free(&out);
  br_buf_free(&err);
}

static void test_no_doc_gives_routes_only(void) {
  struct br_buf canonical, expected, out, err;
  br_buf_init(&out, BIG);
  br_buf_init(&err, 4096);
  CHECK(slurp("egress/canonical.json", &canonical) == 0);
  CHECK(slurp("egress/no_doc.expected.json", &expected) == 0);
  struct br_egress_live live;
  CHECK(br_egress_parse("canonical.json", canonical.data, canonical.len, &live, &err) == 0);
  CHECK(br_egress_render(&live.routes, NULL, &out) == 0);
  CHECK_STR(out.data, expected.data);
  br_egress_live_free(&live);
  br_buf_free(&canonical);
  br_buf_free(&expected);
  br_buf_free(&out);
  br_buf_free(&err);
}

static void test_empty_routes_render_as_empty_list(void) {
  struct br_routes none;
  struct br_buf out;
  br_routes_init(&none);
  br_buf_init(&out, 4096);
  CHECK(br_egress_render(&none, NULL, &out) == 0);
  CHECK_STR(out.data, "{\n  \"routes\": []\n}\n");
  br_buf_reset(&out);
  json_t *doc = json_pack("{s:[], s:{}}", "routes", "x");
  CHECK(br_egress_render(&none, doc, &out) == 0);
  CHECK_STR(out.data, "{\n  \"routes\": [],\n  \"x\": {}\n}\n");
  json_decref(doc);
  br_buf_free(&out);
}

static void test_hosts_lowercased(void) {
  struct br_egress_live live;
  struct br_buf err;
  br_buf_init(&err, 4096);
  CHECK(parse_str("{\"routes\": [{\"host\": \"API.GitHub.COM\", \"path_allowlist\": [\"/A\"]}]}", &live, &err) ==
        0);
  CHECK(live.routes.n == 1);
  CHECK_STR(live.routes.v[0].host, "api.github.com");
  CHECK_STR(live.routes.v[0].paths.v[0], "/A"); /* paths are case-sensitive */
  br_egress_live_free(&live);
  br_buf_free(&err);
}

static void test_missing_or_null_paths_are_empty(void) {
  struct br_egress_live live;
  struct br_buf err;
  br_buf_init(&err, 4096);
  CHECK(parse_str("{\"routes\": [{\"host\": \"a.example.com\"},"
                  " {\"host\": \"b.example.com\", \"path_allowlist\": null}]}",
                  &live, &err) == 0);
  CHECK(live.routes.n == 2);
  CHECK(live.routes.v[0].paths.n == 0);
  CHECK(live.routes.v[1].paths.n == 0);
  CHECK(live.routes.v[0].auth_scheme == NULL && live.routes.v[0].token_env == NULL);
  br_egress_live_free(&live);
  br_buf_free(&err);
}

static void test_null_auth_is_no_auth(void) {
  struct br_egress_live live;
  struct br_buf err;
  br_buf_init(&err, 4096);
  CHECK(parse_str("{\"routes\": [{\"host\": \"a.example.com\", \"auth_scheme\": null,"
                  " \"token_env\": null}]}",
                  &live, &err) == 0);
  CHECK(live.routes.n == 1 && live.routes.v[0].auth_scheme == NULL && live.routes.v[0].token_env == NULL);
  br_egress_live_free(&live);
  br_buf_free(&err);
}

static void test_auth_pair_read(void) {
  struct br_egress_live live;
  struct br_buf err;
  br_buf_init(&err, 4096);
  CHECK(parse_str("{\"routes\": [{\"host\": \"a.example.com\", \"auth_scheme\": \"Bearer\","
                  " \"token_env\": \"EGRESS_TOKEN_0\"}]}",
                  &live, &err) == 0);
  CHECK_STR(live.routes.v[0].auth_scheme, "Bearer");
  CHECK_STR(live.routes.v[0].token_env, "EGRESS_TOKEN_0");
  CHECK(live.routes.v[0].origin == NULL);
  br_egress_live_free(&live);
  br_buf_free(&err);
}

static void test_duplicate_hosts_merged(void) {
  struct br_egress_live live;
  struct br_buf err;
  br_buf_init(&err, 4096);
  CHECK(parse_str("{\"routes\": ["
                  "{\"host\": \"a.example.com\", \"path_allowlist\": [\"/x\", \"/y\", \"/x\"]},"
                  "{\"host\": \"b.example.com\"},"
                  "{\"host\": \"A.example.com\", \"path_allowlist\": [\"/z\", \"/y\"],"
                  " \"auth_scheme\": \"Bearer\", \"token_env\": \"T\"}]}",
                  &live, &err) == 0);
  CHECK(live.routes.n == 2);
  struct br_route *a = br_routes_find(&live.routes, "a.example.com");
  CHECK(a == &live.routes.v[0]);
  CHECK(a->paths.n == 3);
  CHECK_STR(a->paths.v[0], "/x");
  CHECK_STR(a->paths.v[1], "/y");
  CHECK_STR(a->paths.v[2], "/z");
  CHECK(a->auth_scheme == NULL); /* the first occurrence's auth: none */
  br_egress_live_free(&live);
  br_buf_free(&err);
}

static void test_unknown_route_keys_ignored(void) {
  struct br_egress_live live;
  struct br_buf err, out;
  br_buf_init(&err, 4096);
  br_buf_init(&out, 4096);
  CHECK(parse_str("{\"routes\": [{\"host\": \"a.example.com\", \"note\": [1]}]}", &live, &err) == 0);
  CHECK(br_egress_render(&live.routes, live.doc, &out) == 0);
  /* No path_allowlist: every path, rendered without one as it came. */
  CHECK(live.routes.v[0].all_paths);
  CHECK_STR(out.data, "{\n  \"routes\": [\n    {\n      \"host\": \"a.example.com\"\n    }\n  ]\n}\n");
  br_egress_live_free(&live);
  br_buf_free(&err);
  br_buf_free(&out);
}

/* Table: every egress/bad/NAME.json must fail with exactly NAME.err. */
static void test_shape_errors_table(void) {
  struct br_strv names;
  case_stems("egress/bad", ".json", &names);
  CHECK(names.n >= 10);
  for (size_t i = 0; i < names.n; i++) {
    char in[512], want_path[512];
    snprintf(in, sizeof in, "egress/bad/%s.json", names.v[i]);
    snprintf(want_path, sizeof want_path, "egress/bad/%s.err", names.v[i]);
    struct br_buf src, want, err;
    br_buf_init(&err, 4096);
    CHECK(slurp(in, &src) == 0);
    CHECK(slurp(want_path, &want) == 0);
    while (want.len && want.data[want.len - 1] == '\n')
      want.data[--want.len] = '\0';
    char name[300];
    snprintf(name, sizeof name, "%s.json", names.v[i]);
    struct br_egress_live live;
    int rc = br_egress_parse(name, src.data, src.len, &live, &err);
    if (rc != -EINVAL)
      fprintf(stderr, "%s: rc %d\n", in, rc);
    CHECK(rc == -EINVAL);
    CHECK_STR(err.data, want.data);
    /* Nothing half-parsed is left behind. */
    CHECK(live.doc == NULL && live.routes.n == 0);
    br_egress_live_free(&live);
    br_buf_free(&src);
    br_buf_free(&want);
    br_buf_free(&err);
  }
  br_strv_free(&names);
}

static void test_equality_ignores_order(void) {
  struct br_egress_live a, b, c;
  struct br_buf err;
  br_buf_init(&err, 4096);
  CHECK(parse_str("{\"routes\": [{\"host\": \"a.example.com\", \"path_allowlist\": [\"/1\", \"/2\"],"
                  " \"auth_scheme\": \"Bearer\", \"token_env\": \"T\"}, {\"host\": \"b.example.com\"}]}",
                  &a, &err) == 0);
  CHECK(parse_str("{\"x\": 1, \"routes\": [{\"host\": \"b.example.com\", \"path_allowlist\": null},"
                  " {\"token_env\": \"T\", \"auth_scheme\": \"Bearer\", \"host\": \"A.example.com\","
                  " \"path_allowlist\": [\"/2\", \"/1\", \"/2\"]}]}",
                  &b, &err) == 0);
  CHECK(parse_str("{\"routes\": [{\"host\": \"a.example.com\", \"path_allowlist\": [\"/1\", \"/2\"],"
                  " \"auth_scheme\": \"Bearer\", \"token_env\": \"U\"}, {\"host\": \"b.example.com\"}]}",
                  &c, &err) == 0);
  CHECK(br_routes_equal(&a.routes, &b.routes));
  CHECK(br_routes_equal(&b.routes, &a.routes));
  CHECK(!br_routes_equal(&a.routes, &c.routes));
  /* An empty list allows no path; no list allows every path. */
  struct br_egress_live none, every;
  CHECK(parse_str("{\"routes\": [{\"host\": \"b.example.com\", \"path_allowlist\": []}]}", &none, &err) == 0);
  CHECK(parse_str("{\"routes\": [{\"host\": \"b.example.com\"}]}", &every, &err) == 0);
  CHECK(!br_routes_equal(&none.routes, &every.routes));
  br_egress_live_free(&none);
  br_egress_live_free(&every);
  br_egress_live_free(&a);
  br_egress_live_free(&b);
  br_egress_live_free(&c);
  br_buf_free(&err);
}

static void test_render_refuses_bad_input(void) {
  struct br_routes routes;
  struct br_buf out;
  br_routes_init(&routes);
  br_buf_init(&out, 4096);
  json_t *array = json_array();
  CHECK(br_egress_render(&routes, array, &out) == -EINVAL);
  json_decref(array);

  struct br_route *r = br_routes_append(&routes, "a.example.com");
  CHECK(r && br_strv_add(&r->paths, "/bad\xff") == 0);
  br_buf_reset(&out);
  CHECK(br_egress_render(&routes, NULL, &out) == -EINVAL);
  br_routes_free(&routes);

  /* Output is bounded by the buffer's maximum. */
  struct br_buf small;
  br_buf_init(&small, 8);
  br_routes_init(&routes);
  CHECK(br_routes_append(&routes, "a.example.com") != NULL);
  CHECK(br_egress_render(&routes, NULL, &small) == -EFBIG);
  br_buf_free(&small);
  br_routes_free(&routes);
  br_buf_free(&out);
}

static void test_render_escapes_model_strings(void) {
  struct br_routes routes;
  struct br_buf out;
  br_routes_init(&routes);
  br_buf_init(&out, 4096);
  struct br_route *r = br_routes_append(&routes, "a.example.com");
  CHECK(r && br_strv_add(&r->paths, "/caf\xc3\xa9/\xf0\x9f\x98\x80\x7f\t\"\\/") == 0);
  CHECK(br_egress_render(&routes, NULL, &out) == 0);
  CHECK(strstr(out.data, "\"/caf\\u00e9/\\ud83d\\ude00\\u007f\\t\\\"\\\\/\"") != NULL);
  br_routes_free(&routes);
  br_buf_free(&out);
}

int main(void) {
  test_canonical_round_trip();
  test_foreign_keys_kept_like_python();
  test_reals_shortest_like_python();
  test_routes_appended_when_doc_lacks_them();
  test_no_doc_gives_routes_only();
  test_empty_routes_render_as_empty_list();
  test_hosts_lowercased();
  test_missing_or_null_paths_are_empty();
  test_null_auth_is_no_auth();
  test_auth_pair_read();
  test_duplicate_hosts_merged();
  test_unknown_route_keys_ignored();
  test_shape_errors_table();
  test_equality_ignores_order();
  test_render_refuses_bad_input();
  test_render_escapes_model_strings();
  CHECK_DONE();
}
