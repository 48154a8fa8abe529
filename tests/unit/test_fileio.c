/* Unit tests for common/fileio: reads that stop at a short read only when
 * the size is known, the replaced file handed to the caller, and stale temp
 * files told from live writers' ones. */
#include <errno.h>
#include <fcntl.h>
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

  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  CHECK(system(cmd) == 0);
  br_buf_free(&out);
  CHECK_DONE();
}
