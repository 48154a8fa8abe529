/* fileio: bounded reads and atomic, durable, symlink-safe replacement of a
 * file. Knows nothing of what the files hold. */
#ifndef BR_COMMON_FILEIO_H
#define BR_COMMON_FILEIO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "common/buf.h"
#include "common/strv.h"

/* Temp files of this tool start with this prefix, so readers that ignore
 * dot files (the fragment scanner, pipelock's basename filter) skip them and
 * a restart can recognise and remove its own leftovers. */
#define BR_TMP_PREFIX ".br-tmp."

/* Where the path of a file may pass through a symlink. The tool runs as
 * root beside directories that others write (a bottle's own, its sidecars'):
 * a symlink planted in any component, not just the last, could send a write
 * or a read to another bottle's files or to /etc. So a file opened under a
 * rule is reached through no symlink at all, except in the paths of the
 * directories the rule trusts. */
struct br_path_rule {
  const char *root;             /* a trusted directory (the state directory,
                                   resolved once with realpath): a path under
                                   it is resolved beneath it, through no
                                   symlink and never above it; NULL: none */
  const struct br_strv *follow; /* directories whose own paths may go through
                                   symlinks, a deployment's documented choice
                                   (the config's follow_symlinks); beneath
                                   them, no symlink either; NULL: none */
};
/* A path under neither is resolved from "/" through no symlink. */

/* Opens path (absolute) as openat(2) would with flags and mode, under rule
 * (NULL: as open(2), following every symlink). A symlink where the rule
 * allows none is -ELOOP, whatever component it is; a ".." component is
 * -EXDEV. Uses openat2(2) with RESOLVE_NO_SYMLINKS (and RESOLVE_BENEATH
 * from a trusted directory) where the kernel has it (Linux 5.6), else a
 * walk of the components with O_NOFOLLOW. Returns the descriptor
 * (O_CLOEXEC) or -errno. */
int br_open_under(const char *path, int flags, mode_t mode, const struct br_path_rule *rule);
/* After -ELOOP from br_open_under: appends "COMPONENT is a symlink (to
 * TARGET)" for the first component of path that is a symlink where rule
 * allows none, for the message. Returns 0, -ENOENT when there is none (any
 * more), or another -errno. */
int br_path_symlink(const char *path, const struct br_path_rule *rule, struct br_buf *out);
/* Appends why path could not be opened under rule (rc from br_open_under
 * or a read under it), for a message: for -ELOOP the component that is a
 * symlink and where it points, else strerror(-rc). */
void br_path_describe_error(const char *path, int rc, const struct br_path_rule *rule, struct br_buf *out);
/* Each thread keeps the last trusted root it opened (the state directory,
 * nearly always) as a descriptor. After this, every thread opens its root
 * again by path: call it when the paths may lead elsewhere (a config
 * reload). */
void br_open_under_reset(void);
/* For tests: resolve as on a kernel without openat2 (the component walk). */
void br_open_under_walk_only(bool walk_only);

/* Reads a whole regular file of at most max bytes into out (replacing its
 * contents). With nofollow, a symlink as the last component is -ELOOP.
 * Returns 0, -ENOENT, -EFBIG, -EISDIR, -EINVAL (not a regular file) or
 * another -errno. */
int br_file_read(const char *path, size_t max, bool nofollow, struct br_buf *out);
/* The same, and on success *st is the file's fstat() taken as it was read. */
int br_file_read_stat(const char *path, size_t max, bool nofollow, struct br_buf *out, struct stat *st);
/* br_file_read_stat with nofollow, the path opened under rule (-ELOOP for a
 * symlink anywhere the rule allows none). */
int br_file_read_under(const char *path, size_t max, const struct br_path_rule *rule, struct br_buf *out,
                       struct stat *st);

/* Calls each(name, d_type, arg) for every entry of the directory at path
 * but "." and "..", in the file system's order, until each returns non-zero
 * (returned as is). d_type is DT_UNKNOWN where the file system does not say.
 * Returns 0, or -errno when path is not a readable directory (-ENOENT,
 * -ENOTDIR, ...). Two syscalls fewer than opendir() after a stat(), which
 * matters for 10,000 slugs at start-up. */
int br_dir_each(const char *path, int (*each)(const char *name, unsigned char type, void *arg), void *arg);
/* The same with path opened under rule (-ELOOP for a symlink anywhere the
 * rule allows none). */
int br_dir_each_under(const char *path, const struct br_path_rule *rule,
                      int (*each)(const char *name, unsigned char type, void *arg), void *arg);

/* Writes all len bytes at offset at (pwrite, retried after EINTR and short
 * writes). Returns 0 or -errno (-EIO when nothing more can be written). */
int br_pwrite_all(int fd, const void *bytes, size_t len, off_t at);

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
  /* When not NULL, the target's directory is opened under this rule: no
   * symlink in any component of the path (see br_path_rule), where without
   * it only the target itself is refused as a symlink. */
  const struct br_path_rule *rule;
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
/* The same with dir opened under rule (NULL: following symlinks). */
int br_file_remove_stale_temps_under(const char *dir, const struct br_path_rule *rule);

#endif
