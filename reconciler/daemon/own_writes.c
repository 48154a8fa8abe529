/* own_writes: the notes of the daemon's own renames (see own_writes.h). */
#include "reconciler/daemon/own_writes.h"

#include <stdlib.h>
#include <time.h>

#define OWN_WRITES_MAX 65536 /* one note per live file; a bound against surprises */

struct own_write {
  dev_t dev;
  ino_t ino;
  struct timespec mtime;
  off_t size;
};

void br_own_writes_init(struct br_own_writes *o) {
  uv_mutex_init(&o->lock);
  br_strmap_init(&o->files);
}

void br_own_writes_free(struct br_own_writes *o) {
  br_own_writes_clear(o);
  br_strmap_free(&o->files);
  uv_mutex_destroy(&o->lock);
}

/* The path is the configured one; a record names the path as watched (its
 * directory resolved): where a symlink makes them differ, the record is not
 * recognised and wakes one converge more, which finds nothing to do. That,
 * never a missed change, is also the price of a full table. */
void br_own_writes_note(void *ctx, const char *path, const struct stat *staged) {
  struct br_own_writes *o = ctx;
  const struct own_write now = {
      .dev = staged->st_dev, .ino = staged->st_ino, .mtime = staged->st_mtim, .size = staged->st_size};
  uv_mutex_lock(&o->lock);
  struct own_write *w = br_strmap_get(&o->files, path);
  if (w) {
    *w = now;
  } else if (o->files.n < OWN_WRITES_MAX && (w = malloc(sizeof *w))) {
    *w = now;
    if (br_strmap_put(&o->files, path, w))
      free(w);
  }
  uv_mutex_unlock(&o->lock);
}

/* Ours when the note for that path matches the file now there by inode,
 * mtime to the nanosecond and size. An edit after our rename changes one of
 * them and has a record of its own; a file that cannot be stat'ed is never
 * ours. */
bool br_own_writes_take(struct br_own_writes *o, const char *live_file) {
  if (!live_file)
    return false;
  uv_mutex_lock(&o->lock);
  struct own_write *w = br_strmap_del(&o->files, live_file);
  uv_mutex_unlock(&o->lock);
  if (!w)
    return false;
  struct stat st;
  bool ours = lstat(live_file, &st) == 0 && S_ISREG(st.st_mode) && st.st_dev == w->dev && st.st_ino == w->ino &&
              st.st_size == w->size && st.st_mtim.tv_sec == w->mtime.tv_sec &&
              st.st_mtim.tv_nsec == w->mtime.tv_nsec;
  free(w);
  return ours;
}

void br_own_writes_clear(struct br_own_writes *o) {
  uv_mutex_lock(&o->lock);
  for (size_t i = 0; i < o->files.cap; i++)
    if (o->files.slots[i].key)
      free(o->files.slots[i].value);
  br_strmap_free(&o->files);
  br_strmap_init(&o->files);
  uv_mutex_unlock(&o->lock);
}
