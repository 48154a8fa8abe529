/* jsoncheck: is a text strict JSON (RFC 8259)? A syntax check with the
 * position and field of the first problem; it builds no values. */
#ifndef BR_COMMON_JSONCHECK_H
#define BR_COMMON_JSONCHECK_H

#include <stddef.h>

#include "common/buf.h"

/* Checks that bytes (len of them) are one JSON text by RFC 8259's grammar:
 * no trailing commas, comments, single quotes, NaN, Infinity, leading zeros,
 * unescaped control characters or bytes after the value. One UTF-8 byte
 * order mark at the very start is skipped (RFC 8259 lets a reader ignore
 * it); positions count from after it, in characters. Text that is only
 * white space passes (the caller says what an empty file means). Nesting
 * deeper than max_depth is an error. Encoding and duplicate keys are not
 * checked here: the YAML loader that reads the same bytes checks both.
 *
 * Returns 0, or -EINVAL with one line appended to err:
 *   "NAME:LINE:COLUMN: FIELD: what is wrong, what was expected\n"
 * where FIELD is the path of the value being read, e.g. routes[0].host. */
int br_json_check(const char *name, const char *bytes, size_t len, size_t max_depth, struct br_buf *err);

#endif
