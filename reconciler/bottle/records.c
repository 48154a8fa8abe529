/* records: persistence of owed reloads, settle times and added pipelock
 * hosts. Formats are fixed-width text and a JSON list, so an operator can
 * read them by hand. */
#include "reconciler/bottle/records.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fileio.h"
#include "common/log.h"
#include "common/strmap.h"
#include "reconciler/bottle/record_key.h"

#define MAC_FIELD "hmac_sha256" /* the added-hosts record's MAC, see record_key.h */

/* Every record lies beneath the state directory, reached through no
 * symlink: a link planted at STATE/.reconciler (or below) would send
 * records, and so the reloads they decide, into another directory. */
static struct br_path_rule records_rule(const char *state_dir) { return (struct br_path_rule){.root = state_dir}; }

static int record_path(struct br_buf *out, const char *state_dir, const char *kind, const char *slug,
                       const char *suffix) {
  br_buf_reset(out);
  return br_buf_printf(out, "%s/%s/%s/%s%s", state_dir, BR_RECORDS_DIR, kind, slug, suffix);
}

/* The added-hosts record's spare: a hidden file beside it (slugs never
 * start with a dot) that takes the next list, fsync'd, before it swaps
 * names with the record; it then holds the old list. Swapping renames
 * inodes that exist instead of creating one and deleting another. That
 * matters on ext4 without a journal: each inode it creates in a directory
 * first scans the block group for inodes freed in the last seconds, and
 * every slug's records share one directory, so a bulk converge made the
 * scan quadratic (45% of the daemon's CPU over 1,000 bottles changed at
 * once). */
static int spare_path(struct br_buf *out, const char *state_dir, const char *kind, const char *slug,
                      const char *suffix) {
  br_buf_reset(out);
  return br_buf_printf(out, "%s/%s/%s/.spare.%s%s", state_dir, BR_RECORDS_DIR, kind, slug, suffix);
}

/* Writes bytes over the file's content (creating it the first time) and
 * cuts it to their length: written over the old bytes, which frees no
 * block (emptying first costs about 160 us on ext4). */
static int fill(const struct br_path_rule *rule, const char *path, const char *bytes, size_t len, bool durable,
                struct br_buf *err) {
  int fd = br_open_under(path, O_WRONLY | O_CREAT | O_NOFOLLOW, 0640, rule);
  if (fd < 0) {
    br_buf_printf(err, "%s: cannot open: %s\n", path, strerror(-fd));
    return fd;
  }
  int rc = br_pwrite_all(fd, bytes, len, 0);
  if (!rc && ftruncate(fd, (off_t)len) < 0)
    rc = -errno;
  if (!rc && durable && fsync(fd) < 0)
    rc = -errno;
  if (rc)
    br_buf_printf(err, "%s: write: %s\n", path, strerror(-rc));
  close(fd);
  return rc;
}

#define LEGACY_DIR "pending"

static void migrate_legacy(const char *state_dir);

/* Makes one directory of the records (or finds it) and checks that it is
 * reached through no symlink before anything is made inside it: mkdir(2)
 * does not follow a symlink in the last component, but would in the
 * components before it. */
static int records_dir(const char *state_dir, const char *path, struct br_buf *err) {
  if (mkdir(path, 0750) < 0 && errno != EEXIST) {
    int rc = -errno;
    br_buf_printf(err, "%s: cannot create: %s\n", path, strerror(errno));
    return rc;
  }
  const struct br_path_rule rule = records_rule(state_dir);
  int fd = br_open_under(path, O_RDONLY | O_DIRECTORY, 0, &rule);
  if (fd >= 0) {
    close(fd);
    return 0;
  }
  br_buf_printf(err, "%s: ", path);
  if (fd != -ELOOP || br_path_symlink(path, &rule, err))
    br_buf_printf(err, "cannot open: %s\n", strerror(-fd));
  else
    br_buf_adds(err, "; records and the audit log are never written through a symlink: remove it, or make it "
                     "the directory it points to\n");
  return fd;
}

int br_records_init(const char *state_dir, struct br_buf *err) {
  static const char *const subdirs[] = {"", "/reloads", "/added", "/projects"};
  struct br_buf path;
  br_buf_init(&path, 4096);
  int rc = 0;
  for (size_t i = 0; i < sizeof subdirs / sizeof *subdirs && !rc; i++) {
    br_buf_reset(&path);
    br_buf_printf(&path, "%s/%s%s", state_dir, BR_RECORDS_DIR, subdirs[i]);
    rc = records_dir(state_dir, path.data, err);
  }
  br_buf_free(&path);
  if (!rc)
    migrate_legacy(state_dir);
  return rc;
}

/* The reload file: four lines of LINE_LEN bytes, slot = mark * 2 + sidecar. */
#define LINE_LEN 41
#define SLOTS 4
static const char *const mark_word[2] = {"reload", "settle"};
static const char *const state_word[2][2] = {{"done", "owed"}, {"done", "wait"}};

static int slot_of(enum br_sidecar sidecar, enum br_reload_mark mark) { return (int)mark * 2 + (int)sidecar; }
static const char *slot_sidecar(int slot) { return br_sidecar_name((enum br_sidecar)(slot % 2)); }

static void format_line(const struct br_reloads *r, int slot, char out[LINE_LEN + 1]) {
  snprintf(out, LINE_LEN + 1, "%-8s %s %s %019" PRId64 "\n", slot_sidecar(slot), mark_word[slot / 2],
           state_word[slot / 2][r->set[slot]], r->set[slot] && r->ns[slot] > 0 ? r->ns[slot] : 0);
}

/* Parses one line; false when it is not exactly what format_line writes. */
static bool parse_line(const char *line, int slot, bool *set, int64_t *ns) {
  char want[LINE_LEN + 1];
  snprintf(want, sizeof want, "%-8s %s ", slot_sidecar(slot), mark_word[slot / 2]);
  size_t head = strlen(want);
  if (memcmp(line, want, head) || line[head + 4] != ' ' || line[LINE_LEN - 1] != '\n')
    return false;
  if (!memcmp(line + head, state_word[slot / 2][0], 4))
    *set = false;
  else if (!memcmp(line + head, state_word[slot / 2][1], 4))
    *set = true;
  else
    return false;
  uint64_t v = 0; /* 19 digits fit; INT64_MAX has 19 too, but not every 19 */
  for (size_t i = head + 5; i < LINE_LEN - 1; i++) {
    if (line[i] < '0' || line[i] > '9')
      return false;
    v = v * 10 + (uint64_t)(line[i] - '0');
  }
  if (v > INT64_MAX)
    return false;
  *ns = (int64_t)v;
  return true;
}

int br_reloads_open(struct br_reloads *r, const char *state_dir, const char *slug, bool writable,
                    struct br_buf *err) {
  memset(r, 0, sizeof *r);
  r->fd = -1;
  r->writable = writable;
  br_buf_init(&r->path, 4096);
  int rc = record_path(&r->path, state_dir, "reloads", slug, "");
  if (rc)
    return rc;
  r->rule = records_rule(state_dir);
  r->fd = br_open_under(r->path.data, (writable ? O_RDWR : O_RDONLY) | O_NOFOLLOW, 0, &r->rule);
  if (r->fd < 0) {
    rc = r->fd;
    r->fd = -1;
    if (rc == -ENOENT)
      return 0;
    br_buf_printf(err, "%s: cannot open: %s\n", r->path.data, strerror(-rc));
    return rc;
  }
  char text[SLOTS * LINE_LEN + 1];
  ssize_t n;
  while ((n = pread(r->fd, text, sizeof text, 0)) < 0 && errno == EINTR)
    ;
  if (n < 0) {
    rc = -errno;
    br_buf_printf(err, "%s: read: %s\n", r->path.data, strerror(errno));
    return rc;
  }
  bool complete = n == SLOTS * LINE_LEN;
  r->whole = complete;
  for (int slot = 0; slot < SLOTS; slot++) {
    if (complete && parse_line(text + slot * LINE_LEN, slot, &r->set[slot], &r->ns[slot]))
      continue;
    /* Unreadable: a reload owed at an unknown time (one too many at
     * worst), no settle time. */
    r->whole = false;
    r->set[slot] = slot / 2 == BR_MARK_RELOAD_OWED;
    r->ns[slot] = 0;
  }
  return 0;
}

bool br_reloads_get(const struct br_reloads *r, enum br_sidecar sidecar, enum br_reload_mark mark, int64_t *ns) {
  int slot = slot_of(sidecar, mark);
  if (r->set[slot])
    *ns = r->ns[slot];
  return r->set[slot];
}

/* Writes a slot's line in place; a missing or malformed file is written
 * whole. */
static int write_slot(struct br_reloads *r, int slot, struct br_buf *err) {
  if (!r->writable)
    return -EROFS;
  char text[SLOTS * LINE_LEN + 1];
  int first = r->whole ? slot : 0, last = r->whole ? slot : SLOTS - 1;
  for (int i = first; i <= last; i++)
    format_line(r, i, text + (i - first) * LINE_LEN);
  size_t len = (size_t)(last - first + 1) * LINE_LEN;
  int rc = 0;
  if (r->fd < 0 && (r->fd = br_open_under(r->path.data, O_RDWR | O_CREAT | O_NOFOLLOW, 0640, &r->rule)) < 0) {
    rc = r->fd;
    r->fd = -1;
  }
  if (!rc)
    rc = br_pwrite_all(r->fd, text, len, (off_t)first * LINE_LEN);
  if (!rc && !r->whole && ftruncate(r->fd, SLOTS * LINE_LEN) < 0)
    rc = -errno;
  if (rc) {
    br_buf_printf(err, "%s: write: %s\n", r->path.data, strerror(-rc));
    return rc;
  }
  r->whole = true;
  return 0;
}

/* Sets a slot and writes it; on failure the slot keeps what it held, as
 * the file does. */
static int change(struct br_reloads *r, int slot, bool set, int64_t ns, struct br_buf *err) {
  bool was_set = r->set[slot];
  int64_t was_ns = r->ns[slot];
  r->set[slot] = set;
  r->ns[slot] = ns;
  int rc = write_slot(r, slot, err);
  if (rc) {
    r->set[slot] = was_set;
    r->ns[slot] = was_ns;
  }
  return rc;
}

int br_reloads_set(struct br_reloads *r, enum br_sidecar sidecar, enum br_reload_mark mark, int64_t ns,
                   struct br_buf *err) {
  return change(r, slot_of(sidecar, mark), true, ns, err);
}

int br_reloads_clear(struct br_reloads *r, enum br_sidecar sidecar, enum br_reload_mark mark, struct br_buf *err) {
  int slot = slot_of(sidecar, mark);
  if (!r->set[slot] && (r->whole || r->fd < 0)) /* an absent file marks nothing */
    return 0;
  return change(r, slot, false, 0, err);
}

void br_reloads_close(struct br_reloads *r) {
  if (r->fd >= 0)
    close(r->fd);
  r->fd = -1;
  br_buf_free(&r->path);
}

/* Moves one mark of the earlier layout into the slug's reload file, under
 * the slug's lock (a daemon of the earlier version may still be converging
 * it), and removes the old file once the mark is safe. A bottle that is
 * gone owes nothing: its mark is only removed. */
static void migrate_mark(const char *state_dir, int dirfd, const char *name, const char *slug,
                         enum br_sidecar sidecar, enum br_reload_mark mark) {
  struct br_buf path, text, err;
  br_buf_init(&path, 4096);
  br_buf_init(&text, 64);
  br_buf_init(&err, 4096);
  br_buf_printf(&path, "%s/%s", state_dir, slug);
  const struct br_path_rule rule = records_rule(state_dir);
  int lockfd = br_open_under(path.data, O_RDONLY | O_DIRECTORY, 0, &rule);
  bool gone = lockfd == -ENOENT;
  if (lockfd >= 0)
    flock(lockfd, LOCK_EX);
  br_buf_reset(&path);
  br_buf_printf(&path, "%s/%s/%s/%s", state_dir, BR_RECORDS_DIR, LEGACY_DIR, name);
  int rc = gone ? 0 : br_file_read_under(path.data, 64, &rule, &text, NULL);
  if (gone) {
    if (unlinkat(dirfd, name, 0) < 0 && errno != ENOENT)
      br_log(BR_LOG_WARN, slug, "%s: cannot remove: %s", path.data, strerror(errno));
  } else if (rc != -ENOENT) {                           /* else: cleared meanwhile */
    int64_t ns = rc ? 0 : strtoll(text.data, NULL, 10); /* unreadable: owed at an unknown time */
    struct br_reloads r;
    if (!(rc = br_reloads_open(&r, state_dir, slug, true, &err)))
      rc = br_reloads_set(&r, sidecar, mark, ns, &err);
    br_reloads_close(&r);
    if (rc)
      br_log(BR_LOG_WARN, slug, "cannot move %s into its reload file, left in place: %.*s", path.data,
             (int)strcspn(br_buf_str(&err), "\n"), br_buf_str(&err));
    else if (unlinkat(dirfd, name, 0) < 0 && errno != ENOENT)
      br_log(BR_LOG_WARN, slug, "%s: cannot remove: %s", path.data, strerror(errno));
  }
  br_buf_free(&path);
  br_buf_free(&text);
  br_buf_free(&err);
  if (lockfd >= 0)
    close(lockfd);
}

/* The earlier layout kept each mark in its own file, pending/<slug>.<sidecar>
 * (and .<sidecar>.settle), holding the time, with a .spare. file beside it.
 * Marks still set move into the reload files, spares are removed, then the
 * directory: an upgrade between a rename and its signal still ends with the
 * reload. What cannot be moved stays, with a warning. */
static void migrate_legacy(const char *state_dir) {
  static const struct {
    const char *suffix;
    enum br_sidecar sidecar;
    enum br_reload_mark mark;
  } kinds[] = {{".pipelock.settle", BR_SIDECAR_PIPELOCK, BR_MARK_SETTLE_UNTIL},
               {".egress.settle", BR_SIDECAR_EGRESS, BR_MARK_SETTLE_UNTIL},
               {".pipelock", BR_SIDECAR_PIPELOCK, BR_MARK_RELOAD_OWED},
               {".egress", BR_SIDECAR_EGRESS, BR_MARK_RELOAD_OWED}};
  char dir[4096], slug[4096];
  snprintf(dir, sizeof dir, "%s/%s/%s", state_dir, BR_RECORDS_DIR, LEGACY_DIR);
  const struct br_path_rule rule = records_rule(state_dir);
  int fd = br_open_under(dir, O_RDONLY | O_DIRECTORY, 0, &rule);
  DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
  if (!d) {
    int rc = fd >= 0 ? -errno : fd;
    if (fd >= 0)
      close(fd);
    if (rc != -ENOENT)
      br_log(BR_LOG_WARN, NULL, "%s: cannot list: %s; the reloads it records are not moved", dir, strerror(-rc));
    return;
  }
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
      continue;
    size_t len = strlen(e->d_name), k = 0, sl = 0;
    for (; e->d_name[0] != '.' && k < sizeof kinds / sizeof *kinds; k++)
      if (len > (sl = strlen(kinds[k].suffix)) && !strcmp(e->d_name + len - sl, kinds[k].suffix))
        break;
    if (e->d_name[0] == '.' || k == sizeof kinds / sizeof *kinds) { /* a spare, or not ours */
      if (unlinkat(dirfd(d), e->d_name, 0) < 0 && errno != ENOENT)
        br_log(BR_LOG_WARN, NULL, "%s/%s: cannot remove: %s", dir, e->d_name, strerror(errno));
      continue;
    }
    snprintf(slug, sizeof slug, "%.*s", (int)(len - sl), e->d_name);
    migrate_mark(state_dir, dirfd(d), e->d_name, slug, kinds[k].sidecar, kinds[k].mark);
  }
  closedir(d);
  if (rmdir(dir) < 0 && errno != ENOENT)
    br_log(BR_LOG_WARN, NULL, "%s: cannot remove: %s", dir, strerror(errno));
}

/* The hosts of a parsed record, as listed (duplicates too: the MAC covers
 * the list as written). Returns 0, or -EINVAL when it is not a record of
 * the current format; *mac is its MAC or NULL. */
static int record_fields(json_t *doc, struct br_strv *listed, const char **mac) {
  *mac = NULL;
  json_t *list = json_object_get(doc, "hosts");
  if (!json_is_object(doc) || !json_is_array(list))
    return -EINVAL;
  size_t i;
  json_t *item;
  json_array_foreach(list, i, item) {
    if (!json_is_string(item))
      return -EINVAL;
    int rc = br_strv_add(listed, json_string_value(item));
    if (rc)
      return rc;
  }
  const char *m = json_string_value(json_object_get(doc, MAC_FIELD));
  if (m && strlen(m) == BR_RECORD_MAC_HEX_LEN)
    *mac = m;
  return 0;
}

/* Appends to why the reason a parsed record (NULL: it could not be parsed)
 * does not verify, nothing when it does; its hosts, as listed, to listed.
 * Returns 0 or -errno (out of memory). */
static int record_verify(const char *state_dir, const char *slug, json_t *doc, struct br_strv *listed,
                         struct br_buf *why) {
  const char *mac = NULL;
  int rc = 0;
  if (json_is_array(doc))
    br_buf_adds(why, "it is unsigned (a bare list: written by an earlier version, or by hand)");
  else if ((rc = record_fields(doc, listed, &mac)) == -EINVAL)
    br_buf_adds(why, "it cannot be parsed as an added-hosts record (a machine crash can leave it so in additive "
                     "mode)");
  else if (!rc && !mac)
    br_buf_adds(why, "it is unsigned (no " MAC_FIELD ")");
  if (rc == -EINVAL)
    rc = 0;
  if (rc || why->len)
    return rc;
  uint8_t key[BR_RECORD_KEY_LEN];
  struct br_buf key_why;
  br_buf_init(&key_why, 4096);
  if (br_record_key_load(state_dir, false, key, &key_why)) {
    br_buf_printf(why, "its key cannot be used: %s", br_buf_str(&key_why));
  } else {
    char want[BR_RECORD_MAC_HEX_LEN + 1];
    br_record_mac(key, slug, listed, want);
    if (!br_record_mac_equal(want, mac))
      br_buf_adds(why, "its MAC does not match (edited, copied from another bottle's record, or signed "
                       "with another key)");
    explicit_bzero(want, sizeof want);
  }
  explicit_bzero(key, sizeof key);
  br_buf_free(&key_why);
  return 0;
}

/* Reads and parses a slug's record: 0 with *doc (NULL when the file
 * cannot be parsed), -ENOENT, or another -errno. */
static int record_load(const char *state_dir, const char *slug, struct br_buf *path, json_t **doc) {
  struct br_buf text;
  br_buf_init(&text, 4 * 1024 * 1024);
  int rc = record_path(path, state_dir, "added", slug, ".json");
  const struct br_path_rule rule = records_rule(state_dir);
  if (!rc)
    rc = br_file_read_under(path->data, text.max, &rule, &text, NULL);
  *doc = rc ? NULL : json_loadb(text.data, text.len, 0, NULL);
  br_buf_free(&text);
  return rc;
}

int br_record_added_get(const char *state_dir, const char *slug, struct br_strv *hosts, bool *distrusted,
                        struct br_buf *warnings) {
  struct br_buf path, why;
  br_buf_init(&path, 4096);
  br_buf_init(&why, 8192);
  struct br_strv listed;
  br_strv_init(&listed);
  if (distrusted)
    *distrusted = false;
  json_t *doc;
  int rc = record_load(state_dir, slug, &path, &doc);
  if (rc == -ENOENT)
    rc = 0;
  else if (!rc)
    rc = record_verify(state_dir, slug, doc, &listed, &why);
  if (!rc && why.len) {
    /* The record's own bytes are not repeated: whoever wrote them may
     * have chosen them for the log. */
    br_buf_printf(
        warnings,
        "added-hosts record for %s does not verify: %s; pruning none of the hosts it lists: they stay in "
        "pipelock. If this tool added every one of them, `bottle-reconciler trust-record %s` signs %s "
        "as it stands; else remove it. The next host this tool adds starts a new, signed record without "
        "them: prune then never removes them (remove them from pipelock by hand if no route needs "
        "them)\n",
        slug, br_buf_str(&why), slug, path.data);
    if (distrusted)
      *distrusted = true;
  } else if (!rc) {
    /* Duplicates only come from a hand edit; a set finds them without
     * comparing every host with every other (the list only grows in
     * additive mode). */
    struct br_strmap seen;
    br_strmap_init(&seen);
    for (size_t i = 0; i < listed.n && !rc; i++)
      if (!br_strmap_get(&seen, listed.v[i]) && !(rc = br_strmap_put(&seen, listed.v[i], hosts)))
        rc = br_strv_add(hosts, listed.v[i]);
    br_strmap_free(&seen);
  }
  json_decref(doc);
  br_strv_free(&listed);
  br_buf_free(&path);
  br_buf_free(&why);
  return rc;
}

/* Durable, as br_file_write_atomic writes: the spare, fsync'd, swaps names
 * with the record in one step (the old list becomes the spare), then the
 * directory is fsync'd. */
static int swap_in_durably(const struct br_path_rule *rule, const char *path, const char *spare, const char *text,
                           struct br_buf *err) {
  int rc = fill(rule, spare, text, strlen(text), true, err);
  if (rc)
    return rc;
  const char *spare_name = strrchr(spare, '/') + 1, *slash = strrchr(path, '/'), *name = slash + 1;
  char dir[4096];
  snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
  int dirfd = br_open_under(dir, O_RDONLY | O_DIRECTORY, 0, rule);
  if (dirfd < 0) {
    br_buf_printf(err, "%s: cannot open its directory: %s\n", path, strerror(-dirfd));
    return dirfd;
  }
  rc = renameat2(dirfd, spare_name, dirfd, name, RENAME_EXCHANGE) < 0 ? -errno : 0;
  if (rc == -ENOENT) /* the slug's first record */
    rc = renameat(dirfd, spare_name, dirfd, name) < 0 ? -errno : 0;
  if (rc == -EINVAL) {
    /* A file system that cannot exchange names: the usual way. */
    unlinkat(dirfd, spare_name, 0);
    rc = br_file_write_atomic(path, text, strlen(text), &(struct br_write_opts){.new_mode = 0640, .rule = rule},
                              err);
  } else if (rc) {
    br_buf_printf(err, "%s: rename: %s\n", path, strerror(-rc));
  } else if (fsync(dirfd) < 0) {
    rc = -errno;
    br_buf_printf(err, "%s: fsync of its directory: %s\n", path, strerror(errno));
  }
  close(dirfd);
  return rc;
}

/* The record's text: the list, signed when the key can be used (else
 * with the reason in why). */
static char *record_text(const char *state_dir, const char *slug, const struct br_strv *hosts,
                         struct br_buf *why) {
  json_t *doc = json_object(), *list = json_array();
  for (size_t i = 0; i < hosts->n; i++)
    json_array_append_new(list, json_string(hosts->v[i]));
  json_object_set_new(doc, "hosts", list);
  uint8_t key[BR_RECORD_KEY_LEN];
  if (!br_record_key_load(state_dir, true, key, why)) {
    char mac[BR_RECORD_MAC_HEX_LEN + 1];
    br_record_mac(key, slug, hosts, mac);
    json_object_set_new(doc, MAC_FIELD, json_string(mac));
  }
  explicit_bzero(key, sizeof key);
  char *text = json_dumps(doc, JSON_INDENT(2));
  json_decref(doc);
  return text;
}

static int record_write(const char *state_dir, const char *slug, const char *text, bool durable,
                        struct br_buf *err) {
  struct br_buf path, spare;
  br_buf_init(&path, 4096);
  br_buf_init(&spare, 4096);
  int rc = text ? record_path(&path, state_dir, "added", slug, ".json") : -ENOMEM;
  const struct br_path_rule rule = records_rule(state_dir);
  if (!rc && durable) {
    if (!(rc = spare_path(&spare, state_dir, "added", slug, ".json")))
      rc = swap_in_durably(&rule, path.data, spare.data, text, err);
  } else if (!rc) {
    rc = fill(&rule, path.data, text, strlen(text), false, err);
  }
  br_buf_free(&path);
  br_buf_free(&spare);
  return rc;
}

int br_record_added_set(const char *state_dir, const char *slug, const struct br_strv *hosts, bool durable,
                        struct br_buf *warnings, struct br_buf *err) {
  struct br_buf why;
  br_buf_init(&why, 8192);
  char *text = record_text(state_dir, slug, hosts, &why);
  if (why.len)
    br_buf_printf(warnings,
                  "cannot sign the added-hosts record for %s: %s; it is written unsigned, and prune mode will "
                  "remove none of the hosts it lists\n",
                  slug, br_buf_str(&why));
  int rc = record_write(state_dir, slug, text, durable, err);
  free(text);
  br_buf_free(&why);
  return rc;
}

int br_record_added_trust(const char *state_dir, const char *slug, struct br_strv *hosts, struct br_buf *err) {
  struct br_buf path, why;
  br_buf_init(&path, 4096);
  br_buf_init(&why, 8192);
  json_t *doc;
  int rc = record_load(state_dir, slug, &path, &doc);
  if (rc)
    br_buf_printf(err, "%s: %s\n", path.data,
                  rc == -ENOENT ? "no added-hosts record: nothing to trust" : strerror(-rc));
  else if (json_is_array(doc)) { /* the earlier version's bare list */
    size_t i;
    json_t *item;
    json_array_foreach(doc, i, item) {
      if (!json_is_string(item) && !rc) {
        rc = -EINVAL;
        br_buf_printf(err, "%s: item %zu of the list is not a host name\n", path.data, i);
      } else if (!rc) {
        rc = br_strv_add(hosts, json_string_value(item));
      }
    }
  } else {
    const char *mac;
    if ((rc = record_fields(doc, hosts, &mac)) == -EINVAL)
      br_buf_printf(err, "%s: not an added-hosts record ({\"hosts\": [...]} or a list of host names)\n",
                    path.data);
  }
  char *text = NULL;
  if (!rc && !(text = record_text(state_dir, slug, hosts, &why)))
    rc = -ENOMEM;
  if (!rc && why.len) {
    rc = -EPERM;
    br_buf_printf(err, "cannot sign the added-hosts record for %s: %s\n", slug, br_buf_str(&why));
  }
  if (!rc)
    rc = record_write(state_dir, slug, text, true, err);
  free(text);
  json_decref(doc);
  br_buf_free(&path);
  br_buf_free(&why);
  return rc;
}

int br_record_project_holder(const char *state_dir, const char *project, char *holder, size_t size) {
  struct br_buf path, text;
  br_buf_init(&path, 4096);
  br_buf_init(&text, 256);
  const struct br_path_rule rule = records_rule(state_dir);
  int rc = record_path(&path, state_dir, "projects", project, "");
  if (!rc)
    rc = br_file_read_under(path.data, text.max, &rule, &text, NULL);
  if (!rc) {
    size_t len = strcspn(text.data, "\n");
    text.data[len] = '\0';
    rc = len && len < size ? 0 : -EINVAL;
    if (!rc)
      memcpy(holder, text.data, len + 1);
  }
  br_buf_free(&path);
  br_buf_free(&text);
  return rc;
}

int br_record_project_claim(const char *state_dir, const char *project, const char *slug, bool take_over,
                            struct br_buf *err) {
  struct br_buf path, line;
  br_buf_init(&path, 4096);
  br_buf_init(&line, 256);
  const struct br_path_rule rule = records_rule(state_dir);
  int rc = record_path(&path, state_dir, "projects", project, "");
  if (!rc)
    rc = br_buf_printf(&line, "%s\n", slug);
  if (!rc && take_over) {
    rc = br_file_write_atomic(path.data, line.data, line.len,
                              &(struct br_write_opts){.new_mode = 0640, .no_sync = true, .rule = &rule}, err);
  } else if (!rc) {
    /* O_EXCL: of two bottles that name one project at once, one records it. */
    int fd = br_open_under(path.data, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0640, &rule);
    rc = fd < 0 ? fd : br_pwrite_all(fd, line.data, line.len, 0);
    if (fd >= 0)
      close(fd);
    if (rc && rc != -EEXIST)
      br_buf_printf(err, "%s: cannot write: %s\n", path.data, strerror(-rc));
  }
  br_buf_free(&path);
  br_buf_free(&line);
  return rc;
}

/* Removes one record, from its directory reached through no symlink. */
static void forget(const char *state_dir, const struct br_buf *path) {
  const struct br_path_rule rule = records_rule(state_dir);
  char *slash = strrchr(path->data, '/');
  *slash = '\0';
  int dirfd = br_open_under(path->data, O_RDONLY | O_DIRECTORY, 0, &rule);
  *slash = '/';
  if (dirfd >= 0) {
    unlinkat(dirfd, slash + 1, 0);
    close(dirfd);
  }
}

void br_records_forget(const char *state_dir, const char *slug) {
  struct br_buf path;
  br_buf_init(&path, 4096);
  if (!record_path(&path, state_dir, "reloads", slug, ""))
    forget(state_dir, &path);
  if (!record_path(&path, state_dir, "added", slug, ".json"))
    forget(state_dir, &path);
  if (!spare_path(&path, state_dir, "added", slug, ".json"))
    forget(state_dir, &path);
  br_buf_free(&path);
}
