/* Unit tests for reconciler/records: the reload file's lines as written and
 * read back, what a damaged file reads as, the move of the earlier
 * one-file-per-record layout, and the added-hosts record's MAC: what
 * verifies, what does not (edited, another bottle's, unsigned, a key that
 * cannot be trusted) and trust-record. Runs in a fresh temporary state directory. */
#include <errno.h>
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

static void reset(struct br_strv *v) {
  br_strv_free(v);
  br_strv_init(v);
}

/* text with the first from replaced by to. */
static const char *replace(const char *text, const char *from, const char *to) {
  static char out[8192];
  const char *at = strstr(text, from);
  if (!at)
    return text;
  snprintf(out, sizeof out, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
  return out;
}

static struct br_buf err;

/* The slug's record reads as distrusted and empty, its warning saying
 * want; err keeps the warning for more checks. */
#define expect_distrusted(slug, want)                                                                             \
  do {                                                                                                            \
    struct br_strv got_;                                                                                          \
    bool distrusted_ = false;                                                                                     \
    br_strv_init(&got_);                                                                                          \
    br_buf_reset(&err);                                                                                           \
    CHECK(br_record_added_get(state, slug, &got_, &distrusted_, &err) == 0);                                      \
    CHECK(distrusted_ &&got_.n == 0);                                                                             \
    if (!strstr(br_buf_str(&err), want))                                                                          \
      fprintf(stderr, "%s:%d: warning \"%s\" does not say \"%s\"\n", __FILE__, __LINE__, br_buf_str(&err), want); \
    CHECK(strstr(br_buf_str(&err), want) != NULL);                                                                \
    CHECK(strstr(br_buf_str(&err), "pruning none of the hosts it lists") != NULL);                                \
    br_strv_free(&got_);                                                                                          \
  } while (0)

/* The slug's record verifies, without a warning, and lists first first. */
#define expect_trusted(slug, first)                                                                               \
  do {                                                                                                            \
    struct br_strv got_;                                                                                          \
    bool distrusted_ = true;                                                                                      \
    br_strv_init(&got_);                                                                                          \
    br_buf_reset(&err);                                                                                           \
    CHECK(br_record_added_get(state, slug, &got_, &distrusted_, &err) == 0);                                      \
    CHECK(!distrusted_ && got_.n >= 1 && !strcmp(got_.v[0], first) && err.len == 0);                              \
    br_strv_free(&got_);                                                                                          \
  } while (0)

int main(void) {
  snprintf(state, sizeof state, "/tmp/br-records.XXXXXX");
  CHECK(mkdtemp(state) != NULL);
  br_buf_init(&err, 64 * 1024);
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
  br_buf_reset(&err); /* the messages of the failures above */
  struct br_strv hosts, got;
  bool distrusted = true;
  br_strv_init(&hosts);
  br_strv_init(&got);
  br_strv_add(&hosts, "a.example.com");
  br_strv_add(&hosts, "b.example.com");
  CHECK(br_record_added_set(state, "alpha", &hosts, false, &err, &err) == 0);
  CHECK(br_record_added_get(state, "alpha", &got, &distrusted, &err) == 0 && got.n == 2 && !distrusted);
  reset(&got);
  reset(&hosts);
  br_strv_add(&hosts, "d.example.com"); /* shorter: the old tail must go */
  CHECK(br_record_added_set(state, "alpha", &hosts, false, &err, &err) == 0);
  CHECK(br_record_added_get(state, "alpha", &got, &distrusted, &err) == 0 && got.n == 1 &&
        !strcmp(got.v[0], "d.example.com") && !distrusted);
  reset(&got);
  reset(&hosts);
  br_strv_add(&hosts, "c.example.com");
  CHECK(br_record_added_set(state, "alpha", &hosts, true, &err, &err) == 0);
  CHECK(br_record_added_get(state, "alpha", &got, &distrusted, &err) == 0 && got.n == 1 &&
        !strcmp(got.v[0], "c.example.com") && !distrusted);
  reset(&got);
  CHECK(err.len == 0); /* a record that verifies warns of nothing */

  /* The key: made on the first signature, root's (the daemon's user's),
   * 0600, one link, 32 bytes; never in a message. */
  char key_path[256];
  snprintf(key_path, sizeof key_path, "%s/.reconciler/record.key", state);
  struct stat st;
  CHECK(lstat(key_path, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 07777) == 0600 &&
        st.st_uid == geteuid() && st.st_nlink == 1 && st.st_size == 32);
  char key_hex[65] = "";
  {
    unsigned char key[32];
    int fd = open(key_path, O_RDONLY);
    CHECK(fd >= 0 && read(fd, key, 32) == 32);
    close(fd);
    for (int i = 0; i < 32; i++)
      snprintf(key_hex + 2 * i, 3, "%02x", key[i]);
  }

  /* What does not verify reads as an empty list, distrusted, with a
   * warning that names the record's bottle and why. */
  snprintf(path, sizeof path, "%s/.reconciler/added/alpha.json", state);
  struct br_buf good_record;
  br_buf_init(&good_record, 4096);
  CHECK(br_file_read(path, 4096, true, &good_record) == 0);
  CHECK(strstr(good_record.data, "\"hmac_sha256\": \"") != NULL);
  CHECK(strstr(good_record.data, key_hex) == NULL);
  /* The host list edited, the MAC kept: */
  put("added/alpha.json", replace(good_record.data, "c.example.com", "hand.example.com"));
  expect_distrusted("alpha", "added-hosts record for alpha does not verify: its MAC does not match");
  /* another bottle's record copied over this one's: */
  put("added/alpha.json", good_record.data);
  put("added/beta.json", good_record.data);
  expect_distrusted("beta", "added-hosts record for beta does not verify: its MAC does not match");
  /* the earlier version's bare list, or a record without its MAC: */
  put("added/beta.json", "[\"c.example.com\"]");
  expect_distrusted("beta", "for beta does not verify: it is unsigned (a bare list");
  put("added/beta.json", "{\"hosts\": [\"c.example.com\"]}");
  expect_distrusted("beta", "for beta does not verify: it is unsigned (no hmac_sha256)");
  /* one a machine crash emptied: */
  put("added/beta.json", "");
  expect_distrusted("beta", "for beta does not verify: it cannot be parsed");
  expect_trusted("alpha", "c.example.com");

  /* A key that cannot be trusted verifies nothing, and signs nothing: */
  CHECK(chmod(key_path, 0640) == 0); /* readable by the group that drops routes */
  expect_distrusted("alpha", "its key cannot be used: " /* path */);
  CHECK(strstr(err.data, "record.key has mode 0640, expected 0600") != NULL);
  reset(&hosts);
  br_strv_add(&hosts, "e.example.com");
  br_buf_reset(&err);
  CHECK(br_record_added_set(state, "gamma", &hosts, true, &err, &err) == 0);
  CHECK(strstr(err.data, "cannot sign the added-hosts record for gamma: ") != NULL &&
        strstr(err.data, "mode 0640, expected 0600") != NULL);
  expect_distrusted("gamma", "for gamma does not verify: it is unsigned (no hmac_sha256)");
  CHECK(chmod(key_path, 0600) == 0);
  expect_trusted("alpha", "c.example.com");
  if (geteuid() == 0) { /* another user's key */
    CHECK(chown(key_path, 65534, 65534) == 0);
    expect_distrusted("alpha", "its key cannot be used: ");
    CHECK(strstr(err.data, "record.key is owned by uid 65534, not by the daemon's (0)") != NULL);
    CHECK(chown(key_path, 0, 0) == 0);
    expect_trusted("alpha", "c.example.com");
  } else {
    fprintf(stderr, "note: not root: a key of another owner was not tried\n");
  }
  /* a symlink to the key, a second link to it: */
  char moved[300];
  snprintf(moved, sizeof moved, "%s/record.key.real", state);
  CHECK(rename(key_path, moved) == 0 && symlink(moved, key_path) == 0);
  expect_distrusted("alpha", "its key cannot be used: ");
  CHECK(strstr(err.data, "record.key is a symlink, expected a regular file") != NULL);
  CHECK(unlink(key_path) == 0 && link(moved, key_path) == 0);
  expect_distrusted("alpha", "its key cannot be used: ");
  CHECK(strstr(err.data, "record.key has 2 links, expected 1") != NULL);
  CHECK(unlink(moved) == 0);
  expect_trusted("alpha", "c.example.com");
  /* its directory writable by the group: the records could be swapped. */
  snprintf(moved, sizeof moved, "%s/.reconciler", state);
  CHECK(chmod(moved, 0770) == 0);
  expect_distrusted("alpha", "its key cannot be used: ");
  CHECK(strstr(err.data, ".reconciler may be written by its group or others (mode 0770); chmod go-w it") != NULL);
  CHECK(chmod(moved, 0750) == 0);
  expect_trusted("alpha", "c.example.com");
  /* A key replaced (by root: no one else can make one that is trusted):
   * the records signed with the old one no longer verify. */
  CHECK(unlink(key_path) == 0);
  expect_distrusted("alpha", "its key cannot be used: ");
  CHECK(strstr(err.data, "record.key does not exist") != NULL);
  reset(&hosts);
  br_strv_add(&hosts, "f.example.com");
  CHECK(br_record_added_set(state, "delta", &hosts, true, &err, &err) == 0); /* makes a new key */
  expect_trusted("delta", "f.example.com");
  expect_distrusted("alpha", "its MAC does not match");

  /* trust-record: the operator signs a record as it stands. */
  put("added/beta.json", "[\"c.example.com\", \"g.example.com\"]");
  reset(&got);
  br_buf_reset(&err);
  CHECK(br_record_added_trust(state, "beta", &got, &err) == 0 && got.n == 2);
  expect_trusted("beta", "c.example.com");
  reset(&got);
  CHECK(br_record_added_trust(state, "nobody", &got, &err) == -ENOENT);
  put("added/beta.json", "{\"hosts\": [1]}");
  CHECK(br_record_added_trust(state, "beta", &got, &err) == -EINVAL);

  CHECK(strstr(br_buf_str(&err), key_hex) == NULL);
  br_buf_free(&good_record);
  br_strv_free(&got);
  br_strv_free(&hosts);
  br_buf_reset(&err);

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
