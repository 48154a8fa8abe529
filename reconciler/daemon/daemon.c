/* daemon: `bottle-reconciler run`: one libuv loop that turns inotify hints,
 * timers and signals into converges on worker threads. It decides when a
 * slug converges, never how: that is br_converge_slug, unchanged. */
#include "reconciler/daemon/daemon.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "common/clock.h"
#include "common/fileio.h"
#include "common/log.h"
#include "common/notify.h"
#include "reconciler/bottle/audit.h"
#include "reconciler/bottle/converge.h"
#include "reconciler/bottle/records.h"
#include "reconciler/bottle/slug.h"
#include "reconciler/daemon/control.h"
#include "reconciler/daemon/gitlock.h"
#include "reconciler/daemon/metrics.h"
#include "reconciler/daemon/own_writes.h"
#include "reconciler/daemon/queue.h"
#include "reconciler/daemon/status.h"
#include "reconciler/daemon/tracked.h"
#include "reconciler/daemon/waiters.h"
#include "reconciler/daemon/watch.h"
#include "reconciler/drivers/docker_container.h"
#include "reconciler/drivers/docker_events.h"

#define DRAIN_DEADLINE_MS 30000    /* in-flight converges get this long after SIGTERM */
#define OVERFLOW_MIN_GAP_MS 1000   /* at most one overflow resync a second */
#define POLL_INTERVAL_MS 2000      /* slugs inotify cannot watch are looked at this often */
#define METRICS_MIN_GAP_MS 1000    /* the textfile is rewritten at most once a second */
#define METRICS_TEMP_SUFFIX ".tmp" /* after the metrics file's name, in its temp file's */
/* Converges handed to the thread pool per worker thread. One each would
 * leave a worker that finishes idle until the loop thread gets round to
 * handing it the next slug (at start-up it is busy adding watches); a few
 * queued ahead keep it busy, while the queue still decides the order. */
#define JOBS_PER_WORKER 4
#define GIT_LOCK_RETRY_MS 50              /* while a git checkout holds its index.lock */
#define GIT_LOCK_DEADLINE_MS 10000        /* a lock older than this is treated as stale */
#define TRIM_DELAY_MS 1000                /* quiet this long after the last converge: memory goes back */
#define TRIM_FREE_BYTES (4 * 1024 * 1024) /* ...when malloc holds this much freed memory */
#define EXPIRY_LATE_MS 5                  /* the expiry timer fires this much after the moment */

/* A config shared by the loop and the converges that started under it; a
 * SIGHUP swaps in a new one while old converges finish with theirs. Only the
 * loop thread touches refs. */
struct config_ref {
  struct br_config cfg;
  unsigned refs;
};

struct daemon {
  uv_loop_t *loop;
  struct config_ref *config;
  const char *config_path;
  const char *state_dir_override;
  struct br_queue queue;
  struct br_watch watch;
  struct br_control control;
  struct br_waiters waiters;              /* control clients waiting for a converge (--wait) */
  uint64_t dispatches;                    /* converges handed out so far: orders them against waits */
  struct br_docker_events *docker_events; /* while a sidecar uses the docker driver */
  struct br_tracked_table bottles;        /* every bottle the daemon tracks, and what it knows of each */
  uv_signal_t sigterm, sigint, sighup;
  uv_timer_t resync_timer, poll_timer, overflow_timer, metrics_timer, drain_timer, watchdog_timer, trim_timer;
  uv_timer_t expiry_timer; /* armed only while a route of some bottle is to expire */
  int64_t expiry_at;       /* the expires it is armed for (seconds since the epoch), 0 = none */
  struct br_metrics metrics;
  struct br_git_dirs git_dirs;
  struct br_own_writes own_writes;
  uint64_t last_overflow_resync;
  uint64_t metrics_written_at;
  size_t first_pass_left;     /* added slugs of the first pass not yet tried once */
  uv_idle_t first_pass_adder; /* active while first_pass is being added, a batch per loop turn */
  struct br_strv first_pass;  /* the slugs listed at start */
  size_t first_pass_next;     /* the next of them to add */
  struct job *jobs;           /* handed to the thread pool, not yet done */
  unsigned pool_threads;      /* the thread pool's size, fixed at start */
  bool ready;
  bool draining;
  bool watch_warned; /* the max_user_watches line is logged once */
  bool watching;
  atomic_bool stop_cleanup; /* draining: the post-READY temp file cleanup stops early */
  unsigned polled;          /* slugs on polling */
  unsigned sigints;
  int exit_code;
};

struct job {
  uv_work_t req;
  struct job *prev, *next; /* in daemon.jobs */
  struct daemon *d;
  struct br_slot *slot;
  struct config_ref *config;
  char slug[BR_SLUG_MAX + 1];
  uint64_t dispatch_no;    /* the how-manieth converge handed out */
  struct br_bottle bottle; /* derived afresh on the worker */
  struct br_converge_report rep;
  int rc;
  bool git_locked;     /* held back: a git checkout is mid-operation */
  bool git_lock_stale; /* set by dispatch: the lock outlived GIT_LOCK_DEADLINE_MS, converge anyway */
  bool git_lock_found; /* a source's checkout holds its index.lock (held back unless stale) */
  char git_lock[PATH_MAX];
  double seconds;
};

static void job_unlink(struct daemon *d, struct job *job) {
  if (job->prev)
    job->prev->next = job->next;
  else
    d->jobs = job->next;
  if (job->next)
    job->next->prev = job->prev;
}

static struct config_ref *config_acquire(struct config_ref *c) {
  c->refs++;
  return c;
}

static void config_release(struct config_ref *c) {
  if (--c->refs == 0) {
    br_config_free(&c->cfg);
    free(c);
  }
}

static double monotonic_s(void) { return (double)br_monotonic_ns() / 1e9; }

/* --- status for systemd and the metrics file -------------------------------- */

static void notify_status(struct daemon *d) {
  unsigned c[BR_PHASE_COUNT];
  for (int i = 0; i < BR_PHASE_COUNT; i++)
    c[i] = br_queue_count(&d->queue, (enum br_phase)i);
  br_notify("STATUS=%u converged, %u pending, %u converging, %u retrying, %u invalid, %u waiting, %u unmanaged",
            c[BR_PHASE_CONVERGED], c[BR_PHASE_PENDING], c[BR_PHASE_CONVERGING], c[BR_PHASE_RETRYING],
            c[BR_PHASE_INVALID], c[BR_PHASE_WAITING], c[BR_PHASE_UNMANAGED]);
}

struct metrics_write {
  uv_work_t req;
  char *path;
  struct br_buf text;
};

static void metrics_write_work(uv_work_t *req) {
  struct metrics_write *w = req->data;
  struct br_buf err;
  br_buf_init(&err, 4096);
  /* The temp file must not end in ".prom": the textfile collector reads
   * every such name in the directory, dot names too, and would publish
   * half a file, or a crash's leftover beside the real one. */
  const struct br_write_opts opts = {.new_mode = 0644, .temp_suffix = METRICS_TEMP_SUFFIX};
  if (br_file_write_atomic(w->path, w->text.data, w->text.len, &opts, &err))
    br_log(BR_LOG_WARN, NULL, "metrics file: %s", err.data ? err.data : "write failed");
  br_buf_free(&err);
}

static void metrics_write_done(uv_work_t *req, int status) {
  (void)status;
  struct metrics_write *w = req->data;
  free(w->path);
  br_buf_free(&w->text);
  free(w);
}

static void write_metrics(struct daemon *d) {
  const struct br_config *cfg = &d->config->cfg;
  d->metrics_written_at = uv_now(d->loop);
  notify_status(d);
  if (!cfg->metrics_file)
    return;
  struct metrics_write *w = calloc(1, sizeof *w);
  if (!w)
    return;
  struct br_buf path;
  br_buf_init(&path, PATH_MAX);
  br_buf_init(&w->text, 1024 * 1024);
  if (br_config_expand(cfg, cfg->metrics_file, NULL, NULL, &path)) {
    br_buf_free(&path);
    free(w);
    return;
  }
  w->path = br_buf_steal(&path);
  br_metrics_render(&d->metrics, &d->queue, d->watching ? br_watch_count(&d->watch) : 0,
                    br_realtime_ns() / 1000000, &w->text);
  w->req.data = w;
  uv_queue_work(d->loop, &w->req, metrics_write_work, metrics_write_done);
}

static void on_metrics_timer(uv_timer_t *t) { write_metrics(t->data); }

/* Temp files of the metrics file that a killed daemon left behind lie in
 * node_exporter's textfile directory, which no bottle's cleanup covers;
 * those of earlier versions end in ".prom" and are read as a second copy
 * of every metric. At start and when the config names another file: one
 * directory, on the loop thread, before the first write. */
static void metrics_cleanup(const struct br_config *cfg) {
  struct br_buf path;
  br_buf_init(&path, PATH_MAX);
  if (cfg->metrics_file && !br_config_expand(cfg, cfg->metrics_file, NULL, NULL, &path)) {
    char *slash = strrchr(path.data, '/');
    if (slash && slash != path.data)
      *slash = '\0';
    int removed = br_file_remove_stale_temps(slash == path.data ? "/" : path.data);
    if (removed > 0)
      br_log(BR_LOG_INFO, NULL, "removed %d stale temp file(s) of the metrics file from %s", removed,
             slash == path.data ? "/" : path.data);
  }
  br_buf_free(&path);
}

/* Something changed: publish it, but at most once a second, and with no
 * timer at all while nothing changes. */
static void metrics_changed(struct daemon *d) {
  if (uv_is_active((uv_handle_t *)&d->metrics_timer))
    return;
  uint64_t now = uv_now(d->loop), next = d->metrics_written_at + METRICS_MIN_GAP_MS;
  if (now >= next)
    write_metrics(d);
  else
    uv_timer_start(&d->metrics_timer, on_metrics_timer, next - now, 0);
}

/* --- watching ------------------------------------------------------------------ */

static void poll_start(struct daemon *d);

/* Marks the bottle on the poll timer (until its watches are complete). */
static void poll_bottle_start(struct daemon *d, struct br_tracked *b) {
  if (!b->polled) {
    b->polled = true;
    d->polled++;
  }
  poll_start(d);
}

/* Watches everything the bottle's record says it reads (sources, live
 * files, metadata.json) and its sidecars' pidfiles. The record is derived
 * for this and let go: neither the daemon nor the watcher keeps the paths,
 * and the watcher asks for them again when they move. say: log what
 * deriving it warns of (not on every poll). */
static void watch_bottle(struct daemon *d, struct br_tracked *b, bool say) {
  struct br_bottle r;
  struct br_strv pidfiles;
  struct br_buf warnings;
  br_strv_init(&pidfiles);
  br_buf_init(&warnings, 4096);
  int rc = br_tracked_record(b, &d->config->cfg, &r, &pidfiles, &warnings);
  if (say && warnings.len)
    br_log(BR_LOG_WARN, b->slug, "%s", warnings.data);
  struct br_strv live_files = {.v = r.live, .n = BR_SIDECAR_COUNT};
  struct br_watch_spec spec = {
      .slug = b->slug, .slug_dir = r.dir, .sources = &r.sources, .live_files = &live_files, .pidfiles = &pidfiles};
  char dir[PATH_MAX];
  if (rc) {
    /* Its paths cannot be named (a refused project, say): its directory
     * and metadata.json at least, whose fix derives them again. */
    if (say)
      br_log(BR_LOG_WARN, b->slug, "cannot derive its paths: %s", strerror(-rc));
    snprintf(dir, sizeof dir, "%s/%s", d->config->cfg.state_dir, b->slug);
    spec = (struct br_watch_spec){.slug = b->slug, .slug_dir = dir};
  }
  int watch_rc = br_watch_slug(&d->watch, &spec);
  if (watch_rc) {
    if (!b->polled) /* not again on every poll */
      br_log(BR_LOG_WARN, b->slug, "cannot watch (%s); it is polled every %d ms instead", strerror(-watch_rc),
             POLL_INTERVAL_MS);
    poll_bottle_start(d, b);
  } else if (!rc && b->polled && br_watch_complete(&d->watch, b->slug)) {
    b->polled = false;
    d->polled--;
    br_log(BR_LOG_INFO, b->slug, "watched again; no longer polled");
  }
  br_strv_free(&pidfiles);
  br_buf_free(&warnings);
  br_bottle_free(&r);
}

/* Learns its containers again and watches what its record names now. */
static void rederive(struct daemon *d, struct br_tracked *b) {
  struct br_buf warnings;
  br_buf_init(&warnings, 4096);
  int rc = br_tracked_rederive(&d->bottles, b, &d->config->cfg, &warnings);
  bool said = rc || warnings.len; /* the record's own warnings are the same: once is enough */
  if (warnings.len)
    br_log(BR_LOG_WARN, b->slug, "%s", warnings.data);
  if (rc)
    br_log(BR_LOG_WARN, b->slug, "cannot learn its container names again: %s", strerror(-rc));
  br_buf_free(&warnings);
  watch_bottle(d, b, !said);
}

/* Temp files that a crashed writer left beside live files and fragments
 * are invisible to sidecars and to the fragment scan (dot names), so every
 * slug known at READY is cleaned of them after it, on a worker, rather than
 * on the loop thread before (12 syscalls a slug). Converges may run
 * meanwhile: this process's own temp files are never taken for stale. */
struct cleanup {
  uv_work_t req;
  struct config_ref *config;
  struct br_strv slugs;
  struct daemon *d;
};

static void cleanup_slug(const struct br_config *cfg, const char *slug) {
  struct br_bottle bottle;
  struct br_buf warnings;
  br_buf_init(&warnings, 4096);
  if (!br_bottle_derive(&bottle, cfg, slug, &warnings))
    br_converge_cleanup(&bottle);
  br_bottle_free(&bottle);
  br_buf_free(&warnings);
}

static void cleanup_work(uv_work_t *req) {
  struct cleanup *c = req->data;
  for (size_t i = 0; i < c->slugs.n && !atomic_load(&c->d->stop_cleanup); i++)
    cleanup_slug(&c->config->cfg, c->slugs.v[i]);
}

static void slug_of(struct br_tracked *b, void *ctx) {
  struct cleanup *c = ctx;
  if (br_strv_add(&c->slugs, b->slug))
    c->slugs.n = SIZE_MAX; /* marks the failure for cleanup_start */
}

static void cleanup_done(uv_work_t *req, int status) {
  (void)status;
  struct cleanup *c = req->data;
  br_strv_free(&c->slugs);
  config_release(c->config);
  free(c);
}

static void cleanup_start(struct daemon *d) {
  struct cleanup *c = calloc(1, sizeof *c);
  if (!c)
    return;
  c->d = d;
  br_strv_init(&c->slugs);
  br_tracked_foreach(&d->bottles, slug_of, c);
  if (c->slugs.n == SIZE_MAX) {
    br_strv_free(&c->slugs);
    free(c);
    return; /* out of memory: the temp files stay until the next start */
  }
  c->config = config_acquire(d->config);
  c->req.data = c;
  if (uv_queue_work(d->loop, &c->req, cleanup_work, cleanup_done)) {
    br_strv_free(&c->slugs);
    config_release(c->config);
    free(c);
  }
}

/* READY=1 once every slug listed at start was added and tried once.
 * Converges that found nothing to do were logged at debug level: one line
 * here says how the first pass went instead of one per slug. */
static void ready_if_done(struct daemon *d) {
  if (!d->ready && !d->draining && d->first_pass_left == 0 && !uv_is_active((uv_handle_t *)&d->first_pass_adder)) {
    d->ready = true;
    unsigned c[BR_PHASE_COUNT];
    for (int i = 0; i < BR_PHASE_COUNT; i++)
      c[i] = br_queue_count(&d->queue, (enum br_phase)i);
    br_log(BR_LOG_INFO, NULL,
           "ready: first pass over %zu slug(s) done: %u converged, %u invalid, %u retrying, %u waiting, "
           "%u unmanaged, %u pending",
           br_tracked_count(&d->bottles), c[BR_PHASE_CONVERGED], c[BR_PHASE_INVALID], c[BR_PHASE_RETRYING],
           c[BR_PHASE_WAITING], c[BR_PHASE_UNMANAGED], c[BR_PHASE_PENDING] + c[BR_PHASE_CONVERGING]);
    br_notify_state("READY=1");
    cleanup_start(d);
  }
}

/* A slug of the first pass has been tried (or went away). */
static void first_pass_done(struct daemon *d) {
  if (d->first_pass_left && --d->first_pass_left == 0)
    ready_if_done(d);
}

static void add_slug(struct daemon *d, const char *slug, bool first_pass);

/* Adds the slugs listed at start a batch per loop turn rather than all at
 * once: converges finish (and free their worker for the next slug) only
 * when the loop runs, so adding 10,000 slugs in one go (watches, queue
 * slots) kept the workers idle for a quarter of the start-up. Each slug is
 * watched before its first converge, so no change is missed in between. */
#define FIRST_PASS_BATCH 64

static void on_first_pass_adder(uv_idle_t *idle) {
  struct daemon *d = idle->data;
  size_t end = d->first_pass_next + FIRST_PASS_BATCH;
  for (; d->first_pass_next < d->first_pass.n && d->first_pass_next < end && !d->draining; d->first_pass_next++)
    add_slug(d, d->first_pass.v[d->first_pass_next], true);
  if (d->first_pass_next < d->first_pass.n && !d->draining)
    return;
  uv_idle_stop(idle);
  br_strv_free(&d->first_pass);
  metrics_changed(d);
  ready_if_done(d);
}

static void add_slug(struct daemon *d, const char *slug, bool first_pass) {
  if (br_tracked_get(&d->bottles, slug))
    return;
  struct br_buf warnings;
  br_buf_init(&warnings, 4096);
  struct br_tracked *b = br_tracked_add(&d->bottles, &d->config->cfg, slug, &warnings);
  bool warnings_said = warnings.len > 0; /* the record's own warnings are the same: once is enough */
  if (warnings.len)
    br_log(BR_LOG_WARN, slug, "%s", warnings.data);
  br_buf_free(&warnings);
  if (!b)
    return;
  if (!(b->slot = br_queue_slot(&d->queue, slug, true))) {
    br_tracked_remove(&d->bottles, slug);
    return;
  }
  if (!first_pass)
    cleanup_slug(&d->config->cfg, slug); /* the first pass's are cleaned after READY */
  if (first_pass)
    d->first_pass_left++;
  b->first_pass = first_pass;
  watch_bottle(d, b, !warnings_said);
  br_queue_mark(&d->queue, slug, first_pass ? BR_MARK_NOW : BR_MARK_INPUT);
}

static void on_slug_dirty(void *ctx, const char *slug, enum br_watch_reason reason, const char *why,
                          const char *live_file) {
  struct daemon *d = ctx;
  /* The record of our own rename: the converge that wrote it already knows
   * what it wrote. Anything else is a hint to converge. */
  if (reason == BR_WATCH_DRIFT && br_own_writes_take(&d->own_writes, live_file)) {
    br_log(BR_LOG_DEBUG, slug, "%s (our own write)", why);
    return;
  }
  br_log(BR_LOG_DEBUG, slug, "%s", why);
  struct br_tracked *b = br_tracked_get(&d->bottles, slug);
  if (!b)
    return;
  /* The compose project may have changed, and with it paths and containers. */
  if (reason == BR_WATCH_METADATA)
    rederive(d, b);
  /* A changed input (a fragment, metadata, a sidecar's new pidfile) may be
   * what a retrying slug waits for; drift of a live file is not. */
  br_queue_mark(&d->queue, slug, reason == BR_WATCH_DRIFT ? BR_MARK_RESYNC : BR_MARK_INPUT);
  metrics_changed(d);
}

static void on_slug_appeared(void *ctx, const char *slug) {
  struct daemon *d = ctx;
  if (!br_slug_valid(slug)) {
    br_log(BR_LOG_WARN, NULL, "state directory entry \"%.40s\" ignored: not a valid slug", slug);
    return;
  }
  if (br_tracked_get(&d->bottles, slug))
    return;
  br_log(BR_LOG_INFO, slug, "bottle appeared");
  add_slug(d, slug, false);
  metrics_changed(d);
}

static void expiry_arm(struct daemon *d, int64_t at);

static void on_slug_vanished(void *ctx, const char *slug) {
  struct daemon *d = ctx;
  struct br_tracked *b = br_tracked_get(&d->bottles, slug);
  if (!b)
    return;
  struct stat st;
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/%s", d->config->cfg.state_dir, slug);
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
    return; /* replaced by a new directory of the same name: still here */
  br_log(BR_LOG_INFO, slug, "bottle removed; forgetting it");
  if (b->polled)
    d->polled--;
  /* One that is converging is counted when its converge ends; one that was
   * waiting (held back by a git lock) may be the last the first pass waits for. */
  if (b->first_pass && b->slot->phase != BR_PHASE_CONVERGING)
    first_pass_done(d);
  br_watch_forget(&d->watch, slug);
  br_waiters_drop(&d->waiters, slug, "the bottle was removed");
  br_queue_remove(&d->queue, slug);
  bool earliest = b->next_expiry && b->next_expiry == d->expiry_at;
  br_tracked_remove(&d->bottles, slug);
  if (earliest)
    expiry_arm(d, br_tracked_next_expiry(&d->bottles));
  br_records_forget(d->config->cfg.state_dir, slug);
  metrics_changed(d);
}

static void resync_all(struct daemon *d, const char *why, enum br_mark mark);

static void on_overflow_timer(uv_timer_t *t) { resync_all(t->data, "inotify queue overflow", BR_MARK_RESYNC); }

static void on_overflow(void *ctx) {
  struct daemon *d = ctx;
  d->metrics.overflows++;
  if (uv_is_active((uv_handle_t *)&d->overflow_timer))
    return; /* a resync is already scheduled; a storm of overflows adds nothing */
  uint64_t now = uv_now(d->loop), next = d->last_overflow_resync + OVERFLOW_MIN_GAP_MS;
  br_log(BR_LOG_WARN, NULL, "inotify events were lost (queue overflow); resyncing every slug");
  uv_timer_start(&d->overflow_timer, on_overflow_timer, now >= next ? 0 : next - now, 0);
}

static void on_watch_failed(void *ctx, const char *slug, const char *path, int err) {
  struct daemon *d = ctx;
  d->metrics.watch_failures++;
  if (!d->watch_warned && (err == -ENOSPC || err == -ENOMEM)) {
    d->watch_warned = true;
    br_log(BR_LOG_ERROR, NULL,
           "inotify_add_watch %s: %s: the per-user inotify watch limit is reached; raise "
           "fs.inotify.max_user_watches (sysctl). Affected slugs are polled every %d ms meanwhile",
           path, strerror(-err), POLL_INTERVAL_MS);
  } else if (err == -ESTALE) {
    br_log(BR_LOG_WARN, slug, "%s changed and its paths could not be watched again; polling it every %d ms", path,
           POLL_INTERVAL_MS);
  } else if (err != -ENOSPC && err != -ENOMEM) {
    br_log(BR_LOG_WARN, slug, "cannot watch %s: %s; polling it every %d ms", path, strerror(-err),
           POLL_INTERVAL_MS);
  }
  struct br_tracked *b = br_tracked_get(&d->bottles, slug);
  if (b)
    poll_bottle_start(d, b);
  else
    poll_start(d);
}

/* A directory or link on the bottle's paths moved: the watcher keeps no
 * paths, so they are derived again and handed over. */
static void on_paths_moved(void *ctx, const char *slug) {
  struct daemon *d = ctx;
  struct br_tracked *b = br_tracked_get(&d->bottles, slug);
  if (b)
    watch_bottle(d, b, false);
}

static const struct br_watch_callbacks watch_callbacks = {
    .slug_dirty = on_slug_dirty,
    .paths_moved = on_paths_moved,
    .slug_appeared = on_slug_appeared,
    .slug_vanished = on_slug_vanished,
    .overflow = on_overflow,
    .watch_failed = on_watch_failed,
};

/* Slugs without complete watches are marked on a timer instead; the timer
 * runs only while there are such slugs. */
static void poll_bottle(struct br_tracked *b, void *ctx) {
  struct daemon *d = ctx;
  if (!b->polled)
    return;
  watch_bottle(d, b, false); /* maybe a watch fits now */
  br_queue_mark(&d->queue, b->slug, BR_MARK_RESYNC);
}

static void on_poll_timer(uv_timer_t *t) {
  struct daemon *d = t->data;
  br_tracked_foreach(&d->bottles, poll_bottle, d);
  if (!d->polled)
    uv_timer_stop(t);
}

static void poll_start(struct daemon *d) {
  if (!uv_is_active((uv_handle_t *)&d->poll_timer))
    uv_timer_start(&d->poll_timer, on_poll_timer, POLL_INTERVAL_MS, POLL_INTERVAL_MS);
}

/* Tracked bottles missing from a listing of the state root. */
struct gone {
  const struct br_strv *listed;
  struct br_strv slugs;
};

static void gone_from(struct br_tracked *b, void *ctx) {
  struct gone *g = ctx;
  if (!br_strv_contains(g->listed, b->slug))
    br_strv_add(&g->slugs, b->slug);
}

/* Overflow, a failed watch, the periodic timer, SIGHUP and `resync` all come
 * here: rescan the state root and mark every slug. mark is BR_MARK_RESYNC
 * when nothing is known to have changed (a retrying slug keeps its backoff),
 * BR_MARK_INPUT when something may have (a new config, lost Docker events,
 * an operator asking). */
static void resync_all(struct daemon *d, const char *why, enum br_mark mark) {
  if (d->draining)
    return;
  d->metrics.resyncs++;
  d->last_overflow_resync = uv_now(d->loop);
  br_log(BR_LOG_INFO, NULL, "resync: %s", why);
  br_watch_rearm(&d->watch);
  br_git_dirs_clear(&d->git_dirs);
  br_own_writes_clear(&d->own_writes); /* what a lost record left behind; a resync converges all anyway */
  struct br_strv slugs;
  struct br_buf warnings;
  br_strv_init(&slugs);
  br_buf_init(&warnings, 64 * 1024);
  int rc = br_slugs_list(d->config->cfg.state_dir, &slugs, &warnings);
  if (rc)
    br_log(BR_LOG_ERROR, NULL, "cannot list %s: %s", d->config->cfg.state_dir, strerror(-rc));
  /* During the batched first pass, a slug not yet added is still one READY
   * waits for. */
  bool first_pass = uv_is_active((uv_handle_t *)&d->first_pass_adder);
  for (size_t i = 0; i < slugs.n; i++)
    add_slug(d, slugs.v[i], first_pass);
  /* Slugs whose directory went away while events were lost. */
  struct gone gone = {.listed = &slugs};
  br_strv_init(&gone.slugs);
  if (!rc)
    br_tracked_foreach(&d->bottles, gone_from, &gone);
  for (size_t i = 0; i < gone.slugs.n; i++)
    on_slug_vanished(d, gone.slugs.v[i]);
  br_queue_mark_all(&d->queue, mark);
  br_strv_free(&gone.slugs);
  br_strv_free(&slugs);
  br_buf_free(&warnings);
  metrics_changed(d);
}

static void on_resync_timer(uv_timer_t *t) { resync_all(t->data, "periodic", BR_MARK_RESYNC); }

static void resync_timer_start(struct daemon *d) {
  unsigned s = d->config->cfg.resync_interval_s;
  if (s)
    uv_timer_start(&d->resync_timer, on_resync_timer, (uint64_t)s * 1000, (uint64_t)s * 1000);
  else
    uv_timer_stop(&d->resync_timer);
}

/* --- routes that expire -------------------------------------------------------- */

/* One timer for the earliest expiry over all bottles, none when nothing
 * expires: an idle daemon stays idle. */

static void on_expiry_timer(uv_timer_t *t);

static void expiry_arm(struct daemon *d, int64_t at) {
  d->expiry_at = d->draining ? 0 : at;
  if (!d->expiry_at) {
    uv_timer_stop(&d->expiry_timer);
    return;
  }
  /* From the wall clock, as expires is; a little after the moment, since
   * the loop's clock may run behind it. One that fires early finds nothing
   * expired and is armed again. */
  int64_t ms = at * 1000 - br_realtime_ns() / 1000000;
  uv_update_time(d->loop);
  uv_timer_start(&d->expiry_timer, on_expiry_timer, (uint64_t)(ms > 0 ? ms : 0) + EXPIRY_LATE_MS, 0);
}

/* A converge told when the bottle's next route expires. */
static void expiry_note(struct daemon *d, struct br_tracked *b, int64_t next) {
  int64_t old = b->next_expiry;
  b->next_expiry = next;
  if (next && (!d->expiry_at || next < d->expiry_at))
    expiry_arm(d, next);
  else if (old && old == d->expiry_at && next != old)
    expiry_arm(d, br_tracked_next_expiry(&d->bottles)); /* it was the earliest */
}

static void mark_expired(struct br_tracked *b, void *ctx) {
  struct daemon *d = ctx;
  if (!b->next_expiry || b->next_expiry * 1000 > br_realtime_ns() / 1000000)
    return;
  br_log(BR_LOG_INFO, b->slug, "a route expired; converging");
  b->next_expiry = 0; /* until its converge says when the next one is */
  br_queue_mark(&d->queue, b->slug, true);
}

static void on_expiry_timer(uv_timer_t *t) {
  struct daemon *d = t->data;
  br_tracked_foreach(&d->bottles, mark_expired, d);
  expiry_arm(d, br_tracked_next_expiry(&d->bottles));
}

/* --- Docker: a sidecar container that starts --------------------------------- */

/* The engine says container `name` started or was unpaused (NULL: events
 * were lost). Events are hints: find the slug whose container template gives
 * that name and mark it, so an owed reload is delivered and a recreated
 * container's mounts are checked. The driver's grace keeps a young sidecar
 * from being signalled too early. */
static void on_container_started(void *ctx, const char *name) {
  struct daemon *d = ctx;
  if (!name) {
    resync_all(d, "Docker events were lost", BR_MARK_INPUT); /* a container may have started */
    return;
  }
  /* One lookup, whatever the number of bottles: each record knows its
   * containers' names. */
  struct br_tracked *b = br_tracked_by_container(&d->bottles, name);
  if (!b)
    return;
  br_log(BR_LOG_DEBUG, b->slug, "container %s started", name);
  b->sidecar_absent = false;
  /* At once, backoff or not: a container that starts or unpauses is what
   * a retrying slug (paused, stopped mid-reload) is waiting for. */
  br_queue_mark(&d->queue, b->slug, BR_MARK_NOW);
}

/* Follows Docker's events exactly while some sidecar uses the docker driver. */
static void docker_events_sync(struct daemon *d) {
  bool wanted = br_docker_in_use(&d->config->cfg);
  if (wanted && !d->docker_events) {
    int rc = br_docker_events_start(&d->docker_events, d->loop, on_container_started, d);
    if (rc)
      br_log(BR_LOG_WARN, NULL, "cannot follow Docker events: %s", strerror(-rc));
  } else if (!wanted && d->docker_events) {
    br_docker_events_stop(d->docker_events);
    d->docker_events = NULL;
  }
}

/* --- converging on workers --------------------------------------------------- */

static void converge_work(uv_work_t *req) {
  struct job *job = req->data;
  const struct br_config *cfg = &job->config->cfg;
  double start = monotonic_s();
  /* The record afresh, on the worker: the files are the truth. */
  if ((job->rc = br_bottle_derive(&job->bottle, cfg, job->slug, &job->rep.warnings))) {
    job->rc = br_converge_derive_refused(&job->bottle, job->rc, &job->rep);
    return;
  }
  const struct br_strv *sources = &job->bottle.sources;
  for (size_t i = 0; i < sources->n && !job->git_lock_found; i++)
    job->git_lock_found =
        br_git_locked(&job->d->git_dirs, cfg->state_dir, sources->v[i], job->git_lock, sizeof job->git_lock);
  job->git_locked = job->git_lock_found && !job->git_lock_stale;
  if (job->git_locked)
    return;
  const struct br_converge_observer observer = {.replacing = br_own_writes_note, .ctx = &job->d->own_writes};
  job->rc = br_converge_bottle(&job->bottle, BR_CONVERGE_ASYNC, &observer, &job->rep);
  job->seconds = monotonic_s() - start;
  struct br_buf path;
  br_buf_init(&path, PATH_MAX);
  const struct br_path_rule rule = br_config_path_rule(cfg);
  if (!job->rc && json_array_size(job->rep.audit) && !br_config_expand(cfg, cfg->audit_log, NULL, NULL, &path)) {
    int rc = br_audit_append(path.data, &rule, job->rep.audit);
    if (rc)
      br_log(BR_LOG_WARN, job->slug, "audit log %s: %s", path.data, strerror(-rc));
  }
  br_buf_free(&path);
}

static void finish_drain(struct daemon *d);

static enum br_phase phase_of(const struct job *job) {
  if (job->rc)
    return BR_PHASE_RETRYING;
  switch (job->rep.outcome) {
  case BR_OUTCOME_CONVERGED:
  case BR_OUTCOME_CHANGES:
    return BR_PHASE_CONVERGED;
  case BR_OUTCOME_UNMANAGED:
    return BR_PHASE_UNMANAGED;
  case BR_OUTCOME_INVALID:
    return BR_PHASE_INVALID;
  case BR_OUTCOME_WAITING:
    return BR_PHASE_WAITING;
  case BR_OUTCOME_SETTLING:
    return BR_PHASE_PENDING; /* mid-converge: the queue runs it again after the settle time */
  case BR_OUTCOME_RETRY:
  case BR_OUTCOME_COUNT:
    break;
  }
  return BR_PHASE_RETRYING;
}

static void log_outcome(const struct job *job, const struct br_tracked *b, enum br_phase phase) {
  const struct br_slot *slot = b->slot;
  const struct br_converge_report *rep = &job->rep;
  const char *msg = br_buf_str(&rep->message);
  if (rep->warnings.len)
    br_log(BR_LOG_WARN, job->slug, "%s", rep->warnings.data);
  /* Say it when it changes; repeating the same state on every event is noise.
   * slot->phase is CONVERGING here; settled is the last converge's phase. */
  bool same = slot->message && strcmp(slot->message, msg) == 0 && slot->settled == phase;
  switch (phase) {
  case BR_PHASE_CONVERGED:
    if (rep->writes && slot->settled == BR_PHASE_CONVERGED && strcmp(slot->desired_hash, rep->desired_hash) == 0)
      /* The desired state did not change since the last converge, yet the live
       * files had to be written: someone edited them by hand. */
      br_log(BR_LOG_WARN, job->slug,
             "drift: live files no longer matched the unchanged desired state; "
             "reverted: %s\n%s",
             msg, br_buf_str(&rep->plan));
    else if (rep->writes || rep->reloads)
      br_log(BR_LOG_INFO, job->slug, "converged: %s\n%s", msg, br_buf_str(&rep->plan));
    else /* the first pass's "no changes" are counted in the READY line instead */
      br_log(same || b->first_pass ? BR_LOG_DEBUG : BR_LOG_INFO, job->slug, "converged: %s", msg);
    break;
  case BR_PHASE_INVALID:
    br_log(same ? BR_LOG_DEBUG : BR_LOG_ERROR, job->slug, "invalid, waiting for its inputs to change: %s",
           rep->errors.len ? rep->errors.data : msg);
    break;
  case BR_PHASE_WAITING:
    br_log(same ? BR_LOG_DEBUG : BR_LOG_WARN, job->slug, "%s", msg);
    break;
  case BR_PHASE_PENDING: /* settling between two steps of one converge */
    if (rep->writes || rep->reloads)
      br_log(BR_LOG_INFO, job->slug, "%s\n%s", msg, br_buf_str(&rep->plan));
    else
      br_log(BR_LOG_DEBUG, job->slug, "%s", msg);
    break;
  case BR_PHASE_RETRYING:
    br_log(BR_LOG_WARN, job->slug, "%s (attempt %u)", job->rc ? strerror(-job->rc) : msg, slot->attempts + 1);
    break;
  default:
    br_log(same ? BR_LOG_DEBUG : BR_LOG_INFO, job->slug, "%s", msg);
  }
}

static void job_free(struct job *job) {
  br_bottle_free(&job->bottle);
  br_converge_report_free(&job->rep);
  config_release(job->config);
  free(job);
}

/* A git checkout's index.lock held the converge back: wait and try again.
 * Past the deadline, the next dispatch tells the worker to converge anyway
 * (the worker cannot see the tracked table). */
static char *held_back(struct daemon *d, struct br_tracked *b, const struct job *job) {
  if (b && !b->git_held) {
    b->git_held = true;
    b->git_held_since = uv_now(d->loop);
  }
  char *message = NULL;
  if (asprintf(&message, "held back: a git operation holds %s", job->git_lock) < 0)
    message = NULL;
  return message;
}

/* What the daemon learns from a finished converge, besides its phase. */
static char *learn(struct daemon *d, struct br_tracked *b, struct job *job, enum br_phase phase) {
  if (!job->git_lock_found) {
    b->git_held = b->git_lock_stale = false;
  } else if (b->git_held && job->git_lock_stale && !b->git_lock_stale) {
    b->git_lock_stale = true; /* ignored from now on, until it is gone */
    br_log(BR_LOG_WARN, job->slug, "%s held for over %d ms; treated as stale, converged past it", job->git_lock,
           GIT_LOCK_DEADLINE_MS);
  }
  log_outcome(job, b, phase);
  /* A copy of its exact size, made here: the worker's buffer is larger and
   * lies in the worker's malloc arena, where 10,000 kept messages would pin
   * pages that malloc_trim could otherwise give back. */
  char *message = strdup(job->rc ? strerror(-job->rc) : br_buf_str(&job->rep.message));
  /* A write while a sidecar container was stopped is reported "not
   * running"; a later converge (a resync, another slug's shared event)
   * has nothing to do and would say just "no changes". Keep the note until
   * the container starts (on_container_started) or a converge reloads again. */
  if (!job->rc && job->rep.sidecar_not_running) {
    b->sidecar_absent = true;
  } else if (!job->rc && job->rep.reloads) {
    b->sidecar_absent = false;
  } else if (phase == BR_PHASE_CONVERGED && b->slot->message && b->sidecar_absent) {
    free(message);
    message = strdup(b->slot->message);
  }
  if (!job->rc && job->rep.desired_hash[0])
    memcpy(b->slot->desired_hash, job->rep.desired_hash, sizeof b->slot->desired_hash);
  if (!job->rc && job->rep.credentials) {
    free(b->credentials);
    b->credentials = json_dumps(job->rep.credentials, JSON_COMPACT);
    free(b->expiring);
    b->expiring = json_array_size(job->rep.expiring) ? json_dumps(job->rep.expiring, JSON_COMPACT) : NULL;
  }
  if (!job->rc)
    expiry_note(d, b, job->rep.next_expiry);
  return message;
}

/* A converge of a large input (up to limits.max_file_bytes per fragment,
 * parsed into trees several times its size) leaves freed memory in the
 * malloc arena of the worker thread that ran it, one arena per thread, and
 * glibc keeps it: after a burst of such inputs the daemon would sit on
 * workers x that peak for good. Once the converges have been quiet a while,
 * malloc_trim hands every arena's free pages back to the kernel. Only when
 * there is something to give back: an idle daemon's resyncs arm no timer. */
static void on_trim_timer(uv_timer_t *t) {
  struct daemon *d = t->data;
  if (br_queue_in_flight(&d->queue) == 0)
    malloc_trim(0);
}

static void trim_later(struct daemon *d) {
  if (br_queue_in_flight(&d->queue) == 0 && mallinfo2().fordblks > TRIM_FREE_BYTES)
    uv_timer_start(&d->trim_timer, on_trim_timer, TRIM_DELAY_MS, 0);
}

static void converge_done(uv_work_t *req, int status) {
  struct job *job = req->data;
  struct daemon *d = job->d;
  struct br_slot *slot = job->slot;
  /* NULL when the bottle went away meanwhile: its slot is freed by done. */
  struct br_tracked *b = slot->removed ? NULL : br_tracked_get(&d->bottles, job->slug);
  job_unlink(d, job);
  if (status == UV_ECANCELED) {
    /* Never started (draining): left for the next start. */
    br_queue_done(&d->queue, slot, BR_PHASE_PENDING, 0, slot->message ? strdup(slot->message) : NULL);
    job_free(job);
    if (d->draining && br_queue_in_flight(&d->queue) == 0)
      finish_drain(d);
    return;
  }
  enum br_phase phase = BR_PHASE_WAITING;
  unsigned retry_after = GIT_LOCK_RETRY_MS;
  char *message = NULL;
  if (job->git_locked) {
    message = held_back(d, b, job);
  } else {
    phase = phase_of(job);
    retry_after = job->rep.retry_after_ms;
    if (b)
      message = learn(d, b, job, phase);
    br_metrics_observe(&d->metrics, &job->rep, job->rc, job->seconds, br_realtime_ns() / 1000000);
  }
  bool first_pass = b && b->first_pass && !job->git_locked;
  if (first_pass)
    b->first_pass = false;
  br_queue_done(&d->queue, slot, phase, retry_after, message);
  if (b)
    br_waiters_converged(&d->waiters, slot, phase, br_buf_str(&job->rep.errors), job->dispatch_no);
  job_free(job);
  if (first_pass)
    first_pass_done(d);
  metrics_changed(d);
  trim_later(d);
  if (d->draining && br_queue_in_flight(&d->queue) == 0)
    finish_drain(d);
}

/* How many converges the queue hands out at once. The pool's threads were
 * counted at start; a config reload that asks for fewer workers gets no
 * jobs queued ahead, or the idle threads would run them. */
static unsigned in_flight_cap(const struct daemon *d, unsigned workers) {
  return workers < d->pool_threads ? workers : workers * JOBS_PER_WORKER;
}

static void dispatch(struct br_queue *q, struct br_slot *slot) {
  struct daemon *d = q->ctx;
  struct job *job = calloc(1, sizeof *job);
  if (!job) {
    br_queue_done(q, slot, BR_PHASE_RETRYING, 0, NULL);
    return;
  }
  job->d = d;
  job->slot = slot;
  job->config = config_acquire(d->config);
  job->dispatch_no = ++d->dispatches;
  snprintf(job->slug, sizeof job->slug, "%s", slot->slug);
  const struct br_tracked *b = br_tracked_get(&d->bottles, slot->slug);
  job->git_lock_stale =
      b && b->git_held && (b->git_lock_stale || uv_now(d->loop) - b->git_held_since > GIT_LOCK_DEADLINE_MS);
  br_converge_report_init(&job->rep);
  job->req.data = job;
  int rc = uv_queue_work(d->loop, &job->req, converge_work, converge_done);
  if (!rc) {
    job->next = d->jobs;
    if (d->jobs)
      d->jobs->prev = job;
    d->jobs = job;
  } else {
    job_free(job);
    br_queue_done(q, slot, BR_PHASE_RETRYING, 0, NULL);
  }
}

/* --- status and resync over the control socket ------------------------------ */

static const struct br_slot *slot_of(void *ctx, const char *slug) {
  const struct br_tracked *b = br_tracked_get(&((struct daemon *)ctx)->bottles, slug);
  return b ? b->slot : NULL;
}

/* "wait SLUG HASH MS": answered by the converge that runs HASH (or finds the
 * bottle invalid), or after MS. One already converged to HASH is live now. */
static json_t *control_wait(struct daemon *d, struct br_control_conn *conn, const char *args) {
  char slug[BR_SLUG_MAX + 1], hash[65];
  unsigned ms;
  if (sscanf(args, "%128s %64s %u", slug, hash, &ms) != 3)
    return json_pack("{s:s}", "error", "expected: wait SLUG DESIRED_HASH TIMEOUT_MS");
  struct br_tracked *b = br_tracked_get(&d->bottles, slug);
  if (!b)
    return json_pack("{s:o}", "error", json_sprintf("no slug %s is known to the daemon", slug));
  const struct br_slot *s = b->slot;
  if (s->phase == BR_PHASE_CONVERGED && !s->dirty && strcmp(s->desired_hash, hash) == 0)
    return json_pack("{s:s, s:s, s:s, s:s}", "outcome", "live", "slug", slug, "phase", "converged", "desired_hash",
                     hash);
  if (br_waiters_add(&d->waiters, conn, slug, hash, ms, d->dispatches))
    return json_pack("{s:s}", "error", "out of memory");
  /* At once rather than after the debounce: someone is waiting. */
  br_queue_mark(&d->queue, slug, BR_MARK_NOW);
  return NULL;
}

static void handle_control(void *ctx, struct br_control_conn *conn, const char *request, struct br_buf *response) {
  struct daemon *d = ctx;
  char verb[16] = "", slug[BR_SLUG_MAX + 2] = "";
  const char *space = strchr(request, ' ');
  size_t vlen = space ? (size_t)(space - request) : strlen(request);
  if (vlen < sizeof verb)
    memcpy(verb, request, vlen);
  if (space)
    snprintf(slug, sizeof slug, "%s", space + 1);
  json_t *answer;
  if (strcmp(verb, "wait") == 0) {
    if (!(answer = control_wait(d, conn, space ? space + 1 : "")))
      return; /* deferred */
  } else if (slug[0] && !br_tracked_get(&d->bottles, slug)) {
    answer = json_pack("{s:o}", "error", json_sprintf("no slug %s is known to the daemon", slug));
  } else if (strcmp(verb, "status") == 0) {
    answer = br_status_answer(&d->bottles, &d->queue, slug[0] ? slug : NULL, d->ready);
  } else if (strcmp(verb, "resync") == 0) {
    if (slug[0])
      br_queue_mark(&d->queue, slug, BR_MARK_NOW);
    else
      resync_all(d, "requested over the control socket", BR_MARK_INPUT);
    answer = json_pack("{s:b}", "ok", 1);
  } else {
    answer = json_pack("{s:s}", "error", "unknown request, expected status, resync or wait");
  }
  char *text = answer ? json_dumps(answer, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
  if (text)
    br_buf_printf(response, "%s\n", text);
  free(text);
  json_decref(answer);
}

/* --- signals and shutdown --------------------------------------------------- */

static void close_handle(uv_handle_t *h) {
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

static void finish_drain(struct daemon *d) {
  if (!d->draining)
    return;
  uv_timer_stop(&d->drain_timer);
  write_metrics(d);
  uv_stop(d->loop);
}

static void on_drain_deadline(uv_timer_t *t) {
  struct daemon *d = t->data;
  br_log(BR_LOG_ERROR, NULL,
         "%u converge(s) still running after %d ms; exiting anyway (their temp files are "
         "removed and owed reloads delivered on the next start)",
         br_queue_in_flight(&d->queue), DRAIN_DEADLINE_MS);
  /* Not through the loop's shutdown: that would wait for the converges
   * still running, and their slots are freed on the way. */
  _exit(1);
}

static void start_drain(struct daemon *d, const char *why) {
  if (d->draining)
    return;
  d->draining = true;
  atomic_store(&d->stop_cleanup, true);
  br_waiters_drop(&d->waiters, NULL, "the daemon is stopping");
  br_log(BR_LOG_INFO, NULL, "%s: finishing %u converge(s) in flight, then exiting", why,
         br_queue_in_flight(&d->queue));
  br_notify_state("STOPPING=1");
  br_queue_pause(&d->queue);
  uv_timer_stop(&d->resync_timer);
  uv_timer_stop(&d->poll_timer);
  uv_timer_stop(&d->overflow_timer);
  uv_timer_stop(&d->trim_timer);
  expiry_arm(d, 0);
  uv_timer_start(&d->drain_timer, on_drain_deadline, DRAIN_DEADLINE_MS, 0);
  /* Converges queued ahead that no worker has started are not waited for:
   * their callbacks come back with UV_ECANCELED. */
  for (struct job *job = d->jobs; job; job = job->next)
    uv_cancel((uv_req_t *)&job->req);
  if (br_queue_in_flight(&d->queue) == 0)
    finish_drain(d);
}

static void on_sigterm(uv_signal_t *s, int signum) {
  (void)signum;
  start_drain(s->data, "SIGTERM");
}

static void on_sigint(uv_signal_t *s, int signum) {
  (void)signum;
  struct daemon *d = s->data;
  if (++d->sigints > 1) {
    br_log(BR_LOG_WARN, NULL, "second SIGINT: exiting now");
    _exit(130); /* live files are only ever renamed into place: nothing is half-written */
  }
  start_drain(d, "SIGINT");
}

static void rederive_each(struct br_tracked *b, void *ctx) { rederive(ctx, b); }

static void on_sighup(uv_signal_t *s, int signum) {
  (void)signum;
  struct daemon *d = s->data;
  struct config_ref *fresh = calloc(1, sizeof *fresh);
  struct br_buf err;
  br_buf_init(&err, 64 * 1024);
  if (!fresh)
    return;
  int rc = br_config_load(&fresh->cfg, d->config_path, &err);
  if (!rc && d->state_dir_override) {
    free(fresh->cfg.state_dir);
    fresh->cfg.state_dir = strdup(d->config->cfg.state_dir); /* --state-dir still wins */
  } else if (!rc) {
    br_config_resolve_state_dir(&fresh->cfg, &err); /* as at start; one gone is a change */
  }
  if (!rc && strcmp(fresh->cfg.state_dir, d->config->cfg.state_dir) != 0) {
    br_buf_printf(&err, "state_dir changed from %s to %s; a running daemon cannot move: restart it\n",
                  d->config->cfg.state_dir, fresh->cfg.state_dir);
    br_config_free(&fresh->cfg);
    rc = -EINVAL;
  }
  if (rc) {
    br_log(BR_LOG_ERROR, NULL, "SIGHUP: config not reloaded, keeping the running one: %s",
           err.data ? err.data : strerror(-rc));
    free(fresh);
    br_buf_free(&err);
    return;
  }
  br_buf_free(&err);
  fresh->refs = 1;
  config_release(d->config);
  d->config = fresh;
  const struct br_config *cfg = &fresh->cfg;
  br_queue_configure(&d->queue, cfg->debounce_ms, cfg->max_wait_ms, cfg->backoff_initial_ms, cfg->backoff_max_ms,
                     in_flight_cap(d, cfg->workers));
  resync_timer_start(d);
  docker_events_sync(d);
  metrics_cleanup(cfg);
  br_log(BR_LOG_INFO, NULL, "SIGHUP: config reloaded%s%s", d->config_path ? " from " : "",
         d->config_path ? d->config_path : "");
  /* Sources, live files and containers may have moved: derive every record
   * again and watch anew, then converge all. */
  br_tracked_foreach(&d->bottles, rederive_each, d);
  resync_all(d, "config reloaded", BR_MARK_INPUT); /* the new config may be the fix */
}

static void on_watchdog(uv_timer_t *t) {
  (void)t;
  br_notify("WATCHDOG=1");
}

/* --- run ---------------------------------------------------------------------- */

static void walk_close(uv_handle_t *h, void *arg) {
  (void)arg;
  close_handle(h);
}

int br_daemon_run(struct br_config *cfg, const char *config_path, const char *state_dir_override) {
  struct daemon *d = calloc(1, sizeof *d);
  struct config_ref *ref = calloc(1, sizeof *ref);
  if (!d || !ref) {
    free(d);
    free(ref);
    return 1;
  }
  ref->cfg = *cfg; /* taken over: the caller's copy must not be freed */
  memset(cfg, 0, sizeof *cfg);
  ref->refs = 1;
  d->config = ref;
  d->config_path = config_path;
  d->state_dir_override = state_dir_override;
  br_tracked_table_init(&d->bottles);
  br_git_dirs_init(&d->git_dirs);
  br_own_writes_init(&d->own_writes);

  /* The thread pool size is read once, at its first use. */
  char workers[16];
  snprintf(workers, sizeof workers, "%u", ref->cfg.workers);
  setenv("UV_THREADPOOL_SIZE", workers, 0);
  long threads = strtol(getenv("UV_THREADPOOL_SIZE"), NULL, 10); /* libuv clamps it likewise */
  d->pool_threads = threads < 1 ? 1 : threads > 1024 ? 1024 : (unsigned)threads;
  d->loop = uv_default_loop();
  br_waiters_init(&d->waiters, d->loop, slot_of, d);
  srand((unsigned)time(NULL) ^ (unsigned)getpid());

  const struct br_config *c = &ref->cfg;
  br_queue_init(&d->queue, d->loop, dispatch, d);
  br_queue_configure(&d->queue, c->debounce_ms, c->max_wait_ms, c->backoff_initial_ms, c->backoff_max_ms,
                     in_flight_cap(d, c->workers));
  uv_timer_t *timers[] = {&d->resync_timer, &d->poll_timer,     &d->overflow_timer, &d->metrics_timer,
                          &d->drain_timer,  &d->watchdog_timer, &d->expiry_timer,   &d->trim_timer};
  for (size_t i = 0; i < sizeof timers / sizeof *timers; i++) {
    uv_timer_init(d->loop, timers[i]);
    timers[i]->data = d;
  }
  uv_idle_init(d->loop, &d->first_pass_adder);
  d->first_pass_adder.data = d;
  br_strv_init(&d->first_pass);
  uv_signal_t *signals[] = {&d->sigterm, &d->sigint, &d->sighup};
  uv_signal_cb handlers[] = {on_sigterm, on_sigint, on_sighup};
  int signums[] = {SIGTERM, SIGINT, SIGHUP};
  for (size_t i = 0; i < 3; i++) {
    uv_signal_init(d->loop, signals[i]);
    signals[i]->data = d;
    uv_signal_start(signals[i], handlers[i], signums[i]);
  }
  signal(SIGPIPE, SIG_IGN); /* a status client that hangs up must not kill the daemon */

  int rc = br_watch_init(&d->watch, d->loop, c->state_dir, &watch_callbacks, d);
  if (rc) {
    br_log(BR_LOG_ERROR, NULL, "cannot watch %s: %s", c->state_dir, uv_strerror(rc));
    d->exit_code = 1;
    goto out;
  }
  d->watching = true;
  char sock[PATH_MAX];
  snprintf(sock, sizeof sock, "%s/%s/control.sock", c->state_dir, BR_RECORDS_DIR);
  rc = br_control_start(&d->control, d->loop, sock, handle_control, d);
  if (rc)
    br_log(BR_LOG_WARN, NULL, "control socket %s: %s; status and resync will not answer", sock, uv_strerror(rc));
  docker_events_sync(d);

  uint64_t watchdog_usec = 0;
  if (br_notify_watchdog_usec(&watchdog_usec) > 0 && watchdog_usec)
    uv_timer_start(&d->watchdog_timer, on_watchdog, watchdog_usec / 2000, watchdog_usec / 2000);

  /* First pass: every slug, added a batch per loop turn, converged without
   * debounce. READY=1 once each was added and tried (ready_if_done). */
  struct br_strv slugs;
  struct br_buf warnings;
  br_strv_init(&slugs);
  br_buf_init(&warnings, 64 * 1024);
  rc = br_slugs_list(c->state_dir, &slugs, &warnings);
  if (warnings.len)
    br_log(BR_LOG_WARN, NULL, "%s", warnings.data);
  if (rc) {
    br_log(BR_LOG_ERROR, NULL, "cannot list %s: %s", c->state_dir, strerror(-rc));
    d->exit_code = 1;
    br_strv_free(&slugs);
    br_buf_free(&warnings);
    goto out;
  }
  br_log(BR_LOG_INFO, NULL, "watching %s: %zu slug(s), %u worker(s)", c->state_dir, slugs.n, c->workers);
  d->first_pass = slugs; /* taken over */
  br_buf_free(&warnings);
  uv_idle_start(&d->first_pass_adder, on_first_pass_adder);
  resync_timer_start(d);
  metrics_cleanup(c);
  metrics_changed(d);

  uv_run(d->loop, UV_RUN_DEFAULT);
  br_log(BR_LOG_INFO, NULL, "stopped");

out:
  br_waiters_drop(&d->waiters, NULL, "the daemon stopped");
  /* Close every handle and let libuv run their close callbacks. */
  if (d->watching)
    br_watch_close(&d->watch, NULL);
  br_docker_events_stop(d->docker_events); /* joins its thread; freed by the loop below */
  br_queue_close(&d->queue, NULL);
  uv_walk(d->loop, walk_close, NULL);
  uv_run(d->loop, UV_RUN_DEFAULT);
  uv_loop_close(d->loop);
  br_tracked_table_free(&d->bottles);
  br_strv_free(&d->first_pass);
  br_git_dirs_free(&d->git_dirs);
  br_own_writes_free(&d->own_writes);
  int code = d->exit_code;
  config_release(d->config);
  free(d);
  return code;
}
