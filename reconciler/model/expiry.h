/* expiry: when a route stops being desired. RFC 3339 times as fragments
 * write them ("expires:"), durations as commands take them ("--for 2h"),
 * and the one edit that gives a fragment's text an expiry. Pure: the caller
 * reads the clock and decides what "now" is. */
#ifndef BR_RECONCILER_EXPIRY_H
#define BR_RECONCILER_EXPIRY_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define BR_EXPIRY_TEXT_MAX 32 /* "2026-07-01T12:00:00Z" and its NUL, with room */

/* Parses an RFC 3339 date-time, "YYYY-MM-DDTHH:MM:SS[.fraction]" followed
 * by "Z" or an offset "+HH:MM"/"-HH:MM" ("t" and "z" in lower case too),
 * into seconds since the epoch (a fraction is dropped: the route ends at
 * most a second early, never late). A time before 1970 gives 1: in the
 * past either way, and 0 stays "never". Returns 0, or -EINVAL and sets
 * *why to a static "what is wrong, expected what" text meant to follow a
 * quoted excerpt: malformed, no time zone or another one (" UTC", "CET",
 * "+0200"), or a date or time that does not exist (February 30, 24:00). */
int br_expiry_parse(const char *s, size_t len, int64_t *out, const char **why);

/* Writes t (seconds since the epoch) as "YYYY-MM-DDTHH:MM:SSZ" into out,
 * which holds at least BR_EXPIRY_TEXT_MAX bytes. */
void br_expiry_format(int64_t t, char *out, size_t size);

/* Parses a duration of whole units, "30m", "2h", "7d", "90s" or several
 * ("1h30m"), into seconds: 1 second to 3650 days. Returns 0, or -EINVAL
 * and sets *why ("what is wrong, expected what"). */
int br_duration_parse(const char *s, int64_t *seconds, const char **why);

/* Appends to out the fragment text bytes with a top-level `expires: "WHEN"`
 * added (when, an RFC 3339 time): after the "{" of a flow or JSON mapping,
 * or as the first line of a block mapping, after leading comments,
 * directives and "---", indented as the mapping is. Every other byte is
 * kept. The caller parses the result: a text this does not understand (or
 * that says expires already) comes out invalid, never different in meaning.
 * Returns 0, -ENOMEM or -EFBIG (out's maximum). */
int br_expiry_insert(const char *bytes, size_t len, const char *when, struct br_buf *out);

#endif
