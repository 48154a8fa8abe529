/* change: a checked, atomic change of one fragment file (see change.h). */
#include "reconciler/bottle/change.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fileio.h"

const char *br_change_local_source(const struct br_bottle *b) {
  size_t len = strlen(b->dir);
  for (size_t i = 0; i < b->sources.n; i++)
    if (strncmp(b->sources.v[i], b->dir, len) == 0 && b->sources.v[i][len] == '/')
      return b->sources.v[i];
  return NULL;
}

int br_change_begin(struct br_change *c, struct br_bottle *b, struct br_buf *err) {
  memset(c, 0, sizeof *c);
  c->bottle = b;
  c->lockfd = -1;
  br_desired_init(&c->before);
  if (!(c->source = br_change_local_source(b))) {
    br_buf_printf(err,
                  "no source directory of %s lies in %s, and fragments are changed only there (the others, "
                  "such as a git checkout, belong to someone else); add one to sources, such as "
                  "\"{state_dir}/{slug}/routes.d\"\n",
                  b->slug, b->dir);
    return -EROFS;
  }
  const struct br_path_rule rule = br_config_path_rule(b->cfg);
  if ((c->lockfd = br_open_under(b->dir, O_RDONLY | O_DIRECTORY, 0, &rule)) < 0) {
    int rc = c->lockfd;
    c->lockfd = -1;
    if (rc == -ELOOP) {
      /* Its fragments would be installed wherever the link points. */
      br_buf_printf(err, "%s: ", b->dir);
      br_path_describe_error(b->dir, rc, &rule, err);
      br_buf_adds(err, "; a bottle's directory is changed through no symlink\n");
      return -EPERM;
    }
    br_buf_printf(err, "no bottle %s on this host (%s: %s)\n", b->slug, b->dir, strerror(-rc));
    return rc == -ENOTDIR ? -ENOENT : rc;
  }
  /* The lock converges take: two changes never interleave, and a converge
   * never reads half of one. */
  if (flock(c->lockfd, LOCK_EX) < 0) {
    int rc = -errno;
    br_buf_printf(err, "cannot lock %s: %s\n", b->dir, strerror(-rc));
    return rc;
  }
  int rc = br_desired_load(b->cfg, &b->sources, &c->before);
  if (rc == -EINVAL)
    br_buf_printf(err, "%s", br_buf_str(&c->before.errors));
  else if (rc)
    br_buf_printf(err, "cannot read the desired routes of %s: %s\n", b->slug, strerror(-rc));
  return rc;
}

void br_change_end(struct br_change *c) {
  br_desired_free(&c->before);
  if (c->lockfd >= 0)
    close(c->lockfd); /* releases the lock */
  c->lockfd = -1;
}

int br_change_preview(struct br_change *c, const char *name, const char *bytes, size_t len,
                      struct br_desired *after) {
  br_desired_init(after);
  const struct br_desired_overlay overlay = {.dir = c->source, .name = name, .bytes = bytes, .len = len};
  return br_desired_load_overlay(c->bottle->cfg, &c->bottle->sources, &overlay, after);
}

int br_change_path(const struct br_change *c, const char *name, struct br_buf *out) {
  br_buf_reset(out);
  return br_buf_printf(out, "%s/%s", c->source, name);
}

int br_change_install(struct br_change *c, const char *name, const char *bytes, size_t len, struct br_buf *err) {
  struct br_buf path;
  br_buf_init(&path, PATH_MAX);
  const struct br_path_rule rule = br_config_path_rule(c->bottle->cfg);
  /* The local source lies in the bottle's directory, held open as the lock:
   * made from there, and written through no symlink (the rule). */
  const char *below = c->source + strlen(c->bottle->dir) + 1;
  int rc = br_change_path(c, name, &path);
  if (!rc && bytes) {
    if (mkdirat(c->lockfd, below, 0755) < 0 && errno != EEXIST) {
      rc = -errno;
      br_buf_printf(err, "%s: %s\n", c->source, strerror(-rc));
    } else {
      rc = br_file_write_atomic(path.data, bytes, len, &(struct br_write_opts){.new_mode = 0644, .rule = &rule},
                                err);
    }
  } else if (!rc) {
    int dirfd = br_open_under(c->source, O_RDONLY | O_DIRECTORY, 0, &rule);
    rc = dirfd < 0 ? dirfd : unlinkat(dirfd, name, 0) < 0 ? -errno : 0;
    if (dirfd >= 0)
      close(dirfd);
    if (rc == -ENOENT)
      rc = 0;
    else if (rc)
      br_buf_printf(err, "%s: cannot remove: %s\n", path.data, strerror(-rc));
  }
  br_buf_free(&path);
  return rc;
}
