/* log: formats and writes log lines. Each line is built in memory and written
 * with one write(2), so lines from worker threads never interleave. */
#include "common/log.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/clock.h"

/* A message is at most 16 KiB. Its longest rendering is JSON escaping every
 * byte as \u00XX (6 bytes each); a 3-byte "<N>" per line costs less. */
#define MESSAGE_MAX 16384
#define LINE_MAX_BYTES (6 * MESSAGE_MAX + 4096)

static enum br_log_level min_level = BR_LOG_INFO;
static enum br_log_format log_format = BR_LOG_TEXT;
static bool under_journald;

static const char *const level_names[] = {"debug", "info", "warn", "error"};
static const int syslog_priority[] = {LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR};

/* Reads the decimal number at *s and moves *s past it. Digits only: strtoull
 * would take a sign or spaces. */
static int parse_decimal(const char **s, uintmax_t *out) {
  const char *p = *s;
  uintmax_t value = 0;
  if (*p < '0' || *p > '9')
    return -EINVAL;
  for (; *p >= '0' && *p <= '9'; p++) {
    unsigned digit = (unsigned)(*p - '0');
    if (value > (UINTMAX_MAX - digit) / 10)
      return -ERANGE;
    value = value * 10 + digit;
  }
  *s = p;
  *out = value;
  return 0;
}

/* Whether stderr is the stream journald gave this process. systemd sets
 * JOURNAL_STREAM=<st_dev>:<st_ino> of that stream (systemd.exec(5)), but the
 * variable is inherited by children and outlives a redirection of stderr
 * (`ExecStart=sh -c '... 2>file'`), so it counts only when fstat(2) of
 * stderr shows that very device and inode. */
static bool stderr_is_journal(void) {
  const char *s = getenv("JOURNAL_STREAM");
  uintmax_t dev, ino;
  if (!s || parse_decimal(&s, &dev) < 0 || *s++ != ':' || parse_decimal(&s, &ino) < 0 || *s)
    return false;
  struct stat st;
  if (fstat(STDERR_FILENO, &st) < 0)
    return false;
  return (uintmax_t)st.st_dev == dev && (uintmax_t)st.st_ino == ino;
}

void br_log_setup(enum br_log_level min, enum br_log_format format) {
  min_level = min;
  log_format = format;
  /* journald stamps each line itself and reads a "<N>" syslog priority
   * prefix (sd-daemon(3)). Decided once: nothing moves stderr later. */
  under_journald = stderr_is_journal();
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

/* Appends the message's bytes and a newline, with prefix after each of its
 * newlines: journald's stream protocol makes every line an entry of its own,
 * and a line without "<N>" would get the default priority. */
static void add_message(struct br_buf *line, const char *prefix, const char *msg, size_t len) {
  const char *end = msg + len;
  for (;;) {
    const char *nl = memchr(msg, '\n', (size_t)(end - msg));
    if (!nl) {
      br_buf_add(line, msg, (size_t)(end - msg));
      br_buf_adds(line, "\n");
      return;
    }
    br_buf_add(line, msg, (size_t)(nl + 1 - msg));
    br_buf_adds(line, prefix);
    msg = nl + 1;
  }
}

void br_log(enum br_log_level level, const char *subject, const char *fmt, ...) {
  if (level < min_level)
    return;
  int saved = errno;
  struct br_buf msg, line;
  br_buf_init(&msg, MESSAGE_MAX);
  br_buf_init(&line, LINE_MAX_BYTES);
  va_list ap;
  va_start(ap, fmt);
  if (br_buf_vprintf(&msg, fmt, ap) == -EFBIG)
    br_buf_adds(&msg, "(message too long)");
  va_end(ap);
  while (msg.len && msg.data[msg.len - 1] == '\n') /* callers may pass whole lines */
    msg.data[--msg.len] = '\0';
  char ts[40];
  br_time_text(br_realtime_ns(), ts, sizeof ts);
  char prefix[8] = "";
  if (under_journald)
    snprintf(prefix, sizeof prefix, "<%d>", syslog_priority[level]);
  if (log_format == BR_LOG_JSON) {
    json_t *obj = json_pack("{s:s, s:s, s:i, s:s?, s:s}", "time", ts, "level", level_names[level], "priority",
                            syslog_priority[level], "slug", subject, "msg", br_buf_str(&msg));
    char *text = obj ? json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (text)
      br_buf_printf(&line, "%s%s\n", prefix, text);
    free(text);
    json_decref(obj);
  } else {
    if (under_journald)
      br_buf_adds(&line, prefix);
    else
      br_buf_printf(&line, "%s ", ts);
    br_buf_printf(&line, "%-5s ", level_names[level]);
    if (subject)
      br_buf_printf(&line, "[%s] ", subject);
    add_message(&line, prefix, br_buf_str(&msg), msg.len);
  }
  if (line.data) {
    ssize_t ignored = write(STDERR_FILENO, line.data, line.len);
    (void)ignored;
  }
  br_buf_free(&msg);
  br_buf_free(&line);
  errno = saved;
}
