/* queue: per-slug scheduling in the spirit of client-go's workqueue: a key
 * queued twice runs once, never twice at the same time, and again after if it
 * changed meanwhile. One uv timer serves every slug through a min-heap. */
#include "reconciler/daemon/queue.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"

static const char *const phase_names[BR_PHASE_COUNT] = {
    "pending", "converging", "converged", "retrying", "invalid", "waiting", "unmanaged",
};

const char *br_phase_name(enum br_phase phase) { return phase < BR_PHASE_COUNT ? phase_names[phase] : "?"; }

static void set_phase(struct br_queue *q, struct br_slot *s, enum br_phase phase) {
  q->counts[s->phase]--;
  q->counts[phase]++;
  s->phase = phase;
}

/* --- the timer heap ------------------------------------------------------ */

static void heap_swap(struct br_queue *q, size_t a, size_t b) {
  struct br_slot *t = q->heap[a];
  q->heap[a] = q->heap[b];
  q->heap[b] = t;
  q->heap[a]->heap_index = a;
  q->heap[b]->heap_index = b;
}

static void heap_up(struct br_queue *q, size_t i) {
  while (i > 0 && q->heap[(i - 1) / 2]->due_ms > q->heap[i]->due_ms) {
    heap_swap(q, i, (i - 1) / 2);
    i = (i - 1) / 2;
  }
}

static void heap_down(struct br_queue *q, size_t i) {
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < q->heap_n && q->heap[l]->due_ms < q->heap[m]->due_ms)
      m = l;
    if (r < q->heap_n && q->heap[r]->due_ms < q->heap[m]->due_ms)
      m = r;
    if (m == i)
      return;
    heap_swap(q, i, m);
    i = m;
  }
}

static int heap_set(struct br_queue *q, struct br_slot *s, uint64_t due) {
  if (s->heap_index == SIZE_MAX) {
    if (q->heap_n == q->heap_cap) {
      size_t cap = q->heap_cap ? q->heap_cap * 2 : 64;
      struct br_slot **heap = realloc(q->heap, cap * sizeof *heap);
      if (!heap)
        return -ENOMEM;
      q->heap = heap;
      q->heap_cap = cap;
    }
    s->heap_index = q->heap_n;
    q->heap[q->heap_n++] = s;
    s->due_ms = due;
    heap_up(q, s->heap_index);
    return 0;
  }
  uint64_t old = s->due_ms;
  s->due_ms = due;
  if (due < old)
    heap_up(q, s->heap_index);
  else
    heap_down(q, s->heap_index);
  return 0;
}

static void heap_remove(struct br_queue *q, struct br_slot *s) {
  size_t i = s->heap_index;
  if (i == SIZE_MAX)
    return;
  s->heap_index = SIZE_MAX;
  q->heap_n--;
  if (i == q->heap_n)
    return;
  q->heap[i] = q->heap[q->heap_n];
  q->heap[i]->heap_index = i;
  heap_up(q, i);
  heap_down(q, q->heap[i]->heap_index);
}

/* --- dispatching ---------------------------------------------------------- */

static void on_timer(uv_timer_t *timer);

static void rearm(struct br_queue *q) {
  if (!q->heap_n) {
    uv_timer_stop(&q->timer); /* idle: no wakeups at all */
    return;
  }
  uint64_t now = uv_now(q->loop), due = q->heap[0]->due_ms;
  uv_timer_start(&q->timer, on_timer, due > now ? due - now : 0, 0);
}

static void pump(struct br_queue *q) {
  while (!q->paused && q->ready_head && q->in_flight < q->max_in_flight) {
    struct br_slot *s = q->ready_head;
    q->ready_head = s->next_ready;
    if (!q->ready_head)
      q->ready_tail = NULL;
    s->next_ready = NULL;
    s->ready = false;
    q->ready_n--;
    set_phase(q, s, BR_PHASE_CONVERGING);
    q->in_flight++;
    q->dispatch(q, s);
  }
}

static void make_ready(struct br_queue *q, struct br_slot *s) {
  heap_remove(q, s);
  if (s->ready)
    return;
  s->ready = true;
  if (s->phase != BR_PHASE_PENDING)
    set_phase(q, s, BR_PHASE_PENDING);
  if (q->ready_tail)
    q->ready_tail->next_ready = s;
  else
    q->ready_head = s;
  q->ready_tail = s;
  q->ready_n++;
}

static void on_timer(uv_timer_t *timer) {
  struct br_queue *q = timer->data;
  uint64_t now = uv_now(q->loop);
  while (q->heap_n && q->heap[0]->due_ms <= now)
    make_ready(q, q->heap[0]);
  pump(q);
  rearm(q);
}

/* --- the API ---------------------------------------------------------------- */

int br_queue_init(struct br_queue *q, uv_loop_t *loop, br_queue_dispatch_fn dispatch, void *ctx) {
  memset(q, 0, sizeof *q);
  q->loop = loop;
  q->dispatch = dispatch;
  q->ctx = ctx;
  br_strmap_init_borrowed(&q->slots); /* the key is the slot's slug: no second copy a slot */
  br_queue_configure(q, 20, 1000, 100, 30000, 4);
  int rc = uv_timer_init(loop, &q->timer);
  q->timer.data = q;
  return rc;
}

void br_queue_configure(struct br_queue *q, unsigned debounce_ms, unsigned max_wait_ms,
                        unsigned backoff_initial_ms, unsigned backoff_max_ms, unsigned max_in_flight) {
  q->debounce_ms = debounce_ms;
  q->max_wait_ms = max_wait_ms;
  q->backoff_initial_ms = backoff_initial_ms ? backoff_initial_ms : 1;
  q->backoff_max_ms = backoff_max_ms;
  q->max_in_flight = max_in_flight ? max_in_flight : 1;
  if (q->loop)
    pump(q);
}

struct br_slot *br_queue_slot(struct br_queue *q, const char *slug, bool create) {
  struct br_slot *s = br_strmap_get(&q->slots, slug);
  if (s && s->removed) {
    /* A bottle removed while it converged is back: its slot is still the
     * one in flight, so the new bottle runs after that converge, never
     * beside it. */
    if (!create)
      return NULL;
    s->removed = false;
    s->dirty = s->dirty_input = true;
    s->attempts = 0;
    s->settled = BR_PHASE_PENDING;
    return s;
  }
  if (s || !create)
    return s;
  size_t len = strlen(slug) + 1;
  if (!(s = calloc(1, sizeof *s + len)))
    return NULL;
  memcpy(s->slug, slug, len);
  if (br_strmap_put(&q->slots, s->slug, s)) {
    free(s);
    return NULL;
  }
  s->phase = BR_PHASE_PENDING;
  s->settled = BR_PHASE_PENDING;
  s->heap_index = SIZE_MAX;
  q->counts[BR_PHASE_PENDING]++;
  return s;
}

static void mark_slot(struct br_queue *q, struct br_slot *s, enum br_mark mark) {
  if (s->phase == BR_PHASE_CONVERGING) {
    s->dirty = true;
    s->dirty_input |= mark != BR_MARK_RESYNC;
    return;
  }
  if (s->ready)
    return;
  uint64_t t = uv_now(q->loop);
  bool now = mark == BR_MARK_NOW;
  /* Backoff paces retries of the same inputs: a resync or drift would fail
   * the same way. A new fragment, or a sidecar that wrote a new pidfile,
   * may be the fix, and must not wait up to backoff.max_ms for its turn. */
  if (s->phase == BR_PHASE_RETRYING && s->heap_index != SIZE_MAX && mark == BR_MARK_RESYNC)
    return;
  if (s->phase != BR_PHASE_PENDING || s->heap_index == SIZE_MAX) {
    set_phase(q, s, BR_PHASE_PENDING);
    s->first_mark_ms = t;
  }
  /* Quiet period, extended by each event, but never beyond max_wait. */
  uint64_t due = t + q->debounce_ms, limit = s->first_mark_ms + q->max_wait_ms;
  if (due > limit)
    due = limit;
  if (now || due <= t) {
    make_ready(q, s);
    pump(q);
  } else {
    heap_set(q, s, due);
  }
  rearm(q);
}

int br_queue_mark(struct br_queue *q, const char *slug, enum br_mark mark) {
  struct br_slot *s = br_queue_slot(q, slug, true);
  if (!s)
    return -ENOMEM;
  mark_slot(q, s, mark);
  return 0;
}

void br_queue_mark_all(struct br_queue *q, enum br_mark mark) {
  for (size_t i = 0; i < q->slots.cap; i++) {
    struct br_slot *s = q->slots.slots[i].key ? q->slots.slots[i].value : NULL;
    if (s && !s->removed)
      mark_slot(q, s, mark);
  }
}

/* Its map entry must be gone first (or the map about to be freed): the
 * entry's key is s->slug. */
static void slot_free(struct br_slot *s) {
  free(s->message);
  free(s);
}

/* Full jitter (a uniformly random delay up to the exponential cap) spreads the
 * retries of many slugs that failed together, e.g. when dockerd restarts. */
static unsigned backoff_ms(const struct br_queue *q, unsigned attempts) {
  uint64_t cap = q->backoff_initial_ms;
  for (unsigned i = 1; i < attempts && cap < q->backoff_max_ms; i++)
    cap *= 2;
  if (cap > q->backoff_max_ms)
    cap = q->backoff_max_ms;
  /* rand() is good enough to spread retries; it is not used for anything secret. */
  return 1 + (unsigned)((uint64_t)rand() % cap);
}

void br_queue_done(struct br_queue *q, struct br_slot *s, enum br_phase phase, unsigned retry_after_ms,
                   char *message) {
  q->in_flight--;
  if (s->removed) {
    br_strmap_del(&q->slots, s->slug); /* before slot_free: the key is s->slug */
    q->counts[s->phase]--;
    slot_free(s);
    free(message);
    pump(q);
    return;
  }
  free(s->message);
  s->message = message;
  s->last_converge_ms = (br_realtime_ns() / 1000000);
  set_phase(q, s, phase);
  s->settled = phase;
  if (phase == BR_PHASE_RETRYING) {
    s->attempts++;
    unsigned delay = retry_after_ms ? retry_after_ms : backoff_ms(q, s->attempts);
    s->next_try_ms = s->last_converge_ms + delay;
    heap_set(q, s, uv_now(q->loop) + delay);
  } else {
    s->attempts = 0;
    s->next_try_ms = 0;
    if (retry_after_ms) { /* WAITING for a lock to go, PENDING mid-converge */
      s->first_mark_ms = uv_now(q->loop);
      heap_set(q, s, s->first_mark_ms + retry_after_ms);
    }
  }
  if (s->dirty) {
    /* The converge that just ended may have read the inputs before they
     * changed: the new ones get their try after the debounce. */
    enum br_mark mark = s->dirty_input ? BR_MARK_INPUT : BR_MARK_RESYNC;
    s->dirty = s->dirty_input = false;
    mark_slot(q, s, mark);
  }
  pump(q);
  rearm(q);
}

void br_queue_remove(struct br_queue *q, const char *slug) {
  struct br_slot *s = br_strmap_get(&q->slots, slug);
  if (!s || s->removed)
    return;
  heap_remove(q, s);
  if (s->ready) {
    struct br_slot **pp = &q->ready_head, *prev = NULL;
    while (*pp != s) {
      prev = *pp;
      pp = &(*pp)->next_ready;
    }
    *pp = s->next_ready;
    if (q->ready_tail == s)
      q->ready_tail = prev;
    q->ready_n--;
  }
  if (s->phase == BR_PHASE_CONVERGING) {
    /* The worker still holds it; it stays in the table (and is not
     * dispatched) until done, so that the slug cannot run twice at once. */
    s->removed = true;
    s->dirty = s->dirty_input = false;
    return;
  }
  br_strmap_del(&q->slots, slug); /* before slot_free: the key is s->slug */
  q->counts[s->phase]--;
  slot_free(s);
  rearm(q);
}

void br_queue_pause(struct br_queue *q) { q->paused = true; }

size_t br_queue_depth(const struct br_queue *q) { return q->ready_n + q->heap_n; }

static void on_timer_closed(uv_handle_t *handle) {
  struct br_queue *q = handle->data;
  for (size_t i = 0; i < q->slots.cap; i++)
    if (q->slots.slots[i].key)
      slot_free(q->slots.slots[i].value);
  br_strmap_free(&q->slots); /* reads none of the borrowed keys just freed */
  free(q->heap);
  q->heap = NULL;
  if (q->on_closed)
    q->on_closed(q);
}

void br_queue_close(struct br_queue *q, void (*on_closed)(struct br_queue *q)) {
  q->on_closed = on_closed;
  uv_close((uv_handle_t *)&q->timer, on_timer_closed);
}

unsigned br_queue_count(const struct br_queue *q, enum br_phase phase) {
  return phase < BR_PHASE_COUNT ? q->counts[phase] : 0;
}

unsigned br_queue_in_flight(const struct br_queue *q) { return q->in_flight; }
