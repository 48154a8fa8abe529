/* Unit tests for common/log: what journald receives on its stream socket (a
 * "<N>" priority on every line, only when stderr is the stream that
 * JOURNAL_STREAM names) and the priority in JSON mode. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "common/log.h"

static int journal[2]; /* [0] stands for journald's end of the stream, [1] for ours */
static char temp_path[] = "/tmp/br-log-XXXXXX";
static int temp_fd; /* a regular file, as when stderr was redirected */

/* Points JOURNAL_STREAM at fd's device and inode, as systemd does, each
 * optionally shifted to name something else. */
static void journal_stream_names(int fd, uintmax_t dev_shift, uintmax_t ino_shift) {
  struct stat st;
  if (fstat(fd, &st) < 0) {
    perror("fstat");
    exit(1);
  }
  char value[64];
  snprintf(value, sizeof value, "%ju:%ju", (uintmax_t)st.st_dev + dev_shift, (uintmax_t)st.st_ino + ino_shift);
  setenv("JOURNAL_STREAM", value, 1);
}

/* Runs br_log_setup and one br_log with stderr on target, and returns what
 * arrived there (the caller frees it). The real stderr is back before this
 * returns, so failed checks are seen. */
static char *capture(int target, enum br_log_format format, enum br_log_level level, const char *subject,
                     const char *msg) {
  fflush(stderr);
  int saved = dup(STDERR_FILENO);
  if (saved < 0 || dup2(target, STDERR_FILENO) < 0) {
    perror("dup2");
    exit(1);
  }
  br_log_setup(BR_LOG_DEBUG, format);
  br_log(level, subject, "%s", msg);
  dup2(saved, STDERR_FILENO);
  close(saved);
  br_log_setup(BR_LOG_DEBUG, BR_LOG_TEXT);

  static char got[8192];
  size_t len = 0;
  if (target == temp_fd) {
    ssize_t n = pread(temp_fd, got, sizeof got - 1, 0);
    len = n > 0 ? (size_t)n : 0;
    if (ftruncate(temp_fd, 0) < 0 || lseek(temp_fd, 0, SEEK_SET) < 0)
      perror("ftruncate");
  } else {
    /* br_log wrote with one write(2) before it returned: it is all queued. */
    ssize_t n;
    while (len < sizeof got - 1 && (n = recv(journal[0], got + len, sizeof got - 1 - len, MSG_DONTWAIT)) > 0)
      len += (size_t)n;
  }
  got[len] = '\0';
  return strdup(got);
}

/* How many lines out has, each ending in a newline. */
static int count_lines(const char *out) {
  int n = 0;
  for (const char *p = out; (p = strchr(p, '\n')); p++)
    n++;
  return n;
}

/* Whether every line of out starts with prefix. */
static bool every_line_starts(const char *out, const char *prefix) {
  for (const char *line = out; *line; line = strchr(line, '\n') + 1) {
    if (strncmp(line, prefix, strlen(prefix)) != 0)
      return false;
    if (!strchr(line, '\n'))
      return false;
  }
  return true;
}

/* Whether some line of out starts with '<', the syslog priority prefix. */
static bool any_line_prefixed(const char *out) {
  if (out[0] == '<')
    return true;
  for (const char *p = out; (p = strchr(p, '\n')); p++)
    if (p[1] == '<')
      return true;
  return false;
}

/* Parses the JSON object of a line, after skip bytes; NULL if it is not one. */
static json_t *json_line(const char *out, size_t skip) {
  if (strlen(out) < skip || count_lines(out) != 1)
    return NULL;
  json_error_t error;
  json_t *obj = json_loads(out + skip, 0, &error);
  if (!obj)
    fprintf(stderr, "not JSON: %s: %s\n", error.text, out);
  return obj;
}

static void journal_text(void) {
  journal_stream_names(journal[1], 0, 0);
  /* Continuation lines carry the priority too: journald splits the stream
   * at each newline, and an unprefixed line is an entry of its own at the
   * default priority. */
  char *out = capture(journal[1], BR_LOG_TEXT, BR_LOG_WARN, "alpha", "first line\nsecond line\n\nfourth line");
  CHECK(count_lines(out) == 4);
  CHECK(every_line_starts(out, "<4>"));
  CHECK_STR(out, "<4>warn  [alpha] first line\n<4>second line\n<4>\n<4>fourth line\n");
  free(out);

  static const struct {
    enum br_log_level level;
    const char *prefix;
  } levels[] = {{BR_LOG_DEBUG, "<7>"}, {BR_LOG_INFO, "<6>"}, {BR_LOG_WARN, "<4>"}, {BR_LOG_ERROR, "<3>"}};
  for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
    out = capture(journal[1], BR_LOG_TEXT, levels[i].level, NULL, "one\ntwo\n");
    CHECK(count_lines(out) == 2);
    CHECK(every_line_starts(out, levels[i].prefix));
    free(out);
  }
}

/* JOURNAL_STREAM is inherited and outlives a redirection of stderr: only a
 * stderr with exactly its device and inode gets the prefix. Without it the
 * lines are the plain text format, a timestamp first. */
static void not_journal_text(void) {
  static const char *const bad_values[] = {"", "garbage", "1", "1:", ":1", "1:2x", "-1:-1", "1:2:3"};
  for (size_t i = 0; i < sizeof bad_values / sizeof bad_values[0]; i++) {
    setenv("JOURNAL_STREAM", bad_values[i], 1);
    char *out = capture(journal[1], BR_LOG_TEXT, BR_LOG_WARN, "alpha", "first\nsecond");
    CHECK(count_lines(out) == 2);
    CHECK(!any_line_prefixed(out));
    free(out);
  }

  struct {
    int dev_shift, ino_shift;
  } shifts[] = {{0, 1}, {1, 0}};
  for (size_t i = 0; i < sizeof shifts / sizeof shifts[0]; i++) {
    journal_stream_names(journal[1], (uintmax_t)shifts[i].dev_shift, (uintmax_t)shifts[i].ino_shift);
    char *out = capture(journal[1], BR_LOG_TEXT, BR_LOG_WARN, "alpha", "first\nsecond");
    CHECK(!any_line_prefixed(out));
    free(out);
  }

  /* JOURNAL_STREAM names another file (a temp file's inode). */
  journal_stream_names(temp_fd, 0, 0);
  char *out = capture(journal[1], BR_LOG_TEXT, BR_LOG_WARN, "alpha", "first\nsecond");
  CHECK(count_lines(out) == 2);
  CHECK(!any_line_prefixed(out));
  CHECK(strstr(out, "Z warn  [alpha] first\nsecond\n") != NULL); /* the timestamp is back */
  free(out);

  /* The case: a unit's stderr redirected to a file by its command. */
  journal_stream_names(journal[1], 0, 0);
  out = capture(temp_fd, BR_LOG_TEXT, BR_LOG_ERROR, "alpha", "first\nsecond");
  CHECK(count_lines(out) == 2);
  CHECK(!any_line_prefixed(out));
  free(out);

  unsetenv("JOURNAL_STREAM");
  out = capture(journal[1], BR_LOG_TEXT, BR_LOG_WARN, NULL, "first\nsecond");
  CHECK(!any_line_prefixed(out));
  free(out);
}

static void json(void) {
  /* Under journald: "<N>" before the JSON line (journald strips it), and
   * the priority in the object for whoever reads MESSAGE. */
  journal_stream_names(journal[1], 0, 0);
  char *out = capture(journal[1], BR_LOG_JSON, BR_LOG_WARN, "alpha", "first\nsecond");
  CHECK(strncmp(out, "<4>{", 4) == 0);
  json_t *obj = json_line(out, 3);
  CHECK(obj != NULL);
  CHECK(json_integer_value(json_object_get(obj, "priority")) == 4);
  CHECK(json_is_integer(json_object_get(obj, "priority")));
  CHECK_STR(json_string_value(json_object_get(obj, "level")), "warn");
  CHECK_STR(json_string_value(json_object_get(obj, "slug")), "alpha");
  CHECK_STR(json_string_value(json_object_get(obj, "msg")), "first\nsecond");
  json_decref(obj);
  free(out);

  out = capture(journal[1], BR_LOG_JSON, BR_LOG_ERROR, NULL, "failed");
  CHECK(strncmp(out, "<3>{", 4) == 0);
  obj = json_line(out, 3);
  CHECK(obj != NULL);
  CHECK(json_is_integer(json_object_get(obj, "priority")) &&
        json_integer_value(json_object_get(obj, "priority")) == 3);
  CHECK(json_is_null(json_object_get(obj, "slug"))); /* as before: a null slug */
  json_decref(obj);
  free(out);

  /* Elsewhere: a bare JSON line, with the priority still in it. */
  journal_stream_names(temp_fd, 0, 0);
  out = capture(journal[1], BR_LOG_JSON, BR_LOG_INFO, "alpha", "done");
  CHECK(out[0] == '{');
  obj = json_line(out, 0);
  CHECK(obj != NULL);
  CHECK(json_is_integer(json_object_get(obj, "priority")) &&
        json_integer_value(json_object_get(obj, "priority")) == 6);
  CHECK_STR(json_string_value(json_object_get(obj, "level")), "info");
  CHECK(json_string_value(json_object_get(obj, "time")) != NULL);
  json_decref(obj);
  free(out);
}

int main(void) {
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, journal) < 0) {
    perror("socketpair");
    return 1;
  }
  temp_fd = mkstemp(temp_path);
  if (temp_fd < 0) {
    perror("mkstemp");
    return 1;
  }
  unlink(temp_path);

  journal_text();
  not_journal_text();
  json();

  unsetenv("JOURNAL_STREAM");
  close(journal[0]);
  close(journal[1]);
  close(temp_fd);
  CHECK_DONE();
}
