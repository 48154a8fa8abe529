/* Unit tests for reconciler/records: the reload file's lines as written and
 * read back, what a damaged file reads as, and the move of the earlier
 * one-file-per-record layout. Runs in a fresh temporary state directory. */
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "common/fileio.h"
#include "reconciler/bottle/records.h"

static char state[64], path[256];

static const char *reloads_text(const char *slug) {
  static struct br_buf text;
  br_buf_free(&text);
  br_buf_init(&text, 4096);
  snprintf(path, sizeof path, "%s/.reconciler/reloads/%s", state, slug);
  return br_file_read(path, 4096, true, &text) ? "(unreadable)" : text.data;
}

static void put(const char *relative, const char *text) {
  snprintf(path, sizeof path, "%s/.reconciler/%s", state, relative);
  FILE *f = fopen(path, "w");
  fputs(text, f);
  fclose(f);
}

int main(void) {
  snprintf(state, sizeof state, "/tmp/br-records.XXXXXX");
  CHECK(mkdtemp(state) != NULL);
  struct br_buf err;
  br_buf_init(&err, 4096);
  CHECK(br_records_init(state, &err) == 0);

  /* No file: nothing marked, and reading creates nothing. */
  struct br_reloads r;
  int64_t ns = -1;
  CHECK(br_reloads_open(&r, state, "alpha", true, &err) == 0);
  CHECK(!br_reloads_get(&r, BR_SIDECAR_PIPELOCK, BR_MARK_RELOAD_OWED, &ns));
  CHECK(!br_reloads_get(&r, BR_SIDECAR_EGRESS, BR_MARK_SETTLE_UNTIL, &ns));
  CHECK_STR(reloads_text("alpha"), "(unreadable)");

  /* The first mark writes all four lines; later ones change one line. */
  CHECK(br_reloads_set(&r, BR_SIDECAR_EGRESS, BR_MARK_RELOAD_OWED, 1795839967028330408, &err) == 0);
  CHECK_STR(reloads_text("alpha"), "pipelock reload done 0000000000000000000\n"
                                   "egress   reload owed 1795839967028330408\n"
                                   "pipelock settle done 0000000000000000000\n"
                                   "egress   settle done 0000000000000000000\n");
  CHECK(br_reloads_set(&r, BR_SIDECAR_PIPELOCK, BR_MARK_SETTLE_UNTIL, 42, &err) == 0);
  CHECK(br_reloads_clear(&r, BR_SIDECAR_EGRESS, BR_MARK_RELOAD_OWED, &err) == 0);
  br_reloads_close(&r);
  CHECK_STR(reloads_text("alpha"), "pipelock reload done 0000000000000000000\n"
                                   "egress   reload done 0000000000000000000\n"
                                   "pipelock settle wait 0000000000000000042\n"
                                   "egress   settle done 0000000000000000000\n");

  /* Read back by another open (as the next converge does). */
  CHECK(br_reloads_open(&r, state, "alpha", false, &err) == 0);
  CHECK(br_reloads_get(&r, BR_SIDECAR_PIPELOCK, BR_MARK_SETTLE_UNTIL, &ns) && ns == 42);
  CHECK(!br_reloads_get(&r, BR_SIDECAR_EGRESS, BR_MARK_RELOAD_OWED, &ns));
  /* Read only (plan): no change possible. */
  CHECK(br_reloads_set(&r, BR_SIDECAR_EGRESS, BR_MARK_RELOAD_OWED, 1, &err) != 0);
  br_reloads_close(&r);

  /* A file a machine crash left empty, or one with a damaged line: a
   * reload it cannot read is owed at an unknown time, a settle time it
   * cannot read is none; the next change writes the whole file again. */
  const struct {
    const char *text;
    bool pipelock_owed;
  } damaged[] = {
      {"", true},
      {"pipelock reload done 00000000000000000x0\n", true},
      {"pipelock reload done 0000000000000000000\n"
       "egress   reload done 9999999999999999999\n" /* past INT64_MAX */
       "pipelock settle done 0000000000000000000\n"
       "egress   settle done 0000000000000000000\n",
       false},
      {"pipelock reload done 0000000000000000000\n"
       "egress   reload done 0000000000000000000\n"
       "pipelock settle wait 0000000000000000042\n"
       "egress   settle done 00000000000000000000\n", /* one byte too many */
       true},
  };
  for (size_t i = 0; i < sizeof damaged / sizeof *damaged; i++) {
    put("reloads/alpha", damaged[i].text);
    CHECK(br_reloads_open(&r, state, "alpha", true, &err) == 0);
    ns = -1;
    CHECK(br_reloads_get(&r, BR_SIDECAR_PIPELOCK, BR_MARK_RELOAD_OWED, &ns) == damaged[i].pipelock_owed);
    CHECK(!damaged[i].pipelock_owed || ns == 0);
    CHECK(br_reloads_get(&r, BR_SIDECAR_EGRESS, BR_MARK_RELOAD_OWED, &ns) && ns == 0);
    CHECK(!br_reloads_get(&r, BR_SIDECAR_PIPELOCK, BR_MARK_SETTLE_UNTIL, &ns));
    CHECK(br_reloads_clear(&r, BR_SIDECAR_PIPELOCK, BR_MARK_RELOAD_OWED, &err) == 0);
    br_reloads_close(&r);
    CHECK_STR(reloads_text("alpha"), "pipelock reload done 0000000000000000000\n"
                                     "egress   reload owed 0000000000000000000\n"
                                     "pipelock settle done 0000000000000000000\n"
                                     "egress   settle done 0000000000000000000\n");
  }

  /* One bad byte in any field of a full file makes that line unreadable,
   * and only that line. */
  static const char good[] = "pipelock reload done 0000000000000000000\n";
  for (size_t at = 0; at < sizeof good - 1; at++) {
    char text[4 * 41 + 1];
    snprintf(text, sizeof text, "%s%s", good,
             "egress   reload done 0000000000000000000\n"
             "pipelock settle done 0000000000000000000\n"
             "egress   settle done 0000000000000000000\n");
    text[at] = at == 8 ? 'x' : good[at] == ' ' ? '_' : good[at] == '0' ? 'x' : good[at] == '\n' ? ' ' : '0';
    put("reloads/alpha", text);
    CHECK(br_reloads_open(&r, state, "alpha", true, &err) == 0);
    bool owed = br_reloads_get(&r, BR_SIDECAR_PIPELOCK, BR_MARK_RELOAD_OWED, &ns);
    if (!owed || ns != 0 || br_reloads_get(&r, BR_SIDECAR_EGRESS, BR_MARK_RELOAD_OWED, &ns))
      fprintf(stderr, "a bad byte at %zu of the first line: read as owed %d\n", at, owed);
    CHECK(owed && ns == 0);
    CHECK(!br_reloads_get(&r, BR_SIDECAR_EGRESS, BR_MARK_RELOAD_OWED, &ns));
    br_reloads_close(&r);
  }

  /* A change that cannot be written leaves the marks as they were. */
  put("reloads/alpha", "");
  CHECK(br_reloads_open(&r, state, "alpha", false, &err) == 0);
  CHECK(br_reloads_clear(&r, BR_SIDECAR_PIPELOCK, BR_MARK_RELOAD_OWED, &err) != 0);
  CHECK(br_reloads_set(&r, BR_SIDECAR_EGRESS, BR_MARK_SETTLE_UNTIL, 5, &err) != 0);
  CHECK(br_reloads_get(&r, BR_SIDECAR_PIPELOCK, BR_MARK_RELOAD_OWED, &ns));
  CHECK(!br_reloads_get(&r, BR_SIDECAR_EGRESS, BR_MARK_SETTLE_UNTIL, &ns));
  br_reloads_close(&r);

  /* A symlink is not followed. */
  snprintf(path, sizeof path, "%s/.reconciler/reloads/beta", state);
  CHECK(symlink("/etc/passwd", path) == 0);
  CHECK(br_reloads_open(&r, state, "beta", true, &err) != 0);
  br_reloads_close(&r);
  unlink(path);

  /* The earlier layout: pending/<slug>.<sidecar>[.settle] holding a time,
   * spares beside them. Its marks move into reload files (slugs may hold
   * dots), and the directory goes. */
  snprintf(path, sizeof path, "%s/.reconciler/pending", state);
  CHECK(mkdir(path, 0750) == 0);
  const char *bottles[] = {"gamma", "d.e"}; /* gone: ghost */
  for (size_t i = 0; i < 2; i++) {
    snprintf(path, sizeof path, "%s/%s", state, bottles[i]);
    CHECK(mkdir(path, 0750) == 0);
  }
  put("pending/ghost.egress", "5\n");
  put("pending/gamma.egress", "1795839967028330408\n");
  put("pending/gamma.pipelock.settle", "77\n");
  put("pending/.spare.gamma.pipelock", "5\n");
  put("pending/d.e.pipelock", "junk\n");
  CHECK(br_records_init(state, &err) == 0);
  snprintf(path, sizeof path, "%s/.reconciler/pending", state);
  CHECK(access(path, F_OK) != 0);
  CHECK_STR(reloads_text("gamma"), "pipelock reload done 0000000000000000000\n"
                                   "egress   reload owed 1795839967028330408\n"
                                   "pipelock settle wait 0000000000000000077\n"
                                   "egress   settle done 0000000000000000000\n");
  CHECK_STR(reloads_text("ghost"), "(unreadable)");
  CHECK_STR(reloads_text("d.e"), "pipelock reload owed 0000000000000000000\n"
                                 "egress   reload done 0000000000000000000\n"
                                 "pipelock settle done 0000000000000000000\n"
                                 "egress   settle done 0000000000000000000\n");

  /* The added-hosts record, in place (additive) and swapped in (prune). */
  struct br_strv hosts, got;
  br_strv_init(&hosts);
  br_strv_init(&got);
  br_strv_add(&hosts, "a.example.com");
  br_strv_add(&hosts, "b.example.com");
  CHECK(br_record_added_set(state, "alpha", &hosts, false, &err) == 0);
  CHECK(br_record_added_get(state, "alpha", &got, &err) == 0 && got.n == 2);
  br_strv_free(&got);
  br_strv_init(&got);
  br_strv_free(&hosts);
  br_strv_init(&hosts);
  br_strv_add(&hosts, "d.example.com"); /* shorter: the old tail must go */
  CHECK(br_record_added_set(state, "alpha", &hosts, false, &err) == 0);
  CHECK(br_record_added_get(state, "alpha", &got, &err) == 0 && got.n == 1 && !strcmp(got.v[0], "d.example.com"));
  br_strv_free(&got);
  br_strv_init(&got);
  br_strv_free(&hosts);
  br_strv_init(&hosts);
  br_strv_add(&hosts, "c.example.com");
  CHECK(br_record_added_set(state, "alpha", &hosts, true, &err) == 0);
  CHECK(br_record_added_get(state, "alpha", &got, &err) == 0 && got.n == 1 && !strcmp(got.v[0], "c.example.com"));
  br_strv_free(&got);
  br_strv_free(&hosts);

  br_records_forget(state, "alpha");
  CHECK_STR(reloads_text("alpha"), "(unreadable)");
  if (err.len)
    fprintf(stderr, "messages: %s", err.data);
  br_buf_free(&err);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", state);
  CHECK(system(cmd) == 0);
  CHECK_DONE();
}
