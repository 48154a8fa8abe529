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
  CHECK(br_egress_render_live(&live.routes, &live, &out) == 0);
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
  /* Folded in the model, yet named: a reader may act on either entry. */
  CHECK(live.drift.n == 3);
  CHECK_STR(live.drift.v[0], "routes[0].path_allowlist: \"/x\" twice; a rewrite lists it once");
  CHECK_STR(live.drift.v[1], "routes[2].host: \"A.example.com\" is not lower case; a rewrite lowers it");
  CHECK_STR(live.drift.v[2], "routes[2]: a second route for \"A.example.com\" (the first is routes[0]), auth "
                             "Bearer $T; a rewrite drops it");
  br_egress_live_free(&live);
  br_buf_free(&err);
}

static void test_unknown_route_keys_ignored(void) {
  struct br_egress_live live;
  struct br_buf err, out;
  br_buf_init(&err, 4096);
  br_buf_init(&out, 4096);
  CHECK(parse_str("{\"routes\": [{\"host\": \"a.example.com\", \"note\": [1]}]}", &live, &err) == 0);
  CHECK(br_egress_render_live(&live.routes, &live, &out) == 0);
  /* No path_allowlist: every path, rendered without one as it came. */
  CHECK(live.routes.v[0].all_paths);
  CHECK_STR(out.data, "{\n  \"routes\": [\n    {\n      \"host\": \"a.example.com\"\n    }\n  ]\n}\n");
  CHECK(live.drift.n == 1);
  CHECK_STR(live.drift.v[0], "routes[0]: unknown key \"note\"; a rewrite drops it");
  br_egress_live_free(&live);
  br_buf_free(&err);
  br_buf_free(&out);
}

/* The drift lines of a parse, one per line, for comparing with a file. */
static void drift_text(const struct br_egress_live *live, struct br_buf *out) {
  for (size_t i = 0; i < live->drift.n; i++)
    br_buf_printf(out, "%s\n", live->drift.v[i]);
  if (!out->data)
    br_buf_add(out, "", 0);
}

/* The canonical rendering of a file's own routes reads back with no drift,
 * the same routes and the same bytes: else a converge would rewrite its own
 * output forever. */
static void check_fixed_point(const char *name, const struct br_egress_live *live) {
  struct br_buf once, twice, err;
  br_buf_init(&once, BIG);
  br_buf_init(&twice, BIG);
  br_buf_init(&err, 4096);
  struct br_egress_live again;
  CHECK(br_egress_render_live(&live->routes, live, &once) == 0);
  CHECK(br_egress_parse(name, once.data, once.len, &again, &err) == 0);
  CHECK(again.drift.n == 0);
  CHECK(br_routes_equal(&again.routes, &live->routes));
  CHECK(br_egress_render_live(&again.routes, &again, &twice) == 0);
  CHECK_STR(twice.data, once.data);
  br_egress_live_free(&again);
  br_buf_free(&once);
  br_buf_free(&twice);
  br_buf_free(&err);
}

/* Table: every egress/drift/NAME.json parses, with exactly the lines of
 * NAME.drift (none: only its layout differs from the canonical form). */
static void test_drift_table(void) {
  struct br_strv names;
  case_stems("egress/drift", ".json", &names);
  CHECK(names.n >= 10);
  for (size_t i = 0; i < names.n; i++) {
    char in[512], want_path[512];
    snprintf(in, sizeof in, "egress/drift/%s.json", names.v[i]);
    snprintf(want_path, sizeof want_path, "egress/drift/%s.drift", names.v[i]);
    struct br_buf src, want, got, err;
    br_buf_init(&err, 4096);
    br_buf_init(&got, BIG);
    CHECK(slurp(in, &src) == 0);
    CHECK(slurp(want_path, &want) == 0);
    struct br_egress_live live;
    int rc = br_egress_parse(in, src.data, src.len, &live, &err);
    if (rc)
      fprintf(stderr, "%s: %s\n", in, br_buf_str(&err));
    CHECK(rc == 0);
    drift_text(&live, &got);
    if (strcmp(got.data, br_buf_str(&want)) != 0) {
      fprintf(stderr, "%s: drift differs from %s; got:\n%s", in, want_path, got.data);
      check_failures++;
    }
    check_fixed_point(in, &live);
    br_egress_live_free(&live);
    br_buf_free(&src);
    br_buf_free(&want);
    br_buf_free(&got);
    br_buf_free(&err);
  }
  br_strv_free(&names);
}

/* What jansson cannot hold stays as the file has it; the rest is written as
 * Python writes it, "\u0000" included. */
static void test_members_jansson_cannot_hold_kept(void) {
  static const char in[] = "{\"big\": 123456789012345678901234567890, \"nul\": \"a\\u0000b\",\n"
                           " \"nested\": {\"n\": [1, -98765432109876543210987654321]}, \"inf\": 1e400,\n"
                           " \"k\": {\"a\\u0000\": 1}, \"lone\": \"\\ud800\", \"routes\": [], \"z\": 1.50}\n";
  static const char want[] = "{\n"
                             "  \"big\": 123456789012345678901234567890,\n"
                             "  \"nul\": \"a\\u0000b\",\n"
                             "  \"nested\": {\"n\": [1, -98765432109876543210987654321]},\n"
                             "  \"inf\": 1e400,\n"
                             "  \"k\": {\"a\\u0000\": 1},\n"
                             "  \"lone\": \"\\ud800\",\n"
                             "  \"routes\": [\n"
                             "    {\n"
                             "      \"host\": \"a.example.com\"\n"
                             "    }\n"
                             "  ],\n"
                             "  \"z\": 1.5\n"
                             "}\n";
  struct br_egress_live live;
  struct br_buf err, out;
  br_buf_init(&err, 4096);
  br_buf_init(&out, 4096);
  CHECK(parse_str(in, &live, &err) == 0);
  CHECK(live.n_members == 7 && live.routes_at == 6 && live.drift.n == 0);
  CHECK(live.members[1].value && json_string_length(live.members[1].value) == 3);
  CHECK(!live.members[0].value && live.members[0].rawlen == 30);
  struct br_route *r = br_routes_append(&live.routes, "a.example.com");
  CHECK(r != NULL);
  r->all_paths = true;
  CHECK(br_egress_render_live(&live.routes, &live, &out) == 0);
  CHECK_STR(out.data, want);
  struct br_egress_live again;
  CHECK(br_egress_parse("t.json", out.data, out.len, &again, &err) == 0);
  CHECK(again.drift.n == 0 && again.routes.n == 1);
  br_egress_live_free(&again);
  br_egress_live_free(&live);
  br_buf_free(&err);
  br_buf_free(&out);
}

/* Routes that cannot be read are replaced; the keys beside them stay. */
static void test_bad_routes_keep_members(void) {
  struct br_egress_live live;
  struct br_buf err, out;
  br_buf_init(&err, 4096);
  br_buf_init(&out, 4096);
  CHECK(parse_str("{\"a\": 12345678901234567890123, \"routes\": [{\"host\": 1}], \"b\": \"x\\u0000\"}", &live,
                  &err) == -EINVAL);
  CHECK(live.routes.n == 0 && live.n_members == 2 && live.routes_at == 1);
  CHECK(br_egress_render_live(&live.routes, &live, &out) == 0);
  CHECK_STR(out.data, "{\n  \"a\": 12345678901234567890123,\n  \"routes\": [],\n  \"b\": \"x\\u0000\"\n}\n");
  br_egress_live_free(&live);
  CHECK(parse_str("{\"a\": [1], \"routes\": {}}", &live, &err) == -EINVAL); /* read by jansson whole */
  CHECK(live.routes.n == 0 && live.n_members == 1 && live.routes_at == 1);
  br_egress_live_free(&live);
  /* Not JSON, or not an object at the top: nothing to keep. */
  CHECK(parse_str("{\"a\": 1, \"routes\": [}", &live, &err) == -EINVAL);
  CHECK(live.n_members == 0);
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
    CHECK(live.routes.n == 0 && live.drift.n == 0);
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
  test_drift_table();
  test_members_jansson_cannot_hold_kept();
  test_bad_routes_keep_members();
  test_equality_ignores_order();
  test_render_refuses_bad_input();
  test_render_escapes_model_strings();
  CHECK_DONE();
}
