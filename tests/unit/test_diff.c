/* test_diff: what a converge would change, as plan lines and as the audit
 * log's JSON, one test per rule. */
#include "reconciler/model/diff.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static void add(struct br_routes *r, const char *host, const char *scheme, const char *env,
                const char *const *paths) {
  struct br_route *route = br_routes_append(r, host);
  CHECK(route != NULL);
  if (!route)
    return;
  for (; paths && *paths; paths++)
    CHECK(br_strv_add(&route->paths, *paths) == 0);
  route->auth_scheme = scheme ? strdup(scheme) : NULL;
  route->token_env = env ? strdup(env) : NULL;
}

#define PATHS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* The diff of live and desired as plan lines (indent "  ") and compact JSON. */
static void check_diff(const struct br_routes *live, const struct br_routes *desired, const char *want_lines,
                       const char *want_json) {
  struct br_diff d;
  struct br_buf out;
  br_buf_init(&out, 1 << 16);
  CHECK(br_diff_routes(live, desired, &d) == 0);
  CHECK(br_diff_empty(&d) == br_routes_equal(live, desired));
  CHECK(br_diff_format(&d, "  ", &out) == 0);
  CHECK_STR(out.len ? out.data : "", want_lines);
  json_t *j = br_diff_to_json(&d);
  CHECK(j != NULL);
  char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
  CHECK_STR(text, want_json);
  free(text);
  json_decref(j);
  br_diff_free(&d);
  br_buf_free(&out);
}

#define EMPTY_JSON                                                                                                \
  "{\"hosts_added\":[],\"hosts_removed\":[],\"paths_added\":{},\"paths_removed\":{},"                             \
  "\"auth_changed\":[],\"every_path\":{}}"

static void test_order_alone_is_no_change(void) {
  struct br_routes live, desired;
  br_routes_init(&live);
  br_routes_init(&desired);
  add(&live, "a.example.com", "Bearer", "T", PATHS("/1", "/2"));
  add(&live, "b.example.com", NULL, NULL, NULL);
  add(&desired, "b.example.com", NULL, NULL, NULL);
  add(&desired, "a.example.com", "Bearer", "T", PATHS("/2", "/1"));
  check_diff(&live, &desired, "", EMPTY_JSON);
  br_routes_free(&live);
  br_routes_free(&desired);
}

static void test_nothing_to_nothing(void) {
  struct br_routes none;
  br_routes_init(&none);
  check_diff(&none, &none, "", EMPTY_JSON);
}

static void test_added_host(void) {
  struct br_routes live, desired;
  br_routes_init(&live);
  br_routes_init(&desired);
  add(&desired, "api.github.com", "Bearer", "T", PATHS("/a", "/b"));
  add(&desired, "pypi.org", NULL, NULL, NULL);
  check_diff(&live, &desired,
             "  + host api.github.com  paths /a /b  auth Bearer $T\n"
             "  + host pypi.org\n",
             "{\"hosts_added\":[\"api.github.com\",\"pypi.org\"],\"hosts_removed\":[],"
             "\"paths_added\":{\"api.github.com\":[\"/a\",\"/b\"]},\"paths_removed\":{},"
             "\"auth_changed\":[{\"host\":\"api.github.com\",\"before\":null,"
             "\"after\":\"Bearer $T\"}],\"every_path\":{}}");
  br_routes_free(&live);
  br_routes_free(&desired);
}

static void test_removed_host(void) {
  struct br_routes live, desired;
  br_routes_init(&live);
  br_routes_init(&desired);
  add(&live, "old.example.com", "Bearer", "OLD", PATHS("/x"));
  check_diff(&live, &desired, "  - host old.example.com\n",
             "{\"hosts_added\":[],\"hosts_removed\":[\"old.example.com\"],\"paths_added\":{},"
             "\"paths_removed\":{\"old.example.com\":[\"/x\"]},"
             "\"auth_changed\":[{\"host\":\"old.example.com\",\"before\":\"Bearer $OLD\","
             "\"after\":null}],\"every_path\":{}}");
  br_routes_free(&live);
  br_routes_free(&desired);
}

static void test_modified_paths(void) {
  struct br_routes live, desired;
  br_routes_init(&live);
  br_routes_init(&desired);
  add(&live, "y.example.com", NULL, NULL, PATHS("/keep", "/d", "/e"));
  add(&desired, "y.example.com", NULL, NULL, PATHS("/c", "/keep"));
  check_diff(&live, &desired, "  ~ host y.example.com  +path /c  -path /d  -path /e\n",
             "{\"hosts_added\":[],\"hosts_removed\":[],\"paths_added\":{\"y.example.com\":[\"/c\"]},"
             "\"paths_removed\":{\"y.example.com\":[\"/d\",\"/e\"]},\"auth_changed\":[],\"every_path\":{}}");
  br_routes_free(&live);
  br_routes_free(&desired);
}

static void test_modified_auth(void) {
  struct br_routes live, desired;
  br_routes_init(&live);
  br_routes_init(&desired);
  add(&live, "y.example.com", "Bearer", "A", NULL);
  add(&live, "z.example.com", "Bearer", "A", NULL);
  add(&live, "w.example.com", NULL, NULL, NULL);
  add(&desired, "y.example.com", NULL, NULL, NULL);
  add(&desired, "z.example.com", "Bearer", "B", NULL);
  add(&desired, "w.example.com", "Basic", "W", NULL);
  check_diff(&live, &desired,
             "  ~ host y.example.com  auth Bearer $A -> none\n"
             "  ~ host z.example.com  auth Bearer $A -> Bearer $B\n"
             "  ~ host w.example.com  auth none -> Basic $W\n",
             "{\"hosts_added\":[],\"hosts_removed\":[],\"paths_added\":{},\"paths_removed\":{},"
             "\"auth_changed\":[{\"host\":\"y.example.com\",\"before\":\"Bearer $A\",\"after\":null},"
             "{\"host\":\"z.example.com\",\"before\":\"Bearer $A\",\"after\":\"Bearer $B\"},"
             "{\"host\":\"w.example.com\",\"before\":null,\"after\":\"Basic $W\"}],\"every_path\":{}}");
  br_routes_free(&live);
  br_routes_free(&desired);
}

/* Added and modified in desired order, then removed in live order. */
static void test_change_order(void) {
  struct br_routes live, desired;
  br_routes_init(&live);
  br_routes_init(&desired);
  add(&live, "gone2.example.com", NULL, NULL, NULL);
  add(&live, "mod.example.com", NULL, NULL, PATHS("/1"));
  add(&live, "same.example.com", NULL, NULL, NULL);
  add(&live, "gone1.example.com", NULL, NULL, NULL);
  add(&desired, "new.example.com", NULL, NULL, PATHS("/n"));
  add(&desired, "same.example.com", NULL, NULL, NULL);
  add(&desired, "mod.example.com", NULL, NULL, PATHS("/1", "/2"));
  add(&desired, "alpha.example.com", NULL, NULL, NULL);
  struct br_diff d;
  CHECK(br_diff_routes(&live, &desired, &d) == 0);
  CHECK(d.n == 5);
  if (d.n == 5) {
    CHECK_STR(d.v[0].host, "new.example.com");
    CHECK(d.v[0].kind == BR_CHANGE_ADDED);
    CHECK_STR(d.v[1].host, "mod.example.com");
    CHECK(d.v[1].kind == BR_CHANGE_MODIFIED);
    CHECK(d.v[1].paths_added.n == 1 && d.v[1].paths_removed.n == 0 && !d.v[1].auth_changed);
    CHECK_STR(d.v[2].host, "alpha.example.com");
    CHECK(d.v[2].kind == BR_CHANGE_ADDED);
    CHECK_STR(d.v[3].host, "gone2.example.com");
    CHECK(d.v[3].kind == BR_CHANGE_REMOVED);
    CHECK_STR(d.v[4].host, "gone1.example.com");
    CHECK(d.v[4].kind == BR_CHANGE_REMOVED);
  }
  CHECK(!br_diff_empty(&d));
  br_diff_free(&d);
  CHECK(d.n == 0 && d.v == NULL);
  br_routes_free(&live);
  br_routes_free(&desired);
}

/* Only the environment variable's name is shown; the model holds no value,
 * and nothing else from the route leaks into the auth text. */
static void test_auth_shows_env_name_only(void) {
  struct br_routes live, desired;
  br_routes_init(&live);
  br_routes_init(&desired);
  add(&desired, "a.example.com", "Bearer", "EGRESS_TOKEN_0", NULL);
  struct br_diff d;
  CHECK(br_diff_routes(&live, &desired, &d) == 0);
  CHECK(d.n == 1);
  CHECK_STR(d.n ? d.v[0].auth_after : NULL, "Bearer $EGRESS_TOKEN_0");
  CHECK(d.n && d.v[0].auth_before == NULL && d.v[0].auth_changed);
  br_diff_free(&d);
  br_routes_free(&live);
  br_routes_free(&desired);
}

static void test_control_characters_cannot_forge_lines(void) {
  struct br_routes live, desired;
  br_routes_init(&live);
  br_routes_init(&desired);
  add(&desired, "a.example.com", NULL, NULL, PATHS("/x\n- host evil"));
  struct br_diff d;
  struct br_buf out;
  br_buf_init(&out, 4096);
  CHECK(br_diff_routes(&live, &desired, &d) == 0);
  CHECK(br_diff_format(&d, NULL, &out) == 0);
  CHECK_STR(out.data, "+ host a.example.com  paths /x\\x0a- host evil\n");
  br_diff_free(&d);
  br_buf_free(&out);
  br_routes_free(&live);
  br_routes_free(&desired);
}

int main(void) {
  test_order_alone_is_no_change();
  test_nothing_to_nothing();
  test_added_host();
  test_removed_host();
  test_modified_paths();
  test_modified_auth();
  test_change_order();
  test_auth_shows_env_name_only();
  test_control_characters_cannot_forge_lines();
  CHECK_DONE();
}
