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
  if ((c->lockfd = open(b->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
    int rc = -errno;
    br_buf_printf(err, "no bottle %s on this host (%s: %s)\n", b->slug, b->dir, strerror(-rc));
    return rc == -ENOTDIR || rc == -ELOOP ? -ENOENT : rc;
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
  int rc = br_change_path(c, name, &path);
  if (!rc && bytes) {
    if (mkdir(c->source, 0755) < 0 && errno != EEXIST) {
      rc = -errno;
      br_buf_printf(err, "%s: %s\n", c->source, strerror(-rc));
    } else {
      rc = br_file_write_atomic(path.data, bytes, len, &(struct br_write_opts){.new_mode = 0644}, err);
    }
  } else if (!rc && unlink(path.data) < 0 && errno != ENOENT) {
    rc = -errno;
    br_buf_printf(err, "%s: cannot remove: %s\n", path.data, strerror(-rc));
  }
  br_buf_free(&path);
  return rc;
}
