/* test_merge: the fragment merge rules of DESIGN.md ("Desired state"), one
 * test per rule, on hand-built routes. */
#include "reconciler/model/merge.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* Appends a route; paths is a NULL-terminated list, scheme/env may be NULL. */
static void add(struct br_routes *r, const char *host, const char *origin, const char *scheme, const char *env,
                const char *const *paths) {
  struct br_route *route = br_routes_append(r, host);
  CHECK(route != NULL);
  if (!route)
    return;
  for (; paths && *paths; paths++)
    CHECK(br_strv_add(&route->paths, *paths) == 0);
  route->origin = origin ? strdup(origin) : NULL;
  route->auth_scheme = scheme ? strdup(scheme) : NULL;
  route->token_env = env ? strdup(env) : NULL;
}

#define PATHS(...) ((const char *const[]){__VA_ARGS__, NULL})

static void check_paths(const struct br_route *r, const char *const *want) {
  size_t n = 0;
  for (; want[n]; n++)
    if (r && n < r->paths.n)
      CHECK_STR(r->paths.v[n], want[n]);
  CHECK(r && r->paths.n == n);
}

static void test_new_hosts_appended_in_order_with_origin(void) {
  struct br_routes merged, a;
  struct br_buf warnings;
  br_routes_init(&merged);
  br_routes_init(&a);
  br_buf_init(&warnings, 4096);
  add(&a, "b.example.com", "a.yaml:2", "Bearer", "T", PATHS("/x"));
  add(&a, "a.example.com", NULL, NULL, NULL, NULL);
  CHECK(br_merge_add(&merged, &a, "a.yaml", 0, &warnings) == 0);
  CHECK(merged.n == 2);
  CHECK_STR(merged.v[0].host, "b.example.com");
  CHECK_STR(merged.v[0].origin, "a.yaml:2");
  CHECK_STR(merged.v[0].auth_scheme, "Bearer");
  CHECK_STR(merged.v[0].token_env, "T");
  check_paths(&merged.v[0], PATHS("/x"));
  CHECK_STR(merged.v[1].host, "a.example.com");
  CHECK_STR(merged.v[1].origin, "a.yaml"); /* no line known: the fragment's name */
  CHECK(warnings.len == 0);
  br_routes_free(&merged);
  br_routes_free(&a);
  br_buf_free(&warnings);
}

static void test_paths_united_in_first_seen_order(void) {
  struct br_routes merged, a, b;
  struct br_buf warnings;
  br_routes_init(&merged);
  br_routes_init(&a);
  br_routes_init(&b);
  br_buf_init(&warnings, 4096);
  add(&a, "api.github.com", "a.yaml:2", NULL, NULL, PATHS("/repos/", "/user"));
  add(&b, "api.github.com", "b.yaml:3", NULL, NULL, PATHS("/orgs/", "/user", "/gists"));
  CHECK(br_merge_add(&merged, &a, "a.yaml", 0, &warnings) == 0);
  CHECK(br_merge_add(&merged, &b, "b.yaml", 0, &warnings) == 0);
  CHECK(merged.n == 1);
  check_paths(&merged.v[0], PATHS("/repos/", "/user", "/orgs/", "/gists"));
  CHECK_STR(merged.v[0].origin, "a.yaml:2"); /* the first place that named it */
  CHECK(warnings.len == 0);
  br_routes_free(&merged);
  br_routes_free(&a);
  br_routes_free(&b);
  br_buf_free(&warnings);
}

static void test_same_host_twice_in_one_fragment(void) {
  struct br_routes merged, a;
  struct br_buf warnings;
  br_routes_init(&merged);
  br_routes_init(&a);
  br_buf_init(&warnings, 4096);
  add(&a, "x.example.com", "a.yaml:2", NULL, NULL, PATHS("/1"));
  add(&a, "y.example.com", "a.yaml:4", NULL, NULL, NULL);
  add(&a, "x.example.com", "a.yaml:6", NULL, NULL, PATHS("/2", "/1"));
  CHECK(br_merge_add(&merged, &a, "a.yaml", 2, &warnings) == 0); /* 2 distinct hosts fit */
  CHECK(merged.n == 2);
  check_paths(br_routes_find(&merged, "x.example.com"), PATHS("/1", "/2"));
  CHECK(warnings.len == 0);
  br_routes_free(&merged);
  br_routes_free(&a);
  br_buf_free(&warnings);
}

static void test_first_auth_wins_later_auth_warned(void) {
  struct br_routes merged, a, b;
  struct br_buf warnings;
  br_routes_init(&merged);
  br_routes_init(&a);
  br_routes_init(&b);
  br_buf_init(&warnings, 4096);
  add(&a, "api.github.com", "a.yaml:2", "Bearer", "TOKEN_A", PATHS("/a"));
  add(&b, "api.github.com", "b.yaml:4", "Bearer", "TOKEN_B", PATHS("/b"));
  CHECK(br_merge_add(&merged, &a, "a.yaml", 0, &warnings) == 0);
  CHECK(br_merge_add(&merged, &b, "b.yaml", 0, &warnings) == 0);
  CHECK_STR(merged.v[0].token_env, "TOKEN_A");
  check_paths(&merged.v[0], PATHS("/a", "/b")); /* the paths still merge */
  CHECK_STR(warnings.data, "b.yaml:4: host api.github.com: auth Bearer/TOKEN_B ignored, auth "
                           "already set by a.yaml:2 (the first fragment that names a host "
                           "decides its auth)\n");
  br_routes_free(&merged);
  br_routes_free(&a);
  br_routes_free(&b);
  br_buf_free(&warnings);
}

static void test_later_auth_after_no_auth_warned(void) {
  struct br_routes merged, a, b;
  struct br_buf warnings;
  br_routes_init(&merged);
  br_routes_init(&a);
  br_routes_init(&b);
  br_buf_init(&warnings, 4096);
  add(&a, "api.github.com", "a.yaml:2", NULL, NULL, NULL);
  add(&b, "api.github.com", NULL, "Bearer", "TOKEN_B", NULL);
  CHECK(br_merge_add(&merged, &a, "a.yaml", 0, &warnings) == 0);
  CHECK(br_merge_add(&merged, &b, "b.yaml", 0, &warnings) == 0);
  CHECK(merged.v[0].auth_scheme == NULL && merged.v[0].token_env == NULL);
  CHECK_STR(warnings.data, "b.yaml: host api.github.com: auth Bearer/TOKEN_B ignored, no auth "
                           "already set by a.yaml:2 (the first fragment that names a host "
                           "decides its auth)\n");
  br_routes_free(&merged);
  br_routes_free(&a);
  br_routes_free(&b);
  br_buf_free(&warnings);
}

static void test_later_no_auth_after_auth_warned(void) {
  struct br_routes merged, a, b;
  struct br_buf warnings;
  br_routes_init(&merged);
  br_routes_init(&a);
  br_routes_init(&b);
  br_buf_init(&warnings, 4096);
  add(&a, "api.github.com", "a.yaml:2", "Bearer", "TOKEN_A", NULL);
  add(&b, "api.github.com", "b.yaml:7", NULL, NULL, PATHS("/x"));
  CHECK(br_merge_add(&merged, &a, "a.yaml", 0, &warnings) == 0);
  CHECK(br_merge_add(&merged, &b, "b.yaml", 0, &warnings) == 0);
  CHECK_STR(merged.v[0].auth_scheme, "Bearer");
  CHECK_STR(merged.v[0].token_env, "TOKEN_A");
  CHECK_STR(warnings.data, "b.yaml:7: host api.github.com: no auth ignored, auth already set by "
                           "a.yaml:2 (the first fragment that names a host decides its auth)\n");
  br_routes_free(&merged);
  br_routes_free(&a);
  br_routes_free(&b);
  br_buf_free(&warnings);
}

static void test_same_auth_repeated_is_quiet(void) {
  struct br_routes merged, a, b;
  struct br_buf warnings;
  br_routes_init(&merged);
  br_routes_init(&a);
  br_routes_init(&b);
  br_buf_init(&warnings, 4096);
  add(&a, "api.github.com", "a.yaml:2", "Bearer", "TOKEN_A", NULL);
  add(&b, "api.github.com", "b.yaml:2", "Bearer", "TOKEN_A", NULL);
  add(&b, "api.github.com", "b.yaml:5", "Bearer", "TOKEN_A", NULL);
  CHECK(br_merge_add(&merged, &a, "a.yaml", 0, &warnings) == 0);
  CHECK(br_merge_add(&merged, &b, "b.yaml", 0, &warnings) == 0);
  CHECK(merged.n == 1);
  CHECK(warnings.len == 0);
  br_routes_free(&merged);
  br_routes_free(&a);
  br_routes_free(&b);
  br_buf_free(&warnings);
}

static void test_too_many_hosts_changes_nothing(void) {
  struct br_routes merged, a, b;
  struct br_buf warnings;
  br_routes_init(&merged);
  br_routes_init(&a);
  br_routes_init(&b);
  br_buf_init(&warnings, 4096);
  add(&a, "one.example.com", "a.yaml:1", "Bearer", "A", PATHS("/1"));
  add(&a, "two.example.com", "a.yaml:2", NULL, NULL, NULL);
  CHECK(br_merge_add(&merged, &a, "a.yaml", 3, &warnings) == 0);
  /* Known hosts and repeats do not count; two new hosts do. */
  add(&b, "one.example.com", "b.yaml:1", "Bearer", "B", PATHS("/2"));
  add(&b, "three.example.com", "b.yaml:2", NULL, NULL, NULL);
  add(&b, "three.example.com", "b.yaml:3", NULL, NULL, NULL);
  add(&b, "four.example.com", "b.yaml:4", NULL, NULL, NULL);
  CHECK(br_merge_add(&merged, &b, "b.yaml", 3, &warnings) == -E2BIG);
  CHECK(merged.n == 2);
  check_paths(&merged.v[0], PATHS("/1"));
  CHECK(warnings.len == 0);
  /* Exactly at the bound is fine. */
  CHECK(br_merge_add(&merged, &b, "b.yaml", 4, &warnings) == 0);
  CHECK(merged.n == 4);
  CHECK(warnings.len > 0);
  br_routes_free(&merged);
  br_routes_free(&a);
  br_routes_free(&b);
  br_buf_free(&warnings);
}

static void test_full_or_absent_warnings_do_not_fail(void) {
  struct br_routes merged, a, b;
  struct br_buf tiny;
  br_routes_init(&merged);
  br_routes_init(&a);
  br_routes_init(&b);
  br_buf_init(&tiny, 10);
  add(&a, "api.github.com", "a.yaml:2", "Bearer", "TOKEN_A", NULL);
  add(&b, "api.github.com", "b.yaml:2", "Bearer", "TOKEN_B", NULL);
  CHECK(br_merge_add(&merged, &a, "a.yaml", 0, NULL) == 0);
  CHECK(br_merge_add(&merged, &b, "b.yaml", 0, NULL) == 0);
  CHECK(br_merge_add(&merged, &b, "b.yaml", 0, &tiny) == 0);
  CHECK(tiny.len == 0); /* no half line */
  br_routes_free(&merged);
  br_routes_free(&a);
  br_routes_free(&b);
  br_buf_free(&tiny);
}

int main(void) {
  test_new_hosts_appended_in_order_with_origin();
  test_paths_united_in_first_seen_order();
  test_same_host_twice_in_one_fragment();
  test_first_auth_wins_later_auth_warned();
  test_later_auth_after_no_auth_warned();
  test_later_no_auth_after_auth_warned();
  test_same_auth_repeated_is_quiet();
  test_too_many_hosts_changes_nothing();
  test_full_or_absent_warnings_do_not_fail();
  CHECK_DONE();
}
