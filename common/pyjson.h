/* pyjson: JSON text byte-identical to Python's json.dumps(obj, indent=2), from
 * jansson values. It knows JSON as Python spells it, nothing of any schema. */
#ifndef BR_COMMON_PYJSON_H
#define BR_COMMON_PYJSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/buf.h"

/* What every function here guarantees, for input it accepts:
 *
 * - Strings: '"', '\\', \n, \r, \t, \b and \f escaped by name; every other
 *   character below U+0020, U+007F and every non-ASCII character as \uXXXX
 *   in lower-case hex (past U+FFFF a UTF-16 surrogate pair); '/' as it is.
 *   Input must be valid UTF-8 (no overlongs, surrogates or code points past
 *   U+10FFFF).
 * - Integers in decimal; reals as float.__repr__ prints them: the shortest
 *   digits that read back as the same double, fixed notation with at least
 *   one digit after the point for exponents from -4 up to 15, otherwise
 *   d[.ddd]e+XX; -0.0 keeps its sign. NaN and infinities are refused, where
 *   Python would write NaN or Infinity, which is not JSON.
 * - Objects in jansson's order, which is the order the keys were read or
 *   added (Python's dict order); "[]" and "{}" for empty containers; two
 *   spaces per level; no space before a line break.
 * - The locale does not matter: the radix character that the C library
 *   prints is never copied.
 *
 * Each returns 0, -EINVAL (a string that is not UTF-8, a NaN or infinity, a
 * value nested deeper than 4096 levels), -ENOMEM or -EFBIG (out's maximum).
 * On error out may hold part of the text: the caller discards it. */

/* Appends value as json.dumps(value, indent=2) writes it when value sits
 * depth levels deep: its own lines are indented 2 * (depth + 1) spaces, its
 * closing bracket 2 * depth. At depth 0 that is json.dumps(value, indent=2)
 * exactly; a file as Python's tooling writes it adds "\n". */
int br_pyjson_value(struct br_buf *out, const json_t *value, int depth);

/* For writers that stream an object of their own instead of building a
 * json_t (a renderer that replaces one member with its own model): */

/* Appends the n bytes of s as a JSON string literal. */
int br_pyjson_string(struct br_buf *out, const char *s, size_t n);
/* Appends a line break and the indentation of depth levels. */
int br_pyjson_newline(struct br_buf *out, int depth);
/* Appends what comes before a member of an object at depth levels (the
 * object's own depth plus one): "," unless it is the first, a line break,
 * indentation, the key as a string and ": ". The value follows. */
int br_pyjson_member(struct br_buf *out, const char *key, size_t keylen, bool first, int depth);

/* The length of the longest prefix of s (n bytes) that is UTF-8 as the
 * functions here require it: n when all of s is. For text copied into the
 * output as it is, which must be no less valid than what they write. */
size_t br_pyjson_utf8_prefix(const char *s, size_t n);

#endif
