/* Unit tests for common/fileio: reads that stop at a short read only when
 * the size is known, the replaced file handed to the caller, stale temp
 * files told from live writers' ones, and long paths never cut short. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "common/fileio.h"

static void touch(const char *dir, const char *name) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  CHECK(fd >= 0);
  if (fd >= 0)
    close(fd);
}

static int exists(const char *dir, const char *name) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  return access(path, F_OK) == 0;
}

/* What the validator saw: the staged path, and whether it held the bytes. */
struct staged_seen {
  char path[PATH_MAX];
  size_t calls;
  int held_bytes;
};

static int record_staged(const char *staged_path, void *arg) {
  struct staged_seen *seen = arg;
  seen->calls++;
  snprintf(seen->path, sizeof seen->path, "%s", staged_path);
  struct br_buf bytes;
  br_buf_init(&bytes, 64);
  seen->held_bytes = br_file_read(staged_path, bytes.max, true, &bytes) == 0 && bytes.len == 5 &&
                     memcmp(bytes.data, "long\n", 5) == 0;
  br_buf_free(&bytes);
  return 0;
}

static int count_entry(const char *name, unsigned char type, void *arg) {
  (void)name, (void)type;
  ++*(size_t *)arg;
  return 0;
}

/* Makes directories below base, each name at most 200 bytes, until the path
 * in deep is exactly len bytes long. */
static void make_deep_dir(const char *base, size_t len, struct br_buf *deep) {
  static char name[201];
  memset(name, 'd', sizeof name - 1);
  br_buf_reset(deep);
  CHECK(br_buf_adds(deep, base) == 0);
  while (deep->len + 1 < len) {
    size_t n = len - deep->len - 1 < 200 ? len - deep->len - 1 : 200;
    CHECK(br_buf_printf(deep, "/%.*s", (int)n, name) == 0);
    CHECK(mkdir(deep->data, 0700) == 0 || errno == EEXIST); /* shared with a shorter one */
  }
}

/* The staged path handed to validate is the temp file's full path, however
 * long (it was once cut at 1024 bytes), or the write is refused with an error
 * when that path could not be opened at all (PATH_MAX); never a shortened
 * path, which would validate some other file or none. */
static void long_paths(const char *dir) {
  struct br_buf deep, target, want_prefix, err, back;
  br_buf_init(&deep, PATH_MAX);
  br_buf_init(&target, PATH_MAX);
  br_buf_init(&want_prefix, PATH_MAX);
  br_buf_init(&err, 4 * PATH_MAX); /* room for a message naming a long path */
  br_buf_init(&back, 64);

  /* Past the old 1024-byte buffer: written, and validated by its real path. */
  make_deep_dir(dir, 1200, &deep);
  CHECK(br_buf_printf(&target, "%s/target.yaml", deep.data) == 0);
  CHECK(br_buf_printf(&want_prefix, "%s/" BR_TMP_PREFIX, deep.data) == 0);
  struct staged_seen seen = {0};
  struct br_write_opts opts = {.validate = record_staged, .arg = &seen};
  CHECK(br_file_write_atomic(target.data, "long\n", 5, &opts, &err) == 0);
  CHECK(seen.calls == 1);
  CHECK(strlen(seen.path) > 1024 && strncmp(seen.path, want_prefix.data, want_prefix.len) == 0);
  CHECK(strcmp(seen.path + strlen(seen.path) - strlen(".target.yaml"), ".target.yaml") == 0);
  CHECK(seen.held_bytes);
  CHECK(br_file_read(target.data, back.max, true, &back) == 0);
  CHECK(back.len == 5 && memcmp(back.data, "long\n", 5) == 0);
  CHECK_STR(br_buf_str(&err), "");

  /* A target that fits PATH_MAX whose temp file's path does not: refused
   * before validate runs, with the reason, and nothing left behind. */
  make_deep_dir(dir, PATH_MAX - 12, &deep);
  br_buf_reset(&target);
  CHECK(br_buf_printf(&target, "%s/t", deep.data) == 0);
  memset(&seen, 0, sizeof seen);
  CHECK(br_file_write_atomic(target.data, "long\n", 5, &opts, &err) == -ENAMETOOLONG);
  CHECK(seen.calls == 0);
  CHECK(strstr(br_buf_str(&err), ": path of the staged temp file: File name too long\n") != NULL);
  CHECK(access(target.data, F_OK) != 0 && errno == ENOENT);
  size_t entries = 0;
  CHECK(br_dir_each(deep.data, count_entry, &entries) == 0);
  CHECK(entries == 0); /* no temp file left */

  br_buf_free(&deep);
  br_buf_free(&target);
  br_buf_free(&want_prefix);
  br_buf_free(&err);
  br_buf_free(&back);
}

int main(void) {
  struct br_buf out;
  br_buf_init(&out, 16 * 1024 * 1024);

  /* A regular file: all of it, whatever its size. */
  char dir[] = "/tmp/br-fileio-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char path[512];
  snprintf(path, sizeof path, "%s/big", dir);
  size_t big = 200000; /* over the 64 KiB read size: several reads */
  char *bytes = malloc(big);
  for (size_t i = 0; i < big; i++)
    bytes[i] = (char)('a' + i % 26);
  CHECK(br_file_write_atomic(path, bytes, big, &(struct br_write_opts){.new_mode = 0644}, &out) == 0);
  CHECK(br_file_read(path, out.max, true, &out) == 0);
  CHECK(out.len == big && memcmp(out.data, bytes, big) == 0);
  free(bytes);

  /* The replaced file, held: the caller's descriptor is the old inode, now
   * unlinked (its blocks are freed when the caller closes it); the path
   * has the new bytes. No old file: -1. */
  struct stat before, held;
  CHECK(stat(path, &before) == 0);
  int replaced = -2;
  CHECK(br_file_write_atomic(path, "new\n", 4, &(struct br_write_opts){.replaced = &replaced}, &out) == 0);
  CHECK(replaced >= 0);
  if (replaced >= 0) {
    CHECK(fstat(replaced, &held) == 0);
    CHECK(held.st_ino == before.st_ino && held.st_nlink == 0);
    close(replaced);
  }
  CHECK(br_file_read(path, out.max, true, &out) == 0);
  CHECK(out.len == 4 && memcmp(out.data, "new\n", 4) == 0);
  char fresh[512];
  snprintf(fresh, sizeof fresh, "%s/fresh", dir);
  replaced = -2;
  CHECK(br_file_write_atomic(fresh, "x", 1, &(struct br_write_opts){.replaced = &replaced}, &out) == 0);
  CHECK(replaced == -1);

  /* /proc files show size 0 and read a page at a time: read to the end,
   * not to the first short read (smaps is many pages). */
  CHECK(br_file_read("/proc/self/smaps", out.max, false, &out) == 0);
  CHECK(out.len > 8192);
  CHECK(out.len > 0 && out.data[out.len - 1] == '\n');
  const char *last = out.len > 1 ? memrchr(out.data, '\n', out.len - 1) : NULL;
  CHECK(last && strncmp(last + 1, "VmFlags:", 8) == 0);

  /* Stale temp files: a dead writer's go; a live one's stay, this
   * process's own included (its workers may be writing). */
  pid_t child = fork();
  if (child == 0)
    _exit(0);
  waitpid(child, NULL, 0); /* a pid that is gone */
  char dead[64], mine[64], other[64];
  snprintf(dead, sizeof dead, "%s%ld.0.egress_routes.yaml", BR_TMP_PREFIX, (long)child);
  snprintf(mine, sizeof mine, "%s%ld.1.egress_routes.yaml", BR_TMP_PREFIX, (long)getpid());
  snprintf(other, sizeof other, "%s%ld.2.pipelock.yaml", BR_TMP_PREFIX, (long)getppid());
  touch(dir, dead);
  touch(dir, mine);
  touch(dir, other);
  touch(dir, "keep.yaml");
  CHECK(br_file_remove_stale_temps(dir) == 1);
  CHECK(!exists(dir, dead));
  CHECK(exists(dir, mine));
  CHECK(exists(dir, other));
  CHECK(exists(dir, "keep.yaml"));

  long_paths(dir);

  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  CHECK(system(cmd) == 0);
  br_buf_free(&out);
  CHECK_DONE();
}
