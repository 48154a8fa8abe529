/* waiters: control clients waiting for a bottle to run a given desired
 * state (`--wait` of the commands that change fragments). Each is answered
 * by the converge that decides it, never by polling: live when the bottle
 * converged to that state, refused when a converge found it invalid, not
 * live when its deadline passes first (with the reason). Loop thread. */
#ifndef BR_RECONCILER_DAEMON_WAITERS_H
#define BR_RECONCILER_DAEMON_WAITERS_H

#include <stdint.h>
#include <uv.h>

#include "reconciler/daemon/control.h"
#include "reconciler/daemon/queue.h"

struct br_waiter;

struct br_waiters {
  uv_loop_t *loop;
  struct br_waiter *head;
  /* The bottle's slot now, for the reason a deadline answer gives. */
  const struct br_slot *(*slot_of)(void *ctx, const char *slug);
  void *ctx;
};

void br_waiters_init(struct br_waiters *w, uv_loop_t *loop,
                     const struct br_slot *(*slot_of)(void *ctx, const char *slug), void *ctx);
/* conn waits until slug converges to desired_hash, at most timeout_ms.
 * dispatched: the number of converges the daemon has handed out so far. A
 * converge handed out after this call read the fragments after the change
 * was installed (the client installs, then asks), so it decides the wait
 * even when other changes came with it and its hash differs. */
int br_waiters_add(struct br_waiters *w, struct br_control_conn *conn, const char *slug, const char *desired_hash,
                   unsigned timeout_ms, uint64_t dispatched);
/* A converge of slug, the dispatch_no'th handed out, finished in phase;
 * slot says what the bottle runs now, errors why it is invalid. Answers
 * the waiters it decides. */
void br_waiters_converged(struct br_waiters *w, const struct br_slot *slot, enum br_phase phase,
                          const char *errors, uint64_t dispatch_no);
/* The bottle is gone, or the daemon stops: every waiter of slug (NULL: all)
 * is answered not live, with why. */
void br_waiters_drop(struct br_waiters *w, const char *slug, const char *why);

#endif
