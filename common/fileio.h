/* fileio: bounded reads and atomic, durable, symlink-safe replacement of a
 * file. Knows nothing of what the files hold. */
#ifndef BR_COMMON_FILEIO_H
#define BR_COMMON_FILEIO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "common/buf.h"

/* Temp files of this tool start with this prefix, so readers that ignore
 * dot files (the fragment scanner, pipelock's basename filter) skip them and
 * a restart can recognise and remove its own leftovers. */
#define BR_TMP_PREFIX ".br-tmp."

/* Reads a whole regular file of at most max bytes into out (replacing its
 * contents). With nofollow, a symlink as the last component is -ELOOP.
 * Returns 0, -ENOENT, -EFBIG, -EISDIR, -EINVAL (not a regular file) or
 * another -errno. */
int br_file_read(const char *path, size_t max, bool nofollow, struct br_buf *out);
/* The same, and on success *st is the file's fstat() taken as it was read. */
int br_file_read_stat(const char *path, size_t max, bool nofollow, struct br_buf *out, struct stat *st);

/* Calls each(name, d_type, arg) for every entry of the directory at path
 * but "." and "..", in the file system's order, until each returns non-zero
 * (returned as is). d_type is DT_UNKNOWN where the file system does not say.
 * Returns 0, or -errno when path is not a readable directory (-ENOENT,
 * -ENOTDIR, ...). Two syscalls fewer than opendir() after a stat(), which
 * matters for 10,000 slugs at start-up. */
int br_dir_each(const char *path, int (*each)(const char *name, unsigned char type, void *arg), void *arg);

struct br_write_opts {
  mode_t new_mode; /* mode when the target does not exist yet */
  /* Called with the staged temp file's path after it is written and
   * fsync'd; non-zero refuses the write (the temp file is removed). That
   * path is longer than the target's: one that would not fit PATH_MAX
   * refuses the write with -ENAMETOOLONG before validate is called. */
  int (*validate)(const char *staged_path, void *arg);
  /* Called just before the rename, e.g. to record "written but not yet
   * reloaded"; non-zero aborts the write. */
  int (*before_rename)(void *arg);
  /* When not NULL, filled with the lstat of the file about to be renamed
   * into place, before before_rename runs: what the target will be. */
  struct stat *staged;
  void *arg;
  /* Atomic for readers and against a crash of this process, but not durable
   * across a crash of the machine: no fsync of the file or its directory.
   * For records whose only reader is this tool while the machine stays up. */
  bool no_sync;
  /* When not NULL, receives an O_PATH descriptor on the file the rename
   * replaced, or -1. A descriptor is the caller's to close whatever this
   * returns (the rename may be done and the directory fsync fail). The last
   * reference to a replaced file frees its blocks, and on ext4 without a
   * journal, mounted with `discard`, that waits for the device: about
   * 0.15 ms inside rename() on the machine of tests/bench. Held, it happens
   * at the close, e.g. once the sidecar has been told. */
  int *replaced;
  /* When not NULL, appended to the temp file's name, which otherwise ends
   * in the target's name (so that a validate command sees its extension):
   * for a directory whose reader takes every name with that extension, dot
   * names too (node_exporter's textfile collector reads every "*.prom"). */
  const char *temp_suffix;
};

/* Replaces path with bytes so that readers see the old or the new content,
 * never a mix, and (unless opts->no_sync) the new content survives a crash
 * once this returns:
 * temp file in the same directory, fsync, the old file's mode and owner,
 * rename over the target, fsync of the directory. Refuses to write through a
 * symlink (-ELOOP). A rename that fails because the target is a mount point
 * returns -EBUSY. On error a line for the operator is appended to err and no
 * temp file is left behind. */
int br_file_write_atomic(const char *path, const void *bytes, size_t len, const struct br_write_opts *opts,
                         struct br_buf *err);

/* Removes this tool's temp files in dir whose writer process is gone (never
 * this process's own: they may be in the middle of a write).
 * Returns the number removed, or -errno when dir cannot be read. */
int br_file_remove_stale_temps(const char *dir);

#endif
