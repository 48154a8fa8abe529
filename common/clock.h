/* clock: the clocks this project reads, as integers, and the one way it
 * writes a time for people (RFC 3339, UTC, milliseconds). No sleeping here. */
#ifndef BR_COMMON_CLOCK_H
#define BR_COMMON_CLOCK_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Nanoseconds of clock id (CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME). */
int64_t br_clock_ns(clockid_t id);
/* Wall-clock time, for what is compared with file and process times or shown. */
static inline int64_t br_realtime_ns(void) { return br_clock_ns(CLOCK_REALTIME); }
/* Time that never jumps, for deadlines and durations. */
static inline int64_t br_monotonic_ns(void) { return br_clock_ns(CLOCK_MONOTONIC); }

#define BR_TIME_TEXT_MAX 32 /* "2026-12-07T02:03:54.123Z" and its NUL, with room */
/* Writes realtime_ns as "YYYY-MM-DDTHH:MM:SS.mmmZ" into out (at least
 * BR_TIME_TEXT_MAX bytes). */
void br_time_text(int64_t realtime_ns, char *out, size_t size);

#endif
