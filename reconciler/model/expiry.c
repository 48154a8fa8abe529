/* expiry: RFC 3339 times and durations, by arithmetic on the civil calendar
 * (no time zone database, no C library clock: see expiry.h). */
#include "reconciler/model/expiry.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define EXAMPLE "such as 2026-07-01T12:00:00Z"

static int bad(const char **why, const char *text) {
  *why = text;
  return -EINVAL;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* n decimal digits at s into *out. */
static bool digits(const char *s, size_t n, int *out) {
  int v = 0;
  for (size_t i = 0; i < n; i++) {
    if (!is_digit(s[i]))
      return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return true;
}

static bool leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

static int days_in_month(int y, int m) {
  static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && leap(y) ? 29 : days[m - 1];
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (Howard
 * Hinnant's days_from_civil). */
static int64_t days_from_civil(int y, int m, int d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

/* The inverse: y-m-d of a day count. */
static void civil_from_days(int64_t z, int *y, int *m, int *d) {
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  *d = (int)(doy - (153 * mp + 2) / 5 + 1);
  *m = (int)(mp < 10 ? mp + 3 : mp - 9);
  *y = (int)(yoe + era * 400 + (*m <= 2));
}

/* The zone after the seconds: Z, or an offset, into seconds east of UTC. */
static int parse_zone(const char *s, size_t len, int *offset, const char **why) {
  if (len == 0)
    return bad(why, "has no time zone, expected Z or an offset such as +02:00 at its end (" EXAMPLE ")");
  if (len == 1 && (s[0] == 'Z' || s[0] == 'z')) {
    *offset = 0;
    return 0;
  }
  int hh, mm;
  if (len != 6 || (s[0] != '+' && s[0] != '-') || !digits(s + 1, 2, &hh) || s[3] != ':' || !digits(s + 4, 2, &mm))
    return bad(why,
               "has a time zone other than Z or an offset such as +02:00, expected one of them (" EXAMPLE ")");
  if (hh > 23 || mm > 59)
    return bad(why, "has an offset that does not exist, expected -23:59 to +23:59");
  *offset = (s[0] == '-' ? -1 : 1) * (hh * 3600 + mm * 60);
  return 0;
}

int br_expiry_parse(const char *s, size_t len, int64_t *out, const char **why) {
  int y, mo, d, h, mi, sec, offset;
  if (len == 0)
    return bad(why, "is empty, expected a time " EXAMPLE);
  if (len < 19 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
      !digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') || !digits(s + 11, 2, &h) || s[13] != ':' ||
      !digits(s + 14, 2, &mi) || s[16] != ':' || !digits(s + 17, 2, &sec))
    return bad(why, "is not an RFC 3339 time, expected YYYY-MM-DDTHH:MM:SS and Z or an offset (" EXAMPLE ")");
  size_t at = 19;
  if (at < len && s[at] == '.') {
    size_t start = ++at;
    while (at < len && is_digit(s[at]))
      at++;
    if (at == start)
      return bad(why, "has a \".\" without digits after the seconds, expected a fraction or none (" EXAMPLE ")");
  }
  int rc = parse_zone(s + at, len - at, &offset, why);
  if (rc)
    return rc;
  if (mo < 1 || mo > 12)
    return bad(why, "has a month that does not exist, expected 01 to 12");
  if (d < 1 || d > days_in_month(y, mo))
    return bad(why, "has a day that its month does not have, expected a date that exists");
  /* 60 is a leap second, which RFC 3339 allows; it counts as the next one. */
  if (h > 23 || mi > 59 || sec > 60)
    return bad(why, "has a time of day that does not exist, expected 00:00:00 to 23:59:59");
  int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset;
  *out = t < 1 ? 1 : t;
  return 0;
}

void br_expiry_format(int64_t t, char *out, size_t size) {
  int64_t days = t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
  int64_t rest = t - days * 86400;
  int y, m, d;
  civil_from_days(days, &y, &m, &d);
  snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02dZ", y, m, d, (int)(rest / 3600), (int)(rest / 60 % 60),
           (int)(rest % 60));
}

int br_duration_parse(const char *s, int64_t *seconds, const char **why) {
  int64_t total = 0;
  if (!*s)
    return bad(why, "is empty, expected a duration such as 30m, 2h or 7d");
  while (*s) {
    int64_t n = 0;
    const char *start = s;
    for (; is_digit(*s); s++) /* saturating: any more is too long anyway */
      n = n > 3650 * 86400 ? n : n * 10 + (*s - '0');
    int64_t unit = *s == 's' ? 1 : *s == 'm' ? 60 : *s == 'h' ? 3600 : *s == 'd' ? 86400 : 0;
    if (s == start || !unit) {
      *why = s == start ? "does not start with a number, expected a duration such as 30m, 2h or 7d"
                        : "has no unit or an unknown one after a number, expected s, m, h or d";
      return -EINVAL;
    }
    if (n > 3650 * 86400 || (total += n * unit) > 3650 * 86400)
      return bad(why, "is longer than 3650 days, expected a shorter duration");
    s++;
  }
  if (total < 1)
    return bad(why, "is zero, expected a duration such as 30m, 2h or 7d");
  *seconds = total;
  return 0;
}

/* The start of the line after the one at p (or end). */
static size_t next_line(const char *bytes, size_t len, size_t p) {
  const char *nl = memchr(bytes + p, '\n', len - p);
  return nl ? (size_t)(nl - bytes) + 1 : len;
}

int br_expiry_insert(const char *bytes, size_t len, const char *when, struct br_buf *out) {
  size_t p = len >= 3 && memcmp(bytes, "\xef\xbb\xbf", 3) == 0 ? 3 : 0;
  /* Past blank and comment lines, directives and the document start. */
  for (;;) {
    size_t indent = p;
    while (indent < len && (bytes[indent] == ' ' || bytes[indent] == '\t' || bytes[indent] == '\r'))
      indent++;
    bool skip = indent == len || bytes[indent] == '\n' || bytes[indent] == '#' ||
                (indent == p && bytes[p] == '%') ||
                (indent == p && len - p >= 3 && memcmp(bytes + p, "---", 3) == 0 &&
                 (len - p == 3 || strchr(" \t\r\n", bytes[p + 3])));
    if (!skip || indent == len)
      break;
    p = next_line(bytes, len, p);
  }
  size_t first = p;
  while (first < len && (bytes[first] == ' ' || bytes[first] == '\t'))
    first++;
  int rc = br_buf_add(out, bytes, first < len && bytes[first] == '{' ? first + 1 : p);
  if (!rc && first < len && bytes[first] == '{') {
    rc = br_buf_printf(out, "\"expires\": \"%s\", ", when);
    return rc ? rc : br_buf_add(out, bytes + first + 1, len - first - 1);
  }
  /* A block mapping: a line of its own at the mapping's indentation. */
  if (!rc)
    rc = br_buf_add(out, bytes + p, first - p);
  if (!rc)
    rc = br_buf_printf(out, "expires: \"%s\"\n", when);
  return rc ? rc : br_buf_add(out, bytes + p, len - p);
}
