/* gitlock: finds the checkout a source directory lives in and whether git
 * holds its index.lock (see gitlock.h). Reads only. */
#include "reconciler/daemon/gitlock.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/buf.h"
#include "common/fileio.h"

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

/* In a linked worktree (`git worktree add`) or a submodule, DIR/.git is a
 * file, "gitdir: PATH", that names the directory git really works in: PATH
 * is relative to DIR unless absolute (submodules write "../.git/modules/X",
 * worktrees an absolute path, or a relative one with
 * worktree.useRelativePaths). A checkout there takes PATH/index.lock: a
 * worktree's index is its own, under the main repository's worktrees/NAME,
 * never the main .git/index. Git's own reader (read_gitfile) takes what
 * follows "gitdir: " with the line end stripped, and refuses anything
 * else; so does this. Returns 0 with gitdir (at least PATH_MAX bytes) set,
 * -EINVAL for a file git would refuse (no git operation can hold a lock
 * through it), or another -errno. */
static int gitfile_resolve(const char *dir, const char *gitfile, char *gitdir, size_t size) {
  static const char prefix[] = "gitdir: ";
  struct br_buf text;
  br_buf_init(&text, PATH_MAX + sizeof prefix);
  int rc = br_file_read(gitfile, text.max, false, &text);
  if (!rc && (text.len < sizeof prefix || strncmp(text.data, prefix, sizeof prefix - 1) != 0))
    rc = -EINVAL;
  if (!rc) {
    char *target = text.data + sizeof prefix - 1, joined[PATH_MAX];
    target[strcspn(target, "\r\n")] = '\0';
    int n = target[0] == '/' ? snprintf(joined, sizeof joined, "%s", target)
                             : snprintf(joined, sizeof joined, "%s/%s", dir, target);
    /* Git takes the real path too (a submodule's "../.git/modules/X" reads
     * better without the ".."); one that does not resolve is refused. */
    if (!target[0] || n < 0 || (size_t)n >= sizeof joined)
      rc = -EINVAL;
    else if (size < PATH_MAX || !realpath(joined, gitdir))
      rc = size < PATH_MAX ? -ENAMETOOLONG : -errno;
  }
  br_buf_free(&text);
  return rc;
}

/* A git checkout writes its files one by one while it holds index.lock in
 * its git dir: converging in the middle would publish half a commit. The
 * search goes up from each source directory to "/" and stops at the first
 * .git, a directory (a clone) or a file (a worktree or a submodule, see
 * gitfile_resolve), as git's own discovery does. The state root and its
 * parents are on that way for every slug whose sources live under it (the
 * default): those found without a .git are remembered, which saves 10,000
 * slugs four or more stat()s each at start-up. Nothing below the state root
 * is, since a per-slug checkout may be cloned at any time; nor is a
 * checkout found: its index.lock must be looked at every time. */
bool br_git_locked(struct br_git_dirs *g, const char *state_dir, const char *dir, char *lock, size_t size) {
  size_t state_len = strlen(state_dir);
  char path[PATH_MAX], gitfile[PATH_MAX], gitdir[PATH_MAX];
  snprintf(path, sizeof path, "%s", dir);
  for (int depth = 0; depth < 16; depth++) {
    struct stat st;
    size_t len = strlen(path);
    uv_mutex_lock(&g->lock);
    bool none = br_strmap_get(&g->none, path) != NULL;
    uv_mutex_unlock(&g->lock);
    if (!none) {
      snprintf(path + len, sizeof path - len, "/.git");
      if (stat(path, &st) == 0 && (S_ISDIR(st.st_mode) || S_ISREG(st.st_mode))) {
        if (S_ISREG(st.st_mode)) {
          memcpy(gitfile, path, sizeof gitfile); /* DIR/.git */
          path[len] = '\0';
          if (gitfile_resolve(path, gitfile, gitdir, sizeof gitdir))
            return false; /* git refuses this checkout: nothing of git's holds it */
        } else {
          snprintf(gitdir, sizeof gitdir, "%s", path);
        }
        int n = snprintf(lock, size, "%s/index.lock", gitdir);
        return n >= 0 && (size_t)n < size && stat(lock, &st) == 0;
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
