/* test_merge: the fragment merge rules of DESIGN.md ("Desired state"), one
 * case per rule, as data under merge/ (run from tests/data): each directory
 * is a slug's fragments beside what merging them must give.
 *
 *   merge/CASE/NAME.yaml|.yml|.json  fragments, parsed by br_fragment_parse
 *                                    and merged in byte order of NAME, each
 *                                    called by its file name in messages
 *   merge/CASE/expected.json         the merged routes as the egress file
 *                                    renders them (br_egress_render, no doc)
 *   merge/CASE/expected-origins.txt  "HOST ORIGIN", one line per merged route
 *   merge/CASE/expected-warnings.txt the warnings, byte for byte (absent: none)
 *   merge/CASE/max-routes            the bound on distinct hosts (absent: none)
 *   merge/CASE/max-paths             the bound on paths per merged route (absent:
 *                                    none)
 *   merge/CASE/expected-error.txt    "NAME: E2BIG at routes[K] (max_routes|
 *                                    max_paths)": that fragment is refused
 *                                    and merging stops there; the other files
 *                                    then say what merged still holds (absent:
 *                                    every fragment merges)
 *
 * Any other file in a case directory is an error, so a misspelt expectation
 * cannot silently stop being checked. What data cannot say (a route without
 * an origin, a missing or full warnings buffer) is tested from C below. */
#include "reconciler/model/merge.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "common/fileio.h"
#include "reconciler/model/egress.h"
#include "reconciler/model/fragment.h"

#define CASES_DIR "merge"
#define MAX_FILE (1u << 20)

static const char *const case_files[] = {"expected.json",
                                         "expected-origins.txt",
                                         "expected-warnings.txt",
                                         "max-routes",
                                         "max-paths",
                                         "expected-error.txt",
                                         NULL};

static bool is_case_file(const char *name) {
  for (const char *const *f = case_files; *f; f++)
    if (strcmp(name, *f) == 0)
      return true;
  return false;
}

/* The bytes of dir/name into out; an absent file reads as "" when optional. */
static bool read_case_file(const char *dir, const char *name, bool optional, struct br_buf *out) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  br_buf_init(out, MAX_FILE);
  int rc = br_file_read(path, MAX_FILE, false, out);
  if (rc == -ENOENT && optional)
    rc = 0;
  if (rc == 0 && !out->data)
    rc = br_buf_add(out, "", 0);
  if (rc) {
    fprintf(stderr, "%s: cannot read: %s\n", path, strerror(-rc));
    check_failures++;
  }
  return rc == 0;
}

static void expect_same(const char *dir, const char *what, const struct br_buf *got, const struct br_buf *want) {
  const char *g = br_buf_str(got), *w = br_buf_str(want);
  if (strcmp(g, w) != 0) {
    fprintf(stderr, "%s/%s differs; got:\n%s-- want:\n%s--\n", dir, what, g, w);
    check_failures++;
  }
}

/* max-routes, max-paths: a decimal number and a newline. */
static bool parse_max(const char *dir, const char *what, const struct br_buf *text, size_t *max_routes) {
  *max_routes = 0;
  if (!text->len)
    return true;
  char *end = NULL;
  errno = 0;
  unsigned long long n = strtoull(text->data, &end, 10);
  if (errno || end == text->data || text->data[0] < '0' || text->data[0] > '9' || strcmp(end, "\n") != 0) {
    fprintf(stderr, "%s/%s: expected a number and a newline\n", dir, what);
    check_failures++;
    return false;
  }
  *max_routes = (size_t)n;
  return true;
}

static const char *error_name(int rc) {
  switch (rc) {
  case -E2BIG:
    return "E2BIG";
  case -ENOMEM:
    return "ENOMEM";
  default:
    return "unexpected error";
  }
}

/* Parses and merges the fragments of one case, then compares each result
 * with its expected file. */
static void run_case(const char *name) {
  char dir[256];
  snprintf(dir, sizeof dir, "%s/%s", CASES_DIR, name);
  struct br_strv fragments;
  br_strv_init(&fragments);
  DIR *d = opendir(dir);
  CHECK(d != NULL);
  if (!d)
    return;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 || is_case_file(e->d_name))
      continue;
    if (br_fragment_name_counts(e->d_name)) {
      CHECK(br_strv_add(&fragments, e->d_name) == 0);
    } else {
      fprintf(stderr, "%s/%s: neither a fragment nor an expected file\n", dir, e->d_name);
      check_failures++;
    }
  }
  closedir(d);
  br_strv_sort(&fragments);
  if (!fragments.n) {
    fprintf(stderr, "%s: no fragments\n", dir);
    check_failures++;
  }

  struct br_buf want_json, want_origins, want_warnings, want_error, max_text, max_paths_text;
  bool readable = read_case_file(dir, "expected.json", false, &want_json);
  readable &= read_case_file(dir, "expected-origins.txt", false, &want_origins);
  readable &= read_case_file(dir, "expected-warnings.txt", true, &want_warnings);
  readable &= read_case_file(dir, "expected-error.txt", true, &want_error);
  readable &= read_case_file(dir, "max-routes", true, &max_text);
  readable &= read_case_file(dir, "max-paths", true, &max_paths_text);
  size_t max_routes = 0, max_paths = 0;
  readable &= parse_max(dir, "max-routes", &max_text, &max_routes);
  readable &= parse_max(dir, "max-paths", &max_paths_text, &max_paths);

  struct br_routes merged;
  struct br_buf warnings, got_error, got_json, got_origins, bytes, parse_error;
  br_routes_init(&merged);
  br_buf_init(&warnings, 65536);
  br_buf_init(&got_error, 4096);
  br_buf_init(&got_json, MAX_FILE);
  br_buf_init(&got_origins, MAX_FILE);
  br_buf_init(&parse_error, 4096);
  for (size_t i = 0; readable && i < fragments.n; i++) {
    const char *fragment = fragments.v[i];
    if (!read_case_file(dir, fragment, false, &bytes))
      break;
    struct br_routes routes;
    br_routes_init(&routes);
    br_buf_reset(&parse_error);
    int rc = br_fragment_parse(fragment, bytes.data, bytes.len, NULL, &routes, &parse_error);
    if (rc) {
      fprintf(stderr, "%s/%s: not a valid fragment: %s", dir, fragment,
              parse_error.data ? parse_error.data : "?\n");
      check_failures++;
    } else {
      struct br_merge_excess excess = {0};
      rc = br_merge_add_limited(&merged, &routes, fragment, max_routes, max_paths, &excess, &warnings);
      if (rc == -E2BIG)
        br_buf_printf(&got_error, "%s: E2BIG at routes[%zu] (%s)\n", fragment, excess.route,
                      excess.paths ? "max_paths" : "max_routes");
      else if (rc)
        br_buf_printf(&got_error, "%s: %s\n", fragment, error_name(rc));
    }
    br_routes_free(&routes);
    br_buf_free(&bytes);
    if (rc)
      break;
  }
  if (readable) {
    CHECK(br_egress_render(&merged, NULL, &got_json) == 0);
    for (size_t i = 0; i < merged.n; i++)
      br_buf_printf(&got_origins, "%s %s\n", merged.v[i].host,
                    merged.v[i].origin ? merged.v[i].origin : "(no origin)");
    expect_same(dir, "expected-error.txt", &got_error, &want_error);
    expect_same(dir, "expected.json", &got_json, &want_json);
    expect_same(dir, "expected-origins.txt", &got_origins, &want_origins);
    expect_same(dir, "expected-warnings.txt", &warnings, &want_warnings);
  }
  br_routes_free(&merged);
  br_strv_free(&fragments);
  struct br_buf *const bufs[] = {&want_json, &want_origins,   &want_warnings, &want_error,
                                 &max_text,  &max_paths_text, &warnings,      &got_error,
                                 &got_json,  &got_origins,    &parse_error};
  for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
    br_buf_free(bufs[i]);
}

/* Every directory under merge/ is a case, in byte order. */
static void test_data_cases(void) {
  struct br_strv names;
  br_strv_init(&names);
  DIR *d = opendir(CASES_DIR);
  CHECK(d != NULL);
  if (!d)
    return;
  struct dirent *e;
  while ((e = readdir(d))) {
    char path[512];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", CASES_DIR, e->d_name);
    if (e->d_name[0] == '.')
      continue;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
      CHECK(br_strv_add(&names, e->d_name) == 0);
    } else {
      fprintf(stderr, "%s: not a case directory\n", path);
      check_failures++;
    }
  }
  closedir(d);
  br_strv_sort(&names);
  CHECK(names.n >= 14); /* a case directory lost is a rule no longer tested */
  for (size_t i = 0; i < names.n; i++)
    run_case(names.v[i]);
  br_strv_free(&names);
}

/* ---- what the data cannot say: hand-built routes ---- */

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

/* A route without an origin (built by a caller, not parsed) is named by its
 * fragment: as the origin of a host it adds, and in an auth warning. */
static void test_no_origin_named_by_fragment(void) {
  struct br_routes merged, a, b;
  struct br_buf warnings;
  br_routes_init(&merged);
  br_routes_init(&a);
  br_routes_init(&b);
  br_buf_init(&warnings, 4096);
  add(&a, "b.example.com", "a.yaml:2", "Bearer", "T", PATHS("/x"));
  add(&a, "a.example.com", NULL, NULL, NULL, NULL);
  CHECK(br_merge_add(&merged, &a, "a.yaml", 0, &warnings) == 0);
  CHECK(merged.n == 2);
  CHECK_STR(merged.v[0].origin, "a.yaml:2");
  CHECK_STR(merged.v[1].host, "a.example.com");
  CHECK_STR(merged.v[1].origin, "a.yaml"); /* no line known: the fragment's name */
  add(&b, "a.example.com", NULL, "Bearer", "TOKEN_B", NULL);
  CHECK(br_merge_add(&merged, &b, "b.yaml", 0, &warnings) == 0);
  CHECK(merged.v[1].auth_scheme == NULL && merged.v[1].token_env == NULL);
  CHECK_STR(warnings.data, "b.yaml: host a.example.com: auth Bearer/TOKEN_B ignored, no auth "
                           "already set by a.yaml (the first fragment that names a host "
                           "decides its auth)\n");
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
  test_data_cases();
  test_no_origin_named_by_fragment();
  test_full_or_absent_warnings_do_not_fail();
  CHECK_DONE();
}
