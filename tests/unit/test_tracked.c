/* test_tracked: the daemon's table of bottles. A container event finds its
 * bottle through the container names learnt when the bottles were added: the
 * lookup reads no file, so its cost does not grow with the number of
 * bottles (before, every event read every bottle's metadata.json). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "common/fileio.h"
#include "reconciler/daemon/tracked.h"

#define BOTTLES 10000

static char state[] = "/tmp/br-test-tracked-XXXXXX";

static void put_metadata(const char *slug, const char *project) {
  char path[PATH_MAX], json[256];
  snprintf(path, sizeof path, "%s/%s", state, slug);
  CHECK(mkdir(path, 0755) == 0);
  if (!project)
    return;
  snprintf(path, sizeof path, "%s/%s/metadata.json", state, slug);
  int n = snprintf(json, sizeof json, "{\"compose_project\": \"%s\"}\n", project);
  FILE *f = fopen(path, "w");
  CHECK(f && fwrite(json, 1, (size_t)n, f) == (size_t)n);
  if (f)
    fclose(f);
}

static void rm_tree(void) {
  char cmd[PATH_MAX + 16];
  snprintf(cmd, sizeof cmd, "rm -rf %s", state);
  CHECK(system(cmd) == 0);
}

int main(void) {
  CHECK(mkdtemp(state) != NULL);
  struct br_config cfg;
  CHECK(br_config_defaults(&cfg) == 0);
  free(cfg.state_dir);
  cfg.state_dir = strdup(state);
  struct br_tracked_table t;
  br_tracked_table_init(&t);
  struct br_buf warnings;
  br_buf_init(&warnings, 1 << 20);

  /* Half the bottles name a compose project, half go by their slug. */
  char slug[32], project[32], name[64];
  for (int i = 0; i < BOTTLES; i++) {
    snprintf(slug, sizeof slug, "b%05d", i);
    snprintf(project, sizeof project, "proj%05d", i);
    put_metadata(slug, i % 2 ? project : NULL);
    CHECK(br_tracked_add(&t, &cfg, slug, &warnings) != NULL);
  }
  CHECK(br_tracked_count(&t) == BOTTLES);
  CHECK(warnings.len == 0);
  /* The table's key of each bottle is its own slug, not a copy. */
  int own_key = 0;
  for (int i = 0; i < BOTTLES; i++) {
    snprintf(slug, sizeof slug, "b%05d", i);
    struct br_strmap_entry *e = br_strmap_entry(&t.by_slug, slug);
    own_key += e && e->key == ((struct br_tracked *)e->value)->slug;
  }
  CHECK(own_key == BOTTLES);

  /* The files are gone: what follows can only come from the table. */
  rm_tree();
  int found = 0, right = 0;
  for (int i = 0; i < BOTTLES; i++) {
    snprintf(slug, sizeof slug, "b%05d", i);
    if (i % 2)
      snprintf(name, sizeof name, "proj%05d-%s-1", i, i % 4 == 1 ? "egress" : "pipelock");
    else
      snprintf(name, sizeof name, "b%05d-%s-1", i, i % 4 == 0 ? "egress" : "pipelock");
    struct br_tracked *b = br_tracked_by_container(&t, name);
    found += b != NULL;
    right += b && strcmp(b->slug, slug) == 0;
  }
  CHECK(found == BOTTLES && right == BOTTLES);
  /* A bottle's project is not another name: its slug's container is not it. */
  CHECK(br_tracked_by_container(&t, "b00001-egress-1") == NULL);
  CHECK(br_tracked_by_container(&t, "nobody-egress-1") == NULL);

  /* Removing a bottle forgets its containers. */
  br_tracked_remove(&t, "b00003");
  CHECK(br_tracked_by_container(&t, "proj00003-egress-1") == NULL);
  CHECK(br_tracked_get(&t, "b00003") == NULL);
  /* ... also when the slug given is the bottle's own (its map entry goes
   * before the bottle is freed: ASan would see the use after free). */
  struct br_tracked *b5 = br_tracked_get(&t, "b00005");
  CHECK(b5 != NULL);
  if (b5)
    br_tracked_remove(&t, b5->slug);
  CHECK(br_tracked_get(&t, "b00005") == NULL && br_tracked_count(&t) == BOTTLES - 2);

  /* No docker driver, no container names (and no metadata.json read: one
   * that is not JSON would be warned of). */
  cfg.pipelock.reload.driver = BR_DRIVER_NONE;
  cfg.egress.reload.driver = BR_DRIVER_SIGNAL;
  CHECK(mkdir(state, 0755) == 0);
  put_metadata("solo", "soloproj\" not json");
  br_buf_reset(&warnings);
  struct br_tracked *solo = br_tracked_add(&t, &cfg, "solo", &warnings);
  CHECK(solo && !solo->containers[BR_SIDECAR_PIPELOCK] && !solo->containers[BR_SIDECAR_EGRESS]);
  CHECK(warnings.len == 0);
  rm_tree();

  br_buf_free(&warnings);
  br_tracked_table_free(&t);
  br_config_free(&cfg);
  CHECK_DONE();
}
