/* confirm: watches a sidecar's status file or follows its log until it
 * names the live file's SHA-256 or the timeout passes (see confirm.h). It only
 * reads: it never signals, and never decides anything but the confirmation. */
#include "reconciler/drivers/confirm.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/fileio.h"

/* How often the file is looked at where inotify cannot say when it
 * changes (no instance left, a file system without events): a reload
 * takes well under a millisecond, and each look is one small read. */
#define POLL_MS 10
/* With inotify, a look at least this often all the same: an event can be
 * missed (a queue overflow) and must not cost the whole timeout. */
#define WATCHED_POLL_MS 250
#define STATUS_MAX (64 * 1024)
/* At the first look only this much of a log's end is read: the latest load
 * line lies there unless the sidecar logs a great deal between loads. */
#define LOG_TAIL_MAX (1024 * 1024)
/* Longer lines are skipped: no load line is anywhere near this long. */
#define LINE_MAX_BYTES (64 * 1024)

/* What the sidecar says it runs. */
struct report {
  char sha256[BR_SHA256_HEX_LEN + 1]; /* lowercase; "" while it names none */
  struct br_buf says;                 /* its words, for a failure's message */
};

/* ---- a status file: {"sha256": "<hex>" or null, "error": "..." or null} -- */

static bool hex64(const char *s, size_t len) {
  if (len != BR_SHA256_HEX_LEN)
    return false;
  for (size_t i = 0; i < len; i++)
    if (!isxdigit((unsigned char)s[i]))
      return false;
  return true;
}

static void set_hash(struct report *r, const char *hex) {
  for (size_t i = 0; i < BR_SHA256_HEX_LEN; i++)
    r->sha256[i] = (char)tolower((unsigned char)hex[i]);
  r->sha256[BR_SHA256_HEX_LEN] = '\0';
}

/* The file is replaced atomically by the sidecar, so each read sees one
 * whole version of it. */
static void read_status(const char *path, struct report *r) {
  struct br_buf text;
  br_buf_init(&text, STATUS_MAX);
  br_buf_reset(&r->says);
  r->sha256[0] = '\0';
  int rc = br_file_read(path, text.max, false, &text);
  json_t *doc = rc ? NULL : json_loadb(br_buf_str(&text), text.len, JSON_REJECT_DUPLICATES, NULL);
  const char *hash = json_string_value(json_object_get(doc, "sha256"));
  const char *error = json_string_value(json_object_get(doc, "error"));
  if (rc == -ENOENT)
    br_buf_printf(&r->says, "nothing: there is no status file %s", path);
  else if (rc)
    br_buf_printf(&r->says, "nothing readable: %s: %s", path, strerror(-rc));
  else if (!json_is_object(doc))
    br_buf_printf(&r->says, "nothing readable: %s is not a JSON object", path);
  else if (!hash || !hex64(hash, strlen(hash)))
    br_buf_printf(&r->says, "no sha256 in %s (nothing loaded)", path);
  else {
    set_hash(r, hash);
    br_buf_printf(&r->says, "sha256 %s in %s", r->sha256, path);
  }
  if (error)
    br_buf_printf(&r->says, "; its last load failed: %.300s", error);
  json_decref(doc);
  br_buf_free(&text);
}

/* ---- a log: the latest line that matches prefix HASH suffix --------------- */

struct log_follow {
  const char *path;
  const char *prefix, *suffix; /* match around "{sha256}" */
  size_t prefix_len, suffix_len;
  bool opened; /* looked at once: offset, dev and ino are valid */
  dev_t dev;
  ino_t ino;
  off_t offset;       /* bytes consumed */
  struct br_buf line; /* the line being read, up to its newline */
  bool skipping;      /* dropping the rest of a line: cut at a tail start, or too long */
  bool matched;       /* a line matched since the log was (re)opened */
};

/* Finds the hash in one line: prefix, 64 hex digits, suffix. */
static const char *match_line(const struct log_follow *f, const char *line, size_t len) {
  for (const char *p = line; p + f->prefix_len + BR_SHA256_HEX_LEN + f->suffix_len <= line + len; p++) {
    const char *hex = p + f->prefix_len;
    if (memcmp(p, f->prefix, f->prefix_len) == 0 && hex64(hex, BR_SHA256_HEX_LEN) &&
        memcmp(hex + BR_SHA256_HEX_LEN, f->suffix, f->suffix_len) == 0)
      return hex;
  }
  return NULL;
}

static void take_bytes(struct log_follow *f, const char *bytes, size_t n, struct report *r) {
  while (n) {
    const char *newline = memchr(bytes, '\n', n);
    size_t part = newline ? (size_t)(newline - bytes) : n;
    if (!f->skipping && br_buf_add(&f->line, bytes, part))
      f->skipping = true; /* longer than any load line */
    if (!newline)
      return;
    const char *hex = f->skipping ? NULL : match_line(f, br_buf_str(&f->line), f->line.len);
    if (hex) {
      set_hash(r, hex);
      f->matched = true;
    }
    br_buf_reset(&f->line);
    f->skipping = false;
    bytes += part + 1;
    n -= part + 1;
  }
}

/* Starts over at the end of a log seen for the first time, rotated or
 * truncated: its last LOG_TAIL_MAX bytes, from the first whole line. */
static void restart(struct log_follow *f, const struct stat *st) {
  f->opened = true;
  f->dev = st->st_dev;
  f->ino = st->st_ino;
  f->offset = st->st_size > LOG_TAIL_MAX ? st->st_size - LOG_TAIL_MAX : 0;
  f->skipping = f->offset > 0;
  f->matched = false;
  br_buf_reset(&f->line);
}

/* Reads what was appended since the last look. The hash of the latest
 * matching line stays in r across looks. */
static void follow_log(struct log_follow *f, struct report *r) {
  int fd = open(f->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
    br_buf_reset(&r->says);
    br_buf_printf(&r->says, "nothing: %s: %s", f->path, fd < 0 ? strerror(errno) : "not a regular file");
    if (fd >= 0)
      close(fd);
    return;
  }
  if (!f->opened || st.st_dev != f->dev || st.st_ino != f->ino || st.st_size < f->offset) {
    restart(f, &st);
    r->sha256[0] = '\0';
  }
  if (st.st_size - f->offset > LOG_TAIL_MAX) {
    /* A flood since the last look: a load line in the part skipped may be
     * newer than the one on record, so that one no longer counts. */
    restart(f, &st);
    r->sha256[0] = '\0';
  }
  char chunk[65536];
  ssize_t n;
  while (f->offset < st.st_size && (n = pread(fd, chunk, sizeof chunk, f->offset)) > 0) {
    take_bytes(f, chunk, (size_t)n, r);
    f->offset += n;
  }
  close(fd);
  br_buf_reset(&r->says);
  if (f->matched)
    br_buf_printf(&r->says, "sha256 %s in its latest load line in %s", r->sha256, f->path);
  else
    br_buf_printf(&r->says, "no line of %s (of its last %d bytes) matches \"%.*s{sha256}%s\"", f->path,
                  LOG_TAIL_MAX, (int)f->prefix_len, f->prefix, f->suffix);
}

/* ---- the wait ------------------------------------------------------------- */

bool br_confirm_configured(const struct br_reload_request *req) {
  return req->reload->confirm_status_file || req->reload->confirm_log_file;
}

static void sleep_ms(int64_t ms) {
  struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
    ;
}

/* Waits for the file to change, up to ms: the directory watched with
 * inotify (a status file is replaced by a rename, a log appended to), so
 * that the look follows the sidecar's write at once, not up to POLL_MS
 * later; without a watch, a POLL_MS sleep. */
struct change {
  int fd; /* inotify instance, or -1 */
};

static void change_watch(struct change *c, const char *path) {
  char dir[PATH_MAX];
  const char *slash = strrchr(path, '/');
  size_t len = slash ? (size_t)(slash - path) : 0;
  c->fd = -1;
  if (!slash || len >= sizeof dir)
    return;
  if (!len) /* a file in "/" */
    len = 1;
  memcpy(dir, path, len);
  dir[len] = '\0';
  if ((c->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) >= 0 &&
      inotify_add_watch(c->fd, dir, IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE) < 0) {
    close(c->fd);
    c->fd = -1;
  }
}

static void change_wait(struct change *c, int64_t ms) {
  if (c->fd < 0) {
    sleep_ms(ms < POLL_MS ? ms : POLL_MS);
    return;
  }
  struct pollfd p = {.fd = c->fd, .events = POLLIN};
  if (poll(&p, 1, (int)(ms < WATCHED_POLL_MS ? ms : WATCHED_POLL_MS)) > 0) {
    char events[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    while (read(c->fd, events, sizeof events) > 0)
      ; /* which file does not matter: the next look reads what changed */
  }
}

/* Looks until the report names want or the deadline passes. */
static bool wait_for_hash(const struct br_reload_request *req, const char *path, const char *want,
                          unsigned budget_ms, struct report *r) {
  const struct br_reload_config *rl = req->reload;
  struct log_follow f = {.path = path};
  br_buf_init(&f.line, LINE_MAX_BYTES);
  if (rl->confirm_log_file) {
    const char *at = strstr(rl->confirm_match, "{sha256}");
    f.prefix = rl->confirm_match;
    f.prefix_len = (size_t)(at - rl->confirm_match);
    f.suffix = at + strlen("{sha256}");
    f.suffix_len = strlen(f.suffix);
  }
  int64_t deadline = br_monotonic_ns() + (int64_t)budget_ms * 1000000;
  bool seen = false;
  struct change change;
  change_watch(&change, path); /* before the first look: no write falls between */
  for (;;) {
    if (rl->confirm_log_file)
      follow_log(&f, r);
    else
      read_status(path, r);
    int64_t left_ms = (deadline - br_monotonic_ns()) / 1000000;
    if ((seen = strcmp(r->sha256, want) == 0) || left_ms <= 0)
      break;
    change_wait(&change, left_ms);
  }
  if (change.fd >= 0)
    close(change.fd);
  br_buf_free(&f.line);
  return seen;
}

int br_confirm_reload(const struct br_reload_request *req, struct br_reload_result *res) {
  const struct br_reload_config *rl = req->reload;
  const char *sidecar = br_sidecar_name(req->sidecar);
  char want[BR_SHA256_HEX_LEN + 1];
  struct br_buf path;
  br_buf_init(&path, 4096);
  int rc = br_reload_expand(req, rl->confirm_log_file ? rl->confirm_log_file : rl->confirm_status_file, &path);
  if (rc) {
    res->status = BR_RELOAD_PERMANENT;
    br_buf_printf(&res->message, ", but confirm's %s template does not expand for this bottle",
                  rl->confirm_log_file ? "log_file" : "status_file");
    br_buf_free(&path);
    return rc == -ENOMEM ? rc : 0;
  }
  if ((rc = br_reload_file_sha256(req->file, want))) {
    res->status = BR_RELOAD_TRANSIENT;
    br_buf_printf(&res->message, ", but %s cannot be hashed to confirm: %s", req->file, strerror(-rc));
    br_buf_free(&path);
    return 0;
  }
  struct report r = {.sha256 = ""};
  br_buf_init(&r.says, 8192);
  int64_t started = br_monotonic_ns();
  bool bounded;
  unsigned budget = br_reload_confirm_budget(req, &bounded);
  if (wait_for_hash(req, path.data, want, budget, &r)) {
    res->confirmed = true;
    br_buf_printf(&res->message, "; %s confirmed sha256 %.12s… after %lld ms", sidecar, want,
                  (long long)((br_monotonic_ns() - started) / 1000000));
  } else if (bounded) {
    res->confirm_late = true;
    br_buf_printf(&res->message,
                  ", but %s did not confirm sha256 %.12s… within its %u ms settle time; it reports %s", sidecar,
                  want, budget, br_buf_str(&r.says));
  } else {
    res->status = BR_RELOAD_TRANSIENT;
    br_buf_printf(&res->message, ", but %s did not confirm sha256 %s within %u ms; it reports %s", sidecar, want,
                  rl->confirm_timeout_ms, br_buf_str(&r.says));
  }
  br_buf_free(&r.says);
  br_buf_free(&path);
  return 0;
}
