/* log: one line per event on stderr, as text (journald-friendly) or JSON.
 * Thread-safe; it must not know what a slug means beyond a subject label.
 *
 * Under journald each event carries its syslog priority (debug 7, info 6,
 * warn 4, error 3). br_log_setup decides once whether stderr is journald's
 * stream: JOURNAL_STREAM=<st_dev>:<st_ino> must name what fstat(2) of stderr
 * shows (systemd.exec(5)); the variable alone is inherited by children and
 * survives a redirection to a file, and such a file gets no prefixes. On
 * journald's stream every line written starts with "<N>" (sd-daemon(3)),
 * the continuation lines of a multi-line message too, since journald makes
 * an entry of each line; text lines then carry no timestamp, journald has
 * its own. JSON lines always have the priority as a field, for whoever reads
 * them from a file or from MESSAGE; on journald's stream "<N>" comes before
 * the object too, and journald strips it, so MESSAGE is the bare object. */
#ifndef BR_COMMON_LOG_H
#define BR_COMMON_LOG_H

enum br_log_level {
  BR_LOG_DEBUG, /* per-event detail, off by default */
  BR_LOG_INFO,  /* what changed: writes, reloads, slugs appearing */
  BR_LOG_WARN,  /* something an operator should fix, work continues */
  BR_LOG_ERROR, /* work failed and will be retried or waits for input */
};

enum br_log_format {
  BR_LOG_TEXT, /* "LEVEL [subject] message"; timestamps unless under journald */
  BR_LOG_JSON, /* {"time","level","priority","slug","msg"} per line; "slug" null without a subject */
};

/* Sets the threshold and format, and looks at stderr and JOURNAL_STREAM:
 * call it again after moving stderr. */
void br_log_setup(enum br_log_level min, enum br_log_format format);
/* Parses "debug", "info", "warn", "error" / "text", "json"; -EINVAL otherwise. */
int br_log_level_parse(const char *s, enum br_log_level *out);
int br_log_format_parse(const char *s, enum br_log_format *out);
/* subject: the slug the line is about, or NULL. */
void br_log(enum br_log_level level, const char *subject, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
