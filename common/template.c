/* template: "{name}" placeholder checking and expansion. Pure string work:
 * it must not know which names exist or what their values mean. */
#include "common/template.h"

#include <errno.h>
#include <string.h>

#include "common/yamldoc.h"

/* The index of the name spelled by the n bytes at s, or -1. */
static long find_name(const char *s, size_t len, const char *const *names, const char *const *values, size_t n) {
  for (size_t i = 0; i < n; i++)
    if ((!values || values[i]) && strlen(names[i]) == len && memcmp(names[i], s, len) == 0)
      return (long)i;
  return -1;
}

/* Walks tmpl once, appending literal text and values to out unless out is
 * NULL (a check only). At a "{" that opens no known name it stops, points *bad
 * at it and returns -EINVAL; checking and expanding so share one grammar. */
static int scan(const char *tmpl, const char *const *names, const char *const *values, size_t n,
                struct br_buf *out, const char **bad) {
  const char *lit = tmpl, *p = tmpl;
  *bad = NULL;
  while ((p = strchr(p, '{'))) {
    const char *close = strchr(p + 1, '}');
    long i = close ? find_name(p + 1, (size_t)(close - p - 1), names, values, n) : -1;
    if (i < 0) {
      *bad = p;
      return -EINVAL;
    }
    if (out) {
      int rc = br_buf_add(out, lit, (size_t)(p - lit));
      if (!rc)
        rc = br_buf_adds(out, values[i]);
      if (rc)
        return rc;
    }
    p = lit = close + 1;
  }
  return out ? br_buf_adds(out, lit) : 0;
}

int br_template_expand(const char *tmpl, const char *const *names, const char *const *values, size_t n,
                       struct br_buf *out, const char **unknown_name_out) {
  const char *bad;
  int rc = scan(tmpl, names, values, n, out, &bad);
  if (unknown_name_out)
    *unknown_name_out = bad;
  return rc;
}

int br_template_check(const char *tmpl, const char *const *names, size_t n, struct br_buf *why) {
  const char *bad;
  int rc = scan(tmpl, names, NULL, n, NULL, &bad);
  if (!rc)
    return 0;
  const char *close = strchr(bad + 1, '}');
  br_buf_adds(why, close ? "unknown placeholder " : "unclosed placeholder ");
  /* Quote the placeholder only, not the rest of the template after it. */
  br_quote_excerpt(why, bad, close ? (size_t)(close - bad + 1) : strlen(bad), 40);
  if (n == 0) {
    br_buf_adds(why, ", expected no placeholders here");
    return -EINVAL;
  }
  br_buf_adds(why, ", expected ");
  for (size_t i = 0; i < n; i++)
    br_buf_printf(why, "%s{%s}", i == 0 ? "" : i + 1 == n ? " or " : ", ", names[i]);
  return -EINVAL;
}
