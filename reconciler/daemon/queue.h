/* queue: decides when each slug converges: per-slug debounce, a work queue
 * that never runs one slug twice at once, per-slug backoff. Loop thread only;
 * it never converges anything itself (the daemon's dispatch callback does). */
#ifndef BR_RECONCILER_QUEUE_H
#define BR_RECONCILER_QUEUE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "common/sha256.h"
#include "common/strmap.h"

enum br_phase {
  BR_PHASE_PENDING,    /* changed: waiting out its debounce or for a free worker */
  BR_PHASE_CONVERGING, /* handed to the workers: converging, or next in their queue */
  BR_PHASE_CONVERGED,  /* live files equal the desired state */
  BR_PHASE_RETRYING,   /* transient failure: the next try is scheduled with backoff */
  BR_PHASE_INVALID,    /* invalid input: waits for it to change */
  BR_PHASE_WAITING,    /* waits for a file to appear or a lock to go */
  BR_PHASE_UNMANAGED,  /* no source directory: left alone */
  BR_PHASE_COUNT
};

struct br_slot {
  enum br_phase phase;
  enum br_phase settled;    /* the phase of the last finished converge;
                               PENDING until one has finished */
  bool dirty;               /* changed while converging: runs again right after */
  bool dirty_input;         /* ... and an input changed (BR_MARK_INPUT or NOW): that run
                               is not held back by a backoff the converge ends in */
  bool ready;               /* in the ready FIFO, waiting for a worker */
  bool removed;             /* the bottle went away while converging: freed when done,
                               unless it comes back before (br_queue_slot) */
  uint64_t first_mark_ms;   /* loop time the current debounce window opened */
  uint64_t due_ms;          /* loop time it becomes ready (debounce end, retry time) */
  size_t heap_index;        /* position in the timer heap, or SIZE_MAX */
  unsigned attempts;        /* consecutive transient failures */
  int64_t last_converge_ms; /* wall clock of the last finished converge, 0 = never */
  int64_t next_try_ms;      /* wall clock of the scheduled retry (RETRYING) */
  char desired_hash[BR_SHA256_HEX_LEN + 1];
  char *message; /* the last outcome in words; owned, may be NULL */
  struct br_slot *next_ready;
  char slug[]; /* allocated with the slot; also the key of the queue's map */
};

/* What a mark says, which decides whether it cuts a retrying slug's
 * backoff short. */
enum br_mark {
  BR_MARK_RESYNC, /* something may differ (a resync, drift of a live file, polling):
                     debounced; a retrying slug keeps its backoff, since the same
                     inputs fail the same way */
  BR_MARK_INPUT,  /* one of the slug's inputs changed (a fragment or source, its
                     metadata.json, a sidecar's pidfile): debounced, and a retrying
                     slug converges after the debounce, not at the end of its
                     backoff, since the change may be what fixes it; its attempts are
                     kept, so failing again backs off further */
  BR_MARK_NOW,    /* at once, backoff or not (the first pass, a container that started,
                     a client waiting, `resync SLUG`) */
};

struct br_queue;
/* Called on the loop thread when slot may start converging (its phase is
 * already CONVERGING); the daemon hands it to a worker and later calls
 * br_queue_done. */
typedef void (*br_queue_dispatch_fn)(struct br_queue *q, struct br_slot *slot);

struct br_queue {
  uv_loop_t *loop;
  uv_timer_t timer;       /* armed only while a slot has a due time */
  struct br_strmap slots; /* slug (borrowed: slot->slug itself) -> struct br_slot* (owned) */
  struct br_slot **heap;  /* min-heap on due_ms */
  size_t heap_n, heap_cap;
  struct br_slot *ready_head, *ready_tail;
  size_t ready_n;
  unsigned in_flight;
  unsigned max_in_flight;
  unsigned debounce_ms, max_wait_ms, backoff_initial_ms, backoff_max_ms;
  bool paused; /* draining: nothing new is dispatched */
  unsigned counts[BR_PHASE_COUNT];
  br_queue_dispatch_fn dispatch;
  void *ctx; /* the daemon */
  void (*on_closed)(struct br_queue *q);
};

int br_queue_init(struct br_queue *q, uv_loop_t *loop, br_queue_dispatch_fn dispatch, void *ctx);
void br_queue_configure(struct br_queue *q, unsigned debounce_ms, unsigned max_wait_ms,
                        unsigned backoff_initial_ms, unsigned backoff_max_ms, unsigned max_in_flight);
/* The slot of slug, created (phase PENDING, not scheduled) when create is
 * true. A slot removed while converging is not found, and created again is
 * that same slot, marked to run again once its converge is done. */
struct br_slot *br_queue_slot(struct br_queue *q, const char *slug, bool create);
/* Something of slug changed. It converges once the changes stop for the
 * debounce time, or max_wait after the first one; with BR_MARK_NOW, at once.
 * A slug already queued stays queued once; one converging runs again after
 * (a backoff that converge ends in holds that run back only when every mark
 * meanwhile was BR_MARK_RESYNC). A retrying slug keeps its backoff unless
 * the mark says an input changed (see enum br_mark). Returns 0 or -ENOMEM. */
int br_queue_mark(struct br_queue *q, const char *slug, enum br_mark mark);
/* Marks every slug (resync). */
void br_queue_mark_all(struct br_queue *q, enum br_mark mark);
/* A converge finished with phase (not CONVERGING). RETRYING backs off
 * exponentially with full jitter unless retry_after_ms gives the time; any
 * other phase with retry_after_ms runs again then (WAITING for a lock,
 * PENDING for the rest of a converge after a settle time). Takes over message. */
void br_queue_done(struct br_queue *q, struct br_slot *slot, enum br_phase phase, unsigned retry_after_ms,
                   char *message);
/* The bottle is gone: forget its slot (at once, or when its converge ends). */
void br_queue_remove(struct br_queue *q, const char *slug);
void br_queue_pause(struct br_queue *q);
/* Slots waiting for a worker or their debounce. */
size_t br_queue_depth(const struct br_queue *q);
/* Slots in phase. */
unsigned br_queue_count(const struct br_queue *q, enum br_phase phase);
/* Slots handed out by dispatch and not done yet. */
unsigned br_queue_in_flight(const struct br_queue *q);
const char *br_phase_name(enum br_phase phase);
/* Closes the timer; frees everything from its close callback, then on_closed. */
void br_queue_close(struct br_queue *q, void (*on_closed)(struct br_queue *q));

#endif
