/* tracked: the daemon's table of bottles (see tracked.h). */
#include "reconciler/daemon/tracked.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "reconciler/bottle/slug.h"

void br_tracked_table_init(struct br_tracked_table *t) {
  br_strmap_init_borrowed(&t->by_slug); /* the key is the entry's slug: no second copy a bottle */
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

static void tracked_free(struct br_tracked_table *t, struct br_tracked *b) {
  containers_forget(t, b);
  free(b->credentials);
  free(b->expiring);
  free(b);
}

void br_tracked_table_free(struct br_tracked_table *t) {
  for (size_t i = 0; i < t->by_slug.cap; i++)
    if (t->by_slug.slots[i].key)
      tracked_free(t, t->by_slug.slots[i].value);
  br_strmap_free(&t->by_slug); /* reads none of the borrowed keys just freed */
  br_strmap_free(&t->by_container);
}

struct br_tracked *br_tracked_get(const struct br_tracked_table *t, const char *slug) {
  return br_strmap_get(&t->by_slug, slug);
}

struct br_tracked *br_tracked_by_container(const struct br_tracked_table *t, const char *name) {
  return br_strmap_get(&t->by_container, name);
}

static bool uses_docker(const struct br_config *cfg) {
  for (int s = 0; s < BR_SIDECAR_COUNT; s++) {
    const struct br_reload_config *rl = &br_config_sidecar(cfg, (enum br_sidecar)s)->reload;
    if (rl->driver == BR_DRIVER_DOCKER && rl->container)
      return true;
  }
  return false;
}

/* The container names of the sidecars reloaded through Docker. Only then
 * is metadata.json read here (the name template names {project}); two
 * bottles naming one container keep the first. */
static int containers_learn(struct br_tracked_table *t, struct br_tracked *b, const struct br_config *cfg,
                            struct br_buf *warnings) {
  if (!uses_docker(cfg))
    return 0;
  struct br_bottle r;
  int rc = br_bottle_derive(&r, cfg, b->slug, warnings);
  struct br_buf name;
  br_buf_init(&name, 512);
  for (int s = 0; s < BR_SIDECAR_COUNT && !rc; s++) {
    const struct br_reload_config *rl = &br_config_sidecar(cfg, (enum br_sidecar)s)->reload;
    if (rl->driver != BR_DRIVER_DOCKER || !rl->container)
      continue;
    if (br_bottle_expand(&r, (enum br_sidecar)s, rl->container, NULL, &name, warnings))
      continue; /* a project that cannot name a container: the driver says so at the reload */
    if (!(b->containers[s] = strdup(name.data)))
      rc = -ENOMEM;
    else if (!br_strmap_get(&t->by_container, name.data))
      rc = br_strmap_put(&t->by_container, name.data, b);
  }
  br_buf_free(&name);
  br_bottle_free(&r);
  return rc;
}

int br_tracked_record(const struct br_tracked *b, const struct br_config *cfg, struct br_bottle *out,
                      struct br_strv *pidfiles, struct br_buf *warnings) {
  int rc = br_bottle_derive(out, cfg, b->slug, warnings);
  struct br_buf path;
  br_buf_init(&path, PATH_MAX);
  for (int s = 0; s < BR_SIDECAR_COUNT && !rc; s++) {
    const struct br_reload_config *rl = &br_config_sidecar(cfg, (enum br_sidecar)s)->reload;
    if (rl->driver == BR_DRIVER_SIGNAL && rl->pidfile &&
        !br_bottle_expand(out, (enum br_sidecar)s, rl->pidfile, NULL, &path, warnings))
      rc = br_strv_add(pidfiles, path.data);
  }
  br_buf_free(&path);
  return rc;
}

struct br_tracked *br_tracked_add(struct br_tracked_table *t, const struct br_config *cfg, const char *slug,
                                  struct br_buf *warnings) {
  if (!br_slug_valid(slug))
    return NULL;
  size_t len = strlen(slug) + 1;
  struct br_tracked *b = calloc(1, sizeof *b + len);
  if (!b)
    return NULL;
  memcpy(b->slug, slug, len);
  if (br_strmap_put(&t->by_slug, b->slug, b)) {
    free(b);
    return NULL;
  }
  containers_learn(t, b, cfg, warnings);
  return b;
}

int br_tracked_rederive(struct br_tracked_table *t, struct br_tracked *b, const struct br_config *cfg,
                        struct br_buf *warnings) {
  containers_forget(t, b);
  return containers_learn(t, b, cfg, warnings);
}

void br_tracked_remove(struct br_tracked_table *t, const char *slug) {
  struct br_tracked *b = br_strmap_del(&t->by_slug, slug); /* before the free: the key is b->slug */
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
