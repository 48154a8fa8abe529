/* records: persistence of pending reloads and added pipelock hosts. Formats
 * are one-line text and a JSON list, so an operator can read them by hand. */
#include "reconciler/records.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fileio.h"

static int record_path(struct br_buf *out, const char *state_dir, const char *kind, const char *slug,
                       const char *suffix) {
  br_buf_reset(out);
  return br_buf_printf(out, "%s/%s/%s/%s%s", state_dir, BR_RECORDS_DIR, kind, slug, suffix);
}

/* A record's spare: a hidden file beside it (slugs never start with a dot)
 * that takes the next content before a rename makes it the record, and the
 * last content when a pending record is cleared. Setting and clearing a
 * record so rename an inode that exists instead of creating one and
 * deleting another. That matters on ext4 without a journal: each inode it
 * creates in a directory first scans the block group for inodes freed in the
 * last seconds, and every slug's records share one directory, so a bulk
 * converge made the scan quadratic (45% of the daemon's CPU over 1,000
 * bottles changed at once). */
static int spare_path(struct br_buf *out, const char *state_dir, const char *kind, const char *slug,
                      const char *suffix) {
  br_buf_reset(out);
  return br_buf_printf(out, "%s/%s/%s/.spare.%s%s", state_dir, BR_RECORDS_DIR, kind, slug, suffix);
}

/* Writes bytes over the spare's content (creating it the first time). The
 * spare holds what the record held two writes ago. With empty_first (a
 * write that is not durable but whose old bytes must never come back) the
 * spare is emptied first: after a machine crash it is then the new bytes, a
 * part of them, or empty, never the older content. Otherwise the bytes are
 * written over the old ones and the file cut to their length, which frees
 * no block: emptying costs about 160 us on ext4, the dearest step of a
 * record on a converge's way. */
static int spare_fill(const char *spare, const char *bytes, size_t len, bool durable, bool empty_first,
                      struct br_buf *err) {
  int fd = open(spare, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | (empty_first ? O_TRUNC : 0), 0640);
  if (fd < 0) {
    int rc = -errno;
    br_buf_printf(err, "%s: cannot open: %s\n", spare, strerror(errno));
    return rc;
  }
  int rc = 0;
  for (size_t off = 0; !rc && off < len;) {
    ssize_t n = pwrite(fd, bytes + off, len - off, (off_t)off);
    if (n < 0 && errno != EINTR)
      rc = -errno;
    else if (n > 0)
      off += (size_t)n;
  }
  if (!rc && !empty_first && ftruncate(fd, (off_t)len) < 0)
    rc = -errno;
  if (!rc && durable && fsync(fd) < 0)
    rc = -errno;
  if (rc)
    br_buf_printf(err, "%s: write: %s\n", spare, strerror(-rc));
  close(fd);
  return rc;
}

int br_records_init(const char *state_dir, struct br_buf *err) {
  static const char *const subdirs[] = {"", "/pending", "/added"};
  struct br_buf path;
  br_buf_init(&path, 4096);
  int rc = 0;
  for (size_t i = 0; i < 3 && !rc; i++) {
    br_buf_reset(&path);
    br_buf_printf(&path, "%s/%s%s", state_dir, BR_RECORDS_DIR, subdirs[i]);
    if (mkdir(path.data, 0750) < 0 && errno != EEXIST) {
      rc = -errno;
      br_buf_printf(err, "%s: cannot create: %s\n", path.data, strerror(errno));
    }
  }
  br_buf_free(&path);
  return rc;
}

int br_record_pending_set(const char *state_dir, const char *slug, const char *sidecar,
                          int64_t written_at_ns, struct br_buf *err) {
  struct br_buf path, spare, text;
  br_buf_init(&path, 4096);
  br_buf_init(&spare, 4096);
  br_buf_init(&text, 64);
  char suffix[64];
  snprintf(suffix, sizeof suffix, ".%s", sidecar);
  int rc = record_path(&path, state_dir, "pending", slug, suffix);
  if (!rc)
    rc = spare_path(&spare, state_dir, "pending", slug, suffix);
  if (!rc)
    rc = br_buf_printf(&text, "%" PRId64 "\n", written_at_ns);
  /* No fsync: the record is read only while the sidecar keeps running after
   * this process died, and the page cache outlives a process. A crash of the
   * machine restarts the sidecars too, and they read the live file then. Two
   * fsyncs per written file were a third of a converge's latency. So an old
   * timestamp coming back after such a crash does not matter either: not
   * emptied first. The rename makes the record appear whole. */
  if (!rc)
    rc = spare_fill(spare.data, text.data, text.len, false, false, err);
  if (!rc && rename(spare.data, path.data) < 0) {
    rc = -errno;
    br_buf_printf(err, "%s: rename: %s\n", path.data, strerror(errno));
  }
  br_buf_free(&path);
  br_buf_free(&spare);
  br_buf_free(&text);
  return rc;
}

int br_record_pending_get(const char *state_dir, const char *slug, const char *sidecar,
                          int64_t *written_at_ns) {
  struct br_buf path, text;
  br_buf_init(&path, 4096);
  br_buf_init(&text, 64);
  char suffix[64];
  snprintf(suffix, sizeof suffix, ".%s", sidecar);
  int found = 0;
  if (!record_path(&path, state_dir, "pending", slug, suffix) && !br_file_read(path.data, 64, true, &text)) {
    found = 1;
    *written_at_ns = strtoll(text.data, NULL, 10); /* unreadable: 0, which still reloads */
  }
  br_buf_free(&path);
  br_buf_free(&text);
  return found;
}

int br_record_pending_clear(const char *state_dir, const char *slug, const char *sidecar) {
  struct br_buf path, spare;
  br_buf_init(&path, 4096);
  br_buf_init(&spare, 4096);
  char suffix[64];
  snprintf(suffix, sizeof suffix, ".%s", sidecar);
  int rc = record_path(&path, state_dir, "pending", slug, suffix);
  if (!rc)
    rc = spare_path(&spare, state_dir, "pending", slug, suffix);
  /* The record becomes the spare again: gone, without freeing its inode. */
  if (!rc && rename(path.data, spare.data) < 0 && errno != ENOENT)
    rc = -errno;
  br_buf_free(&path);
  br_buf_free(&spare);
  return rc;
}

int br_record_added_get(const char *state_dir, const char *slug, struct br_strv *hosts,
                        struct br_buf *warnings) {
  struct br_buf path, text;
  br_buf_init(&path, 4096);
  br_buf_init(&text, 4 * 1024 * 1024);
  int rc = record_path(&path, state_dir, "added", slug, ".json");
  if (!rc)
    rc = br_file_read(path.data, text.max, true, &text);
  if (rc == -ENOENT)
    rc = 0;
  else if (!rc) {
    json_t *list = json_loadb(text.data, text.len, 0, NULL);
    size_t i;
    json_t *item;
    if (json_is_array(list)) {
      json_array_foreach(list, i, item) {
        if (json_is_string(item) && !rc)
          rc = br_strv_add_unique(hosts, json_string_value(item));
      }
    } else {
      br_buf_printf(warnings, "%s is not a JSON list of hosts; treated as empty: prune mode will leave the "
                              "hosts it listed in pipelock\n", path.data);
    }
    json_decref(list);
  }
  br_buf_free(&path);
  br_buf_free(&text);
  return rc;
}

int br_record_added_set(const char *state_dir, const char *slug, const struct br_strv *hosts, bool durable,
                        struct br_buf *err) {
  struct br_buf path, spare;
  br_buf_init(&path, 4096);
  br_buf_init(&spare, 4096);
  json_t *list = json_array();
  for (size_t i = 0; i < hosts->n; i++)
    json_array_append_new(list, json_string(hosts->v[i]));
  char *text = json_dumps(list, JSON_INDENT(2));
  int rc = text ? record_path(&path, state_dir, "added", slug, ".json") : -ENOMEM;
  if (!rc)
    rc = spare_path(&spare, state_dir, "added", slug, ".json");
  /* Durable, as br_file_write_atomic writes: the spare, fsync'd, swaps
   * names with the record in one step (the old list becomes the spare),
   * then the directory is fsync'd. */
  if (!rc)
    rc = spare_fill(spare.data, text, strlen(text), durable, !durable, err);
  int dirfd = -1;
  if (!rc) {
    char *slash = strrchr(path.data, '/');
    *slash = '\0';
    dirfd = open(path.data, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    *slash = '/';
    if (dirfd < 0) {
      rc = -errno;
      br_buf_printf(err, "%s: cannot open its directory: %s\n", path.data, strerror(errno));
    }
  }
  if (!rc) {
    const char *spare_name = strrchr(spare.data, '/') + 1, *name = strrchr(path.data, '/') + 1;
    int xrc = renameat2(dirfd, spare_name, dirfd, name, RENAME_EXCHANGE) < 0 ? -errno : 0;
    if (xrc == -ENOENT) /* the slug's first record */
      xrc = renameat(dirfd, spare_name, dirfd, name) < 0 ? -errno : 0;
    if (xrc == -EINVAL) {
      /* A file system that cannot exchange names: the usual way. */
      unlinkat(dirfd, spare_name, 0);
      rc = br_file_write_atomic(path.data, text, strlen(text),
                                &(struct br_write_opts){.new_mode = 0640, .no_sync = !durable}, err);
    } else if (xrc) {
      rc = xrc;
      br_buf_printf(err, "%s: rename: %s\n", path.data, strerror(-rc));
    } else if (durable && fsync(dirfd) < 0) {
      rc = -errno;
      br_buf_printf(err, "%s: fsync of its directory: %s\n", path.data, strerror(errno));
    }
  }
  if (dirfd >= 0)
    close(dirfd);
  free(text);
  json_decref(list);
  br_buf_free(&path);
  br_buf_free(&spare);
  return rc;
}

void br_records_forget(const char *state_dir, const char *slug) {
  static const char *const pending[] = {".pipelock", ".egress", ".pipelock.settle", ".egress.settle"};
  struct br_buf path;
  br_buf_init(&path, 4096);
  for (size_t i = 0; i < sizeof pending / sizeof *pending; i++) {
    if (!record_path(&path, state_dir, "pending", slug, pending[i]))
      unlink(path.data);
    if (!spare_path(&path, state_dir, "pending", slug, pending[i]))
      unlink(path.data);
  }
  if (!record_path(&path, state_dir, "added", slug, ".json"))
    unlink(path.data);
  if (!spare_path(&path, state_dir, "added", slug, ".json"))
    unlink(path.data);
  br_buf_free(&path);
}

/* Settle records are pending records under another name: the same small
 * file holding a time, set and cleared the same way. */
static void settle_name(char *out, size_t size, const char *sidecar) { snprintf(out, size, "%s.settle", sidecar); }

int br_record_settle_set(const char *state_dir, const char *slug, const char *sidecar, int64_t until_ns,
                         struct br_buf *err) {
  char name[64];
  settle_name(name, sizeof name, sidecar);
  return br_record_pending_set(state_dir, slug, name, until_ns, err);
}

int br_record_settle_get(const char *state_dir, const char *slug, const char *sidecar, int64_t *until_ns) {
  char name[64];
  settle_name(name, sizeof name, sidecar);
  return br_record_pending_get(state_dir, slug, name, until_ns);
}

int br_record_settle_clear(const char *state_dir, const char *slug, const char *sidecar) {
  char name[64];
  settle_name(name, sizeof name, sidecar);
  return br_record_pending_clear(state_dir, slug, name);
}
