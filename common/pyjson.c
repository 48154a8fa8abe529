/* pyjson: writes JSON as Python's json.dumps(obj, indent=2) does, byte for
 * byte. Formatting only: it must not know what any key means.
 *
 * jansson's own dumper differs from Python's json.dumps in ways that matter
 * for byte equality (reals printed with %.17g, "/" and non-ASCII handling
 * depend on flags), and files whose canonical form was defined by Python
 * tooling must come out as that tooling wrote them. So the serializer is
 * ours; it mirrors json.dumps(obj, indent=2) with ensure_ascii=True. */
#include "common/pyjson.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Deeper than anything jansson will parse (2048); guards hand-built docs. */
#define RENDER_MAX_DEPTH 4096

/* Decodes one UTF-8 sequence at s[*i], strictly (no overlongs, surrogates or
 * code points past U+10FFFF). Returns the code point or -1. */
static long utf8_next(const unsigned char *s, size_t n, size_t *i) {
  unsigned char c = s[*i];
  size_t extra;
  long cp, min;
  if (c < 0x80) {
    (*i)++;
    return c;
  } else if ((c & 0xE0) == 0xC0) {
    extra = 1, cp = c & 0x1F, min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    extra = 2, cp = c & 0x0F, min = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    extra = 3, cp = c & 0x07, min = 0x10000;
  } else {
    return -1;
  }
  if (n - *i <= extra)
    return -1;
  for (size_t k = 1; k <= extra; k++) {
    if ((s[*i + k] & 0xC0) != 0x80)
      return -1;
    cp = (cp << 6) | (s[*i + k] & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
    return -1;
  *i += extra + 1;
  return cp;
}

size_t br_pyjson_utf8_prefix(const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0;
  while (i < n) {
    size_t at = i;
    if (s[i] < 0x80) /* the common case, without a call */
      i++;
    else if (utf8_next(s, n, &i) < 0)
      return at;
  }
  return n;
}

int br_pyjson_string(struct br_buf *out, const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  int rc = br_buf_add(out, "\"", 1);
  size_t i = 0;
  while (rc == 0 && i < n) {
    /* Copy the longest run that needs no escaping in one go. */
    size_t run = i;
    while (run < n && s[run] >= 0x20 && s[run] < 0x7F && s[run] != '"' && s[run] != '\\')
      run++;
    if (run > i) {
      rc = br_buf_add(out, s + i, run - i);
      i = run;
      continue;
    }
    switch (s[i]) {
    case '"':
      rc = br_buf_adds(out, "\\\"");
      i++;
      continue;
    case '\\':
      rc = br_buf_adds(out, "\\\\");
      i++;
      continue;
    case '\n':
      rc = br_buf_adds(out, "\\n");
      i++;
      continue;
    case '\r':
      rc = br_buf_adds(out, "\\r");
      i++;
      continue;
    case '\t':
      rc = br_buf_adds(out, "\\t");
      i++;
      continue;
    case '\b':
      rc = br_buf_adds(out, "\\b");
      i++;
      continue;
    case '\f':
      rc = br_buf_adds(out, "\\f");
      i++;
      continue;
    default:
      break;
    }
    long cp = utf8_next(s, n, &i);
    if (cp < 0)
      return -EINVAL;
    if (cp < 0x10000) {
      rc = br_buf_printf(out, "\\u%04lx", cp);
    } else {
      cp -= 0x10000;
      rc = br_buf_printf(out, "\\u%04lx\\u%04lx", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
    }
  }
  return rc ? rc : br_buf_add(out, "\"", 1);
}

/* Splits "%.*e" output into its significant digits and decimal exponent,
 * ignoring whatever radix character the locale put between them. */
static void split_e(const char *s, char *digits, size_t cap, int *exp10) {
  size_t n = 0;
  for (; *s && *s != 'e'; s++)
    if (*s >= '0' && *s <= '9' && n + 1 < cap)
      digits[n++] = *s;
  digits[n] = '\0';
  *exp10 = *s == 'e' ? (int)strtol(s + 1, NULL, 10) : 0;
}

/* Whether digits (an integer mantissa) times 10^exp10 reads back as x. The
 * string has no radix character, so strtod's locale does not matter. */
static bool reads_back(const char *digits, int exp10, double x) {
  char s[48];
  snprintf(s, sizeof s, "%se%d", digits, exp10);
  return strtod(s, NULL) == x;
}

/* Adds delta (+1 or -1) to a string of decimal digits in place, keeping its
 * length; returns false when that would change the length (999+1, 100-1). */
static bool step_digits(char *digits, int delta) {
  size_t n = strlen(digits);
  for (size_t k = n; k-- > 0;) {
    if (delta > 0 && digits[k] < '9') {
      digits[k]++;
      return true;
    }
    if (delta < 0 && digits[k] > '0') {
      digits[k]--;
      return !(k == 0 && digits[0] == '0' && n > 1);
    }
    digits[k] = delta > 0 ? '0' : '9';
  }
  return false;
}

/* The shortest decimal digits that read back as x (x > 0), nearest to x
 * among equally short ones: what Python's repr (David Gay's dtoa, mode 0)
 * prints. *decpt is the position of the decimal point relative to the first
 * digit, as in dtoa: x = 0.DIGITS * 10^decpt. */
static void shortest_digits(double x, char *digits, size_t cap, int *decpt) {
  char e[48];
  for (int prec = 1; prec <= 17; prec++) {
    int exp10;
    snprintf(e, sizeof e, "%.*e", prec - 1, x);
    split_e(e, digits, cap, &exp10);
    /* The correctly rounded prec-digit value is the nearest candidate. Where
     * x is a power of two the interval that reads back as x is lopsided, so
     * a neighbour one unit away may read back when the nearest does not. */
    int scale = exp10 - (prec - 1);
    char alt[24];
    bool found = reads_back(digits, scale, x);
    for (int delta = 1; !found && delta >= -1; delta -= 2) {
      snprintf(alt, sizeof alt, "%s", digits);
      if (step_digits(alt, delta) && reads_back(alt, scale, x)) {
        snprintf(digits, cap, "%s", alt);
        found = true;
      }
    }
    if (found) {
      /* dtoa drops trailing zeros ("1e+16", not "1.0e+16"). */
      size_t n = strlen(digits);
      while (n > 1 && digits[n - 1] == '0')
        digits[--n] = '\0';
      *decpt = exp10 + 1;
      return;
    }
  }
  /* Unreachable: 17 significant digits always read back. */
  snprintf(e, sizeof e, "%.16e", x);
  int exp10;
  split_e(e, digits, cap, &exp10);
  *decpt = exp10 + 1;
}

/* float.__repr__: fixed notation with at least one digit after the point for
 * exponents in [-4, 16), otherwise d[.ddd]e+XX with at least two exponent
 * digits. */
static int put_real(struct br_buf *out, double x) {
  if (!isfinite(x))
    return -EINVAL; /* Python would write Infinity/NaN, which is not JSON */
  int rc = 0;
  if (signbit(x))
    rc = br_buf_adds(out, "-");
  x = fabs(x);
  if (rc)
    return rc;
  if (x == 0)
    return br_buf_adds(out, "0.0");

  char digits[24];
  int decpt;
  shortest_digits(x, digits, sizeof digits, &decpt);
  int n = (int)strlen(digits);
  if (decpt > -4 && decpt <= 16) {
    if (decpt > 0 && decpt < n)
      return br_buf_printf(out, "%.*s.%s", decpt, digits, digits + decpt);
    if (decpt <= 0) {
      rc = br_buf_adds(out, "0.");
      for (int k = 0; rc == 0 && k < -decpt; k++)
        rc = br_buf_add(out, "0", 1);
      return rc ? rc : br_buf_adds(out, digits);
    }
    rc = br_buf_adds(out, digits);
    for (int k = 0; rc == 0 && k < decpt - n; k++)
      rc = br_buf_add(out, "0", 1);
    return rc ? rc : br_buf_adds(out, ".0");
  }
  int exp10 = decpt - 1;
  rc = br_buf_printf(out, "%c", digits[0]);
  if (rc == 0 && n > 1)
    rc = br_buf_printf(out, ".%s", digits + 1);
  return rc ? rc : br_buf_printf(out, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
}

int br_pyjson_newline(struct br_buf *out, int depth) {
  static const char spaces[] = "                                ";
  int rc = br_buf_add(out, "\n", 1);
  for (size_t left = (size_t)depth * 2; rc == 0 && left > 0;) {
    size_t k = left < sizeof spaces - 1 ? left : sizeof spaces - 1;
    rc = br_buf_add(out, spaces, k);
    left -= k;
  }
  return rc;
}

int br_pyjson_member(struct br_buf *out, const char *key, size_t keylen, bool first, int depth) {
  int rc = first ? 0 : br_buf_add(out, ",", 1);
  if (rc == 0)
    rc = br_pyjson_newline(out, depth);
  if (rc == 0)
    rc = br_pyjson_string(out, key, keylen);
  return rc ? rc : br_buf_adds(out, ": ");
}

int br_pyjson_value(struct br_buf *out, const json_t *v, int depth) {
  if (depth > RENDER_MAX_DEPTH)
    return -EINVAL;
  int rc = 0;
  switch (json_typeof(v)) {
  case JSON_NULL:
    return br_buf_adds(out, "null");
  case JSON_TRUE:
    return br_buf_adds(out, "true");
  case JSON_FALSE:
    return br_buf_adds(out, "false");
  case JSON_INTEGER:
    return br_buf_printf(out, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
  case JSON_REAL:
    return put_real(out, json_real_value(v));
  case JSON_STRING:
    return br_pyjson_string(out, json_string_value(v), json_string_length(v));
  case JSON_ARRAY: {
    if (json_array_size(v) == 0)
      return br_buf_adds(out, "[]");
    rc = br_buf_add(out, "[", 1);
    for (size_t i = 0; rc == 0 && i < json_array_size(v); i++) {
      rc = i ? br_buf_add(out, ",", 1) : 0;
      if (rc == 0)
        rc = br_pyjson_newline(out, depth + 1);
      if (rc == 0)
        rc = br_pyjson_value(out, json_array_get(v, i), depth + 1);
    }
    if (rc == 0)
      rc = br_pyjson_newline(out, depth);
    return rc ? rc : br_buf_add(out, "]", 1);
  }
  case JSON_OBJECT: {
    if (json_object_size(v) == 0)
      return br_buf_adds(out, "{}");
    rc = br_buf_add(out, "{", 1);
    bool first = true;
    const char *key;
    size_t keylen;
    json_t *member;
    /* jansson (since 2.8) iterates in insertion order, which is the file's
     * order, as Python's dict keeps it. The cast is safe: iteration does not
     * modify the object. */
    json_object_keylen_foreach((json_t *)v, key, keylen, member) {
      if (rc == 0)
        rc = br_pyjson_member(out, key, keylen, first, depth + 1);
      if (rc == 0)
        rc = br_pyjson_value(out, member, depth + 1);
      first = false;
    }
    if (rc == 0)
      rc = br_pyjson_newline(out, depth);
    return rc ? rc : br_buf_add(out, "}", 1);
  }
  }
  return -EINVAL;
}
