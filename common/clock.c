/* clock: integer clocks and the RFC 3339 text of a time (see clock.h). */
#include "common/clock.h"

#include <stdio.h>

int64_t br_clock_ns(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void br_time_text(int64_t realtime_ns, char *out, size_t size) {
  time_t s = (time_t)(realtime_ns / 1000000000);
  struct tm tm;
  gmtime_r(&s, &tm);
  size_t n = strftime(out, size, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + n, size - n, ".%03dZ", (int)(realtime_ns / 1000000 % 1000));
}
