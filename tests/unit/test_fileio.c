/* Unit tests for common/fileio: reads that stop at a short read only when
 * the size is known, the replaced file handed to the caller, stale temp
 * files told from live writers' ones, long paths never cut short, paths
 * opened through no symlink under a rule (with openat2 and with the
 * component walk), and the mode and owner a replaced file keeps. */
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

static void mkdirs(const char *root, const char *rel) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", root, rel);
  CHECK(mkdir(path, 0755) == 0);
}

static void link_to(const char *root, const char *rel, const char *target) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", root, rel);
  CHECK(symlink(target, path) == 0);
}

static int open_rc(const char *root, const char *rel, int flags, const struct br_path_rule *rule) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", root, rel);
  int fd = br_open_under(path, flags, 0644, rule);
  if (fd >= 0)
    close(fd);
  return fd >= 0 ? 0 : fd;
}

/* state/ is the trusted root; a/ its bottle, b/ another one; out/ lies
 * outside it; link is a symlink to b's directory, and so on. Every symlink
 * in any component is -ELOOP under the rule, a file reached through none
 * opens, and a directory that follow lists may itself be reached through a
 * symlink, but nothing beneath it. */
static void test_rules(const char *dir, bool walk) {
  br_open_under_walk_only(walk);
  char root[128], out[128], real_out[160];
  snprintf(root, sizeof root, "%.64s/rules%d/state", dir, walk);
  snprintf(out, sizeof out, "%.64s/rules%d", dir, walk);
  CHECK(mkdir(out, 0755) == 0);
  CHECK(mkdir(root, 0755) == 0);
  mkdirs(root, "a");
  mkdirs(root, "a/egress");
  mkdirs(root, "b");
  mkdirs(root, "b/egress");
  touch(root, "a/egress/routes.json");
  touch(root, "b/egress/routes.json");
  link_to(root, "a/linked", "../b/egress"); /* a directory of another bottle */
  link_to(root, "c", "b");                  /* a slug directory */
  link_to(root, "a/egress/file-link", "../../b/egress/routes.json");
  mkdirs(out, "real");
  touch(out, "real/file");
  link_to(out, "alias", "real");
  snprintf(real_out, sizeof real_out, "%s/alias", out);
  struct br_strv follow;
  br_strv_init(&follow);
  struct br_path_rule rule = {.root = root};

  CHECK(open_rc(root, "a/egress/routes.json", O_RDONLY, &rule) == 0);
  CHECK(open_rc(root, "a/egress", O_RDONLY | O_DIRECTORY, &rule) == 0);
  CHECK(open_rc(root, "a/linked/routes.json", O_RDONLY, &rule) == -ELOOP);
  CHECK(open_rc(root, "a/linked", O_RDONLY | O_DIRECTORY, &rule) == -ELOOP);
  CHECK(open_rc(root, "c/egress/routes.json", O_RDONLY, &rule) == -ELOOP);
  CHECK(open_rc(root, "a/egress/file-link", O_RDONLY, &rule) == -ELOOP);
  CHECK(open_rc(root, "a/egress/file-link", O_RDONLY, NULL) == 0); /* no rule: followed */
  CHECK(open_rc(root, "a/../b/egress/routes.json", O_RDONLY, &rule) == -EXDEV);
  CHECK(open_rc(root, "a/egress/new", O_WRONLY | O_CREAT | O_EXCL, &rule) == 0);
  /* Outside the root: no symlink anywhere, unless follow lists it. */
  CHECK(open_rc(out, "real/file", O_RDONLY, &rule) == 0);
  CHECK(open_rc(out, "alias/file", O_RDONLY, &rule) == -ELOOP);
  CHECK(br_strv_add(&follow, real_out) == 0);
  rule.follow = &follow;
  CHECK(open_rc(out, "alias/file", O_RDONLY, &rule) == 0);
  link_to(out, "real/sub", ".");
  CHECK(open_rc(out, "alias/sub/file", O_RDONLY, &rule) == -ELOOP); /* beneath it, none either */
  rule.follow = NULL;

  /* The message names the symlink. */
  struct br_buf msg;
  br_buf_init(&msg, 4096);
  char path[512];
  snprintf(path, sizeof path, "%s/a/linked/routes.json", root);
  CHECK(br_path_symlink(path, &rule, &msg) == 0);
  char want[1024];
  snprintf(want, sizeof want, "%s/a/linked is a symlink (to ../b/egress)", root);
  CHECK_STR(msg.data, want);

  /* Reads and writes under the rule: nothing of b is read or touched. */
  CHECK(br_file_read_under(path, 1024, &rule, &msg, NULL) == -ELOOP);
  br_buf_reset(&msg);
  CHECK(br_file_write_atomic(path, "x\n", 2, &(struct br_write_opts){.rule = &rule}, &msg) == -ELOOP);
  snprintf(want, sizeof want, "%s: %s/a/linked is a symlink (to ../b/egress); refusing to write through it", path,
           root);
  CHECK(msg.data && strncmp(msg.data, want, strlen(want)) == 0);
  struct stat st;
  snprintf(path, sizeof path, "%s/b/egress/routes.json", root);
  CHECK(stat(path, &st) == 0 && st.st_size == 0);
  snprintf(path, sizeof path, "%s/a/egress/routes.json", root);
  br_buf_reset(&msg);
  CHECK(br_file_write_atomic(path, "x\n", 2, &(struct br_write_opts){.rule = &rule}, &msg) == 0);
  CHECK(br_file_read_under(path, 1024, &rule, &msg, NULL) == 0 && msg.len == 2);
  snprintf(path, sizeof path, "%s/c", root);
  CHECK(br_file_remove_stale_temps_under(path, &rule) == -ELOOP);
  br_buf_free(&msg);
  br_strv_free(&follow);
  br_open_under_walk_only(false);
}

/* A replaced file keeps its mode and owner (the sidecar may run as another
 * user that must keep reading it): as root, a file of another uid and gid,
 * mode 0604, is replaced and is still theirs with that mode. */
static void test_mode_and_owner(const char *dir) {
  char path[512];
  snprintf(path, sizeof path, "%s/owned", dir);
  struct br_buf err;
  br_buf_init(&err, 4096);
  CHECK(br_file_write_atomic(path, "old\n", 4, &(struct br_write_opts){.new_mode = 0600}, &err) == 0);
  struct stat st;
  CHECK(stat(path, &st) == 0 && (st.st_mode & 07777) == 0600); /* new_mode for a new file */
  if (geteuid() != 0) {
    fprintf(stderr, "test_mode_and_owner: not root, the owner is not changed\n");
  } else {
    CHECK(chown(path, 4242, 4343) == 0);
  }
  CHECK(chmod(path, 0604) == 0);
  CHECK(br_file_write_atomic(path, "new\n", 4, &(struct br_write_opts){.new_mode = 0600}, &err) == 0);
  CHECK(stat(path, &st) == 0);
  CHECK((st.st_mode & 07777) == 0604);
  if (geteuid() == 0)
    CHECK(st.st_uid == 4242 && st.st_gid == 4343);
  CHECK(br_file_read(path, 64, true, &err) == 0 && err.len == 4 && memcmp(err.data, "new\n", 4) == 0);
  br_buf_free(&err);
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
  test_rules(dir, false);
  test_rules(dir, true);
  test_mode_and_owner(dir);

  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  CHECK(system(cmd) == 0);
  br_buf_free(&out);
  CHECK_DONE();
}
