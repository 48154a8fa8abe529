/* tracked: the daemon's table of bottles (see tracked.h). */
#include "reconciler/daemon/tracked.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

void br_tracked_table_init(struct br_tracked_table *t) {
  br_strmap_init(&t->by_slug);
  br_strmap_init(&t->by_container);
}

static void containers_forget(struct br_tracked_table *t, struct br_tracked *b) {
  for (int s = 0; s < BR_SIDECAR_COUNT; s++) {
    if (b->containers[s] && br_strmap_get(&t->by_container, b->containers[s]) == b)
      br_strmap_del(&t->by_container, b->containers[s]);
    free(b->containers[s]);
    b->containers[s] = NULL;
  }
}

static void pidfiles_forget(struct br_tracked *b) {
  for (int s = 0; s < BR_SIDECAR_COUNT; s++) {
    free(b->pidfiles[s]);
    b->pidfiles[s] = NULL;
  }
}

static void tracked_free(struct br_tracked_table *t, struct br_tracked *b) {
  containers_forget(t, b);
  pidfiles_forget(b);
  free(b->credentials);
  free(b->expiring);
  br_bottle_free(&b->record);
  free(b);
}

void br_tracked_table_free(struct br_tracked_table *t) {
  for (size_t i = 0; i < t->by_slug.cap; i++)
    if (t->by_slug.slots[i].key)
      tracked_free(t, t->by_slug.slots[i].value);
  br_strmap_free(&t->by_slug);
  br_strmap_free(&t->by_container);
}

struct br_tracked *br_tracked_get(const struct br_tracked_table *t, const char *slug) {
  return br_strmap_get(&t->by_slug, slug);
}

struct br_tracked *br_tracked_by_container(const struct br_tracked_table *t, const char *name) {
  return br_strmap_get(&t->by_container, name);
}

/* The container names of the sidecars reloaded through Docker. Only then
 * is metadata.json read here (the name template names {project}); two
 * bottles naming one container keep the first. */
static int containers_learn(struct br_tracked_table *t, struct br_tracked *b, struct br_buf *warnings) {
  const struct br_config *cfg = b->record.cfg;
  struct br_buf name;
  br_buf_init(&name, 512);
  int rc = 0;
  for (int s = 0; s < BR_SIDECAR_COUNT && !rc; s++) {
    const struct br_reload_config *rl = &br_config_sidecar(cfg, (enum br_sidecar)s)->reload;
    if (rl->driver != BR_DRIVER_DOCKER || !rl->container)
      continue;
    if (br_bottle_expand(&b->record, (enum br_sidecar)s, rl->container, NULL, &name, warnings))
      continue; /* a project that cannot name a container: the driver says so at the reload */
    if (!(b->containers[s] = strdup(name.data)))
      rc = -ENOMEM;
    else if (!br_strmap_get(&t->by_container, name.data))
      rc = br_strmap_put(&t->by_container, name.data, b);
  }
  br_buf_free(&name);
  return rc;
}

/* The pidfiles of the sidecars reloaded by signal. A template that cannot
 * name this bottle is left out: the driver reports it at the reload. */
static int pidfiles_learn(struct br_tracked *b, struct br_buf *warnings) {
  const struct br_config *cfg = b->record.cfg;
  struct br_buf path;
  br_buf_init(&path, PATH_MAX);
  int rc = 0;
  for (int s = 0; s < BR_SIDECAR_COUNT && !rc; s++) {
    const struct br_reload_config *rl = &br_config_sidecar(cfg, (enum br_sidecar)s)->reload;
    if (rl->driver != BR_DRIVER_SIGNAL || !rl->pidfile)
      continue;
    if (br_bottle_expand(&b->record, (enum br_sidecar)s, rl->pidfile, NULL, &path, warnings))
      continue;
    if (!(b->pidfiles[s] = strdup(path.data)))
      rc = -ENOMEM;
  }
  br_buf_free(&path);
  return rc;
}

struct br_tracked *br_tracked_add(struct br_tracked_table *t, const struct br_config *cfg, const char *slug,
                                  struct br_buf *warnings) {
  struct br_tracked *b = calloc(1, sizeof *b);
  if (!b)
    return NULL;
  if (br_bottle_derive(&b->record, cfg, slug, warnings) || br_strmap_put(&t->by_slug, slug, b)) {
    br_bottle_free(&b->record);
    free(b);
    return NULL;
  }
  containers_learn(t, b, warnings);
  pidfiles_learn(b, warnings);
  return b;
}

int br_tracked_rederive(struct br_tracked_table *t, struct br_tracked *b, const struct br_config *cfg,
                        struct br_buf *warnings) {
  struct br_bottle fresh;
  int rc = br_bottle_derive(&fresh, cfg, b->record.slug, warnings);
  if (rc) {
    br_bottle_free(&fresh);
    return rc;
  }
  containers_forget(t, b);
  pidfiles_forget(b);
  br_bottle_free(&b->record);
  b->record = fresh;
  rc = containers_learn(t, b, warnings);
  int prc = pidfiles_learn(b, warnings);
  return rc ? rc : prc;
}

void br_tracked_remove(struct br_tracked_table *t, const char *slug) {
  struct br_tracked *b = br_strmap_del(&t->by_slug, slug);
  if (b)
    tracked_free(t, b);
}

void br_tracked_foreach(const struct br_tracked_table *t, void (*fn)(struct br_tracked *b, void *ctx), void *ctx) {
  for (size_t i = 0; i < t->by_slug.cap; i++)
    if (t->by_slug.slots[i].key)
      fn(t->by_slug.slots[i].value, ctx);
}

size_t br_tracked_count(const struct br_tracked_table *t) { return t->by_slug.n; }

int64_t br_tracked_next_expiry(const struct br_tracked_table *t) {
  int64_t next = 0;
  for (size_t i = 0; i < t->by_slug.cap; i++) {
    const struct br_tracked *b = t->by_slug.slots[i].value;
    if (t->by_slug.slots[i].key && b->next_expiry && (!next || b->next_expiry < next))
      next = b->next_expiry;
  }
  return next;
}
