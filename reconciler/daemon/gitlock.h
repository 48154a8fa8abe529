/* gitlock: whether a git operation is writing a checkout that a bottle's
 * source directory lives in: while git holds the checkout's index.lock, a
 * converge would publish half a commit. Shared by the workers. */
#ifndef BR_RECONCILER_DAEMON_GITLOCK_H
#define BR_RECONCILER_DAEMON_GITLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "common/strmap.h"

/* Directories known to hold no .git, so that 10,000 slugs under one state
 * root do not stat the same parents at start-up. */
struct br_git_dirs {
  uv_mutex_t lock;
  struct br_strmap none; /* path -> itself (any non-NULL): no .git there */
};

void br_git_dirs_init(struct br_git_dirs *g);
void br_git_dirs_free(struct br_git_dirs *g);
/* Forgets what it learnt: on every resync, so that a checkout made above
 * the sources later is found within a resync period. */
void br_git_dirs_clear(struct br_git_dirs *g);

/* True when the checkout holding dir (the nearest .git upwards to "/", a
 * directory or a worktree's or submodule's "gitdir:" file) has index.lock
 * in its git dir; lock (size bytes) gets that lock's path whenever a
 * checkout was found. Any thread. */
bool br_git_locked(struct br_git_dirs *g, const char *state_dir, const char *dir, char *lock, size_t size);

#endif
