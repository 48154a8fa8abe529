/* gitlock: finds the checkout a source directory lives in and whether git
 * holds its index.lock (see gitlock.h). Reads only. */
#include "reconciler/daemon/gitlock.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

void br_git_dirs_init(struct br_git_dirs *g) {
  uv_mutex_init(&g->lock);
  br_strmap_init(&g->none);
}

void br_git_dirs_free(struct br_git_dirs *g) {
  br_strmap_free(&g->none);
  uv_mutex_destroy(&g->lock);
}

void br_git_dirs_clear(struct br_git_dirs *g) {
  uv_mutex_lock(&g->lock);
  br_strmap_free(&g->none);
  br_strmap_init(&g->none);
  uv_mutex_unlock(&g->lock);
}

/* A git checkout writes its files one by one while it holds .git/index.lock:
 * converging in the middle would publish half a commit. The search goes up
 * from each source directory to "/". The state root and its parents are on
 * that way for every slug whose sources live under it (the default): those
 * found without a .git are remembered, which saves 10,000 slugs four or
 * more stat()s each at start-up. Nothing below the state root is, since a
 * per-slug checkout may be cloned at any time; nor is a checkout found: its
 * index.lock must be looked at every time. */
bool br_git_locked(struct br_git_dirs *g, const char *state_dir, const char *dir, char *lock, size_t size) {
  size_t state_len = strlen(state_dir);
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s", dir);
  for (int depth = 0; depth < 16; depth++) {
    struct stat st;
    size_t len = strlen(path);
    uv_mutex_lock(&g->lock);
    bool none = br_strmap_get(&g->none, path) != NULL;
    uv_mutex_unlock(&g->lock);
    if (!none) {
      snprintf(path + len, sizeof path - len, "/.git");
      if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(path + len, sizeof path - len, "/.git/index.lock");
        snprintf(lock, size, "%s", path);
        return stat(path, &st) == 0;
      }
      path[len] = '\0';
      /* path is the state root or one of its parents: a handful at most */
      if (len <= state_len && strncmp(state_dir, path, len) == 0 &&
          (state_dir[len] == '/' || state_dir[len] == '\0')) {
        uv_mutex_lock(&g->lock);
        br_strmap_put(&g->none, path, g);
        uv_mutex_unlock(&g->lock);
      }
    }
    char *slash = strrchr(path, '/');
    if (!slash || slash == path)
      return false;
    *slash = '\0';
  }
  return false;
}
