/* test_queue: the work queue of reconciler/daemon/queue.h on a real libuv
 * loop, rule by rule: debounce, max_wait, one converge per slug at a time,
 * the in-flight cap, backoff with full jitter, remove, pause, close. Times are
 * the loop's own clock (uv_now), the one the queue schedules by; every wait is
 * for a condition, with a deadline that fails the test instead of hanging. */
#include "reconciler/daemon/queue.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* Longest any wait may take before the test gives up on it. */
#define DEADLINE_MS 5000
/* How late past its due time a dispatch may come on a busy machine. Lower
 * bounds are exact: the queue never runs a slug early. */
#define SLACK_MS 80

#define MAX_SEEN 8192
#define MAX_HELD 64

static uv_loop_t loop;
static struct br_queue q;
static unsigned closed_calls;

/* Every dispatch, in order, and the slots the "workers" hold right now. */
static struct dispatch {
  char slug[32];
  uint64_t at; /* uv_now when it was dispatched */
  struct br_slot *slot;
} seen[MAX_SEEN];
static size_t seen_n;
static struct br_slot *held[MAX_HELD];
static size_t held_n;
static unsigned twice_at_once; /* dispatches of a slug already in flight */

static uint64_t now(void) { return uv_now(&loop); }

static void on_dispatch(struct br_queue *queue, struct br_slot *slot) {
  CHECK(queue == &q);
  CHECK(slot->phase == BR_PHASE_CONVERGING);
  CHECK(!slot->ready && slot->heap_index == SIZE_MAX);
  CHECK(q.in_flight <= q.max_in_flight);
  for (size_t i = 0; i < held_n; i++)
    if (strcmp(held[i]->slug, slot->slug) == 0) {
      fprintf(stderr, "%s dispatched while an earlier converge of it is still in flight\n", slot->slug);
      twice_at_once++;
    }
  CHECK(held_n < MAX_HELD);
  if (held_n < MAX_HELD)
    held[held_n++] = slot;
  CHECK(seen_n < MAX_SEEN);
  if (seen_n < MAX_SEEN) {
    snprintf(seen[seen_n].slug, sizeof seen[seen_n].slug, "%s", slot->slug);
    seen[seen_n].at = now();
    seen[seen_n].slot = slot;
    seen_n++;
  }
}

/* The worker of slug finishes with phase, as the daemon's after-work
 * callback does. Taken out of held first: br_queue_done may dispatch again
 * at once. */
static void finish(const char *slug, enum br_phase phase, unsigned retry_after_ms) {
  for (size_t i = 0; i < held_n; i++)
    if (strcmp(held[i]->slug, slug) == 0) {
      struct br_slot *slot = held[i];
      memmove(held + i, held + i + 1, (held_n - i - 1) * sizeof *held);
      held_n--;
      br_queue_done(&q, slot, phase, retry_after_ms, strdup(br_phase_name(phase)));
      return;
    }
  fprintf(stderr, "finish: %s is not in flight\n", slug);
  check_failures++;
}

static bool in_flight(const char *slug) {
  for (size_t i = 0; i < held_n; i++)
    if (strcmp(held[i]->slug, slug) == 0)
      return true;
  return false;
}

static size_t dispatches_of(const char *slug) {
  size_t n = 0;
  for (size_t i = 0; i < seen_n; i++)
    n += strcmp(seen[i].slug, slug) == 0;
  return n;
}

/* The counts, the ready FIFO and the heap agree with the slots: every slot
 * of the map is counted in its phase, a removed one still in flight in
 * CONVERGING until its converge ends. */
static void counts_consistent(int line) {
  unsigned want[BR_PHASE_COUNT] = {0};
  size_t ready = 0, in_heap = 0, mapped = 0;
  for (size_t i = 0; i < q.slots.cap; i++) {
    if (!q.slots.slots[i].key)
      continue;
    const struct br_slot *s = q.slots.slots[i].value;
    mapped++;
    if (q.slots.slots[i].key != s->slug) { /* borrowed: the slot's own slug, not a copy */
      fprintf(stderr, "line %d: %s is mapped by a key not its own\n", line, s->slug);
      check_failures++;
    }
    want[s->phase]++;
    ready += s->ready;
    if (s->ready && s->phase != BR_PHASE_PENDING) {
      fprintf(stderr, "line %d: %s is ready in phase %s\n", line, s->slug, br_phase_name(s->phase));
      check_failures++;
    }
    if (s->heap_index != SIZE_MAX) {
      in_heap++;
      if (s->heap_index >= q.heap_n || q.heap[s->heap_index] != s) {
        fprintf(stderr, "line %d: %s has a wrong heap index\n", line, s->slug);
        check_failures++;
      }
    }
  }
  /* A slot removed while converging stays in the table until done (so
   * that its slug cannot be dispatched twice at once): counted above. */
  size_t listed = 0;
  for (const struct br_slot *s = q.ready_head; s && listed <= mapped; s = s->next_ready)
    listed++;
  bool ok = memcmp(want, q.counts, sizeof want) == 0 && want[BR_PHASE_CONVERGING] == q.in_flight &&
            q.in_flight == held_n && ready == q.ready_n && listed == q.ready_n && in_heap == q.heap_n;
  if (!ok) {
    fprintf(stderr, "line %d: counts disagree with the slots:", line);
    for (int p = 0; p < BR_PHASE_COUNT; p++)
      fprintf(stderr, " %s %u/%u", br_phase_name(p), q.counts[p], want[p]);
    fprintf(stderr, "; in flight %u, held %zu; ready %zu/%zu/%zu; heap %zu/%zu\n", q.in_flight, held_n, q.ready_n,
            ready, listed, q.heap_n, in_heap);
    check_failures++;
  }
}
#define CHECK_COUNTS() counts_consistent(__LINE__)

/* ---- driving the loop ---- */

static void on_flag_timer(uv_timer_t *t) { *(bool *)t->data = true; }

/* Runs the loop until cond(arg) holds; false when DEADLINE_MS passed first. */
static bool run_until(bool (*cond)(const void *), const void *arg) {
  bool expired = false;
  uv_timer_t deadline;
  uv_timer_init(&loop, &deadline);
  deadline.data = &expired;
  uv_timer_start(&deadline, on_flag_timer, DEADLINE_MS, 0);
  while (!cond(arg) && !expired)
    uv_run(&loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&deadline, NULL);
  uv_run(&loop, UV_RUN_NOWAIT);
  return cond(arg);
}

static bool seen_at_least(const void *n) { return seen_n >= *(const size_t *)n; }

/* Runs the loop until n dispatches in all have been seen. */
static bool wait_seen(size_t n) { return run_until(seen_at_least, &n); }

static bool slot_ready(const void *slug) {
  const struct br_slot *s = br_queue_slot(&q, slug, false);
  return s && s->ready;
}

static bool loop_time_reached(const void *t) { return now() >= *(const uint64_t *)t; }

/* Lets the queue run for ms of loop time, to see that nothing happens. */
static void run_for(uint64_t ms) {
  uint64_t until = now() + ms;
  uv_timer_t tick; /* so the loop wakes at the end even with nothing to do */
  bool fired = false;
  uv_timer_init(&loop, &tick);
  tick.data = &fired;
  uv_timer_start(&tick, on_flag_timer, ms, 0);
  CHECK(run_until(loop_time_reached, &until));
  uv_close((uv_handle_t *)&tick, NULL);
  uv_run(&loop, UV_RUN_NOWAIT);
}

/* Marks slug every `every` ms of loop time until `until`, as a stream of
 * inotify events would. */
struct marker {
  uv_timer_t timer;
  const char *slug;
  uint64_t until, last;
  unsigned marks;
};

static void on_marker(uv_timer_t *t) {
  struct marker *m = t->data;
  if (now() >= m->until) {
    uv_timer_stop(t);
    return;
  }
  CHECK(br_queue_mark(&q, m->slug, BR_MARK_RESYNC) == 0);
  m->last = now();
  m->marks++;
}

static void marker_start(struct marker *m, const char *slug, uint64_t every, uint64_t until) {
  memset(m, 0, sizeof *m);
  m->slug = slug;
  m->until = until;
  uv_timer_init(&loop, &m->timer);
  m->timer.data = m;
  uv_timer_start(&m->timer, on_marker, every, every);
}

static void marker_stop(struct marker *m) { uv_close((uv_handle_t *)&m->timer, NULL); }

/* ---- one queue per check ---- */

static void on_closed(struct br_queue *closed) {
  CHECK(closed == &q);
  closed_calls++;
}

static void setup(unsigned debounce_ms, unsigned max_wait_ms, unsigned backoff_initial_ms, unsigned backoff_max_ms,
                  unsigned max_in_flight) {
  seen_n = held_n = 0;
  twice_at_once = 0;
  closed_calls = 0;
  CHECK(uv_loop_init(&loop) == 0);
  CHECK(br_queue_init(&q, &loop, on_dispatch, NULL) == 0);
  br_queue_configure(&q, debounce_ms, max_wait_ms, backoff_initial_ms, backoff_max_ms, max_in_flight);
  uv_update_time(&loop);
}

/* Every check ends here: nothing may still be in flight (the daemon drains
 * before it closes), and closing frees every slot (ASan sees a leak). */
static void teardown(void) {
  CHECK(held_n == 0);
  CHECK(twice_at_once == 0);
  CHECK_COUNTS();
  br_queue_close(&q, on_closed);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(closed_calls == 1);
  CHECK(q.heap == NULL);
  CHECK(uv_loop_close(&loop) == 0); /* every handle closed */
}

/* ---- the checks ---- */

/* A slug marked twice within its debounce converges once. */
static void test_marked_twice_runs_once(void) {
  setup(20, 1000, 100, 1000, 4);
  CHECK(br_queue_mark(&q, "a", BR_MARK_RESYNC) == 0);
  CHECK(br_queue_mark(&q, "a", BR_MARK_RESYNC) == 0);
  CHECK(br_queue_depth(&q) == 1);
  CHECK(q.counts[BR_PHASE_PENDING] == 1);
  CHECK_COUNTS();
  CHECK(seen_n == 0); /* not at once: debounced */
  CHECK(wait_seen(1));
  CHECK(dispatches_of("a") == 1);
  finish("a", BR_PHASE_CONVERGED, 0);
  run_for(100);
  CHECK(seen_n == 1);
  CHECK(br_queue_depth(&q) == 0);
  teardown();
}

/* Debounce: each mark extends the quiet period; the slug runs debounce_ms
 * after the last one, not after the first. */
static void test_debounce_holds_until_quiet(void) {
  const unsigned debounce = 40;
  setup(debounce, 1000, 100, 1000, 4);
  uint64_t first = now();
  CHECK(br_queue_mark(&q, "a", BR_MARK_RESYNC) == 0);
  struct marker m;
  marker_start(&m, "a", 5, first + 60);
  CHECK(wait_seen(1));
  marker_stop(&m);
  CHECK(m.marks >= 2);
  CHECK(m.last >= first + debounce); /* still marked after the first window would have ended */
  CHECK(seen[0].at >= m.last + debounce);
  CHECK(seen[0].at <= m.last + debounce + SLACK_MS);
  if (seen[0].at < m.last + debounce || seen[0].at > m.last + debounce + SLACK_MS)
    fprintf(stderr, "  dispatched at +%llu ms, last mark at +%llu ms, debounce %u\n",
            (unsigned long long)(seen[0].at - first), (unsigned long long)(m.last - first), debounce);
  finish("a", BR_PHASE_CONVERGED, 0);
  teardown();
}

/* max_wait: a slug marked without pause is still converged max_wait_ms after
 * its first mark, not starved until the marks stop. */
static void test_max_wait_bounds_continuous_marks(void) {
  const unsigned debounce = 30, max_wait = 100;
  setup(debounce, max_wait, 100, 1000, 4);
  uint64_t first = now();
  CHECK(br_queue_mark(&q, "a", BR_MARK_RESYNC) == 0);
  struct marker m;
  marker_start(&m, "a", 3, first + 4 * max_wait);
  CHECK(wait_seen(1));
  uint64_t at = seen[0].at;
  CHECK(at >= first + max_wait);
  CHECK(at <= first + max_wait + SLACK_MS);
  CHECK(at < m.until); /* the marks had not stopped: it did not starve */
  if (at < first + max_wait || at > first + max_wait + SLACK_MS)
    fprintf(stderr, "  dispatched at +%llu ms after %u marks, max_wait %u\n", (unsigned long long)(at - first),
            m.marks, max_wait);
  /* The marks that keep coming while it converges make it dirty... */
  run_for(2 * debounce);
  CHECK(seen_n == 1);
  CHECK(seen[0].slot->dirty);
  /* ...and after it a new window opens, again bounded by max_wait. */
  uint64_t done_at = now();
  finish("a", BR_PHASE_CONVERGED, 0);
  CHECK(wait_seen(2));
  marker_stop(&m);
  CHECK(seen[1].at >= done_at + debounce);
  CHECK(seen[1].at <= done_at + max_wait + SLACK_MS);
  finish("a", BR_PHASE_CONVERGED, 0);
  teardown();
}

/* client-go: a key is never processed twice at the same time; one marked
 * while converging is dirty and runs again once the converge ends. */
static void test_never_twice_at_once_dirty_runs_after(void) {
  const unsigned debounce = 10;
  setup(debounce, 1000, 100, 1000, 4);
  CHECK(br_queue_mark(&q, "a", BR_MARK_NOW) == 0);
  CHECK(seen_n == 1); /* now: at once */
  struct br_slot *a = seen[0].slot;
  CHECK(a->phase == BR_PHASE_CONVERGING && !a->dirty);
  CHECK(br_queue_mark(&q, "a", BR_MARK_RESYNC) == 0);
  CHECK(br_queue_mark(&q, "a", BR_MARK_NOW) == 0); /* not even with now */
  br_queue_mark_all(&q, BR_MARK_NOW);
  CHECK(a->dirty);
  CHECK(br_queue_depth(&q) == 0);
  CHECK_COUNTS();
  run_for(5 * debounce);
  CHECK(seen_n == 1);
  CHECK(a->phase == BR_PHASE_CONVERGING);
  uint64_t done_at = now();
  finish("a", BR_PHASE_CONVERGED, 0);
  CHECK(!a->dirty);
  CHECK(a->settled == BR_PHASE_CONVERGED);
  CHECK(a->phase == BR_PHASE_PENDING); /* the dirty mark, debounced */
  CHECK_COUNTS();
  CHECK(wait_seen(2));
  CHECK_STR(seen[1].slug, "a");
  CHECK(seen[1].at >= done_at && seen[1].at <= done_at + debounce + SLACK_MS);
  finish("a", BR_PHASE_CONVERGED, 0);
  run_for(5 * debounce); /* one dirty mark, one more run: not a third */
  CHECK(seen_n == 2);
  teardown();
}

static bool ready_order(const char *const *want, size_t n) {
  const struct br_slot *s = q.ready_head;
  for (size_t i = 0; i < n; i++, s = s->next_ready)
    if (!s || strcmp(s->slug, want[i]) != 0)
      return false;
  return s == NULL;
}

/* At most max_in_flight converges at once; the others wait in the ready FIFO
 * and start in the order they became ready. */
static void test_max_in_flight_and_fifo(void) {
  setup(10, 1000, 100, 1000, 2);
  CHECK(br_queue_mark(&q, "a", BR_MARK_NOW) == 0);
  CHECK(br_queue_mark(&q, "b", BR_MARK_NOW) == 0);
  CHECK(seen_n == 2 && q.in_flight == 2);
  /* Debounced ones become ready one after another while both workers are busy. */
  const char *const order[] = {"e", "c", "d"};
  for (size_t i = 0; i < 3; i++) {
    CHECK(br_queue_mark(&q, order[i], BR_MARK_RESYNC) == 0);
    CHECK(run_until(slot_ready, order[i]));
  }
  CHECK(br_queue_mark(&q, "f", BR_MARK_NOW) == 0); /* now: ready at once, still behind the others */
  CHECK(seen_n == 2);
  CHECK(br_queue_depth(&q) == 4);
  CHECK(q.counts[BR_PHASE_PENDING] == 4 && q.counts[BR_PHASE_CONVERGING] == 2);
  CHECK(ready_order((const char *const[]){"e", "c", "d", "f"}, 4));
  CHECK_COUNTS();
  run_for(30);
  CHECK(seen_n == 2);
  finish("b", BR_PHASE_CONVERGED, 0); /* a worker is free: the head of the FIFO starts at once */
  CHECK(seen_n == 3);
  CHECK_STR(seen[2].slug, "e");
  finish("a", BR_PHASE_INVALID, 0);
  CHECK(seen_n == 4);
  CHECK_STR(seen[3].slug, "c");
  CHECK(q.in_flight == 2);
  CHECK_COUNTS();
  /* A higher cap (a config reload) starts the waiting ones at once. */
  br_queue_configure(&q, 10, 1000, 100, 1000, 4);
  CHECK(seen_n == 6 && q.in_flight == 4);
  CHECK_STR(seen[4].slug, "d");
  CHECK_STR(seen[5].slug, "f");
  CHECK(br_queue_depth(&q) == 0);
  /* A lower cap stops nothing running but starts nothing new until under it. */
  br_queue_configure(&q, 10, 1000, 100, 1000, 1);
  CHECK(br_queue_mark(&q, "a", BR_MARK_NOW) == 0);
  CHECK(seen_n == 6);
  finish("e", BR_PHASE_CONVERGED, 0);
  finish("c", BR_PHASE_CONVERGED, 0);
  finish("d", BR_PHASE_CONVERGED, 0);
  CHECK(seen_n == 6);
  finish("f", BR_PHASE_CONVERGED, 0);
  CHECK(seen_n == 7);
  CHECK_STR(seen[6].slug, "a");
  finish("a", BR_PHASE_CONVERGED, 0);
  teardown();
}

/* The exponential cap of attempt n (1-based), as the header promises:
 * initial, doubling, never above max. */
static uint64_t backoff_cap(uint64_t initial, uint64_t max, unsigned attempt) {
  uint64_t cap = initial;
  for (unsigned i = 1; i < attempt && cap < max; i++)
    cap *= 2;
  return cap < max ? cap : max;
}

/* The delay br_queue_done just scheduled for a RETRYING slot, in loop time;
 * the wall-clock next_try_ms must say the same. */
static uint64_t scheduled_delay(const struct br_slot *s) {
  CHECK(s->phase == BR_PHASE_RETRYING && s->heap_index != SIZE_MAX);
  CHECK(s->next_try_ms - s->last_converge_ms == (int64_t)(s->due_ms - now()));
  return s->due_ms - now();
}

/* RETRYING backs off exponentially with full jitter: the delay of attempt n
 * is uniform in [0, min(max, initial * 2^(n-1))]. Over many trials at each
 * attempt: never above the cap, not all equal, spread from near 0 to near
 * the cap, mean about half the cap (full jitter, not "equal jitter" whose
 * mean is three quarters). The cap doubles each attempt until backoff_max_ms
 * and stays there, however many attempts. Driven through the API without
 * waiting: a mark with now cuts the backoff short (resync). */
static void test_backoff_exponential_full_jitter(void) {
  enum { TRIALS = 300, ATTEMPTS = 8 };
  const unsigned initial = 100, max = 1600;
  static uint64_t delay[ATTEMPTS + 1][TRIALS];
  setup(10, 1000, initial, max, 4);
  srand(20240611); /* deterministic, still a spread of values */
  for (unsigned t = 0; t < TRIALS; t++) {
    for (unsigned n = 1; n <= ATTEMPTS; n++) {
      CHECK(br_queue_mark(&q, "r", BR_MARK_NOW) == 0);
      CHECK(in_flight("r"));
      finish("r", BR_PHASE_RETRYING, 0);
      const struct br_slot *s = br_queue_slot(&q, "r", false);
      CHECK(s && s->attempts == n);
      delay[n][t] = s ? scheduled_delay(s) : 0;
    }
    CHECK(br_queue_mark(&q, "r", BR_MARK_NOW) == 0);
    finish("r", BR_PHASE_CONVERGED, 0);
  }
  for (unsigned n = 1; n <= ATTEMPTS; n++) {
    uint64_t cap = backoff_cap(initial, max, n), lo = UINT64_MAX, hi = 0, sum = 0;
    for (unsigned t = 0; t < TRIALS; t++) {
      lo = delay[n][t] < lo ? delay[n][t] : lo;
      hi = delay[n][t] > hi ? delay[n][t] : hi;
      sum += delay[n][t];
    }
    double mean = (double)sum / TRIALS;
    bool ok = hi <= cap && lo < hi && lo < cap / 4 && hi > cap * 3 / 4 && mean > cap * 0.4 && mean < cap * 0.6;
    if (!ok) {
      fprintf(stderr, "attempt %u: delays %llu..%llu mean %.1f, expected within [0, %llu], mean about %llu\n", n,
              (unsigned long long)lo, (unsigned long long)hi, mean, (unsigned long long)cap,
              (unsigned long long)cap / 2);
      check_failures++;
    }
  }
  /* Many attempts: the cap stays at max (no overflow, no runaway). */
  for (unsigned n = 1; n <= 80; n++) {
    CHECK(br_queue_mark(&q, "r", BR_MARK_NOW) == 0);
    finish("r", BR_PHASE_RETRYING, 0);
    const struct br_slot *s = br_queue_slot(&q, "r", false);
    uint64_t d = s ? scheduled_delay(s) : UINT64_MAX;
    CHECK(d <= max);
  }
  CHECK_COUNTS();
  teardown();
}

/* The backoff is a real timer: a RETRYING slug is dispatched again by itself
 * once its delay has passed, not before, and waits as RETRYING meanwhile. */
static void test_backoff_timer_redispatches(void) {
  setup(10, 1000, 20, 40, 4);
  CHECK(br_queue_mark(&q, "a", BR_MARK_NOW) == 0);
  for (unsigned n = 1; n <= 4; n++) {
    uint64_t done_at = now();
    finish("a", BR_PHASE_RETRYING, 0);
    struct br_slot *s = br_queue_slot(&q, "a", false);
    uint64_t d = scheduled_delay(s);
    CHECK(d <= backoff_cap(20, 40, n));
    CHECK(s->settled == BR_PHASE_RETRYING && s->next_try_ms > 0);
    CHECK(q.counts[BR_PHASE_RETRYING] == 1);
    CHECK(br_queue_depth(&q) == 1);
    CHECK_COUNTS();
    CHECK(wait_seen(n + 1));
    CHECK(seen[n].at >= done_at + d && seen[n].at <= done_at + d + SLACK_MS);
    CHECK(s->attempts == n);
  }
  finish("a", BR_PHASE_CONVERGED, 0);
  teardown();
}

/* A success forgets the failures: attempts back to 0, no retry scheduled,
 * the next failure starts again from the initial backoff. */
static void test_success_resets_attempts(void) {
  const unsigned initial = 50, max = 10000;
  setup(10, 1000, initial, max, 4);
  for (unsigned n = 1; n <= 5; n++) {
    CHECK(br_queue_mark(&q, "a", BR_MARK_NOW) == 0);
    finish("a", BR_PHASE_RETRYING, 0);
  }
  struct br_slot *a = br_queue_slot(&q, "a", false);
  CHECK(a->attempts == 5);
  CHECK(br_queue_mark(&q, "a", BR_MARK_NOW) == 0);
  finish("a", BR_PHASE_CONVERGED, 0);
  CHECK(a->attempts == 0 && a->next_try_ms == 0);
  CHECK(a->phase == BR_PHASE_CONVERGED && a->settled == BR_PHASE_CONVERGED);
  CHECK(a->heap_index == SIZE_MAX && br_queue_depth(&q) == 0);
  CHECK_STR(a->message, "converged");
  for (unsigned t = 0; t < 20; t++) { /* back to the first cap, every time */
    CHECK(br_queue_mark(&q, "a", BR_MARK_NOW) == 0);
    finish("a", BR_PHASE_RETRYING, 0);
    CHECK(a->attempts == 1);
    CHECK(scheduled_delay(a) <= initial);
    CHECK(br_queue_mark(&q, "a", BR_MARK_NOW) == 0);
    finish("a", BR_PHASE_CONVERGED, 0);
  }
  /* Any other outcome that is not a transient failure forgets them too. */
  const enum br_phase others[] = {BR_PHASE_INVALID, BR_PHASE_WAITING, BR_PHASE_UNMANAGED, BR_PHASE_PENDING};
  for (size_t i = 0; i < sizeof others / sizeof *others; i++) {
    CHECK(br_queue_mark(&q, "a", BR_MARK_NOW) == 0);
    finish("a", BR_PHASE_RETRYING, 0);
    CHECK(br_queue_mark(&q, "a", BR_MARK_NOW) == 0);
    finish("a", others[i], 0);
    CHECK(a->attempts == 0 && a->phase == others[i]);
  }
  CHECK_COUNTS();
  teardown();
}

/* retry_after_ms (a sidecar's own hint, a settle time, a lock) replaces the
 * backoff: exactly that delay, however many attempts; other phases with it
 * run again then too. */
static void test_retry_after_overrides_backoff(void) {
  const unsigned retry_after = 30;
  setup(10, 1000, 60000, 60000, 4); /* the backoff alone would wait up to a minute */
  CHECK(br_queue_mark(&q, "a", BR_MARK_NOW) == 0);
  struct br_slot *a = seen[0].slot;
  for (unsigned n = 1; n <= 3; n++) {
    uint64_t done_at = now();
    finish("a", BR_PHASE_RETRYING, retry_after);
    CHECK(a->attempts == n);
    CHECK(scheduled_delay(a) == retry_after);
    CHECK(wait_seen(n + 1));
    CHECK(seen[n].at >= done_at + retry_after && seen[n].at <= done_at + retry_after + SLACK_MS);
  }
  /* WAITING for a lock, PENDING for the rest of a converge: again after it. */
  const enum br_phase phases[] = {BR_PHASE_WAITING, BR_PHASE_PENDING};
  for (size_t i = 0; i < 2; i++) {
    uint64_t done_at = now();
    finish("a", phases[i], retry_after);
    CHECK(a->phase == phases[i] && a->attempts == 0 && a->heap_index != SIZE_MAX);
    CHECK(a->due_ms == done_at + retry_after);
    CHECK_COUNTS();
    CHECK(wait_seen(5 + i));
    CHECK(seen[4 + i].at >= done_at + retry_after && seen[4 + i].at <= done_at + retry_after + SLACK_MS);
  }
  /* Without it, only RETRYING comes back by itself. */
  finish("a", BR_PHASE_CONVERGED, 0);
  CHECK(a->heap_index == SIZE_MAX);
  run_for(50);
  CHECK(seen_n == 6);
  teardown();
}

/* queue.h: "A retrying slug keeps its backoff." A resync mark (drift, a
 * periodic resync) during the backoff, or one that came in while the
 * failing converge ran, does not cut it short; a mark with now does. */
static void test_mark_during_backoff_keeps_it(void) {
  const unsigned debounce = 10, retry_after = 80;
  setup(debounce, 1000, 100, 1000, 4);
  CHECK(br_queue_mark(&q, "a", BR_MARK_NOW) == 0);
  struct br_slot *a = seen[0].slot;
  uint64_t done_at = now();
  finish("a", BR_PHASE_RETRYING, retry_after);
  uint64_t due = a->due_ms;
  CHECK(due == done_at + retry_after);
  CHECK(br_queue_mark(&q, "a", BR_MARK_RESYNC) == 0);
  CHECK(a->phase == BR_PHASE_RETRYING && a->due_ms == due);
  struct marker m; /* changes all through the backoff */
  marker_start(&m, "a", 5, done_at + retry_after - 20);
  CHECK(wait_seen(2));
  marker_stop(&m);
  CHECK(m.marks > 0);
  CHECK(seen[1].at >= due); /* not at the first mark + debounce */
  CHECK(seen[1].at <= due + SLACK_MS);
  CHECK(a->attempts == 1);

  /* Dirty from a change during the failing converge: the backoff still holds. */
  CHECK(br_queue_mark(&q, "a", BR_MARK_RESYNC) == 0);
  CHECK(a->dirty);
  done_at = now();
  finish("a", BR_PHASE_RETRYING, retry_after);
  CHECK(!a->dirty && a->phase == BR_PHASE_RETRYING && a->due_ms == done_at + retry_after);
  CHECK(wait_seen(3));
  CHECK(seen[2].at >= done_at + retry_after);

  /* A mark with now (`resync SLUG`) converges at once. */
  finish("a", BR_PHASE_RETRYING, retry_after);
  CHECK(br_queue_mark(&q, "a", BR_MARK_NOW) == 0);
  CHECK(seen_n == 4 && in_flight("a"));
  CHECK(a->attempts == 3); /* kept: the resync is not a success */
  finish("a", BR_PHASE_CONVERGED, 0);
  teardown();
}

/* enum br_mark: an input that changes during the backoff (a new fragment,
 * a sidecar's new pidfile) may be the fix: it converges after the debounce,
 * not at the end of the backoff, and so does one that changed while the
 * failing converge ran. The attempts are kept: failing again backs off
 * further. Resync marks still wait. */
static void test_input_mark_cuts_backoff(void) {
  const unsigned debounce = 10, retry_after = 60000;
  setup(debounce, 1000, 100, 1000, 4);
  CHECK(br_queue_mark(&q, "a", BR_MARK_NOW) == 0);
  struct br_slot *a = seen[0].slot;
  finish("a", BR_PHASE_RETRYING, retry_after);
  CHECK(a->phase == BR_PHASE_RETRYING && a->attempts == 1);
  CHECK(br_queue_mark(&q, "a", BR_MARK_RESYNC) == 0);
  CHECK(a->phase == BR_PHASE_RETRYING);
  uint64_t marked_at = now();
  CHECK(br_queue_mark(&q, "a", BR_MARK_INPUT) == 0);
  CHECK(a->phase == BR_PHASE_PENDING && a->due_ms == marked_at + debounce);
  CHECK_COUNTS();
  CHECK(wait_seen(2));
  CHECK(seen[1].at >= marked_at + debounce && seen[1].at <= marked_at + debounce + SLACK_MS);
  CHECK(a->attempts == 1);

  /* Changed while the failing converge ran: tried again after the debounce. */
  CHECK(br_queue_mark(&q, "a", BR_MARK_INPUT) == 0);
  CHECK(a->dirty && a->dirty_input);
  uint64_t done_at = now();
  finish("a", BR_PHASE_RETRYING, retry_after);
  CHECK(!a->dirty && !a->dirty_input && a->phase == BR_PHASE_PENDING && a->attempts == 2);
  CHECK_COUNTS();
  CHECK(wait_seen(3));
  CHECK(seen[2].at <= done_at + debounce + SLACK_MS);

  /* Only resync marks while it ran: the backoff holds. */
  CHECK(br_queue_mark(&q, "a", BR_MARK_RESYNC) == 0);
  CHECK(a->dirty && !a->dirty_input);
  done_at = now();
  finish("a", BR_PHASE_RETRYING, retry_after);
  CHECK(a->phase == BR_PHASE_RETRYING && a->due_ms == done_at + retry_after && a->attempts == 3);
  run_for(5 * debounce);
  CHECK(seen_n == 3);
  CHECK(br_queue_mark(&q, "a", BR_MARK_NOW) == 0);
  CHECK(seen_n == 4);
  finish("a", BR_PHASE_CONVERGED, 0);
  CHECK(a->attempts == 0);
  teardown();
}

/* Removing a slug that is not converging forgets it at once, wherever it
 * waits: in its debounce, in the ready FIFO, in its backoff, or idle. */
static void test_remove_idle(void) {
  setup(20, 1000, 100, 1000, 1);
  br_queue_remove(&q, "nobody"); /* unknown: nothing happens */
  CHECK(br_queue_mark(&q, "debouncing", BR_MARK_RESYNC) == 0);
  CHECK(br_queue_mark(&q, "busy", BR_MARK_NOW) == 0);
  CHECK(br_queue_mark(&q, "r1", BR_MARK_NOW) == 0);
  CHECK(br_queue_mark(&q, "r2", BR_MARK_NOW) == 0);
  CHECK(br_queue_mark(&q, "r3", BR_MARK_NOW) == 0);
  CHECK(ready_order((const char *const[]){"r1", "r2", "r3"}, 3));
  CHECK(br_queue_slot(&q, "idle", true) != NULL);
  CHECK(q.counts[BR_PHASE_PENDING] == 5);
  CHECK_COUNTS();
  br_queue_remove(&q, "idle");
  br_queue_remove(&q, "debouncing");
  br_queue_remove(&q, "r2"); /* the middle of the FIFO */
  CHECK(ready_order((const char *const[]){"r1", "r3"}, 2));
  br_queue_remove(&q, "r3"); /* its tail */
  CHECK(ready_order((const char *const[]){"r1"}, 1));
  CHECK(br_queue_mark(&q, "r4", BR_MARK_NOW) == 0); /* the tail was fixed */
  CHECK(ready_order((const char *const[]){"r1", "r4"}, 2));
  br_queue_remove(&q, "r1"); /* its head */
  CHECK(ready_order((const char *const[]){"r4"}, 1));
  CHECK(br_queue_slot(&q, "idle", false) == NULL && br_queue_slot(&q, "debouncing", false) == NULL);
  CHECK(br_queue_slot(&q, "r2", false) == NULL);
  CHECK(br_queue_depth(&q) == 1);
  CHECK_COUNTS();
  finish("busy", BR_PHASE_RETRYING, 40);
  CHECK(seen_n == 2);
  CHECK_STR(seen[1].slug, "r4");
  br_queue_remove(&q, "busy"); /* in its backoff */
  CHECK(br_queue_depth(&q) == 0);
  finish("r4", BR_PHASE_CONVERGED, 0);
  br_queue_remove(&q, "r4"); /* idle, converged */
  CHECK_COUNTS();
  run_for(80); /* no debounce, no backoff fires for them */
  CHECK(seen_n == 2);
  for (int p = 0; p < BR_PHASE_COUNT; p++)
    CHECK(q.counts[p] == 0);
  CHECK(q.slots.n == 0);
  teardown();
}

/* Removing a slug while it converges forgets it for lookups at once; the
 * worker's slot stays valid and is freed when its converge ends, which
 * dispatches nothing, even if it was dirty. */
static void test_remove_in_flight(void) {
  setup(10, 1000, 100, 1000, 4);
  CHECK(br_queue_mark(&q, "a", BR_MARK_NOW) == 0);
  struct br_slot *a = seen[0].slot;
  CHECK(br_queue_mark(&q, "a", BR_MARK_RESYNC) == 0);
  CHECK(a->dirty);
  br_queue_remove(&q, "a");
  CHECK(br_queue_slot(&q, "a", false) == NULL);
  CHECK(a->removed);
  CHECK_STR(a->slug, "a"); /* still the worker's */
  CHECK(q.in_flight == 1 && q.counts[BR_PHASE_CONVERGING] == 1);
  CHECK_COUNTS();
  br_queue_remove(&q, "a");          /* twice: nothing more */
  finish("a", BR_PHASE_RETRYING, 0); /* freed here (ASan would see a use after free or a leak) */
  CHECK(q.in_flight == 0);
  CHECK_COUNTS();
  for (int p = 0; p < BR_PHASE_COUNT; p++)
    CHECK(q.counts[p] == 0);
  run_for(50);
  CHECK(seen_n == 1);
  CHECK(br_queue_depth(&q) == 0);
  teardown();
}

/* A bottle removed while it converges and created again before that
 * converge ends (the daemon: on_slug_vanished, then a new STATE/<slug>/)
 * waits for the old converge, as a dirty mark does: two workers never
 * converge one slug at once. Before the fix it got a new slot at once. */
static void test_remove_in_flight_then_mark_again(void) {
  setup(10, 1000, 100, 1000, 4);
  CHECK(br_queue_mark(&q, "a", BR_MARK_NOW) == 0);
  br_queue_remove(&q, "a");
  CHECK(br_queue_mark(&q, "a", BR_MARK_NOW) == 0); /* the bottle is back */
  run_for(30);
  CHECK(dispatches_of("a") == 1);     /* a second converge of "a" must wait for the first */
  CHECK(twice_at_once == 0);          /* as the dispatch callback sees it */
  twice_at_once = 0;                  /* reported just above; not again by teardown */
  finish("a", BR_PHASE_CONVERGED, 0); /* the old converge ends */
  CHECK(wait_seen(2));                /* now the new one may run */
  while (held_n)
    finish(held[0]->slug, BR_PHASE_CONVERGED, 0);
  CHECK_COUNTS();
  teardown();
}

/* Paused (draining), the queue starts nothing: not a debounced slug, not a
 * mark with now, not the next one when a converge ends. Marks still count. */
static void test_pause_stops_dispatch(void) {
  setup(10, 1000, 100, 1000, 4);
  CHECK(br_queue_mark(&q, "a", BR_MARK_NOW) == 0);
  CHECK(br_queue_mark(&q, "b", BR_MARK_RESYNC) == 0);
  br_queue_pause(&q);
  CHECK(run_until(slot_ready, "b")); /* its debounce ended: ready, not started */
  CHECK(br_queue_mark(&q, "c", BR_MARK_NOW) == 0);
  br_queue_mark_all(&q, BR_MARK_NOW);
  CHECK(seen_n == 1);
  finish("a", BR_PHASE_CONVERGED, 0);
  CHECK(seen_n == 1 && q.in_flight == 0);
  br_queue_configure(&q, 10, 1000, 100, 1000, 8); /* nor does a new cap */
  run_for(50);
  CHECK(seen_n == 1);
  CHECK(br_queue_depth(&q) == 3); /* a was marked by mark_all: all three wait */
  CHECK(q.counts[BR_PHASE_PENDING] == 3);
  CHECK_COUNTS();
  teardown();
}

/* mark_all (resync, overflow) marks every slug by the same rules as one mark:
 * idle ones are debounced (or start at once with now), converging ones
 * become dirty, retrying ones keep their backoff unless now. */
static void test_mark_all(void) {
  const unsigned debounce = 20;
  setup(debounce, 1000, 100, 1000, 8);
  br_queue_mark_all(&q, BR_MARK_NOW); /* empty: nothing */
  br_queue_mark_all(&q, BR_MARK_RESYNC);
  CHECK(seen_n == 0 && br_queue_depth(&q) == 0);
  const char *const slugs[] = {"idle", "busy", "retrying", "invalid"};
  for (size_t i = 0; i < 4; i++)
    CHECK(br_queue_mark(&q, slugs[i], BR_MARK_NOW) == 0);
  finish("idle", BR_PHASE_CONVERGED, 0);
  finish("retrying", BR_PHASE_RETRYING, 5000);
  finish("invalid", BR_PHASE_INVALID, 0);
  struct br_slot *retrying = br_queue_slot(&q, "retrying", false), *busy = br_queue_slot(&q, "busy", false);
  uint64_t due = retrying->due_ms, marked_at = now();
  br_queue_mark_all(&q, BR_MARK_RESYNC);
  CHECK(seen_n == 4);
  CHECK(busy->dirty);
  CHECK(retrying->phase == BR_PHASE_RETRYING && retrying->due_ms == due);
  CHECK(br_queue_slot(&q, "idle", false)->phase == BR_PHASE_PENDING);
  CHECK(br_queue_slot(&q, "invalid", false)->phase == BR_PHASE_PENDING);
  CHECK(br_queue_depth(&q) == 3);
  CHECK_COUNTS();
  CHECK(wait_seen(6));
  run_for(debounce);
  CHECK(seen_n == 6); /* idle and invalid, not retrying */
  CHECK(dispatches_of("idle") == 2 && dispatches_of("invalid") == 2);
  CHECK(seen[4].at >= marked_at + debounce && seen[5].at >= marked_at + debounce);
  finish("idle", BR_PHASE_CONVERGED, 0);
  finish("invalid", BR_PHASE_INVALID, 0);
  br_queue_mark_all(&q, BR_MARK_NOW);
  CHECK(seen_n == 9); /* idle, invalid and retrying at once; busy is still dirty */
  CHECK(dispatches_of("retrying") == 2);
  CHECK(dispatches_of("busy") == 1);
  CHECK_COUNTS();
  finish("busy", BR_PHASE_CONVERGED, 0);
  CHECK(wait_seen(10));
  CHECK_STR(seen[9].slug, "busy");
  while (held_n)
    finish(held[0]->slug, BR_PHASE_CONVERGED, 0);
  teardown();
}

static void check_counts_are(const unsigned want[BR_PHASE_COUNT], int line) {
  if (memcmp(want, q.counts, sizeof q.counts) != 0) {
    fprintf(stderr, "line %d: counts", line);
    for (int p = 0; p < BR_PHASE_COUNT; p++)
      fprintf(stderr, " %s %u/%u", br_phase_name(p), q.counts[p], want[p]);
    fprintf(stderr, "\n");
    check_failures++;
  }
  counts_consistent(line);
}
/* PENDING, CONVERGING, CONVERGED, RETRYING, INVALID, WAITING, UNMANAGED */
#define CHECK_PHASES(p, cv, cd, r, i, w, u)                                                                       \
  check_counts_are((const unsigned[BR_PHASE_COUNT]){p, cv, cd, r, i, w, u}, __LINE__)

/* q->counts (status, metrics) follow each slot through every phase. */
static void test_phase_counts(void) {
  setup(10, 1000, 10, 20, 4);
  CHECK_PHASES(0, 0, 0, 0, 0, 0, 0);
  CHECK(br_queue_slot(&q, "a", true) != NULL);
  CHECK(br_queue_slot(&q, "a", true) != NULL); /* the same slot */
  CHECK_PHASES(1, 0, 0, 0, 0, 0, 0);
  CHECK(br_queue_mark(&q, "a", BR_MARK_RESYNC) == 0);
  CHECK(br_queue_mark(&q, "b", BR_MARK_NOW) == 0);
  CHECK_PHASES(1, 1, 0, 0, 0, 0, 0);
  CHECK(wait_seen(2));
  CHECK_PHASES(0, 2, 0, 0, 0, 0, 0);
  finish("a", BR_PHASE_INVALID, 0);
  finish("b", BR_PHASE_UNMANAGED, 0);
  CHECK_PHASES(0, 0, 0, 0, 1, 0, 1);
  CHECK(br_queue_mark(&q, "a", BR_MARK_NOW) == 0);
  CHECK_PHASES(0, 1, 0, 0, 0, 0, 1);
  finish("a", BR_PHASE_WAITING, 15);
  CHECK_PHASES(0, 0, 0, 0, 0, 1, 1);
  CHECK(wait_seen(4));
  CHECK_PHASES(0, 1, 0, 0, 0, 0, 1);
  finish("a", BR_PHASE_RETRYING, 0);
  CHECK_PHASES(0, 0, 0, 1, 0, 0, 1);
  CHECK(wait_seen(5));
  CHECK_PHASES(0, 1, 0, 0, 0, 0, 1);
  finish("a", BR_PHASE_CONVERGED, 0);
  CHECK_PHASES(0, 0, 1, 0, 0, 0, 1);
  CHECK(br_queue_mark(&q, "b", BR_MARK_RESYNC) == 0);
  CHECK_PHASES(1, 0, 1, 0, 0, 0, 0);
  br_queue_remove(&q, "b");
  CHECK_PHASES(0, 0, 1, 0, 0, 0, 0);
  CHECK(br_queue_mark(&q, "a", BR_MARK_NOW) == 0);
  br_queue_remove(&q, "a");
  CHECK_PHASES(0, 1, 0, 0, 0, 0, 0); /* counted until its converge ends */
  finish("a", BR_PHASE_CONVERGED, 0);
  CHECK_PHASES(0, 0, 0, 0, 0, 0, 0);
  CHECK_STR(br_phase_name(BR_PHASE_RETRYING), "retrying");
  CHECK_STR(br_phase_name(BR_PHASE_COUNT), "?");
  teardown();
}

/* Closing frees every slot wherever it waits (idle, debounced, ready,
 * backing off, with a message), the heap past its first growth, and calls
 * on_closed once; the loop then has no handle left. ASan checks the rest. */
static void test_close_frees_everything(void) {
  setup(1000, 5000, 1000, 5000, 2);
  char slug[16];
  for (int i = 0; i < 150; i++) { /* more than the heap's first 64 */
    snprintf(slug, sizeof slug, "s%d", i);
    CHECK(br_queue_mark(&q, slug, BR_MARK_RESYNC) == 0);
  }
  CHECK(q.heap_n == 150 && q.heap_cap >= 150);
  CHECK(br_queue_mark(&q, "converged", BR_MARK_NOW) == 0);
  CHECK(br_queue_mark(&q, "retrying", BR_MARK_NOW) == 0);
  finish("converged", BR_PHASE_CONVERGED, 0);
  finish("retrying", BR_PHASE_RETRYING, 0);
  br_queue_pause(&q);
  CHECK(br_queue_mark(&q, "ready", BR_MARK_NOW) == 0);
  CHECK(br_queue_slot(&q, "ready", false)->ready);
  CHECK(br_queue_slot(&q, "idle", true) != NULL);
  CHECK(q.slots.n == 154);
  CHECK_COUNTS();
  teardown(); /* CHECKs closed once, heap freed, loop empty */
}

int main(void) {
  test_marked_twice_runs_once();
  test_debounce_holds_until_quiet();
  test_max_wait_bounds_continuous_marks();
  test_never_twice_at_once_dirty_runs_after();
  test_max_in_flight_and_fifo();
  test_backoff_exponential_full_jitter();
  test_backoff_timer_redispatches();
  test_success_resets_attempts();
  test_retry_after_overrides_backoff();
  test_mark_during_backoff_keeps_it();
  test_input_mark_cuts_backoff();
  test_remove_idle();
  test_remove_in_flight();
  test_remove_in_flight_then_mark_again();
  test_pause_stops_dispatch();
  test_mark_all();
  test_phase_counts();
  test_close_frees_everything();
  CHECK_DONE();
}
