/* daemon: `bottle-reconciler run`: one libuv loop that turns inotify hints,
 * timers and signals into converges on worker threads. It decides when a
 * slug converges, never how: that is br_converge_slug, unchanged. */
#include "reconciler/daemon/daemon.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "common/fileio.h"
#include "common/log.h"
#include "common/notify.h"
#include "reconciler/bottle/audit.h"
#include "reconciler/bottle/converge.h"
#include "reconciler/bottle/records.h"
#include "reconciler/bottle/slug.h"
#include "reconciler/daemon/control.h"
#include "reconciler/daemon/metrics.h"
#include "reconciler/daemon/queue.h"
#include "reconciler/daemon/watch.h"
#include "reconciler/drivers/docker_container.h"
#include "reconciler/drivers/docker_events.h"

#define DRAIN_DEADLINE_MS 30000  /* in-flight converges get this long after SIGTERM */
#define OVERFLOW_MIN_GAP_MS 1000 /* at most one overflow resync a second */
#define POLL_INTERVAL_MS 2000    /* slugs inotify cannot watch are looked at this often */
#define METRICS_MIN_GAP_MS 1000  /* the textfile is rewritten at most once a second */
/* Converges handed to the thread pool per worker thread. One each would
 * leave a worker that finishes idle until the loop thread gets round to
 * handing it the next slug (at start-up it is busy adding watches); a few
 * queued ahead keep it busy, while the queue still decides the order. */
#define JOBS_PER_WORKER 4
#define GIT_LOCK_RETRY_MS 50       /* while a git checkout holds its index.lock */
#define GIT_LOCK_DEADLINE_MS 10000 /* a lock older than this is treated as stale */
#define OWN_WRITES_MAX 65536       /* notes of own renames: one per live file; a bound against surprises */

/* A config shared by the loop and the converges that started under it; a
 * SIGHUP swaps in a new one while old converges finish with theirs. Only the
 * loop thread touches refs. */
struct config_ref {
  struct br_config cfg;
  unsigned refs;
};

/* The live files converges renamed into place, so that the inotify record
 * of the daemon's own rename wakes no second converge. Workers note (just
 * before the rename), the loop thread takes the note out on the next record
 * for that path, whatever it says: one note per live file at most. */
struct own_writes {
  uv_mutex_t lock;
  struct br_strmap files; /* live file path -> struct own_write */
};

struct own_write {
  dev_t dev;
  ino_t ino;
  struct timespec mtime;
  off_t size;
};

/* Directories known to hold no .git; workers share it. */
struct git_dirs {
  uv_mutex_t lock;
  struct br_strmap none; /* path -> itself (any non-NULL): no .git there */
};

struct daemon {
  uv_loop_t *loop;
  struct config_ref *config;
  const char *config_path;
  const char *state_dir_override;
  struct br_queue queue;
  struct br_watch watch;
  struct br_control control;
  struct br_docker_events *docker_events; /* while a sidecar uses the docker driver */
  struct br_strmap sidecar_absent;        /* slug -> d: its last write found a sidecar container stopped */
  uv_signal_t sigterm, sigint, sighup;
  uv_timer_t resync_timer, poll_timer, overflow_timer, metrics_timer, drain_timer, watchdog_timer;
  struct br_metrics metrics;
  struct br_strmap held_since; /* slug -> struct git_hold: a git lock holds (or held) it back */
  struct git_dirs git_dirs;
  struct own_writes own_writes;
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

/* A slug that a git checkout's index.lock holds back. */
struct git_hold {
  uint64_t since_ms; /* loop time a converge first met the lock */
  bool stale;        /* outlived GIT_LOCK_DEADLINE_MS: converged past it (and said so) */
};

struct job {
  uv_work_t req;
  struct job *prev, *next; /* in daemon.jobs */
  struct daemon *d;
  struct br_slot *slot;
  struct config_ref *config;
  char slug[BR_SLUG_MAX + 1];
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

static double monotonic_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* --- status for systemd and the metrics file -------------------------------- */

static void notify_status(struct daemon *d) {
  const unsigned *c = d->queue.counts;
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
  if (br_file_write_atomic(w->path, w->text.data, w->text.len, &(struct br_write_opts){.new_mode = 0644}, &err))
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
  struct br_buf path;
  br_buf_init(&path, PATH_MAX);
  br_buf_init(&w->text, 1024 * 1024);
  if (!w || br_config_expand(cfg, cfg->metrics_file, NULL, NULL, &path)) {
    br_buf_free(&path);
    free(w);
    return;
  }
  w->path = br_buf_steal(&path);
  br_metrics_render(&d->metrics, &d->queue, d->watching ? br_watch_count(&d->watch) : 0, &w->text);
  w->req.data = w;
  uv_queue_work(d->loop, &w->req, metrics_write_work, metrics_write_done);
}

static void on_metrics_timer(uv_timer_t *t) { write_metrics(t->data); }

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

/* Works out what a slug reads (sources, live files) and watches all of it. */
static void watch_slug(struct daemon *d, const char *slug) {
  const struct br_config *cfg = &d->config->cfg;
  struct br_buf project, path, warnings, slug_dir;
  struct br_strv sources, live_files;
  br_buf_init(&project, 256);
  br_buf_init(&path, PATH_MAX);
  br_buf_init(&warnings, 4096);
  br_buf_init(&slug_dir, PATH_MAX);
  br_strv_init(&sources);
  br_strv_init(&live_files);
  if (br_config_paths_use_project(cfg))
    br_slug_project(cfg->state_dir, slug, &project, &warnings);
  for (size_t i = 0; i < cfg->sources.n; i++) {
    br_buf_reset(&path);
    if (!br_config_expand(cfg, cfg->sources.v[i], slug, project.data, &path))
      br_strv_add(&sources, path.data);
  }
  const struct br_sidecar_config *sidecars[] = {&cfg->pipelock, &cfg->egress};
  for (size_t i = 0; i < 2; i++) {
    br_buf_reset(&path);
    if (!br_config_expand_sidecar(cfg, sidecars[i], sidecars[i]->file, slug, project.data, NULL, &path))
      br_strv_add(&live_files, path.data);
  }
  br_buf_printf(&slug_dir, "%s/%s", cfg->state_dir, slug);
  struct br_watch_spec spec = {
      .slug = slug, .slug_dir = slug_dir.data, .sources = &sources, .live_files = &live_files};
  if (br_watch_slug(&d->watch, &spec))
    br_log(BR_LOG_WARN, slug, "cannot watch; it is polled every %d ms instead", POLL_INTERVAL_MS);
  struct br_slot *slot = br_queue_slot(&d->queue, slug, false);
  if (slot && slot->polled && br_watch_complete(&d->watch, slug)) {
    slot->polled = false;
    d->polled--;
  }
  br_buf_free(&project);
  br_buf_free(&path);
  br_buf_free(&warnings);
  br_buf_free(&slug_dir);
  br_strv_free(&sources);
  br_strv_free(&live_files);
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

static void cleanup_work(uv_work_t *req) {
  struct cleanup *c = req->data;
  for (size_t i = 0; i < c->slugs.n && !atomic_load(&c->d->stop_cleanup); i++)
    br_converge_cleanup(&c->config->cfg, c->slugs.v[i]);
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
  const struct br_strmap *slots = &d->queue.slots;
  for (size_t i = 0; i < slots->cap; i++)
    if (slots->slots[i].key && br_strv_add(&c->slugs, slots->slots[i].key)) {
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
    const unsigned *c = d->queue.counts;
    br_log(BR_LOG_INFO, NULL,
           "ready: first pass over %zu slug(s) done: %u converged, %u invalid, %u retrying, %u waiting, "
           "%u unmanaged, %u pending",
           d->queue.slots.n, c[BR_PHASE_CONVERGED], c[BR_PHASE_INVALID], c[BR_PHASE_RETRYING], c[BR_PHASE_WAITING],
           c[BR_PHASE_UNMANAGED], c[BR_PHASE_PENDING] + c[BR_PHASE_CONVERGING]);
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
  struct br_slot *slot = br_queue_slot(&d->queue, slug, false);
  if (slot)
    return;
  if (!first_pass)
    br_converge_cleanup(&d->config->cfg, slug); /* the first pass's are cleaned after READY */
  if (!(slot = br_queue_slot(&d->queue, slug, true)))
    return;
  if (first_pass)
    d->first_pass_left++;
  slot->first_pass = first_pass;
  watch_slug(d, slug);
  br_queue_mark(&d->queue, slug, first_pass);
}

/* A converge is about to rename a new file into place at path (on its
 * worker). The path is the configured one; a record names the path as
 * watched (its directory resolved): where a symlink makes them differ, the
 * record is not recognised and wakes one converge more, which finds nothing
 * to do. That, never a missed change, is also the price of a full table. */
static void own_write_add(void *ctx, const char *path, const struct stat *staged) {
  struct own_writes *o = ctx;
  const struct own_write now = {
      .dev = staged->st_dev, .ino = staged->st_ino, .mtime = staged->st_mtim, .size = staged->st_size};
  uv_mutex_lock(&o->lock);
  struct own_write *w = br_strmap_get(&o->files, path);
  if (w) {
    *w = now;
  } else if (o->files.n < OWN_WRITES_MAX && (w = malloc(sizeof *w))) {
    *w = now;
    if (br_strmap_put(&o->files, path, w))
      free(w);
  }
  uv_mutex_unlock(&o->lock);
}

/* Whether the record for live_file is the one of our own rename: the note
 * for that path (taken out either way: a later record is someone else's)
 * matches the file now there by inode, mtime to the nanosecond and size.
 * An edit after our rename changes one of them and has a record of its own;
 * a file that cannot be stat'ed is never ours. */
static bool own_write_taken(struct own_writes *o, const char *live_file) {
  if (!live_file)
    return false;
  uv_mutex_lock(&o->lock);
  struct own_write *w = br_strmap_del(&o->files, live_file);
  uv_mutex_unlock(&o->lock);
  if (!w)
    return false;
  struct stat st;
  bool ours = lstat(live_file, &st) == 0 && S_ISREG(st.st_mode) && st.st_dev == w->dev && st.st_ino == w->ino &&
              st.st_size == w->size && st.st_mtim.tv_sec == w->mtime.tv_sec &&
              st.st_mtim.tv_nsec == w->mtime.tv_nsec;
  free(w);
  return ours;
}

static void own_writes_clear(struct own_writes *o) {
  uv_mutex_lock(&o->lock);
  for (size_t i = 0; i < o->files.cap; i++)
    if (o->files.slots[i].key)
      free(o->files.slots[i].value);
  br_strmap_free(&o->files);
  br_strmap_init(&o->files);
  uv_mutex_unlock(&o->lock);
}

static void on_slug_dirty(void *ctx, const char *slug, const char *why, const char *live_file) {
  struct daemon *d = ctx;
  /* The record of our own rename: the converge that wrote it already knows
   * what it wrote. Anything else is a hint to converge. */
  if (own_write_taken(&d->own_writes, live_file)) {
    br_log(BR_LOG_DEBUG, slug, "%s (our own write)", why);
    return;
  }
  br_log(BR_LOG_DEBUG, slug, "%s", why);
  /* A source path may have moved (symlink swap, metadata.json): re-watch. */
  if (strstr(why, "metadata.json"))
    watch_slug(d, slug);
  if (br_queue_slot(&d->queue, slug, false))
    br_queue_mark(&d->queue, slug, false);
  metrics_changed(d);
}

static void on_slug_appeared(void *ctx, const char *slug) {
  struct daemon *d = ctx;
  if (!br_slug_valid(slug)) {
    br_log(BR_LOG_WARN, NULL, "state directory entry \"%.40s\" ignored: not a valid slug", slug);
    return;
  }
  if (br_queue_slot(&d->queue, slug, false))
    return;
  br_log(BR_LOG_INFO, slug, "bottle appeared");
  add_slug(d, slug, false);
  metrics_changed(d);
}

static void on_slug_vanished(void *ctx, const char *slug) {
  struct daemon *d = ctx;
  struct br_slot *slot = br_queue_slot(&d->queue, slug, false);
  if (!slot)
    return;
  struct stat st;
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/%s", d->config->cfg.state_dir, slug);
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
    return; /* replaced by a new directory of the same name: still here */
  br_log(BR_LOG_INFO, slug, "bottle removed; forgetting it");
  if (slot->polled)
    d->polled--;
  /* One that is converging is counted when its converge ends; one that was
   * waiting (held back by a git lock) may be the last the first pass waits for. */
  if (slot->first_pass && slot->phase != BR_PHASE_CONVERGING)
    first_pass_done(d);
  br_watch_forget(&d->watch, slug);
  br_queue_remove(&d->queue, slug);
  free(br_strmap_del(&d->held_since, slug));
  br_strmap_del(&d->sidecar_absent, slug);
  br_records_forget(d->config->cfg.state_dir, slug);
  metrics_changed(d);
}

static void resync_all(struct daemon *d, const char *why);
static void git_dirs_clear(struct git_dirs *g);

static void on_overflow_timer(uv_timer_t *t) { resync_all(t->data, "inotify queue overflow"); }

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
  } else if (err != -ENOSPC && err != -ENOMEM) {
    br_log(BR_LOG_WARN, slug, "cannot watch %s: %s; polling it every %d ms", path, strerror(-err),
           POLL_INTERVAL_MS);
  }
  struct br_slot *slot = br_queue_slot(&d->queue, slug, false);
  if (slot && !slot->polled) {
    slot->polled = true;
    d->polled++;
  }
  poll_start(d);
}

static const struct br_watch_callbacks watch_callbacks = {
    .slug_dirty = on_slug_dirty,
    .slug_appeared = on_slug_appeared,
    .slug_vanished = on_slug_vanished,
    .overflow = on_overflow,
    .watch_failed = on_watch_failed,
};

/* Slugs without complete watches are marked on a timer instead; the timer
 * runs only while there are such slugs. */
static void on_poll_timer(uv_timer_t *t) {
  struct daemon *d = t->data;
  struct br_queue *q = &d->queue;
  for (size_t i = 0; i < q->slots.cap; i++) {
    struct br_slot *slot = q->slots.slots[i].key ? q->slots.slots[i].value : NULL;
    if (!slot || !slot->polled)
      continue;
    watch_slug(d, slot->slug); /* maybe a watch fits now */
    br_queue_mark(q, slot->slug, false);
  }
  if (!d->polled)
    uv_timer_stop(t);
}

static void poll_start(struct daemon *d) {
  if (!uv_is_active((uv_handle_t *)&d->poll_timer))
    uv_timer_start(&d->poll_timer, on_poll_timer, POLL_INTERVAL_MS, POLL_INTERVAL_MS);
}

/* Overflow, a failed watch, the periodic timer, SIGHUP and `resync` all come
 * here: rescan the state root and mark every slug. */
static void resync_all(struct daemon *d, const char *why) {
  if (d->draining)
    return;
  d->metrics.resyncs++;
  d->last_overflow_resync = uv_now(d->loop);
  br_log(BR_LOG_INFO, NULL, "resync: %s", why);
  br_watch_rearm(&d->watch);
  git_dirs_clear(&d->git_dirs);
  own_writes_clear(&d->own_writes); /* what a lost record left behind; a resync converges all anyway */
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
  struct br_strv gone;
  br_strv_init(&gone);
  struct br_queue *q = &d->queue;
  for (size_t i = 0; !rc && i < q->slots.cap; i++)
    if (q->slots.slots[i].key && !br_strv_contains(&slugs, q->slots.slots[i].key))
      br_strv_add(&gone, q->slots.slots[i].key);
  for (size_t i = 0; i < gone.n; i++)
    on_slug_vanished(d, gone.v[i]);
  br_queue_mark_all(q, false);
  br_strv_free(&gone);
  br_strv_free(&slugs);
  br_buf_free(&warnings);
  metrics_changed(d);
}

static void on_resync_timer(uv_timer_t *t) { resync_all(t->data, "periodic"); }

static void resync_timer_start(struct daemon *d) {
  unsigned s = d->config->cfg.resync_interval_s;
  if (s)
    uv_timer_start(&d->resync_timer, on_resync_timer, (uint64_t)s * 1000, (uint64_t)s * 1000);
  else
    uv_timer_stop(&d->resync_timer);
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
    resync_all(d, "Docker events were lost");
    return;
  }
  struct br_queue *q = &d->queue;
  struct br_buf project, warnings;
  br_buf_init(&project, 256);
  br_buf_init(&warnings, 4096);
  for (size_t i = 0; i < q->slots.cap; i++) {
    const char *slug = q->slots.slots[i].key;
    if (!slug || br_slug_project(d->config->cfg.state_dir, slug, &project, &warnings))
      continue;
    if (br_docker_sidecar_named(&d->config->cfg, slug, project.data, name)) {
      br_log(BR_LOG_DEBUG, slug, "container %s started", name);
      br_strmap_del(&d->sidecar_absent, slug);
      /* At once, backoff or not: a container that starts or unpauses is what
       * a retrying slug (paused, stopped mid-reload) is waiting for. */
      br_queue_mark(q, slug, true);
    }
  }
  br_buf_free(&project);
  br_buf_free(&warnings);
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

/* Forgets which directories hold no checkout: on every resync, so that a
 * checkout made above the sources later is found within a resync period. */
static void git_dirs_clear(struct git_dirs *g) {
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
static bool git_locked(struct git_dirs *g, const char *state_dir, const char *dir, char *lock, size_t size) {
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

static void converge_work(uv_work_t *req) {
  struct job *job = req->data;
  const struct br_config *cfg = &job->config->cfg;
  double start = monotonic_s();
  struct br_buf project, dir, warnings;
  br_buf_init(&project, 256);
  br_buf_init(&dir, PATH_MAX);
  br_buf_init(&warnings, 4096);
  if (br_config_paths_use_project(cfg))
    br_slug_project(cfg->state_dir, job->slug, &project, &warnings);
  for (size_t i = 0; i < cfg->sources.n && !job->git_lock_found; i++) {
    br_buf_reset(&dir);
    if (!br_config_expand(cfg, cfg->sources.v[i], job->slug, project.data, &dir))
      job->git_lock_found =
          git_locked(&job->d->git_dirs, cfg->state_dir, dir.data, job->git_lock, sizeof job->git_lock);
  }
  job->git_locked = job->git_lock_found && !job->git_lock_stale;
  br_buf_free(&project);
  br_buf_free(&dir);
  br_buf_free(&warnings);
  if (job->git_locked)
    return;
  const struct br_converge_observer observer = {.replacing = own_write_add, .ctx = &job->d->own_writes};
  job->rc = br_converge_slug(cfg, job->slug, BR_CONVERGE_ASYNC, &observer, &job->rep);
  job->seconds = monotonic_s() - start;
  struct br_buf path;
  br_buf_init(&path, PATH_MAX);
  if (!job->rc && json_array_size(job->rep.audit) && !br_config_expand(cfg, cfg->audit_log, NULL, NULL, &path)) {
    int rc = br_audit_append(path.data, job->rep.audit);
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

static void log_outcome(const struct job *job, const struct br_slot *slot, enum br_phase phase) {
  const struct br_converge_report *rep = &job->rep;
  const char *msg = rep->message.data ? rep->message.data : "";
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
             msg, rep->plan.data ? rep->plan.data : "");
    else if (rep->writes || rep->reloads)
      br_log(BR_LOG_INFO, job->slug, "converged: %s\n%s", msg, rep->plan.data ? rep->plan.data : "");
    else /* the first pass's "no changes" are counted in the READY line instead */
      br_log(same || slot->first_pass ? BR_LOG_DEBUG : BR_LOG_INFO, job->slug, "converged: %s", msg);
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
      br_log(BR_LOG_INFO, job->slug, "%s\n%s", msg, rep->plan.data ? rep->plan.data : "");
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

static void converge_done(uv_work_t *req, int status) {
  struct job *job = req->data;
  struct daemon *d = job->d;
  struct br_slot *slot = job->slot;
  job_unlink(d, job);
  if (status == UV_ECANCELED) {
    /* Never started (draining): left for the next start. */
    br_queue_done(&d->queue, slot, BR_PHASE_PENDING, 0, slot->message ? strdup(slot->message) : NULL);
    br_converge_report_free(&job->rep);
    config_release(job->config);
    free(job);
    if (d->draining && d->queue.in_flight == 0)
      finish_drain(d);
    return;
  }
  enum br_phase phase;
  unsigned retry_after = 0;
  char *message;
  if (job->git_locked) {
    /* Past the deadline, the next dispatch tells the worker to converge
     * anyway (the worker cannot see this map). */
    struct git_hold *hold = br_strmap_get(&d->held_since, job->slug);
    if (!hold && (hold = calloc(1, sizeof *hold))) {
      hold->since_ms = uv_now(d->loop);
      br_strmap_put(&d->held_since, job->slug, hold);
    }
    phase = BR_PHASE_WAITING;
    retry_after = GIT_LOCK_RETRY_MS;
    message = NULL;
    if (asprintf(&message, "held back: a git operation holds %s", job->git_lock) < 0)
      message = NULL;
  } else {
    struct git_hold *hold = br_strmap_get(&d->held_since, job->slug);
    if (!job->git_lock_found) {
      free(br_strmap_del(&d->held_since, job->slug));
    } else if (hold && job->git_lock_stale && !hold->stale) {
      hold->stale = true; /* ignored from now on, until it is gone */
      br_log(BR_LOG_WARN, job->slug, "%s held for over %d ms; treated as stale, converged past it", job->git_lock,
             GIT_LOCK_DEADLINE_MS);
    }
    phase = phase_of(job);
    retry_after = job->rep.retry_after_ms;
    if (!slot->removed)
      log_outcome(job, slot, phase);
    br_metrics_observe(&d->metrics, &job->rep, job->rc, job->seconds);
    message = job->rc ? strdup(strerror(-job->rc)) : br_buf_steal(&job->rep.message);
    /* A write while a sidecar container was stopped is reported "not
     * running"; a later converge (a resync, another slug's shared event)
     * has nothing to do and would say just "no changes". Keep the note until
     * the container starts (on_container_started) or a converge reloads again. */
    if (!job->rc && job->rep.sidecar_not_running) {
      br_strmap_put(&d->sidecar_absent, job->slug, d);
    } else if (!job->rc && job->rep.reloads) {
      br_strmap_del(&d->sidecar_absent, job->slug);
    } else if (phase == BR_PHASE_CONVERGED && slot->message && br_strmap_get(&d->sidecar_absent, job->slug)) {
      free(message);
      message = strdup(slot->message);
    }
    if (!job->rc && job->rep.desired_hash[0])
      memcpy(slot->desired_hash, job->rep.desired_hash, sizeof slot->desired_hash);
  }
  bool first_pass = slot->first_pass && !job->git_locked;
  if (first_pass)
    slot->first_pass = false;
  br_queue_done(&d->queue, slot, phase, retry_after, message);
  br_converge_report_free(&job->rep);
  config_release(job->config);
  free(job);
  if (first_pass)
    first_pass_done(d);
  metrics_changed(d);
  if (d->draining && d->queue.in_flight == 0)
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
  snprintf(job->slug, sizeof job->slug, "%s", slot->slug);
  const struct git_hold *hold = br_strmap_get(&d->held_since, slot->slug);
  job->git_lock_stale = hold && (hold->stale || uv_now(d->loop) - hold->since_ms > GIT_LOCK_DEADLINE_MS);
  br_converge_report_init(&job->rep);
  job->req.data = job;
  int rc = uv_queue_work(d->loop, &job->req, converge_work, converge_done);
  if (!rc) {
    job->next = d->jobs;
    if (d->jobs)
      d->jobs->prev = job;
    d->jobs = job;
  } else {
    br_converge_report_free(&job->rep);
    config_release(job->config);
    free(job);
    br_queue_done(q, slot, BR_PHASE_RETRYING, 0, NULL);
  }
}

/* --- status and resync over the control socket ------------------------------ */

static void iso_time(int64_t ms, char *out, size_t size) {
  time_t s = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&s, &tm);
  size_t n = strftime(out, size, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + n, size - n, ".%03dZ", (int)(ms % 1000));
}

static json_t *slot_json(const struct br_slot *s) {
  char last[40] = "", next[40] = "";
  if (s->last_converge_ms)
    iso_time(s->last_converge_ms, last, sizeof last);
  if (s->phase == BR_PHASE_RETRYING && s->next_try_ms)
    iso_time(s->next_try_ms, next, sizeof next);
  return json_pack("{s:s, s:s, s:i, s:s?, s:s?, s:s?, s:s?}", "slug", s->slug, "phase", br_phase_name(s->phase),
                   "attempts", (json_int_t)s->attempts, "next_try", next[0] ? next : NULL, "last_converge",
                   last[0] ? last : NULL, "desired_hash", s->desired_hash[0] ? s->desired_hash : NULL, "message",
                   s->message);
}

static int cmp_slug(const void *a, const void *b) {
  return strcmp((*(struct br_slot *const *)a)->slug, (*(struct br_slot *const *)b)->slug);
}

static void handle_control(void *ctx, const char *request, struct br_buf *response) {
  struct daemon *d = ctx;
  struct br_queue *q = &d->queue;
  char verb[16] = "", slug[BR_SLUG_MAX + 2] = "";
  const char *space = strchr(request, ' ');
  size_t vlen = space ? (size_t)(space - request) : strlen(request);
  if (vlen < sizeof verb)
    memcpy(verb, request, vlen);
  if (space)
    snprintf(slug, sizeof slug, "%s", space + 1);
  json_t *answer = json_object();
  if (slug[0] && !br_queue_slot(q, slug, false)) {
    json_object_set_new(answer, "error", json_sprintf("no slug %s is known to the daemon", slug));
  } else if (strcmp(verb, "status") == 0) {
    json_t *list = json_array();
    struct br_slot **all = calloc(q->slots.n + 1, sizeof *all);
    size_t n = 0;
    for (size_t i = 0; all && i < q->slots.cap; i++)
      if (q->slots.slots[i].key && (!slug[0] || strcmp(q->slots.slots[i].key, slug) == 0))
        all[n++] = q->slots.slots[i].value;
    if (all)
      qsort(all, n, sizeof *all, cmp_slug);
    for (size_t i = 0; i < n; i++)
      json_array_append_new(list, slot_json(all[i]));
    free(all);
    json_t *counts = json_object();
    for (int i = 0; i < BR_PHASE_COUNT; i++)
      json_object_set_new(counts, br_phase_name((enum br_phase)i), json_integer(q->counts[i]));
    json_object_set_new(answer, "ready", json_boolean(d->ready));
    json_object_set_new(answer, "counts", counts);
    json_object_set_new(answer, "slugs", list);
  } else if (strcmp(verb, "resync") == 0) {
    if (slug[0])
      br_queue_mark(q, slug, true);
    else
      resync_all(d, "requested over the control socket");
    json_object_set_new(answer, "ok", json_true());
  } else {
    json_object_set_new(answer, "error", json_string("unknown request, expected status or resync"));
  }
  char *text = json_dumps(answer, JSON_COMPACT | JSON_PRESERVE_ORDER);
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
         d->queue.in_flight, DRAIN_DEADLINE_MS);
  /* Not through the loop's shutdown: that would wait for the converges
   * still running, and their slots are freed on the way. */
  _exit(1);
}

static void start_drain(struct daemon *d, const char *why) {
  if (d->draining)
    return;
  d->draining = true;
  atomic_store(&d->stop_cleanup, true);
  br_log(BR_LOG_INFO, NULL, "%s: finishing %u converge(s) in flight, then exiting", why, d->queue.in_flight);
  br_notify_state("STOPPING=1");
  br_queue_pause(&d->queue);
  uv_timer_stop(&d->resync_timer);
  uv_timer_stop(&d->poll_timer);
  uv_timer_stop(&d->overflow_timer);
  uv_timer_start(&d->drain_timer, on_drain_deadline, DRAIN_DEADLINE_MS, 0);
  /* Converges queued ahead that no worker has started are not waited for:
   * their callbacks come back with UV_ECANCELED. */
  for (struct job *job = d->jobs; job; job = job->next)
    uv_cancel((uv_req_t *)&job->req);
  if (d->queue.in_flight == 0)
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
  br_log(BR_LOG_INFO, NULL, "SIGHUP: config reloaded%s%s", d->config_path ? " from " : "",
         d->config_path ? d->config_path : "");
  /* Sources and live files may have moved: watch them anew, then converge all. */
  struct br_queue *q = &d->queue;
  for (size_t i = 0; i < q->slots.cap; i++)
    if (q->slots.slots[i].key)
      watch_slug(d, q->slots.slots[i].key);
  resync_all(d, "config reloaded");
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
  br_strmap_init(&d->held_since);
  br_strmap_init(&d->sidecar_absent);
  br_strmap_init(&d->git_dirs.none);
  uv_mutex_init(&d->git_dirs.lock);
  br_strmap_init(&d->own_writes.files);
  uv_mutex_init(&d->own_writes.lock);

  /* The thread pool size is read once, at its first use. */
  char workers[16];
  snprintf(workers, sizeof workers, "%u", ref->cfg.workers);
  setenv("UV_THREADPOOL_SIZE", workers, 0);
  long threads = strtol(getenv("UV_THREADPOOL_SIZE"), NULL, 10); /* libuv clamps it likewise */
  d->pool_threads = threads < 1 ? 1 : threads > 1024 ? 1024 : (unsigned)threads;
  d->loop = uv_default_loop();
  srand((unsigned)time(NULL) ^ (unsigned)getpid());

  const struct br_config *c = &ref->cfg;
  br_queue_init(&d->queue, d->loop, dispatch, d);
  br_queue_configure(&d->queue, c->debounce_ms, c->max_wait_ms, c->backoff_initial_ms, c->backoff_max_ms,
                     in_flight_cap(d, c->workers));
  uv_timer_t *timers[] = {&d->resync_timer,  &d->poll_timer,  &d->overflow_timer,
                          &d->metrics_timer, &d->drain_timer, &d->watchdog_timer};
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
  metrics_changed(d);

  uv_run(d->loop, UV_RUN_DEFAULT);
  br_log(BR_LOG_INFO, NULL, "stopped");

out:
  /* Close every handle and let libuv run their close callbacks. */
  if (d->watching)
    br_watch_close(&d->watch, NULL);
  br_docker_events_stop(d->docker_events); /* joins its thread; freed by the loop below */
  br_queue_close(&d->queue, NULL);
  uv_walk(d->loop, walk_close, NULL);
  uv_run(d->loop, UV_RUN_DEFAULT);
  uv_loop_close(d->loop);
  for (size_t i = 0; i < d->held_since.cap; i++)
    if (d->held_since.slots[i].key)
      free(d->held_since.slots[i].value);
  br_strmap_free(&d->held_since);
  br_strmap_free(&d->sidecar_absent);
  br_strv_free(&d->first_pass);
  br_strmap_free(&d->git_dirs.none);
  uv_mutex_destroy(&d->git_dirs.lock);
  own_writes_clear(&d->own_writes);
  br_strmap_free(&d->own_writes.files);
  uv_mutex_destroy(&d->own_writes.lock);
  int code = d->exit_code;
  config_release(d->config);
  free(d);
  return code;
}

/* --- the client side: status and resync --------------------------------------- */

int br_daemon_client(const struct br_config *cfg, const char *command, const char *slug, bool json) {
  char sock[PATH_MAX], request[BR_SLUG_MAX + 32];
  snprintf(sock, sizeof sock, "%s/%s/control.sock", cfg->state_dir, BR_RECORDS_DIR);
  snprintf(request, sizeof request, "%s%s%s", command, slug ? " " : "", slug ? slug : "");
  struct br_buf response;
  br_buf_init(&response, 64 * 1024 * 1024);
  int rc = br_control_request(sock, request, &response);
  if (rc) {
    fprintf(stderr, "bottle-reconciler: %s: %s (is `bottle-reconciler run` running on %s?)\n", sock, strerror(-rc),
            cfg->state_dir);
    br_buf_free(&response);
    return 1;
  }
  json_error_t jerr;
  json_t *answer = json_loadb(response.data, response.len, 0, &jerr);
  int code = 0;
  if (!answer) {
    fprintf(stderr, "bottle-reconciler: unreadable answer from the daemon: %s\n", jerr.text);
    code = 1;
  } else if (json_object_get(answer, "error")) {
    fprintf(stderr, "bottle-reconciler: %s\n", json_string_value(json_object_get(answer, "error")));
    code = 1;
  } else if (json || strcmp(command, "status") != 0) {
    if (json)
      fputs(response.data, stdout);
    else
      printf("resync requested%s%s\n", slug ? " for " : "", slug ? slug : "");
  } else {
    json_t *slugs = json_object_get(answer, "slugs"), *s;
    size_t i;
    printf("%-24s %-11s %-8s %-24s %s\n", "SLUG", "PHASE", "ATTEMPTS", "LAST CONVERGE", "DETAIL");
    json_array_foreach(slugs, i, s) {
      const char *next = json_string_value(json_object_get(s, "next_try"));
      const char *msg = json_string_value(json_object_get(s, "message"));
      const char *last = json_string_value(json_object_get(s, "last_converge"));
      printf("%-24s %-11s %-8lld %-24s %s%s%s%s\n", json_string_value(json_object_get(s, "slug")),
             json_string_value(json_object_get(s, "phase")),
             (long long)json_integer_value(json_object_get(s, "attempts")), last ? last : "-",
             next ? "next try " : "", next ? next : "", next && msg ? ": " : "", msg ? msg : "");
    }
  }
  json_decref(answer);
  br_buf_free(&response);
  return code;
}
