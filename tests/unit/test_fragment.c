/* Unit tests for reconciler/fragment: every file under fragments/ against its
 * .expected routes or .error line, then the validators and limits from C. */
#include "reconciler/model/fragment.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define CASES_DIR "fragments"

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  struct br_buf b;
  br_buf_init(&b, 8 << 20);
  char chunk[8192];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
    if (br_buf_add(&b, chunk, n))
      break;
  fclose(f);
  *len = b.len;
  return br_buf_steal(&b);
}

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

static bool is_case_input(const char *name) {
  return name[0] != '.' && (ends_with(name, ".yaml") || ends_with(name, ".yml") || ends_with(name, ".json"));
}

/* The line format of .expected files: "ORIGIN HOST PATH... [SCHEME TOKEN_ENV]
 * [expires=SECONDS]"; a route without path_allowlist (every path) shows
 * "(every path)". */
static void print_routes(const struct br_routes *r, size_t from, struct br_buf *out) {
  for (size_t i = from; i < r->n; i++) {
    const struct br_route *route = &r->v[i];
    br_buf_printf(out, "%s %s", route->origin ? route->origin : "(no origin)", route->host);
    if (route->all_paths)
      br_buf_adds(out, " (every path)");
    for (size_t j = 0; j < route->paths.n; j++)
      br_buf_printf(out, " %s", route->paths.v[j]);
    if (route->auth_scheme || route->token_env)
      br_buf_printf(out, " %s %s", route->auth_scheme ? route->auth_scheme : "(null)",
                    route->token_env ? route->token_env : "(null)");
    if (route->expires)
      br_buf_printf(out, " expires=%lld", (long long)route->expires);
    br_buf_adds(out, "\n");
  }
}

static size_t count_lines(const char *s) {
  size_t n = 0;
  for (; s && *s; s++)
    n += *s == '\n';
  return n;
}

/* An input with the same name and the given extension exists. */
static bool sibling(const char *dir, const char *name, size_t stem, const char *ext, char *path, size_t size) {
  snprintf(path, size, "%s/%.*s%s", dir, (int)stem, name, ext);
  FILE *f = fopen(path, "rb");
  if (f)
    fclose(f);
  return f != NULL;
}

static void run_case(const char *name) {
  char path[512], expected_path[512], error_path[512];
  size_t stem = strrchr(name, '.') - name;
  snprintf(path, sizeof path, "%s/%s", CASES_DIR, name);
  bool want_routes = sibling(CASES_DIR, name, stem, ".expected", expected_path, sizeof expected_path);
  bool want_error = sibling(CASES_DIR, name, stem, ".error", error_path, sizeof error_path);
  if (want_routes == want_error) {
    fprintf(stderr, "%s: needs exactly one of .expected and .error\n", path);
    check_failures++;
    return;
  }
  size_t len = 0, want_len = 0;
  char *bytes = read_file(path, &len);
  char *want = read_file(want_routes ? expected_path : error_path, &want_len);
  CHECK(bytes && want);
  if (!bytes || !want) {
    free(bytes);
    free(want);
    return;
  }
  struct br_routes routes;
  br_routes_init(&routes);
  struct br_buf err, got;
  br_buf_init(&err, 65536);
  br_buf_init(&got, 1 << 20);
  int rc = br_fragment_parse(name, bytes, len, NULL, &routes, &err);
  if (want_routes) {
    print_routes(&routes, 0, &got);
    if (rc != 0 || strcmp(br_buf_str(&got), want) != 0) {
      fprintf(stderr, "%s: rc=%d\n  error: %s  got routes:\n%s  want routes:\n%s", path, rc,
              err.data ? err.data : "(none)\n", br_buf_str(&got), want);
      check_failures++;
    }
  } else {
    if (rc >= 0 || rc == -ENOMEM || routes.n != 0 || strcmp(br_buf_str(&err), want) != 0 ||
        count_lines(err.data) != 1) {
      fprintf(stderr, "%s: rc=%d, %zu routes\n  got:  %s  want: %s", path, rc, routes.n,
              err.data ? err.data : "(no message)\n", want);
      check_failures++;
    }
  }
  br_routes_free(&routes);
  br_buf_free(&err);
  br_buf_free(&got);
  free(bytes);
  free(want);
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static size_t run_data_cases(void) {
  DIR *d = opendir(CASES_DIR);
  CHECK(d != NULL);
  if (!d)
    return 0;
  struct br_strv names;
  br_strv_init(&names);
  struct dirent *e;
  while ((e = readdir(d))) {
    const char *name = e->d_name;
    if (is_case_input(name)) {
      br_strv_add(&names, name);
      continue;
    }
    /* An answer without a question is a case that silently stopped running. */
    if (ends_with(name, ".expected") || ends_with(name, ".error")) {
      char path[512];
      size_t stem = strrchr(name, '.') - name;
      if (!sibling(CASES_DIR, name, stem, ".yaml", path, sizeof path) &&
          !sibling(CASES_DIR, name, stem, ".yml", path, sizeof path) &&
          !sibling(CASES_DIR, name, stem, ".json", path, sizeof path)) {
        fprintf(stderr, "%s/%s: no input file beside it\n", CASES_DIR, name);
        check_failures++;
      }
    }
  }
  closedir(d);
  qsort(names.v, names.n, sizeof *names.v, cmp_names);
  for (size_t i = 0; i < names.n; i++)
    run_case(names.v[i]);
  size_t n = names.n;
  br_strv_free(&names);
  return n;
}

/* Parses text with the given limits; returns rc and leaves the message in msg. */
static int parse(const char *text, size_t len, const struct br_limits *limits, struct br_routes *out,
                 struct br_buf *msg) {
  br_buf_reset(msg);
  return br_fragment_parse("t.yaml", text, len, limits, out, msg);
}

static void expect_error(const char *text, size_t len, const struct br_limits *limits, int want_rc,
                         const char *want_msg) {
  struct br_routes r;
  br_routes_init(&r);
  struct br_buf msg;
  br_buf_init(&msg, 65536);
  int rc = parse(text, len, limits, &r, &msg);
  CHECK(rc == want_rc);
  CHECK(r.n == 0);
  CHECK_STR(msg.data, want_msg);
  br_routes_free(&r);
  br_buf_free(&msg);
}

static void test_host_check(void) {
  static const char *const good[][2] = {
      {"api.github.com", "api.github.com"},
      {"API.GitHub.COM", "api.github.com"},
      {"localhost", "localhost"},
      {"xn--bcher-kva.example", "xn--bcher-kva.example"},
      {"10.0.0.1", "10.0.0.1"},
      {"255.255.255.255", "255.255.255.255"},
      {"0.0.0.0", "0.0.0.0"},
      {"a-b.c0", "a-b.c0"},
      {"1a.example", "1a.example"},
      {"123.example", "123.example"},
  };
  static const char *const bad[][2] = {
      {"", "is empty"},
      {"*.github.com", "is a wildcard"},
      {"git*hub.com", "is a wildcard"},
      {"a.com:443", "has a port"},
      {"https://a.com", "URL scheme"},
      {"[::1]", "IPv6"},
      {"fe80::1", "IPv6"},
      {"a.com/x", "path or query"},
      {"a.com?x", "path or query"},
      {"a.com#x", "path or query"},
      {"u@a.com", "user info"},
      {"a b.com", "whitespace or control"},
      {"a.com\n", "whitespace or control"},
      {"b\xc3\xbc"
       "cher.de",
       "non-ASCII"},
      {"a_b.com", "a character other than"},
      {"a..b", "empty label"},
      {".a.com", "empty label"},
      {"a.com.", "ends with a dot"},
      {".", "ends with a dot"},
      {"-a.com", "starts or ends with \"-\""},
      {"a-.com", "starts or ends with \"-\""},
      {"1.2.3", "not an IPv4 address"},
      {"256.1.1.1", "not an IPv4 address"},
      {"01.2.3.4", "not an IPv4 address"},
      {"1.2.3.4.5", "not an IPv4 address"},
      {"4294967295", "not an IPv4 address"},
      {"a.1", "not an IPv4 address"},
  };
  char norm[BR_HOST_MAX + 1];
  const char *why = NULL;
  for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
    int rc = br_host_check(good[i][0], strlen(good[i][0]), norm, &why);
    if (rc)
      fprintf(stderr, "host %s: %s\n", good[i][0], why);
    CHECK(rc == 0);
    CHECK_STR(rc == 0 ? norm : "", good[i][1]);
  }
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    why = NULL;
    int rc = br_host_check(bad[i][0], strlen(bad[i][0]), norm, &why);
    CHECK(rc == -EINVAL);
    if (!why || !strstr(why, bad[i][1])) {
      fprintf(stderr, "host \"%s\": want \"%s\" in \"%s\"\n", bad[i][0], bad[i][1], why ? why : "(none)");
      check_failures++;
    }
  }
  /* A NUL inside the length is a control character, not the end. */
  CHECK(br_host_check("a.com\0.evil", 11, norm, &why) == -EINVAL);
  /* Exactly at the limits, and one over: labels of 63, names of 253. */
  char name[300];
  memset(name, 'a', 64);
  CHECK(br_host_check(name, 63, norm, &why) == 0);
  CHECK(br_host_check(name, 64, norm, &why) == -EINVAL && strstr(why, "label longer than 63"));
  for (size_t i = 0; i < 253; i++)
    name[i] = i % 2 ? '.' : 'a';
  CHECK(br_host_check(name, 253, norm, &why) == 0 && strlen(norm) == 253);
  name[253] = '.';
  name[254] = 'a';
  CHECK(br_host_check(name, 255, norm, &why) == -EINVAL && strstr(why, "longer than 253"));
}

static void test_path_check(void) {
  static const char *const good[] = {"/", "/repos/acme/", "/user", "/caf%C3%A9", "/a?b=c", "/~x/*"};
  static const char *const bad[][2] = {
      {"", "is empty"},
      {"repos/", "does not start with \"/\""},
      {"https://a.com/x", "does not start with \"/\""},
      {"/a b", "whitespace or control"},
      {"/a\t", "whitespace or control"},
      {"/a\x7f", "whitespace or control"},
      {"/caf\xc3\xa9", "non-ASCII"},
  };
  const char *why = NULL;
  for (size_t i = 0; i < sizeof good / sizeof *good; i++)
    CHECK(br_path_check(good[i], strlen(good[i]), &why) == 0);
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    why = NULL;
    CHECK(br_path_check(bad[i][0], strlen(bad[i][0]), &why) == -EINVAL);
    if (!why || !strstr(why, bad[i][1])) {
      fprintf(stderr, "path \"%s\": want \"%s\" in \"%s\"\n", bad[i][0], bad[i][1], why ? why : "(none)");
      check_failures++;
    }
  }
  CHECK(br_path_check("/a\0b", 4, &why) == -EINVAL);
  char path[BR_PATH_MAX + 2];
  memset(path, 'x', sizeof path);
  path[0] = '/';
  CHECK(br_path_check(path, BR_PATH_MAX, &why) == 0);
  CHECK(br_path_check(path, BR_PATH_MAX + 1, &why) == -EINVAL && strstr(why, "longer than 2048"));
}

static void test_auth_names(void) {
  CHECK(br_token_env_valid("EGRESS_TOKEN_0"));
  CHECK(br_token_env_valid("_X"));
  CHECK(br_token_env_valid("A"));
  CHECK(!br_token_env_valid(""));
  CHECK(!br_token_env_valid("egress_token"));
  CHECK(!br_token_env_valid("0TOKEN"));
  CHECK(!br_token_env_valid("TOKEN-0"));
  CHECK(!br_token_env_valid("TOKEN 0"));
  char env[BR_TOKEN_ENV_MAX + 2];
  memset(env, 'T', sizeof env);
  env[BR_TOKEN_ENV_MAX] = '\0';
  CHECK(br_token_env_valid(env));
  env[BR_TOKEN_ENV_MAX] = 'T';
  env[BR_TOKEN_ENV_MAX + 1] = '\0';
  CHECK(!br_token_env_valid(env));

  CHECK(br_auth_scheme_valid("Bearer", 6));
  CHECK(br_auth_scheme_valid("token", 5));
  CHECK(br_auth_scheme_valid("Basic", 5));
  CHECK(br_auth_scheme_valid("X-Api-Key", 9));
  CHECK(!br_auth_scheme_valid("", 0));
  CHECK(!br_auth_scheme_valid("Bearer abc", 10));
  CHECK(!br_auth_scheme_valid("Bearer:", 7));
  CHECK(!br_auth_scheme_valid("Bea\0rer", 7));
}

/* A fragment of n routes, each with paths paths, built in memory. */
static void build_fragment(struct br_buf *b, size_t n, size_t paths) {
  br_buf_reset(b);
  br_buf_adds(b, "routes:\n");
  for (size_t i = 0; i < n; i++) {
    br_buf_printf(b, "  - host: h%zu.example\n    path_allowlist:\n", i);
    for (size_t j = 0; j < paths; j++)
      br_buf_printf(b, "      - /p%zu\n", j);
  }
}

static void test_limits(void) {
  struct br_limits lim;
  struct br_routes r;
  struct br_buf text, msg;
  br_routes_init(&r);
  br_buf_init(&text, 8 << 20);
  br_buf_init(&msg, 65536);

  /* The defaults: 4096 routes fit, 4097 do not; 1024 paths fit, 1025 do not. */
  build_fragment(&text, 4096, 1);
  CHECK(parse(text.data, text.len, NULL, &r, &msg) == 0 && r.n == 4096);
  br_routes_free(&r);
  build_fragment(&text, 4097, 1);
  CHECK(parse(text.data, text.len, NULL, &r, &msg) == -E2BIG && r.n == 0);
  CHECK_STR(msg.data, "t.yaml:2:3: routes: 4097 routes, expected at most 4096 per fragment\n");
  build_fragment(&text, 1, 1024);
  CHECK(parse(text.data, text.len, NULL, &r, &msg) == 0 && r.n == 1 && r.v[0].paths.n == 1024);
  br_routes_free(&r);
  build_fragment(&text, 1, 1025);
  CHECK(parse(text.data, text.len, NULL, &r, &msg) == -E2BIG && r.n == 0);
  CHECK_STR(msg.data, "t.yaml:4:7: routes[0].path_allowlist: 1025 paths, expected at most 1024 per route\n");

  /* Small limits of the caller's own. */
  br_limits_default(&lim);
  lim.max_routes = 2;
  lim.max_paths = 3;
  build_fragment(&text, 2, 3);
  CHECK(parse(text.data, text.len, &lim, &r, &msg) == 0 && r.n == 2);
  br_routes_free(&r);
  build_fragment(&text, 3, 1);
  expect_error(text.data, text.len, &lim, -E2BIG,
               "t.yaml:2:3: routes: 3 routes, expected at most 2 per fragment\n");
  build_fragment(&text, 1, 4);
  expect_error(text.data, text.len, &lim, -E2BIG,
               "t.yaml:4:7: routes[0].path_allowlist: 4 paths, expected at most 3 per route\n");
  /* Far over the path limit, yamldoc's node budget stops the file first;
   * still -E2BIG, still file, line and field. */
  build_fragment(&text, 1, 500);
  expect_error(text.data, text.len, &lim, -E2BIG,
               "t.yaml:84:9: routes[0].path_allowlist[80]: too many nodes, expected a smaller document\n");

  /* A hostile file of tiny nodes, "[a,a,a,...]", is stopped at a quarter of
   * the byte limit in nodes, long before memory grows large. */
  br_buf_reset(&text);
  br_buf_adds(&text, "routes: [[");
  while (text.len < 1024 * 1024 - 4)
    br_buf_adds(&text, "a,");
  br_buf_adds(&text, "a]]");
  expect_error(text.data, text.len, NULL, -E2BIG,
               "t.yaml:1:524419: routes[0][262204]: too many nodes, expected a smaller document\n");

  /* Nesting: the routes format itself needs four levels. */
  lim = (struct br_limits){.max_file_bytes = 4096, .max_routes = 8, .max_paths = 8, .max_depth = 4};
  const char *ok = "routes: [{host: a.com, path_allowlist: [/]}]\n";
  CHECK(parse(ok, strlen(ok), &lim, &r, &msg) == 0 && r.n == 1);
  br_routes_free(&r);
  lim.max_depth = 3;
  expect_error(ok, strlen(ok), &lim, -EINVAL,
               "t.yaml:1:40: routes[0].path_allowlist: nested too deeply, expected at most 3 levels\n");

  /* Size: refused before parsing, whatever the bytes. */
  size_t big = 1024 * 1024 + 1;
  char *huge = malloc(big);
  CHECK(huge != NULL);
  if (huge) {
    memset(huge, '#', big);
    expect_error(huge, big, NULL, -EFBIG, "t.yaml:1:1: (file): 1048577 bytes, expected at most 1048576\n");
    memcpy(huge, "routes: []\n", 11); /* comments up to exactly the limit are fine */
    CHECK(parse(huge, big - 1, NULL, &r, &msg) == 0 && r.n == 0);
    lim.max_file_bytes = 100;
    expect_error(huge, 101, &lim, -EFBIG, "t.yaml:1:1: (file): 101 bytes, expected at most 100\n");
    free(huge);
  }
  br_routes_free(&r);
  br_buf_free(&text);
  br_buf_free(&msg);
}

static void test_bytes(void) {
  /* Non-UTF-8 is placed at its line and column, whatever libyaml reports. */
  const char latin1[] = "routes:\n  - host: caf\xe9.example\n    path_allowlist: [/]\n";
  expect_error(latin1, sizeof latin1 - 1, NULL, -EINVAL,
               "t.yaml:2:15: encoding: invalid trailing UTF-8 octet at byte 22, expected UTF-8 text\n");
  const char nul[] = "routes:\n  - host: a\0b\n";
  expect_error(nul, sizeof nul - 1, NULL, -EINVAL,
               "t.yaml:2:12: encoding: control characters are not allowed at byte 19, expected UTF-8 text\n");
  const char utf16[] = "\xff\xfer\0o\0u\0t\0e\0s\0:\0 \0[\0]\0";
  expect_error(utf16, sizeof utf16 - 1, NULL, -EINVAL,
               "t.yaml:1:1: encoding: invalid leading UTF-8 octet at byte 0, expected UTF-8 text\n");
  /* An empty buffer may come as NULL. */
  expect_error(NULL, 0, NULL, -EINVAL,
               "t.yaml:1:1: (document): empty fragment, expected a mapping with the single key \"routes\" "
               "(\"routes: []\" declares no routes)\n");
}

/* Routes are appended; an error leaves out and err as they were, plus one line. */
static void test_append_and_rollback(void) {
  struct br_routes r;
  br_routes_init(&r);
  struct br_buf msg;
  br_buf_init(&msg, 65536);
  const char *first = "routes: [{host: one.example, path_allowlist: [/a]}]\n";
  const char *second = "routes:\n- {host: two.example, path_allowlist: [/b]}\n- {host: three.example, "
                       "path_allowlist: [/c], auth_scheme: Bearer, token_env: T}\n";
  const char *broken = "routes:\n- {host: four.example, path_allowlist: [/d]}\n- {host: '*.x'}\n";
  CHECK(br_fragment_parse("a.yaml", first, strlen(first), NULL, &r, &msg) == 0);
  CHECK(br_fragment_parse("b.yaml", second, strlen(second), NULL, &r, &msg) == 0);
  br_buf_adds(&msg, "earlier line\n");
  CHECK(br_fragment_parse("c.yaml", broken, strlen(broken), NULL, &r, &msg) == -EINVAL);
  CHECK_STR(msg.data, "earlier line\nc.yaml:3:10: routes[1].host: \"*.x\" is a wildcard, "
                      "expected an exact host name\n");
  struct br_buf got;
  br_buf_init(&got, 4096);
  print_routes(&r, 0, &got);
  CHECK_STR(got.data, "a.yaml:1 one.example /a\nb.yaml:2 two.example /b\n"
                      "b.yaml:3 three.example /c Bearer T\n");
  br_buf_free(&got);
  br_routes_free(&r);
  br_buf_free(&msg);
}

/* A 1 MiB fragment of 100,000 distinct top-level keys is refused for its
 * first unknown key, as the rules say (refusing it cost 30 s of CPU while
 * each key was compared with every earlier one; no time is asserted). With
 * the keys inside a route instead, the route's first unknown key. */
static void test_many_keys(void) {
  enum { KEYS = 100000 };
  struct br_buf text;
  br_buf_init(&text, 1 << 20);
  CHECK(br_buf_adds(&text, "routes: []\n") == 0);
  for (int i = 0; i < KEYS; i++)
    CHECK(br_buf_printf(&text, "k%05d: 1\n", i) == 0);
  CHECK(text.len <= 1 << 20);
  expect_error(text.data, text.len, NULL, -EINVAL,
               "t.yaml:2:1: k00000: unknown key, expected routes or expires\n");
  br_buf_reset(&text);
  br_buf_adds(&text, "routes:\n- host: a.example\n  path_allowlist: [/]\n");
  for (int i = 0; i < 60000; i++)
    br_buf_printf(&text, "  k%05d: 1\n", i);
  expect_error(text.data, text.len, NULL, -EINVAL,
               "t.yaml:4:3: routes[0].k00000: unknown key, expected host, path_allowlist, auth_scheme, token_env "
               "or expires\n");
  br_buf_free(&text);
}

/* A time already past is an error only when the caller says when "now" is
 * (a file being installed or checked); the daemon reads it as expired. */
static void test_expires_after(void) {
  static const char text[] =
      "expires: 2026-07-01T12:00:00Z\nroutes:\n  - {host: a.example, path_allowlist: [/]}\n";
  struct br_limits limits;
  br_limits_default(&limits);
  struct br_routes routes;
  br_routes_init(&routes);
  struct br_buf err;
  br_buf_init(&err, 4096);
  CHECK(br_fragment_parse("f.yaml", text, strlen(text), &limits, &routes, &err) == 0 && routes.n == 1);
  limits.expires_after = 1782907200 - 1; /* a second before */
  CHECK(br_fragment_parse("f.yaml", text, strlen(text), &limits, &routes, &err) == 0 && routes.n == 2);
  limits.expires_after = 1782907200; /* the moment itself: expired */
  CHECK(br_fragment_parse("f.yaml", text, strlen(text), &limits, &routes, &err) == -EINVAL && routes.n == 2);
  CHECK_STR(br_buf_str(&err), "f.yaml:1:10: expires: \"2026-07-01T12:00:00Z\" is in the past (it is "
                              "2026-07-01T12:00:00Z now), expected a time to come\n");
  br_routes_free(&routes);
  br_buf_free(&err);
}

int main(void) {
  size_t cases = run_data_cases();
  if (cases < 40) {
    fprintf(stderr, "only %zu data cases under %s, expected 40 or more\n", cases, CASES_DIR);
    check_failures++;
  }
  test_host_check();
  test_path_check();
  test_auth_names();
  test_limits();
  test_bytes();
  test_append_and_rollback();
  test_many_keys();
  test_expires_after();
  CHECK_DONE();
}
