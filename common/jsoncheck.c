/* jsoncheck: RFC 8259's grammar by recursive descent, bounded by a depth.
 * It must stay a checker: no values, no knowledge of any schema. */
#include "common/jsoncheck.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>

#include "common/diag.h"
#include "common/yamldoc.h"

struct checker {
  const char *name;
  const char *s; /* after a leading BOM */
  size_t len, i, max_depth;
  struct br_buf *err;
  struct br_buf path; /* the field being read, as yamldoc names it */
};

static int fail(struct checker *c, size_t at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(struct checker *c, size_t at, const char *fmt, ...) {
  size_t line = 1, column = 1;
  for (size_t i = 0; i < at && i < c->len; i++) {
    if (c->s[i] == '\n')
      line++, column = 1;
    else if (((unsigned char)c->s[i] & 0xC0) != 0x80)
      column++;
  }
  va_list ap;
  va_start(ap, fmt);
  br_vdiag(c->err, c->name, line, column, c->path.len ? c->path.data : "(document)", fmt, ap);
  va_end(ap);
  return -EINVAL;
}

static void skip_ws(struct checker *c) {
  while (c->i < c->len && strchr(" \t\n\r", c->s[c->i]) && c->s[c->i])
    c->i++;
}

static bool at_end(const struct checker *c) { return c->i >= c->len; }

static bool starts(const struct checker *c, const char *word) {
  size_t n = strlen(word);
  return c->len - c->i >= n && memcmp(c->s + c->i, word, n) == 0;
}

static void path_truncate(struct checker *c, size_t mark) {
  c->path.len = mark;
  if (c->path.data)
    c->path.data[mark] = '\0';
}

static const char any_value[] = "expected a JSON value (a string in double quotes, a number, an object, an "
                                "array, true, false or null)";

/* What stands where a value should: the most likely mistakes by name. */
static int not_a_value(struct checker *c) {
  if (at_end(c))
    return fail(c, c->i, "the text ends here, %s", any_value);
  const char *p = c->s + c->i;
  if (starts(c, "NaN") || starts(c, "-NaN") || starts(c, "Infinity") || starts(c, "-Infinity") ||
      starts(c, "+Infinity"))
    return fail(c, c->i, "%s is not a JSON number, expected a finite number written in digits",
                p[0] == 'N' || p[1] == 'N' ? "NaN" : "Infinity");
  if (*p == '\'')
    return fail(c, c->i, "a single-quoted string, expected a string in double quotes");
  if (*p == '/' || *p == '#')
    return fail(c, c->i, "a comment, expected none: JSON has no comments");
  if (starts(c, "\xEF\xBB\xBF"))
    return fail(c, c->i, "a byte order mark (U+FEFF), expected at most one, as the very first character");
  if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_') {
    size_t n = 0;
    while (n < c->len - c->i && p[n] &&
           strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.", p[n]))
      n++;
    struct br_buf word;
    br_buf_init(&word, 128);
    br_quote_excerpt(&word, p, n, 40);
    int rc = fail(c, c->i, "the unquoted word %s, %s", br_buf_str(&word), any_value);
    br_buf_free(&word);
    return rc;
  }
  struct br_buf ch;
  br_buf_init(&ch, 64);
  br_quote_excerpt(&ch, p, 1, 1);
  int rc = fail(c, c->i, "unexpected %s, %s", br_buf_str(&ch), any_value);
  br_buf_free(&ch);
  return rc;
}

/* c->i is at the opening quote; leaves it after the closing one. */
static int check_string(struct checker *c) {
  size_t open = c->i++;
  while (!at_end(c)) {
    unsigned char ch = (unsigned char)c->s[c->i];
    if (ch == '"') {
      c->i++;
      return 0;
    }
    if (ch < 0x20)
      return fail(c, c->i,
                  "a control character (\\x%02x) inside a string, expected it escaped (\\n, \\t, \\u00XX)", ch);
    if (ch != '\\') {
      c->i++;
      continue;
    }
    if (c->len - c->i < 2)
      break;
    char e = c->s[c->i + 1];
    if (e == 'u') {
      if (c->len - c->i < 6 || strspn(c->s + c->i + 2, "0123456789abcdefABCDEF") < 4)
        return fail(c, c->i, "a \\u escape without four hex digits, expected \\uXXXX");
      c->i += 6;
    } else if (strchr("\"\\/bfnrt", e) && e) {
      c->i += 2;
    } else {
      return fail(c, c->i, "an unknown escape, expected one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t or \\uXXXX");
    }
  }
  return fail(c, open, "a string that does not end, expected a closing double quote");
}

static size_t digits(const struct checker *c, size_t at) {
  size_t n = 0;
  while (at + n < c->len && c->s[at + n] >= '0' && c->s[at + n] <= '9')
    n++;
  return n;
}

/* -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)? */
static int check_number(struct checker *c) {
  size_t start = c->i;
  if (c->s[c->i] == '-')
    c->i++;
  size_t n = digits(c, c->i);
  if (!n) {
    bool minus = c->i > start;
    c->i = start;
    if (!minus || starts(c, "-Infinity") || starts(c, "-NaN"))
      return not_a_value(c);
    return fail(c, start, "a minus sign without digits, expected a number");
  }
  if (n > 1 && c->s[c->i] == '0')
    return fail(c, start, "a number with a leading zero, expected none (JSON has no octal numbers)");
  c->i += n;
  if (!at_end(c) && c->s[c->i] == '.') {
    if (!(n = digits(c, ++c->i)))
      return fail(c, start, "a number that ends in \".\", expected digits after the point");
    c->i += n;
  }
  if (!at_end(c) && (c->s[c->i] == 'e' || c->s[c->i] == 'E')) {
    c->i++;
    if (!at_end(c) && (c->s[c->i] == '+' || c->s[c->i] == '-'))
      c->i++;
    if (!(n = digits(c, c->i)))
      return fail(c, start, "a number whose exponent has no digits, expected digits after \"e\"");
    c->i += n;
  }
  return 0;
}

static int check_value(struct checker *c, size_t depth);

static int nested(struct checker *c, size_t depth) {
  if (depth < c->max_depth)
    return 0;
  return fail(c, c->i, "nested too deeply, expected at most %zu levels", c->max_depth);
}

/* After a comma, a closing bracket is the mistake JSON's relatives forgive. */
static int trailing_comma(struct checker *c, size_t comma, char close) {
  return fail(c, comma,
              "a trailing comma before \"%c\", expected another %s after it or no comma (JSON "
              "allows no trailing comma)",
              close, close == ']' ? "value" : "member");
}

/* After a list's item or an object's member: the closing character ends
 * it (*done), a comma leads to the next one (but not to the close). */
static int after_item(struct checker *c, char close, bool *done) {
  const char *inside = close == ']' ? "a list" : "an object", *item = close == ']' ? "a list item" : "a member";
  skip_ws(c);
  if (at_end(c))
    return fail(c, c->i, "the text ends inside %s, expected \",\" or \"%c\"", inside, close);
  if (c->s[c->i] == close) {
    c->i++;
    *done = true;
    return 0;
  }
  if (c->s[c->i] != ',')
    return fail(c, c->i, "unexpected text after %s, expected \",\" or \"%c\"", item, close);
  size_t comma = c->i++;
  skip_ws(c);
  if (!at_end(c) && c->s[c->i] == close)
    return trailing_comma(c, comma, close);
  return 0;
}

static int check_array(struct checker *c, size_t depth) {
  int rc = nested(c, depth);
  if (rc)
    return rc;
  size_t mark = c->path.len;
  c->i++;
  skip_ws(c);
  if (!at_end(c) && c->s[c->i] == ']') {
    c->i++;
    return 0;
  }
  for (size_t index = 0;; index++) {
    path_truncate(c, mark);
    br_buf_printf(&c->path, "[%zu]", index);
    if ((rc = check_value(c, depth + 1)))
      return rc;
    path_truncate(c, mark);
    bool done = false;
    if ((rc = after_item(c, ']', &done)) || done)
      return rc;
  }
}

static void path_key(struct checker *c, size_t mark, size_t key, size_t key_end) {
  static const char ident[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";
  path_truncate(c, mark);
  if (mark)
    br_buf_adds(&c->path, ".");
  const char *k = c->s + key + 1;
  size_t n = key_end - key - 2;
  size_t plain = 0;
  while (plain < n && strchr(ident, k[plain]) && k[plain])
    plain++;
  if (n && plain == n)
    br_buf_add(&c->path, k, n);
  else
    br_quote_excerpt(&c->path, k, n, 40);
}

static int check_object(struct checker *c, size_t depth) {
  int rc = nested(c, depth);
  if (rc)
    return rc;
  size_t mark = c->path.len;
  c->i++;
  skip_ws(c);
  if (!at_end(c) && c->s[c->i] == '}') {
    c->i++;
    return 0;
  }
  for (;;) {
    if (at_end(c) || c->s[c->i] != '"') {
      if (!at_end(c) && (c->s[c->i] == '/' || c->s[c->i] == '#'))
        return fail(c, c->i, "a comment, expected none: JSON has no comments");
      if (!at_end(c) && (c->s[c->i] == '\'' || (c->s[c->i] >= 'a' && c->s[c->i] <= 'z')))
        return fail(c, c->i, "a key not in double quotes, expected a string in double quotes");
      return fail(c, c->i, "%s, expected a key in double quotes",
                  at_end(c) ? "the text ends here" : "unexpected text");
    }
    size_t key = c->i;
    if ((rc = check_string(c)))
      return rc;
    path_key(c, mark, key, c->i);
    skip_ws(c);
    if (at_end(c) || c->s[c->i] != ':')
      return fail(c, c->i, "%s after a key, expected \":\"", at_end(c) ? "the text ends" : "unexpected text");
    c->i++;
    if ((rc = check_value(c, depth + 1)))
      return rc;
    path_truncate(c, mark);
    bool done = false;
    if ((rc = after_item(c, '}', &done)) || done)
      return rc;
  }
}

static int check_value(struct checker *c, size_t depth) {
  skip_ws(c);
  if (at_end(c))
    return not_a_value(c);
  char ch = c->s[c->i];
  if (ch == '{')
    return check_object(c, depth);
  if (ch == '[')
    return check_array(c, depth);
  if (ch == '"')
    return check_string(c);
  if (ch == '-' || (ch >= '0' && ch <= '9'))
    return check_number(c);
  static const char *const words[] = {"true", "false", "null"};
  for (size_t w = 0; w < 3; w++)
    if (starts(c, words[w])) {
      c->i += strlen(words[w]);
      return 0;
    }
  return not_a_value(c);
}

int br_json_check(const char *name, const char *bytes, size_t len, size_t max_depth, struct br_buf *err) {
  struct checker c = {
      .name = name, .s = bytes ? bytes : "", .len = bytes ? len : 0, .max_depth = max_depth, .err = err};
  if (c.len >= 3 && memcmp(c.s, "\xEF\xBB\xBF", 3) == 0)
    c.s += 3, c.len -= 3;
  skip_ws(&c);
  if (at_end(&c))
    return 0;
  br_buf_init(&c.path, 4096);
  int rc = check_value(&c, 0);
  if (!rc) {
    skip_ws(&c);
    if (!at_end(&c))
      rc = fail(&c, c.i, "more text after the JSON value, expected the end of the file");
  }
  br_buf_free(&c.path);
  return rc;
}
