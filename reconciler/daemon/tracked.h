/* tracked: the bottles the daemon tracks, and in one place what it knows of
 * each. A bottle's state is:
 *   - its record (bottle.h: sources, live files, project), derived when the
 *     daemon needs the paths it names: to watch them (br_tracked_record),
 *     again whenever they move. Kept by no one (10,000 kept records cost
 *     about 3 MB); what is kept is what a lookup needs:
 *     the container names of its sidecars, learnt when the bottle is added,
 *     when its metadata.json changes and on a config reload;
 *   - its scheduling (queue.h, struct br_slot): phase, attempts, backoff,
 *     the last outcome and desired hash;
 *   - the flags below, which only the daemon's loop uses;
 *   - its inotify watches, private to watch.c.
 * Loop thread only. Workers converge from a record of their own. */
#ifndef BR_RECONCILER_DAEMON_TRACKED_H
#define BR_RECONCILER_DAEMON_TRACKED_H

#include <stdbool.h>
#include <stdint.h>

#include "common/strmap.h"
#include "reconciler/bottle/bottle.h"
#include "reconciler/daemon/queue.h"

struct br_tracked {
  struct br_slot *slot;    /* owned by the queue; valid while the bottle is tracked */
  bool first_pass;         /* not tried once since the daemon started */
  bool polled;             /* inotify could not watch it all: the poll timer marks it */
  bool sidecar_absent;     /* its last write found a sidecar container stopped */
  bool git_held;           /* a git checkout's index.lock holds (or held) it back */
  bool git_lock_stale;     /* that lock outlived the deadline: converged past it (and said so) */
  uint64_t git_held_since; /* loop time a converge first met the lock */
  /* The names of its sidecars' containers (docker driver), for the engine's
   * events; NULL for a sidecar with another driver. */
  char *containers[BR_SIDECAR_COUNT];
  /* From its last converge that loaded the desired state (the report's),
   * for status: token_env -> [hosts], and the routes still to end, as
   * compact JSON text that status parses when asked (a few dozen bytes a
   * bottle, where the parsed trees took about 500); owned, NULL until then
   * (expiring: also while nothing expires). */
  char *credentials, *expiring;
  int64_t next_expiry; /* its earliest expires to come (seconds since the epoch), 0 = none */
  char slug[];         /* valid (br_slug_valid) */
};

/* Every tracked bottle, by slug and by sidecar container name. */
struct br_tracked_table {
  struct br_strmap by_slug;      /* slug (borrowed: b->slug itself) -> struct br_tracked* (owned) */
  struct br_strmap by_container; /* container name (a copy) -> struct br_tracked* (by_slug's) */
};

void br_tracked_table_init(struct br_tracked_table *t);
/* Frees every entry (their slots are the queue's). */
void br_tracked_table_free(struct br_tracked_table *t);
struct br_tracked *br_tracked_get(const struct br_tracked_table *t, const char *slug);
/* The bottle one of whose sidecars runs in container name, or NULL. */
struct br_tracked *br_tracked_by_container(const struct br_tracked_table *t, const char *name);
/* Starts tracking slug, its container names learnt under cfg (metadata
 * warnings in warnings). Returns NULL when out of memory or the slug is not
 * valid. */
struct br_tracked *br_tracked_add(struct br_tracked_table *t, const struct br_config *cfg, const char *slug,
                                  struct br_buf *warnings);
/* Learns its container names again (its metadata.json or the config
 * changed). Returns 0 or -errno. */
int br_tracked_rederive(struct br_tracked_table *t, struct br_tracked *b, const struct br_config *cfg,
                        struct br_buf *warnings);
/* The bottle's record under cfg, and in pidfiles (empty, owned by the
 * caller) the pidfiles of its sidecars reloaded by signal: watched, so that
 * a sidecar that starts (and writes a new one) converges a bottle retrying
 * for it at once. A template that cannot name the bottle is left out: the
 * driver reports it at the reload. Returns 0 or -errno; free out with
 * br_bottle_free() in either case. */
int br_tracked_record(const struct br_tracked *b, const struct br_config *cfg, struct br_bottle *out,
                      struct br_strv *pidfiles, struct br_buf *warnings);
/* Stops tracking slug and frees its entry. */
void br_tracked_remove(struct br_tracked_table *t, const char *slug);
/* Calls fn for each tracked bottle, in no order; fn must not add or remove. */
void br_tracked_foreach(const struct br_tracked_table *t, void (*fn)(struct br_tracked *b, void *ctx), void *ctx);
size_t br_tracked_count(const struct br_tracked_table *t);
/* The earliest next_expiry of all bottles, 0 when none has one. */
int64_t br_tracked_next_expiry(const struct br_tracked_table *t);

#endif
