/* watch: the daemon's kernel inotify watcher. It turns inotify records into
 * "this slug may have changed" hints; it must not read fragments, converge,
 * debounce or know the daemon's config. */
#ifndef BR_RECONCILER_WATCH_H
#define BR_RECONCILER_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "common/strmap.h"
#include "common/strv.h"

/* What changed for a slug, as the watcher knows it from the watch that saw it. */
enum br_watch_reason {
  BR_WATCH_INPUT,    /* a fragment, a source directory, or a directory or symlink on a
                        source's path: the desired state may differ */
  BR_WATCH_METADATA, /* STATE/<slug>/metadata.json: the bottle's record (its compose
                        project, and so paths and containers) may differ */
  BR_WATCH_DRIFT,    /* a live file was replaced or written (by anyone, this daemon too) */
  BR_WATCH_SIDECAR,  /* a sidecar's pidfile was written or moved in: the sidecar (re)started */
};

/* What the watcher tells its owner. Every callback runs on the loop thread,
 * from the poll callback (watch_failed also from br_watch_slug()). Callbacks
 * may call any br_watch_* function, br_watch_close() included; strings
 * passed in are only valid for the duration of the call. Any callback may be
 * NULL. */
struct br_watch_callbacks {
  /* Something this slug reads changed: reason says which kind of thing. why
   * is for debug logs only, never for decisions ("s1/routes.d/a.yaml moved
   * in", relative to the state root when under it). Called at most once per
   * inotify record per slug; a temp file written and renamed into place is
   * one record, a file written in place one (its close-write). The
   * daemon's own rename of a live file into place reports drift too.
   * live_file: for drift, the live file's path as watched (its directory
   * resolved), so the caller can tell its own renames from others'; NULL
   * otherwise. */
  void (*slug_dirty)(void *ctx, const char *slug, enum br_watch_reason reason, const char *why,
                     const char *live_file);
  /* A directory or symlink on one of the slug's paths changed (created,
   * removed, renamed, a link swapped): its watches must be resolved again.
   * The watcher keeps no paths (the owner can always derive them, and
   * 10,000 slugs' paths cost about 3 MB), so the owner answers with
   * br_watch_slug() for the slug. Unanswered (NULL, or no such call), the
   * slug's watches may be wrong from then on: it stops being complete and
   * watch_failed fires with -ESTALE. slug_dirty for the same record
   * follows. */
  void (*paths_moved)(void *ctx, const char *slug);
  /* A directory (or a symlink to one) appeared in the state root. The name
   * is not validated: the caller decides whether it is a slug, then calls
   * br_watch_slug(). Dot names are never reported. */
  void (*slug_appeared)(void *ctx, const char *slug);
  /* A name disappeared from the state root (deleted or moved away). A
   * deleted entry can no longer be stat'ed, so this fires for any non-dot
   * name: the caller ignores names it does not know. */
  void (*slug_vanished)(void *ctx, const char *slug);
  /* Events were lost (IN_Q_OVERFLOW), or the state root itself was moved or
   * deleted: the caller must resync every slug. May fire in storms; the
   * caller rate-limits. */
  void (*overflow)(void *ctx);
  /* The kernel refused a watch this slug needs (err is -ENOSPC or -ENOMEM
   * when fs.inotify.max_user_watches or kernel memory ran out, or another
   * -errno such as -EACCES), or paths_moved went unanswered (-ESTALE; path
   * is the directory whose record asked). Fires when the slug goes from fully watched to
   * not, not for every refused watch: the caller logs once and polls the
   * slug until br_watch_complete() says otherwise. */
  void (*watch_failed)(void *ctx, const char *slug, const char *path, int err);
};

/* What to watch for one slug. All paths absolute; none need exist yet; any
 * of them may go through symlinks. The watcher keeps none of them. */
struct br_watch_spec {
  const char *slug;
  const char *slug_dir;             /* STATE/SLUG: metadata.json and the first component of
                                       every path below that lives under it (routes.d, egress) */
  const struct br_strv *sources;    /* source directories (merge order is not needed here) */
  const struct br_strv *live_files; /* live files: their directory is watched, events are
                                       filtered by basename; a change is drift */
  const struct br_strv *pidfiles;   /* sidecars' pidfiles (may be NULL): watched likewise; one
                                       written or moved in is BR_WATCH_SIDECAR */
};

struct br_watch_wd;
struct br_watch_slugrec;
struct br_watch_work;
struct br_watch_name;

/* One inotify instance for the daemon. Lives in memory the caller owns,
 * which must stay valid until on_closed runs. All fields are private. */
struct br_watch {
  uv_poll_t poll; /* on fd; freed by libuv, then the close callback frees the rest */
  uv_loop_t *loop;
  int fd;          /* inotify_init1(IN_NONBLOCK | IN_CLOEXEC) */
  char *state_dir; /* realpath of the state root */
  struct br_watch_wd *root;
  const struct br_watch_callbacks *cb;
  void *ctx;

  struct br_watch_wd **wds; /* hash: wd -> entry, chained */
  size_t wds_cap, wds_len;
  struct br_watch_slugrec **slugs; /* hash: slug name -> record, chained */
  size_t slugs_cap, slugs_len;

  struct br_strmap names;        /* interned names events must carry -> their index */
  struct br_watch_name *names_v; /* index -> name and its uses (0 unused) */
  uint32_t names_n, names_cap;   /* slots in use or freed; allocated */
  uint32_t names_free;           /* first free slot, 0 when none */
  struct br_watch_work *work;    /* per-record scratch list, reused */
  uint32_t work_cap, work_len;
  uint64_t generation;                /* numbers inotify records, to mark each slug once per record */
  unsigned dispatching;               /* > 0 while callbacks run from the poll callback */
  struct br_watch_slugrec *graveyard; /* forgotten during dispatch, freed after it */
  bool closing;
  void (*on_closed)(struct br_watch *w);
};

/* Creates the inotify instance, watches state_dir for directories appearing
 * and disappearing, and starts polling on loop. Returns 0 or -errno; on
 * error nothing is left to close. */
int br_watch_init(struct br_watch *w, uv_loop_t *loop, const char *state_dir, const struct br_watch_callbacks *cb,
                  void *ctx);

/* Adds a slug's watches, or replaces them when the slug is already known
 * (call again when its paths change, and from paths_moved). Every path is
 * resolved one component at a time: each symlink on the way has the
 * directory holding it watched for that name (an atomic swap calls
 * paths_moved, whose answer moves the source's watch), and a missing component has its nearest existing
 * ancestor watched for its creation (never the state root itself:
 * slug_appeared covers that). Returns 0 or -EINVAL (a relative path, an
 * empty slug) or -ENOMEM; watches the kernel refuses are reported through
 * watch_failed and do not make this fail. */
int br_watch_slug(struct br_watch *w, const struct br_watch_spec *spec);

/* Drops a slug's watches; unknown slugs are ignored. No callback names the
 * slug afterwards. */
void br_watch_forget(struct br_watch *w, const char *slug);

/* True when every watch the slug needs is in place (false for an unknown
 * slug): a caller polling a slug after watch_failed stops when this turns
 * true after a br_watch_slug(). */
bool br_watch_complete(const struct br_watch *w, const char *slug);

/* Re-adds the state root's watch if the root was moved or deleted and has
 * come back. Returns 0, or -errno while the root is still missing. The
 * caller's resync path calls it; cheap when the root is watched. */
int br_watch_rearm(struct br_watch *w);

/* inotify watches in use (kernel watch descriptors), for metrics. */
size_t br_watch_count(const struct br_watch *w);

/* Stops watching: closes the poll handle, then (from libuv's close
 * callback) the inotify fd and every table, then calls on_closed (may be
 * NULL), after which the caller may free w. Safe from inside a callback. */
void br_watch_close(struct br_watch *w, void (*on_closed)(struct br_watch *w));

#endif
