/* change: one change to a bottle's fragments (install, replace or remove one
 * file in its local source), made the safe way: under the bottle's lock, the
 * whole bottle's desired state checked with the change before it is made,
 * then the file replaced atomically. The commands that change fragments
 * (apply, add-route, remove-route, revoke, edit, adopt) all go through here. */
#ifndef BR_RECONCILER_BOTTLE_CHANGE_H
#define BR_RECONCILER_BOTTLE_CHANGE_H

#include <stdbool.h>

#include "common/buf.h"
#include "reconciler/bottle/bottle.h"
#include "reconciler/bottle/desired.h"

/* A bottle locked for a change; see br_change_begin. */
struct br_change {
  struct br_bottle *bottle;
  const char *source;       /* the local source directory (record's), where changes go */
  int lockfd;               /* the bottle directory, flock'ed: converges and other changes wait */
  struct br_desired before; /* the desired state as it is, read under the lock */
};

/* The first source directory (merge order) inside the bottle's own directory:
 * the one this tool may write fragments into; NULL when there is none (the
 * others, such as a git checkout, belong to someone else). */
const char *br_change_local_source(const struct br_bottle *b);

/* Locks the bottle and reads its desired state. Returns 0, or -ENOENT (no
 * bottle directory), -EROFS (no local source) or -EINVAL (the desired
 * state is invalid already: err holds its lines) with a line in err, or
 * another -errno. Call br_change_end in every case. */
int br_change_begin(struct br_change *c, struct br_bottle *b, struct br_buf *err);
void br_change_end(struct br_change *c);

/* The bottle's desired state with name set to bytes (NULL: removed), in
 * after (initialised here). Returns 0, -EINVAL with the errors in after, or
 * another -errno. */
int br_change_preview(struct br_change *c, const char *name, const char *bytes, size_t len,
                      struct br_desired *after);

/* Writes name atomically (bytes) or removes it (NULL) in the local source,
 * creating the directory when missing. Returns 0 or -errno with a line in err. */
int br_change_install(struct br_change *c, const char *name, const char *bytes, size_t len, struct br_buf *err);

/* The path of name in the local source, in out. */
int br_change_path(const struct br_change *c, const char *name, struct br_buf *out);

#endif
