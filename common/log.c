/* log: formats and writes log lines. Each line is built in memory and written
 * with one write(2), so lines from worker threads never interleave. */
#include "common/log.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/clock.h"

static enum br_log_level min_level = BR_LOG_INFO;
static enum br_log_format log_format = BR_LOG_TEXT;
static bool under_journald;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void br_log_setup(enum br_log_level min, enum br_log_format format) {
  min_level = min;
  log_format = format;
  /* journald stamps each line itself and reads a "<N>" syslog priority
   * prefix (sd-daemon(3)); JOURNAL_STREAM says stderr goes there. */
  under_journald = getenv("JOURNAL_STREAM") != NULL;
}

int br_log_level_parse(const char *s, enum br_log_level *out) {
  for (int i = 0; i < 4; i++)
    if (strcmp(s, level_names[i]) == 0) {
      *out = (enum br_log_level)i;
      return 0;
    }
  return -EINVAL;
}

int br_log_format_parse(const char *s, enum br_log_format *out) {
  if (strcmp(s, "text") == 0)
    *out = BR_LOG_TEXT;
  else if (strcmp(s, "json") == 0)
    *out = BR_LOG_JSON;
  else
    return -EINVAL;
  return 0;
}

void br_log(enum br_log_level level, const char *subject, const char *fmt, ...) {
  if (level < min_level)
    return;
  int saved = errno;
  struct br_buf msg, line;
  br_buf_init(&msg, 16384);
  br_buf_init(&line, 32768);
  va_list ap;
  va_start(ap, fmt);
  if (br_buf_vprintf(&msg, fmt, ap) == -EFBIG)
    br_buf_adds(&msg, "(message too long)");
  va_end(ap);
  while (msg.len && msg.data[msg.len - 1] == '\n') /* callers may pass whole lines */
    msg.data[--msg.len] = '\0';
  char ts[40];
  br_time_text(br_realtime_ns(), ts, sizeof ts);
  if (log_format == BR_LOG_JSON) {
    json_t *obj = json_pack("{s:s, s:s, s:s?, s:s}", "time", ts, "level", level_names[level], "slug", subject,
                            "msg", msg.data ? msg.data : "");
    char *text = obj ? json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (text)
      br_buf_printf(&line, "%s\n", text);
    free(text);
    json_decref(obj);
  } else {
    static const int syslog_prio[] = {7, 6, 4, 3};
    if (under_journald)
      br_buf_printf(&line, "<%d>", syslog_prio[level]);
    else
      br_buf_printf(&line, "%s ", ts);
    br_buf_printf(&line, "%-5s ", level_names[level]);
    if (subject)
      br_buf_printf(&line, "[%s] ", subject);
    br_buf_printf(&line, "%s\n", msg.data ? msg.data : "");
  }
  if (line.data) {
    ssize_t ignored = write(STDERR_FILENO, line.data, line.len);
    (void)ignored;
  }
  br_buf_free(&msg);
  br_buf_free(&line);
  errno = saved;
}
