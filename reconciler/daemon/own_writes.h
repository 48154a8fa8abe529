/* own_writes: recognises the inotify record of the daemon's own rename of a
 * live file, so that it wakes no second converge. Workers note a rename just
 * before it happens; the loop thread takes the note out on the next record
 * for that path. Knows nothing of slugs or converges. */
#ifndef BR_RECONCILER_DAEMON_OWN_WRITES_H
#define BR_RECONCILER_DAEMON_OWN_WRITES_H

#include <stdbool.h>
#include <sys/stat.h>
#include <uv.h>

#include "common/strmap.h"

struct br_own_writes {
  uv_mutex_t lock;        /* workers note, the loop thread takes */
  struct br_strmap files; /* live file path -> its staged file's identity (private) */
};

void br_own_writes_init(struct br_own_writes *o);
void br_own_writes_free(struct br_own_writes *o);
/* A converge is about to rename the file staged into place at path (any
 * thread; the signature of br_converge_observer.replacing). */
void br_own_writes_note(void *o, const char *path, const struct stat *staged);
/* Whether the record for live_file (may be NULL) is the one of our own
 * rename; the note for that path is taken out either way (loop thread). */
bool br_own_writes_take(struct br_own_writes *o, const char *live_file);
/* Forgets every note: what a lost record left behind (a resync). */
void br_own_writes_clear(struct br_own_writes *o);

#endif
