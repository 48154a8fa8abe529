/* fileio: the only place that creates, replaces or removes files on behalf of
 * the tool. Every write goes through br_file_write_atomic. */
#include "common/fileio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <linux/openat2.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- opening a path through no symlink ----------------------------------- */

static atomic_bool no_openat2; /* the kernel said ENOSYS once, or a test asked */

void br_open_under_walk_only(bool walk_only) { atomic_store(&no_openat2, walk_only); }

/* Length of dir when path is dir or lies beneath it (a whole-component
 * prefix), else 0. A trailing "/" of dir does not count; "/" itself has
 * length 1. */
static size_t prefix_of(const char *path, const char *dir) {
  size_t n = dir ? strlen(dir) : 0;
  while (n > 1 && dir[n - 1] == '/')
    n--;
  if (!n || dir[0] != '/' || strncmp(path, dir, n) != 0)
    return 0;
  return n == 1 || path[n] == '/' || path[n] == '\0' ? n : 0;
}

/* The trusted directory of rule that path lies beneath, the longest: its
 * length in path, or 0 for none (resolve from "/"). */
static size_t trusted_prefix(const char *path, const struct br_path_rule *rule) {
  size_t best = prefix_of(path, rule->root);
  for (size_t i = 0; rule->follow && i < rule->follow->n; i++) {
    size_t n = prefix_of(path, rule->follow->v[i]);
    if (n > best)
      best = n;
  }
  return best;
}

/* The component walk, for kernels without openat2: each directory opened
 * from the last with O_NOFOLLOW, so a symlink anywhere fails, and so does a
 * swap after a component was opened (the descriptor is what is walked). */
static int walk_beneath(int dirfd, const char *rest, int flags, mode_t mode) {
  char buf[PATH_MAX];
  if (snprintf(buf, sizeof buf, "%s", rest) >= (int)sizeof buf)
    return -ENAMETOOLONG;
  int fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  char *comp = buf;
  for (;;) {
    while (*comp == '/')
      comp++;
    char *slash = strchr(comp, '/');
    if (slash)
      *slash = '\0';
    bool last = !slash || !slash[1 + strspn(slash + 1, "/")];
    int next;
    struct stat st;
    if (last) {
      next = openat(fd, *comp ? comp : ".", flags | O_NOFOLLOW | O_CLOEXEC, mode);
      /* O_PATH with O_NOFOLLOW opens a symlink itself rather than failing. */
      if (next >= 0 && (flags & O_PATH) && fstat(next, &st) == 0 && S_ISLNK(st.st_mode)) {
        close(next);
        next = -1;
        errno = ELOOP;
      }
    } else if (!*comp || !strcmp(comp, ".")) {
      comp = slash + 1;
      continue;
    } else {
      next = openat(fd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    /* A symlink is "not a directory" to O_DIRECTORY|O_NOFOLLOW. */
    if (next < 0 && errno == ENOTDIR && fstatat(fd, *comp ? comp : ".", &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISLNK(st.st_mode))
      errno = ELOOP;
    int err = errno;
    close(fd);
    if (next < 0)
      return -err;
    if (last)
      return next;
    fd = next;
    comp = slash + 1;
  }
}

/* The trusted root a thread opened last, kept: nearly every open is beneath
 * the state directory, and opening it for each one (open, openat2, close)
 * tripled the syscalls of a converge that changes nothing. Per thread, so
 * that only its own thread ever closes it; br_open_under_reset makes every
 * thread open its root afresh (a config reload: the state directory's path
 * may lead to another directory now). */
static atomic_uint roots_generation;
static _Thread_local struct {
  char *path;
  int fd;
  unsigned generation;
} root_kept = {NULL, -1, 0};

void br_open_under_reset(void) { atomic_fetch_add(&roots_generation, 1); }

/* An O_PATH descriptor of dir; *kept when it is the thread's kept root
 * (the caller must not close it). Only the rule's root is kept: a follow
 * directory's own path may change where it leads at any time. */
static int root_open(const char *dir, bool keep, bool *kept) {
  unsigned generation = atomic_load(&roots_generation);
  *kept = false;
  if (keep && root_kept.fd >= 0 && root_kept.generation == generation && strcmp(root_kept.path, dir) == 0) {
    *kept = true;
    return root_kept.fd;
  }
  int fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || !keep)
    return fd < 0 ? -errno : fd;
  char *copy = strdup(dir);
  if (!copy)
    return fd; /* not kept: closed by the caller */
  if (root_kept.fd >= 0)
    close(root_kept.fd);
  free(root_kept.path);
  root_kept.path = copy;
  root_kept.fd = fd;
  root_kept.generation = generation;
  *kept = true;
  return fd;
}

/* After ENOENT beneath a kept root: was it removed (a state directory
 * deleted and made again)? Then the kept descriptor is dropped. One fstat,
 * as a record's first converge meets ENOENT every time. */
static bool root_removed(int kept_fd) {
  struct stat st;
  if (fstat(kept_fd, &st) < 0 || st.st_nlink > 0)
    return false;
  close(root_kept.fd);
  root_kept.fd = -1;
  return true;
}

int br_open_under(const char *path, int flags, mode_t mode, const struct br_path_rule *rule) {
  if (!rule) {
    int fd = open(path, flags | O_CLOEXEC, mode);
    return fd < 0 ? -errno : fd;
  }
  if (path[0] != '/')
    return -EINVAL;
  /* ".." could climb out of a bottle's directory and back into another's
   * (RESOLVE_BENEATH allows what stays below the root): no path the tool
   * derives has one, so none is taken. */
  for (const char *c = path; (c = strstr(c, "..")); c += 2)
    if (c[-1] == '/' && (c[2] == '/' || c[2] == '\0'))
      return -EXDEV;
  size_t n = trusted_prefix(path, rule);
  char dir[PATH_MAX];
  if (n >= sizeof dir)
    return -ENAMETOOLONG;
  /* The trusted directory's own path is taken as it is; "/" when none. */
  memcpy(dir, path, n ? n : 1);
  dir[n ? n : 1] = '\0';
  const char *rest = path + (n ? n : 1);
  rest += strspn(rest, "/");
  if (!*rest)
    rest = ".";
  bool kept;
  int dirfd = root_open(dir, n && rule->root && prefix_of(path, rule->root) == n, &kept);
  if (dirfd < 0)
    return dirfd;
  int fd = -ENOSYS;
  if (!atomic_load(&no_openat2)) {
    struct open_how how = {
        .flags = (uint64_t)(flags | O_CLOEXEC),
        .mode = (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? mode : 0,
        .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_BENEATH,
    };
    long r = syscall(SYS_openat2, dirfd, rest, &how, sizeof how);
    fd = r < 0 ? -errno : (int)r;
    if (fd == -ENOSYS)
      atomic_store(&no_openat2, true);
  }
  /* EPERM too: a seccomp filter that predates openat2 may answer so. */
  if (fd == -ENOSYS || fd == -EPERM)
    fd = walk_beneath(dirfd, rest, flags, mode);
  if (!kept)
    close(dirfd);
  else if (fd == -ENOENT && root_removed(dirfd))
    return br_open_under(path, flags, mode, rule); /* its path may lead to a new one: opened again */
  return fd;
}

int br_path_symlink(const char *path, const struct br_path_rule *rule, struct br_buf *out) {
  size_t n = rule && path[0] == '/' ? trusted_prefix(path, rule) : 0;
  char prefix[PATH_MAX];
  for (size_t i = n ? n : 1; path[i - 1] && i < sizeof prefix;) {
    size_t end = i + strcspn(path + i, "/");
    if (end == i) {
      i++;
      continue;
    }
    snprintf(prefix, sizeof prefix, "%.*s", (int)end, path);
    struct stat st;
    if (lstat(prefix, &st) < 0)
      return -errno;
    if (S_ISLNK(st.st_mode)) {
      char target[PATH_MAX];
      ssize_t len = readlink(prefix, target, sizeof target - 1);
      target[len < 0 ? 0 : len] = '\0';
      return br_buf_printf(out, "%s is a symlink (to %s)", prefix, len < 0 ? "?" : target);
    }
    if (!path[end])
      break;
    i = end + 1;
  }
  return -ENOENT;
}

void br_path_describe_error(const char *path, int rc, const struct br_path_rule *rule, struct br_buf *out) {
  /* The link may be gone by now (swapped back): then say what the open met. */
  if (rc != -ELOOP || br_path_symlink(path, rule, out))
    br_buf_adds(out, rc == -ELOOP ? "a component of the path is a symlink" : strerror(-rc));
}

int br_file_read(const char *path, size_t max, bool nofollow, struct br_buf *out) {
  return br_file_read_stat(path, max, nofollow, out, NULL);
}

static int read_fd(int fd, size_t max, struct br_buf *out, struct stat *st_out);

int br_file_read_stat(const char *path, size_t max, bool nofollow, struct br_buf *out, struct stat *st_out) {
  br_buf_reset(out);
  /* O_NONBLOCK: opening a FIFO must not hang; regular files ignore it. */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | (nofollow ? O_NOFOLLOW : 0));
  if (fd < 0)
    return -errno;
  return read_fd(fd, max, out, st_out);
}

int br_file_read_under(const char *path, size_t max, const struct br_path_rule *rule, struct br_buf *out,
                       struct stat *st_out) {
  br_buf_reset(out);
  int fd = br_open_under(path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW, 0, rule);
  if (fd < 0)
    return fd;
  return read_fd(fd, max, out, st_out);
}

/* Reads the regular file open at fd, and closes fd. */
static int read_fd(int fd, size_t max, struct br_buf *out, struct stat *st_out) {
  struct stat st;
  int rc = 0;
  if (fstat(fd, &st) < 0) {
    rc = -errno;
  } else if (S_ISDIR(st.st_mode)) {
    rc = -EISDIR;
  } else if (!S_ISREG(st.st_mode)) {
    rc = -EINVAL; /* a FIFO or device could block or never end */
  } else if ((size_t)st.st_size > max) {
    rc = -EFBIG;
  }
  char chunk[65536];
  while (!rc) {
    ssize_t n = read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      rc = -errno;
    else if (n == 0)
      break;
    /* -EFBIG if the file grew past max. Once the size fstat() gave is read,
     * a short read is the end of a regular file: no second read() to learn
     * it. /proc files show size 0 and read a page at a time: read to EOF. */
    else if ((rc = br_buf_add(out, chunk, (size_t)n)) == 0 && (size_t)n < sizeof chunk && st.st_size > 0 &&
             out->len >= (size_t)st.st_size)
      break;
  }
  close(fd);
  if (!rc && !out->data)
    rc = br_buf_add(out, "", 0); /* an empty file still has data == "" */
  if (!rc && st_out)
    *st_out = st;
  return rc;
}

int br_dir_each(const char *path, int (*each)(const char *name, unsigned char type, void *arg), void *arg) {
  return br_dir_each_under(path, NULL, each, arg);
}

int br_dir_each_under(const char *path, const struct br_path_rule *rule,
                      int (*each)(const char *name, unsigned char type, void *arg), void *arg) {
  int fd = br_open_under(path, O_RDONLY | O_DIRECTORY, 0, rule);
  if (fd < 0)
    return fd;
  char chunk[16384] __attribute__((aligned(8)));
  int rc = 0;
  while (!rc) {
    ssize_t n = getdents64(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      rc = n < 0 ? -errno : 0;
      break;
    }
    for (ssize_t at = 0; at < n && !rc;) {
      const struct dirent64 *e = (const struct dirent64 *)(chunk + at);
      at += e->d_reclen;
      if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
        rc = each(e->d_name, e->d_type, arg);
    }
  }
  close(fd);
  return rc;
}

int br_pwrite_all(int fd, const void *bytes, size_t len, off_t at) {
  const char *p = bytes;
  for (size_t off = 0; off < len;) {
    ssize_t n = pwrite(fd, p + off, len - off, at + (off_t)off);
    if (n < 0 && errno != EINTR)
      return -errno;
    if (n == 0)
      return -EIO;
    if (n > 0)
      off += (size_t)n;
  }
  return 0;
}

static int fail(struct br_buf *err, int rc, const char *path, const char *step) {
  br_buf_printf(err, "%s: %s: %s\n", path, step, strerror(-rc));
  return rc;
}

int br_file_write_atomic(const char *path, const void *bytes, size_t len, const struct br_write_opts *opts,
                         struct br_buf *err) {
  static atomic_uint counter;
  char *dup_dir = strdup(path), *dup_base = strdup(path);
  int dirfd = -1, fd = -1, rc = 0;
  char tmp[512] = "";
  if (opts && opts->replaced)
    *opts->replaced = -1;
  if (!dup_dir || !dup_base) {
    rc = -ENOMEM;
    goto out;
  }
  const char *dir = dirname(dup_dir), *base = basename(dup_base);
  dirfd = br_open_under(dir, O_RDONLY | O_DIRECTORY, 0, opts ? opts->rule : NULL);
  if (dirfd == -ELOOP && opts && opts->rule) {
    /* Following it could let whoever controls the link redirect the write. */
    br_buf_printf(err, "%s: ", path);
    if (br_path_symlink(dir, opts->rule, err))
      br_buf_adds(err, "a component of its directory is a symlink");
    br_buf_adds(err, "; refusing to write through it, expected directories all the way\n");
    rc = -ELOOP;
    goto out;
  }
  if (dirfd < 0) {
    rc = fail(err, dirfd, dir, "cannot open directory");
    goto out;
  }

  mode_t mode = opts && opts->new_mode ? opts->new_mode : 0644;
  uid_t uid = (uid_t)-1;
  gid_t gid = (gid_t)-1;
  struct stat st;
  if (fstatat(dirfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (S_ISLNK(st.st_mode)) {
      /* Following it could let whoever controls the link redirect the write. */
      br_buf_printf(err, "%s: is a symlink; refusing to write through it, expected a regular file\n", path);
      rc = -ELOOP;
      goto out;
    }
    if (!S_ISREG(st.st_mode)) {
      br_buf_printf(err, "%s: is not a regular file\n", path);
      rc = -EINVAL;
      goto out;
    }
    mode = st.st_mode & 07777;
    uid = st.st_uid;
    gid = st.st_gid;
  } else if (errno != ENOENT) {
    rc = fail(err, -errno, path, "cannot stat");
    goto out;
  }

  int n = snprintf(tmp, sizeof tmp, "%s%ld.%u.%s%s", BR_TMP_PREFIX, (long)getpid(), atomic_fetch_add(&counter, 1),
                   base, opts && opts->temp_suffix ? opts->temp_suffix : "");
  if (n < 0 || (size_t)n >= sizeof tmp) {
    rc = fail(err, -ENAMETOOLONG, path, "temp file name");
    tmp[0] = '\0';
    goto out;
  }
  fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    rc = fail(err, -errno, path, "cannot create temp file");
    tmp[0] = '\0';
    goto out;
  }
  if ((rc = br_pwrite_all(fd, bytes, len, 0))) {
    fail(err, rc, path, "write");
    goto out;
  }
  /* Owner before mode: chown clears set-id bits, and the sidecar may run as
   * another user that must keep reading the file. */
  if ((uid != (uid_t)-1 && (uid != geteuid() || gid != getegid())) && fchown(fd, uid, gid) < 0) {
    rc = fail(err, -errno, path, "cannot give the temp file the owner of the file it replaces");
    goto out;
  }
  if (fchmod(fd, mode) < 0) {
    rc = fail(err, -errno, path, "chmod");
    goto out;
  }
  if (!(opts && opts->no_sync) && fsync(fd) < 0) {
    rc = fail(err, -errno, path, "fsync");
    goto out;
  }
  close(fd);
  fd = -1;

  if (opts && opts->validate) {
    /* The validator is handed a path, which open(2) takes only up to
     * PATH_MAX: the temp name is longer than the target's, so a target that
     * just fits may leave a staged path that does not. Refused, never cut. */
    struct br_buf staged;
    br_buf_init(&staged, PATH_MAX - 1);
    rc = br_buf_printf(&staged, "%s/%s", dir, tmp);
    if (rc == -EFBIG)
      rc = fail(err, -ENAMETOOLONG, path, "path of the staged temp file");
    else if (rc)
      fail(err, rc, path, "path of the staged temp file");
    else
      rc = opts->validate(staged.data, opts->arg);
    br_buf_free(&staged);
    if (rc)
      goto out;
  }
  if (opts && opts->staged && fstatat(dirfd, tmp, opts->staged, AT_SYMLINK_NOFOLLOW) < 0) {
    rc = fail(err, -errno, path, "stat of the temp file");
    goto out;
  }
  if (opts && opts->before_rename && (rc = opts->before_rename(opts->arg)))
    goto out;
  /* O_PATH: a reference, not an open file (a FIFO put there meanwhile
   * cannot block it). If it cannot be had (no file yet, EMFILE), rename()
   * frees the old file's blocks itself, as without the option. */
  int replaced = opts && opts->replaced ? openat(dirfd, base, O_PATH | O_NOFOLLOW | O_CLOEXEC) : -1;
  if (renameat(dirfd, tmp, dirfd, base) < 0) {
    rc = -errno;
    if (replaced >= 0)
      close(replaced);
    if (rc == -EBUSY)
      br_buf_printf(err,
                    "%s: rename failed with EBUSY: the file is itself a mount point (a "
                    "single-file bind mount); bind-mount its directory instead\n",
                    path);
    else
      fail(err, rc, path, "rename");
    goto out;
  }
  tmp[0] = '\0';
  if (replaced >= 0)
    *opts->replaced = replaced;
  /* The rename is durable only once the directory entry is on disk. */
  if (!(opts && opts->no_sync) && fsync(dirfd) < 0)
    rc = fail(err, -errno, dir, "fsync of directory");
out:
  if (fd >= 0)
    close(fd);
  if (tmp[0])
    unlinkat(dirfd, tmp, 0);
  if (dirfd >= 0)
    close(dirfd);
  free(dup_dir);
  free(dup_base);
  return rc;
}

int br_file_remove_stale_temps(const char *dir) { return br_file_remove_stale_temps_under(dir, NULL); }

int br_file_remove_stale_temps_under(const char *dir, const struct br_path_rule *rule) {
  int fd = br_open_under(dir, O_RDONLY | O_DIRECTORY, 0, rule);
  if (fd < 0)
    return fd;
  DIR *d = fdopendir(fd);
  if (!d) {
    int rc = -errno;
    close(fd);
    return rc;
  }
  int removed = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (strncmp(e->d_name, BR_TMP_PREFIX, strlen(BR_TMP_PREFIX)) != 0)
      continue;
    char *end;
    long pid = strtol(e->d_name + strlen(BR_TMP_PREFIX), &end, 10);
    /* A temp file of a live writer (another `once`, say, or this process's
     * own workers: the daemon cleans up while it converges) is its business.
     * The price: one left by an earlier process that had this pid stays
     * until a later start. */
    if (*end == '.' && pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM))
      continue;
    if (unlinkat(dirfd(d), e->d_name, 0) == 0)
      removed++;
  }
  closedir(d);
  return removed;
}
