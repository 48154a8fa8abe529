/* Unit tests for reconciler/model/expiry: RFC 3339 times both ways across
 * the calendar's edges, durations, and the edit that gives a fragment's
 * text an expiry (checked by parsing the result, as the commands do). */
#include "reconciler/model/expiry.h"

#include <errno.h>

#include "check.h"
#include "reconciler/model/fragment.h"

static void expect_time(const char *text, long long want) {
  int64_t t = 0;
  const char *why = NULL;
  int rc = br_expiry_parse(text, strlen(text), &t, &why);
  if (rc || t != want) {
    fprintf(stderr, "\"%s\": rc %d (%s), %lld, want %lld\n", text, rc, why ? why : "", (long long)t, want);
    check_failures++;
  }
}

static void expect_format(long long t, const char *want) {
  char out[BR_EXPIRY_TEXT_MAX];
  br_expiry_format(t, out, sizeof out);
  CHECK_STR(out, want);
  expect_time(want, t); /* and back */
}

static void expect_duration(const char *text, long long want, const char *why_part) {
  int64_t s = 0;
  const char *why = NULL;
  int rc = br_duration_parse(text, &s, &why);
  if (want ? rc || s != want : rc != -EINVAL || !why || !strstr(why, why_part)) {
    fprintf(stderr, "duration \"%s\": rc %d, %lld, why %s\n", text, rc, (long long)s, why ? why : "(none)");
    check_failures++;
  }
}

/* insert WHEN into text, parse the result: every route expires then. */
static void expect_insert(const char *text, const char *want) {
  struct br_buf out, err;
  br_buf_init(&out, 1 << 16);
  br_buf_init(&err, 4096);
  CHECK(br_expiry_insert(text, strlen(text), "2026-07-01T12:00:00Z", &out) == 0);
  if (want)
    CHECK_STR(br_buf_str(&out), want);
  struct br_routes routes;
  br_routes_init(&routes);
  int rc = br_fragment_parse("f", br_buf_str(&out), out.len, NULL, &routes, &err);
  if (rc)
    fprintf(stderr, "inserted into %s: %s", text, br_buf_str(&err));
  CHECK(rc == 0 && routes.n > 0);
  for (size_t i = 0; i < routes.n; i++)
    CHECK(routes.v[i].expires == 1782907200);
  br_routes_free(&routes);
  br_buf_free(&out);
  br_buf_free(&err);
}

/* A text that already says expires comes out invalid, not changed in meaning. */
static void expect_insert_refused(const char *text) {
  struct br_buf out, err;
  br_buf_init(&out, 1 << 16);
  br_buf_init(&err, 4096);
  CHECK(br_expiry_insert(text, strlen(text), "2026-07-01T12:00:00Z", &out) == 0);
  struct br_routes routes;
  br_routes_init(&routes);
  CHECK(br_fragment_parse("f", br_buf_str(&out), out.len, NULL, &routes, &err) == -EINVAL);
  br_routes_free(&routes);
  br_buf_free(&out);
  br_buf_free(&err);
}

int main(void) {
  expect_time("1970-01-01T00:00:01Z", 1);
  expect_time("1970-01-01T00:00:00Z", 1); /* the epoch itself: past, and not "never" */
  expect_time("1969-12-31T23:59:59Z", 1);
  expect_time("2026-07-01T12:00:00Z", 1782907200);
  expect_time("2026-07-01t12:00:00z", 1782907200);
  expect_time("2026-07-01T14:00:00+02:00", 1782907200);
  expect_time("2026-07-01T06:30:00-05:30", 1782907200);
  expect_time("2026-07-01T12:00:00.999999Z", 1782907200);
  expect_time("2024-02-29T00:00:00Z", 1709164800);
  expect_time("2000-02-29T00:00:00Z", 951782400);
  expect_time("2016-12-31T23:59:60Z", 1483228800); /* a leap second: the next second */
  expect_time("9999-12-31T23:59:59Z", 253402300799LL);
  expect_format(1782907200, "2026-07-01T12:00:00Z");
  expect_format(951782400, "2000-02-29T00:00:00Z");
  expect_format(1, "1970-01-01T00:00:01Z");
  expect_format(4107542399LL, "2100-02-28T23:59:59Z");

  static const char *const refused[] = {
      "",
      "2026-07-01",
      "2026-07-01T12:00:00",
      "2026-07-01T12:00:00 UTC",
      "2026-07-01T12:00:00+02",
      "2026-07-01T12:00Z",
      "2100-02-29T00:00:00Z",
      "2026-04-31T00:00:00Z",
      "2026-07-01T12:60:00Z",
      "2026-07-01T12:00:61Z",
      "2026-07-01T12:00:00+24:00",
      "26-07-01T12:00:00Z",
      "2026-07-01 12:00:00Z",
  };
  for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
    int64_t t;
    const char *why = NULL;
    if (br_expiry_parse(refused[i], strlen(refused[i]), &t, &why) != -EINVAL || !why) {
      fprintf(stderr, "\"%s\" was accepted\n", refused[i]);
      check_failures++;
    }
  }

  expect_duration("30m", 1800, NULL);
  expect_duration("2h", 7200, NULL);
  expect_duration("7d", 604800, NULL);
  expect_duration("90s", 90, NULL);
  expect_duration("1h30m", 5400, NULL);
  expect_duration("3650d", 315360000, NULL);
  expect_duration("", 0, "empty");
  expect_duration("0m", 0, "zero");
  expect_duration("30", 0, "no unit");
  expect_duration("2w", 0, "unit");
  expect_duration("h", 0, "number");
  expect_duration("-1h", 0, "number");
  expect_duration("3651d", 0, "3650 days");
  expect_duration("99999999999999999999d", 0, "3650 days");

  expect_insert("routes:\n  - {host: a.example}\n",
                "expires: \"2026-07-01T12:00:00Z\"\nroutes:\n  - {host: a.example}\n");
  expect_insert("# a comment\n\n---\nroutes: [{host: a.example}]\n",
                "# a comment\n\n---\nexpires: \"2026-07-01T12:00:00Z\"\nroutes: [{host: a.example}]\n");
  expect_insert("{\"routes\": [{\"host\": \"a.example\"}]}\n",
                "{\"expires\": \"2026-07-01T12:00:00Z\", \"routes\": [{\"host\": \"a.example\"}]}\n");
  expect_insert("\xef\xbb\xbf  {routes: [{host: a.example}]}", NULL);
  expect_insert("  routes:\n    - {host: a.example}\n",
                "  expires: \"2026-07-01T12:00:00Z\"\n  routes:\n    - {host: a.example}\n");
  expect_insert("%YAML 1.1\n---\nroutes:\n  - {host: a.example, expires: 2030-01-01T00:00:00Z}\n", NULL);
  expect_insert_refused("expires: 2026-08-01T00:00:00Z\nroutes: [{host: a.example}]\n");
  expect_insert_refused("{\"routes\": [], \"expires\": \"2026-08-01T00:00:00Z\"}");
  CHECK_DONE();
}
