/* test_watch: the inotify watcher against real directories under a mkdtemp
 * dir and a real libuv loop. Every wait is for a callback, with a deadline;
 * "no event" is shown by a barrier event queued after it. */
#include "reconciler/daemon/watch.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "common/strmap.h"
#include "common/strv.h"

#define DEADLINE_MS 5000

static char base[PATH_MAX]; /* the mkdtemp dir */
static char state[PATH_MAX];
static uv_loop_t loop;

/* What the callbacks reported, one "slug|why" line per dirty mark. */
struct seen {
  struct br_strv dirty, appeared, vanished, failed;
  int overflows;
  int moved;                    /* paths_moved calls */
  bool ignore_moved;            /* leave paths_moved unanswered */
  const char *forget_on_vanish; /* forget this slug from inside slug_vanished */
  char live_file[PATH_MAX];     /* the live file of the last drift mark, or "" */
  enum br_watch_reason last_reason;
  struct br_watch *w;
};

static void on_dirty(void *ctx, const char *slug, enum br_watch_reason reason, const char *why,
                     const char *live_file) {
  struct seen *s = ctx;
  CHECK(!live_file || reason == BR_WATCH_DRIFT); /* only drift names a live file */
  CHECK((reason == BR_WATCH_DRIFT) == (strncmp(why, "drift: ", 7) == 0));
  CHECK((reason == BR_WATCH_METADATA) == (strstr(why, "metadata.json") != NULL));
  s->last_reason = reason;
  snprintf(s->live_file, sizeof s->live_file, "%s", live_file ? live_file : "");
  char line[PATH_MAX + 256];
  snprintf(line, sizeof line, "%s|%s", slug, why);
  br_strv_add(&s->dirty, line);
}
static void on_appeared(void *ctx, const char *slug) { br_strv_add(&((struct seen *)ctx)->appeared, slug); }
static void on_vanished(void *ctx, const char *slug) {
  struct seen *s = ctx;
  br_strv_add(&s->vanished, slug);
  if (s->forget_on_vanish && strcmp(slug, s->forget_on_vanish) == 0)
    br_watch_forget(s->w, slug);
}
static void on_overflow(void *ctx) { ((struct seen *)ctx)->overflows++; }
static void on_failed(void *ctx, const char *slug, const char *path, int err) {
  char line[PATH_MAX + 256];
  snprintf(line, sizeof line, "%s|%s|%d", slug, path, err);
  br_strv_add(&((struct seen *)ctx)->failed, line);
}

/* The watcher keeps no paths: like the daemon, the test owns each slug's
 * spec (the last one handed over) and hands it over again when paths_moved
 * asks. */
struct owned_spec {
  char *dir;
  struct br_strv sources, live, pidfiles;
};
static struct br_strmap owned; /* slug -> struct owned_spec* */

static void strv_copy(struct br_strv *dst, const struct br_strv *src) {
  br_strv_init(dst);
  for (size_t i = 0; src && i < src->n; i++)
    br_strv_add(dst, src->v[i]);
}

static void owned_free(struct owned_spec *o) {
  if (!o)
    return;
  free(o->dir);
  br_strv_free(&o->sources);
  br_strv_free(&o->live);
  br_strv_free(&o->pidfiles);
  free(o);
}

static int watch_spec(struct br_watch *w, const struct br_watch_spec *spec) {
  struct owned_spec *o = calloc(1, sizeof *o);
  CHECK(o != NULL);
  o->dir = strdup(spec->slug_dir ? spec->slug_dir : "");
  strv_copy(&o->sources, spec->sources);
  strv_copy(&o->live, spec->live_files);
  strv_copy(&o->pidfiles, spec->pidfiles);
  owned_free(br_strmap_get(&owned, spec->slug));
  CHECK(br_strmap_put(&owned, spec->slug, o) == 0);
  return br_watch_slug(w, spec);
}

static void on_paths_moved(void *ctx, const char *slug) {
  struct seen *s = ctx;
  struct owned_spec *o = br_strmap_get(&owned, slug);
  CHECK(o != NULL); /* asked only for slugs it was given */
  if (!o)
    return;
  s->moved++;
  if (s->ignore_moved)
    return;
  struct br_watch_spec spec = {
      .slug = slug, .slug_dir = o->dir, .sources = &o->sources, .live_files = &o->live, .pidfiles = &o->pidfiles};
  CHECK(br_watch_slug(s->w, &spec) == 0);
}

static const struct br_watch_callbacks callbacks = {
    .slug_dirty = on_dirty,
    .paths_moved = on_paths_moved,
    .slug_appeared = on_appeared,
    .slug_vanished = on_vanished,
    .overflow = on_overflow,
    .watch_failed = on_failed,
};

static void seen_init(struct seen *s) {
  memset(s, 0, sizeof *s);
  br_strv_init(&s->dirty);
  br_strv_init(&s->appeared);
  br_strv_init(&s->vanished);
  br_strv_init(&s->failed);
}
static void seen_clear(struct seen *s) {
  br_strv_free(&s->dirty);
  br_strv_free(&s->appeared);
  br_strv_free(&s->vanished);
  br_strv_free(&s->failed);
  s->overflows = 0;
}

static size_t dirty_count(const struct seen *s, const char *slug) {
  size_t n = 0, len = strlen(slug);
  for (size_t i = 0; i < s->dirty.n; i++)
    if (strncmp(s->dirty.v[i], slug, len) == 0 && s->dirty.v[i][len] == '|')
      n++;
  return n;
}

/* The last why reported for slug, or NULL. */
static const char *last_why(const struct seen *s, const char *slug) {
  size_t len = strlen(slug);
  for (size_t i = s->dirty.n; i-- > 0;)
    if (strncmp(s->dirty.v[i], slug, len) == 0 && s->dirty.v[i][len] == '|')
      return s->dirty.v[i] + len + 1;
  return NULL;
}

/* ---- waiting ---- */

static void on_deadline(uv_timer_t *t) { *(bool *)t->data = true; }

/* Runs the loop until cond holds or the deadline passes. */
static bool wait_until(bool (*cond)(const void *), const void *arg) {
  bool expired = false;
  uv_timer_t timer;
  uv_timer_init(&loop, &timer);
  timer.data = &expired;
  uv_timer_start(&timer, on_deadline, DEADLINE_MS, 0);
  while (!cond(arg) && !expired)
    uv_run(&loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&timer, NULL);
  uv_run(&loop, UV_RUN_NOWAIT);
  return cond(arg);
}

struct want {
  const struct seen *seen;
  const char *slug;
  size_t n;
};
static bool have_dirty(const void *arg) {
  const struct want *w = arg;
  return dirty_count(w->seen, w->slug) >= w->n;
}
static bool have_appeared(const void *arg) {
  const struct want *w = arg;
  return br_strv_contains(&w->seen->appeared, w->slug);
}
static bool have_vanished(const void *arg) {
  const struct want *w = arg;
  return br_strv_contains(&w->seen->vanished, w->slug);
}
static bool have_overflow(const void *arg) { return ((const struct seen *)arg)->overflows > 0; }

/* Waits until slug has at least n dirty marks. */
static bool wait_dirty(const struct seen *s, const char *slug, size_t n) {
  struct want w = {s, slug, n};
  return wait_until(have_dirty, &w);
}

/* ---- files ---- */

/* buf = a/b; buf holds PATH_MAX bytes. */
static char *join(char *buf, const char *a, const char *b) {
  if (snprintf(buf, PATH_MAX, "%s/%s", a, b) >= PATH_MAX) {
    fprintf(stderr, "path too long: %s/%s\n", a, b);
    check_failures++;
  }
  return buf;
}

static void mkdirs(const char *path) {
  char p[PATH_MAX];
  snprintf(p, sizeof p, "%s", path);
  for (char *s = p + 1; *s; s++)
    if (*s == '/') {
      *s = '\0';
      mkdir(p, 0755);
      *s = '/';
    }
  if (mkdir(p, 0755) < 0 && errno != EEXIST) {
    fprintf(stderr, "mkdir %s: %s\n", p, strerror(errno));
    check_failures++;
  }
}

static void write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  CHECK(fd >= 0);
  if (fd < 0)
    return;
  CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
  close(fd);
}

/* What a careful producer does: a dot temp file, then rename(2). */
static void write_via_temp(const char *dir, const char *name, const char *text) {
  char tmp[PATH_MAX], dst[PATH_MAX];
  snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name);
  snprintf(dst, sizeof dst, "%s/%s", dir, name);
  write_file(tmp, text);
  CHECK(rename(tmp, dst) == 0);
}

static void remove_tree(const char *path) {
  char cmd[PATH_MAX + 32];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
  CHECK(system(cmd) == 0);
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---- the barrier ---- */

/* One inotify instance delivers records in the order they happened, so once
 * a fragment written to the sentinel's source is reported, every record of
 * an earlier change has been handled too. */
static char sentinel_src[PATH_MAX];
static unsigned barrier_serial;

static void barrier(struct seen *s) {
  size_t before = dirty_count(s, "sentinel");
  char name[64];
  snprintf(name, sizeof name, "b%u.yaml", barrier_serial++);
  write_via_temp(sentinel_src, name, "routes: []\n");
  CHECK(wait_dirty(s, "sentinel", before + 1));
}

struct slug_paths {
  char dir[PATH_MAX], routes[PATH_MAX], egress[PATH_MAX], pipelock[PATH_MAX];
};

/* A slug the way the daemon describes it: STATE/SLUG/routes.d as its source,
 * egress/egress_routes.yaml and pipelock/pipelock.yaml as its live files. */
static int watch_standard(struct br_watch *w, const char *root, const char *slug, const char *extra_source,
                          struct slug_paths *p) {
  struct br_strv sources, live;
  br_strv_init(&sources);
  br_strv_init(&live);
  snprintf(p->dir, sizeof p->dir, "%s/%s", root, slug);
  snprintf(p->routes, sizeof p->routes, "%s/%s/routes.d", root, slug);
  snprintf(p->egress, sizeof p->egress, "%s/%s/egress", root, slug);
  snprintf(p->pipelock, sizeof p->pipelock, "%s/%s/pipelock", root, slug);
  char f[PATH_MAX];
  br_strv_add(&sources, p->routes);
  if (extra_source)
    br_strv_add(&sources, extra_source);
  br_strv_add(&live, join(f, p->egress, "egress_routes.yaml"));
  br_strv_add(&live, join(f, p->pipelock, "pipelock.yaml"));
  struct br_watch_spec spec = {.slug = slug, .slug_dir = p->dir, .sources = &sources, .live_files = &live};
  int rc = watch_spec(w, &spec);
  br_strv_free(&sources);
  br_strv_free(&live);
  return rc;
}

static int watch_sources(struct br_watch *w, const char *slug, const char *slug_dir, const char *source) {
  struct br_strv sources;
  br_strv_init(&sources);
  br_strv_add(&sources, source);
  struct br_watch_spec spec = {.slug = slug, .slug_dir = slug_dir, .sources = &sources};
  int rc = watch_spec(w, &spec);
  br_strv_free(&sources);
  return rc;
}

/* ---- cases ---- */

static void test_appear_vanish(struct seen *s) {
  char p[PATH_MAX];
  mkdirs(join(p, state, ".hidden"));
  mkdirs(join(p, state, "fresh"));
  struct want want = {s, "fresh", 0};
  CHECK(wait_until(have_appeared, &want));
  CHECK(rmdir(p) == 0);
  CHECK(wait_until(have_vanished, &want));
  barrier(s);
  CHECK(!br_strv_contains(&s->appeared, ".hidden"));
  /* A symlink to a directory is a slug too (the lister follows links). */
  char target[PATH_MAX];
  mkdirs(join(target, base, "elsewhere"));
  CHECK(symlink(target, join(p, state, "linked")) == 0);
  want.slug = "linked";
  CHECK(wait_until(have_appeared, &want));
  CHECK(unlink(p) == 0);
  CHECK(wait_until(have_vanished, &want));
  seen_clear(s);
}

static void test_fragments(struct br_watch *w, struct seen *s) {
  struct slug_paths p;
  char f[PATH_MAX];
  mkdirs(join(f, state, "s1/routes.d"));
  mkdirs(join(f, state, "s1/egress"));
  CHECK(watch_standard(w, state, "s1", NULL, &p) == 0);
  CHECK(br_watch_complete(w, "s1"));

  /* The temp file alone: nothing. Then the rename: one mark. */
  write_file(join(f, p.routes, ".a.yaml.tmp"), "routes: []\n");
  write_file(join(f, p.routes, "a.yaml~"), "vim backup\n");
  write_file(join(f, p.routes, "4913"), "");
  barrier(s);
  CHECK(dirty_count(s, "s1") == 0);
  char tmp[PATH_MAX];
  CHECK(rename(join(tmp, p.routes, ".a.yaml.tmp"), join(f, p.routes, "a.yaml")) == 0);
  CHECK(wait_dirty(s, "s1", 1));
  barrier(s);
  CHECK(dirty_count(s, "s1") == 1);
  CHECK_STR(last_why(s, "s1"), "s1/routes.d/a.yaml moved in");

  /* Written in place: create (skipped, a write follows) then close-write. */
  write_file(join(f, p.routes, "b.yml"), "routes: []\n");
  CHECK(wait_dirty(s, "s1", 2));
  barrier(s);
  CHECK(dirty_count(s, "s1") == 2);
  CHECK_STR(last_why(s, "s1"), "s1/routes.d/b.yml written");

  /* Deleted. */
  CHECK(unlink(join(f, p.routes, "a.yaml")) == 0);
  CHECK(wait_dirty(s, "s1", 3));
  CHECK_STR(last_why(s, "s1"), "s1/routes.d/a.yaml deleted");

  /* A symlinked fragment created: IN_CREATE with no close-write. */
  CHECK(symlink("b.yml", join(f, p.routes, "c.json")) == 0);
  CHECK(wait_dirty(s, "s1", 4));
  CHECK_STR(last_why(s, "s1"), "s1/routes.d/c.json created");

  /* metadata.json in the slug dir. */
  write_via_temp(p.dir, "metadata.json", "{}\n");
  CHECK(wait_dirty(s, "s1", 5));
  CHECK_STR(last_why(s, "s1"), "s1/metadata.json moved in");
  CHECK(s->last_reason == BR_WATCH_METADATA);

  /* Live files: the daemon's own temp file is not drift, a hand edit is. */
  write_file(join(f, p.egress, ".br-tmp.1234"), "x\n");
  barrier(s);
  CHECK(dirty_count(s, "s1") == 5);
  write_file(join(f, p.egress, "egress_routes.yaml"), "hand edit\n");
  CHECK(wait_dirty(s, "s1", 6));
  CHECK_STR(last_why(s, "s1"), "drift: s1/egress/egress_routes.yaml written");
  char real[PATH_MAX];
  CHECK(realpath(p.egress, real) != NULL);
  CHECK_STR(s->live_file, join(f, real, "egress_routes.yaml")); /* as watched: its directory resolved */
  CHECK(rename(join(tmp, p.egress, ".br-tmp.1234"), join(f, p.egress, "egress_routes.yaml")) == 0);
  CHECK(wait_dirty(s, "s1", 7));
  CHECK_STR(last_why(s, "s1"), "drift: s1/egress/egress_routes.yaml moved in");
  /* Other files beside a live file are not drift. */
  write_file(join(f, p.egress, "notes.yaml"), "x\n");
  barrier(s);
  CHECK(dirty_count(s, "s1") == 7);

  /* pipelock/ did not exist: creating it re-resolves, then the live file
   * in it is watched. */
  mkdirs(p.pipelock);
  CHECK(wait_dirty(s, "s1", 8));
  CHECK_STR(last_why(s, "s1"), "s1/pipelock created");
  write_via_temp(p.pipelock, "pipelock.yaml", "x\n");
  CHECK(wait_dirty(s, "s1", 9));
  CHECK_STR(last_why(s, "s1"), "drift: s1/pipelock/pipelock.yaml moved in");

  /* routes.d removed and made again: both noticed, and fragments in the
   * new one are seen. */
  remove_tree(p.routes);
  CHECK(wait_dirty(s, "s1", 10));
  barrier(s);
  size_t n = dirty_count(s, "s1");
  mkdirs(p.routes);
  CHECK(wait_dirty(s, "s1", n + 1));
  barrier(s);
  n = dirty_count(s, "s1");
  write_via_temp(p.routes, "d.yaml", "routes: []\n");
  CHECK(wait_dirty(s, "s1", n + 1));
  CHECK_STR(last_why(s, "s1"), "s1/routes.d/d.yaml moved in");

  /* Forgotten: no more marks, and its watches are gone. */
  barrier(s);
  n = dirty_count(s, "s1");
  size_t before = br_watch_count(w);
  br_watch_forget(w, "s1");
  CHECK(br_watch_count(w) < before);
  CHECK(!br_watch_complete(w, "s1"));
  write_via_temp(p.routes, "e.yaml", "routes: []\n");
  write_file(join(f, p.egress, "egress_routes.yaml"), "hand edit\n");
  mkdirs(join(f, p.dir, "routes.d/sub"));
  barrier(s);
  CHECK(dirty_count(s, "s1") == n);
  seen_clear(s);
}

/* git-sync: SRC = GIT/current/bottles/s2 with current -> rev-1, swapped
 * atomically to rev-2 with symlink() + rename(). */
static void test_symlink_swap(struct br_watch *w, struct seen *s) {
  char git[PATH_MAX], rev1[PATH_MAX], rev2[PATH_MAX], src[PATH_MAX], f[PATH_MAX], slug_dir[PATH_MAX];
  join(git, base, "git");
  mkdirs(join(rev1, git, "rev-1/bottles/s2"));
  mkdirs(join(rev2, git, "rev-2/bottles/s2"));
  CHECK(symlink("rev-1", join(f, git, "current")) == 0);
  join(src, git, "current/bottles/s2");
  mkdirs(join(slug_dir, state, "s2"));
  CHECK(watch_sources(w, "s2", slug_dir, src) == 0);

  write_via_temp(rev1, "x.yaml", "routes: []\n");
  CHECK(wait_dirty(s, "s2", 1));
  CHECK_STR(last_why(s, "s2"), join(f, rev1, "x.yaml moved in"));
  seen_clear(s);

  char tmp[PATH_MAX];
  int moved = s->moved;
  CHECK(symlink("rev-2", join(tmp, git, "current.tmp")) == 0);
  CHECK(rename(tmp, join(f, git, "current")) == 0);
  CHECK(wait_dirty(s, "s2", 1));
  barrier(s);
  CHECK(dirty_count(s, "s2") == 1);
  CHECK(s->moved == moved + 1); /* the watcher asked for s2's paths again */
  join(f, git, "current moved in");
  CHECK_STR(last_why(s, "s2"), f);

  /* The new target is watched, the old one no longer. */
  write_via_temp(rev1, "old.yaml", "routes: []\n");
  barrier(s);
  CHECK(dirty_count(s, "s2") == 1);
  write_via_temp(rev2, "new.yaml", "routes: []\n");
  CHECK(wait_dirty(s, "s2", 2));
  CHECK_STR(last_why(s, "s2"), join(f, rev2, "new.yaml moved in"));

  /* git-sync then deletes the old worktree: nothing for s2. */
  size_t n = dirty_count(s, "s2");
  remove_tree(join(f, git, "rev-1"));
  barrier(s);
  CHECK(dirty_count(s, "s2") == n);
  br_watch_forget(w, "s2");
  seen_clear(s);
}

/* Kubernetes ConfigMap: fragments are links through ..data, which the
 * atomic writer swaps by renaming ..data_tmp over it. */
static void test_configmap(struct br_watch *w, struct seen *s) {
  char cm[PATH_MAX], f[PATH_MAX], slug_dir[PATH_MAX];
  mkdirs(join(cm, base, "cm/..2024_01"));
  write_file(join(f, cm, "a.yaml"), "routes: []\n");
  join(cm, base, "cm");
  CHECK(symlink("..2024_01", join(f, cm, "..data")) == 0);
  CHECK(symlink("..data/a.yaml", join(f, cm, "a.yaml")) == 0);
  mkdirs(join(slug_dir, state, "s4"));
  CHECK(watch_sources(w, "s4", slug_dir, cm) == 0);

  mkdirs(join(f, cm, "..2024_02"));
  write_file(join(f, cm, "..2024_02/a.yaml"), "routes: []\n");
  CHECK(symlink("..2024_02", join(f, cm, "..data_tmp")) == 0);
  barrier(s);
  CHECK(dirty_count(s, "s4") == 0);
  char tmp[PATH_MAX];
  CHECK(rename(join(tmp, cm, "..data_tmp"), join(f, cm, "..data")) == 0);
  CHECK(wait_dirty(s, "s4", 1));
  remove_tree(join(f, cm, "..2024_01"));
  barrier(s);
  CHECK(dirty_count(s, "s4") == 1);
  br_watch_forget(w, "s4");
  seen_clear(s);
}

/* Sources that do not exist yet: routes.d under the slug dir, and a
 * checkout outside the state root two levels deep. */
static void test_missing_sources(struct br_watch *w, struct seen *s) {
  struct slug_paths p;
  char ext[PATH_MAX], f[PATH_MAX];
  mkdirs(join(f, state, "s3"));
  join(ext, base, "ext/bottles/s3");
  CHECK(watch_standard(w, state, "s3", ext, &p) == 0);
  CHECK(br_watch_complete(w, "s3"));

  mkdirs(p.routes);
  CHECK(wait_dirty(s, "s3", 1));
  CHECK_STR(last_why(s, "s3"), "s3/routes.d created");
  write_via_temp(p.routes, "a.yaml", "routes: []\n");
  CHECK(wait_dirty(s, "s3", 2));

  /* mkdir -p one level at a time: each level re-resolves to the next. */
  mkdirs(join(f, base, "ext"));
  CHECK(wait_dirty(s, "s3", 3));
  mkdirs(join(f, base, "ext/bottles"));
  CHECK(wait_dirty(s, "s3", 4));
  mkdirs(ext);
  CHECK(wait_dirty(s, "s3", 5));
  write_via_temp(ext, "b.yaml", "routes: []\n");
  CHECK(wait_dirty(s, "s3", 6));
  CHECK_STR(last_why(s, "s3"), join(f, ext, "b.yaml moved in"));

  /* A whole checkout appearing at once (rename of a prepared tree). */
  char staged[PATH_MAX];
  remove_tree(join(f, base, "ext"));
  barrier(s);
  size_t n = dirty_count(s, "s3");
  mkdirs(join(staged, base, "staged/bottles/s3"));
  write_file(join(f, staged, "c.yaml"), "routes: []\n");
  CHECK(rename(join(staged, base, "staged"), join(f, base, "ext")) == 0);
  CHECK(wait_dirty(s, "s3", n + 1));
  write_via_temp(ext, "d.yaml", "routes: []\n");
  CHECK(wait_dirty(s, "s3", n + 2));
  CHECK_STR(last_why(s, "s3"), join(f, ext, "d.yaml moved in"));
  br_watch_forget(w, "s3");
  seen_clear(s);
}

/* An owner that does not hand a slug's paths over when they move: its
 * watches may be wrong from then on, so the slug stops being complete and
 * watch_failed says why (-ESTALE), once; handing them over mends it. */
static void test_unanswered(struct br_watch *w, struct seen *s) {
  char git[PATH_MAX], rev1[PATH_MAX], src[PATH_MAX], f[PATH_MAX], slug_dir[PATH_MAX], tmp[PATH_MAX];
  join(git, base, "git7");
  mkdirs(join(rev1, git, "rev-1/s7"));
  mkdirs(join(f, git, "rev-2/s7"));
  CHECK(symlink("rev-1", join(f, git, "current")) == 0);
  join(src, git, "current/s7");
  mkdirs(join(slug_dir, state, "s7"));
  CHECK(watch_sources(w, "s7", slug_dir, src) == 0);
  CHECK(br_watch_complete(w, "s7"));

  s->ignore_moved = true;
  CHECK(symlink("rev-2", join(tmp, git, "current.tmp")) == 0);
  CHECK(rename(tmp, join(f, git, "current")) == 0);
  CHECK(wait_dirty(s, "s7", 1));
  s->ignore_moved = false;
  CHECK(!br_watch_complete(w, "s7"));
  char want[PATH_MAX + 64];
  snprintf(want, sizeof want, "s7|%s|%d", git, -ESTALE);
  CHECK(s->failed.n == 1 && strcmp(s->failed.v[0], want) == 0);

  CHECK(watch_sources(w, "s7", slug_dir, src) == 0);
  CHECK(br_watch_complete(w, "s7"));
  br_watch_forget(w, "s7");
  seen_clear(s);
}

/* A sidecar's pidfile, in a directory outside the slug that does not exist
 * yet (a supervisor's /run/bottles/SLUG): written or moved in, it is
 * BR_WATCH_SIDECAR; removed (the sidecar stopped), nothing; other files in
 * its directory, nothing. */
static void test_pidfiles(struct br_watch *w, struct seen *s) {
  char f[PATH_MAX], run[PATH_MAX], pidfile[PATH_MAX], routes[PATH_MAX], dir[PATH_MAX];
  mkdirs(join(routes, state, "s6/routes.d"));
  join(dir, state, "s6");
  join(run, base, "run/bottles/s6");
  join(pidfile, run, "egress.pid");
  struct br_strv sources, pidfiles;
  br_strv_init(&sources);
  br_strv_init(&pidfiles);
  br_strv_add(&sources, routes);
  br_strv_add(&pidfiles, pidfile);
  struct br_watch_spec spec = {.slug = "s6", .slug_dir = dir, .sources = &sources, .pidfiles = &pidfiles};
  CHECK(watch_spec(w, &spec) == 0);
  br_strv_free(&sources);
  br_strv_free(&pidfiles);
  CHECK(br_watch_complete(w, "s6"));

  mkdirs(join(f, base, "run/bottles"));
  barrier(s);
  size_t n = dirty_count(s, "s6");
  mkdirs(run); /* the missing directory appears: re-resolved */
  CHECK(wait_dirty(s, "s6", n + 1));
  barrier(s);
  n = dirty_count(s, "s6");
  write_via_temp(run, "egress.pid", "1234\n");
  CHECK(wait_dirty(s, "s6", n + 1));
  CHECK(s->last_reason == BR_WATCH_SIDECAR);
  char why[PATH_MAX + 64];
  snprintf(why, sizeof why, "sidecar (re)started: %s moved in", pidfile);
  CHECK_STR(last_why(s, "s6"), why);
  barrier(s);
  n = dirty_count(s, "s6");
  write_file(pidfile, "1235\n"); /* in place: its close-write */
  CHECK(wait_dirty(s, "s6", n + 1));
  CHECK(s->last_reason == BR_WATCH_SIDECAR);
  barrier(s);
  n = dirty_count(s, "s6");
  CHECK(unlink(pidfile) == 0);
  write_file(join(f, run, "pipelock.pid"), "99\n");
  barrier(s);
  CHECK(dirty_count(s, "s6") == n);
  br_watch_forget(w, "s6");
  seen_clear(s);
}

/* The slug removed while a callback forgets it from inside the dispatch. */
static void test_vanish_forget(struct br_watch *w, struct seen *s) {
  struct slug_paths p;
  char f[PATH_MAX];
  mkdirs(join(f, state, "s5/routes.d"));
  mkdirs(join(f, state, "s5/egress"));
  write_file(join(f, state, "s5/routes.d/a.yaml"), "routes: []\n");
  CHECK(watch_standard(w, state, "s5", NULL, &p) == 0);
  size_t before = br_watch_count(w);
  s->forget_on_vanish = "s5";
  remove_tree(p.dir);
  struct want want = {s, "s5", 0};
  CHECK(wait_until(have_vanished, &want));
  barrier(s);
  CHECK(br_watch_count(w) < before);
  CHECK(!br_watch_complete(w, "s5"));
  s->forget_on_vanish = NULL;
  seen_clear(s);
}

/* The state root moved away: an overflow (resync), and the root is
 * watched again by br_watch_rearm() once it is back. */
static void test_root_moved(void) {
  char root[PATH_MAX], away[PATH_MAX], p[PATH_MAX];
  mkdirs(join(root, base, "moving-state"));
  join(away, base, "moved-state");
  struct seen s;
  seen_init(&s);
  struct br_watch w;
  CHECK(br_watch_init(&w, &loop, root, &callbacks, &s) == 0);
  s.w = &w;
  CHECK(rename(root, away) == 0);
  CHECK(wait_until(have_overflow, &s));
  CHECK(br_watch_count(&w) == 0);
  CHECK(br_watch_rearm(&w) == -ENOENT);
  mkdirs(root);
  CHECK(br_watch_rearm(&w) == 0);
  CHECK(br_watch_count(&w) == 1);
  mkdirs(join(p, root, "back"));
  struct want want = {&s, "back", 0};
  CHECK(wait_until(have_appeared, &want));
  br_watch_close(&w, NULL);
  uv_run(&loop, UV_RUN_NOWAIT);
  seen_clear(&s);
}

static bool write_knob(const char *knob, const char *value) {
  FILE *fp = fopen(knob, "w");
  if (!fp)
    return false;
  bool ok = fputs(value, fp) >= 0;
  return fclose(fp) == 0 && ok;
}

/* watch_failed with a real ENOSPC. The watch limit is per user namespace,
 * so a child in a namespace of its own lowers it there without touching
 * the host's limit (other processes of this user keep theirs). */
static void test_watch_failed(void) {
  fflush(stdout);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    const char *knob = "/proc/sys/user/max_inotify_watches";
    if (unshare(CLONE_NEWUSER) < 0 || !write_knob(knob, "3\n")) {
      printf("watch_failed: SKIPPED (no user namespace with a writable %s: %s)\n", knob, strerror(errno));
      fflush(stdout);
      _exit(0);
    }
    /* The parent's loop and its epoll fd are the parent's business. */
    CHECK(uv_loop_init(&loop) == 0);
    char root[PATH_MAX], f[PATH_MAX];
    mkdirs(join(f, base, "limited-state/s1/routes.d"));
    mkdirs(join(f, base, "limited-state/s1/egress"));
    mkdirs(join(f, base, "limited-state/s1/pipelock"));
    join(root, base, "limited-state");
    struct seen s;
    seen_init(&s);
    struct br_watch w;
    CHECK(br_watch_init(&w, &loop, root, &callbacks, &s) == 0);
    s.w = &w;
    struct slug_paths p;
    CHECK(watch_standard(&w, root, "s1", NULL, &p) == 0);
    CHECK(s.failed.n == 1);
    CHECK(!br_watch_complete(&w, "s1"));
    CHECK(br_watch_count(&w) == 3);
    char want[32];
    snprintf(want, sizeof want, "|%d", -ENOSPC);
    if (s.failed.n == 1)
      CHECK(strstr(s.failed.v[0], want) != NULL);
    /* Still failing: not reported again. */
    CHECK(watch_standard(&w, root, "s1", NULL, &p) == 0);
    CHECK(s.failed.n == 1);
    /* Room again: complete, and events flow. */
    CHECK(write_knob(knob, "100\n"));
    CHECK(watch_standard(&w, root, "s1", NULL, &p) == 0);
    CHECK(br_watch_complete(&w, "s1"));
    CHECK(br_watch_count(&w) == 5);
    write_via_temp(p.routes, "a.yaml", "routes: []\n");
    CHECK(wait_dirty(&s, "s1", 1));
    printf("watch_failed: ENOSPC reported once (%s), complete after the limit was raised\n",
           s.failed.n ? s.failed.v[0] : "none");
    fflush(stdout);
    _exit(check_failures ? 1 : 0);
  }
  int status = 0;
  CHECK(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* Forces IN_Q_OVERFLOW with a queue of 16 records: max_queued_events is
 * read when an instance is created, so it is lowered only around
 * br_watch_init() and restored at once. */
static void test_overflow(void) {
  const char *knob = "/proc/sys/fs/inotify/max_queued_events";
  char saved[32] = "";
  FILE *fp = fopen(knob, "r");
  if (fp) {
    if (!fgets(saved, sizeof saved, fp))
      saved[0] = '\0';
    fclose(fp);
  }
  fp = geteuid() == 0 && saved[0] ? fopen(knob, "w") : NULL;
  if (!fp || fputs("16\n", fp) < 0 || fclose(fp) != 0) {
    printf("overflow: SKIPPED (needs root and a writable %s)\n", knob);
    return;
  }
  char root[PATH_MAX];
  mkdirs(join(root, base, "overflow-state"));
  struct seen s;
  seen_init(&s);
  struct br_watch w;
  int rc = br_watch_init(&w, &loop, root, &callbacks, &s);
  s.w = &w;
  fp = fopen(knob, "w");
  CHECK(fp && fputs(saved, fp) >= 0 && fclose(fp) == 0);
  CHECK(rc == 0);
  if (rc)
    return;
  char p[PATH_MAX], name[32];
  for (int i = 0; i < 100; i++) {
    snprintf(name, sizeof name, "d%d", i);
    mkdirs(join(p, root, name));
  }
  CHECK(wait_until(have_overflow, &s));
  printf("overflow: forced with max_queued_events=16, %d overflow callback(s), restored to %s", s.overflows,
         saved);
  br_watch_close(&w, NULL);
  uv_run(&loop, UV_RUN_NOWAIT);
  seen_clear(&s);
}

/* 10,000 slugs, each with routes.d, egress/, pipelock/ and a second source
 * in a shared git-sync checkout that does not have its directory yet, so
 * one wd is shared by 10,000 link watches and another by 10,000 "waiting
 * for sN" watches. */
static void test_scale(void) {
  enum { SLUGS = 10000 };
  char root[PATH_MAX], git[PATH_MAX], f[PATH_MAX], name[32];
  join(root, base, "scale-state");
  join(git, base, "scale-git");
  mkdirs(join(f, git, "rev-1/bottles"));
  CHECK(symlink("rev-1", join(f, git, "current")) == 0);
  double t0 = now_ms();
  for (int i = 0; i < SLUGS; i++) {
    snprintf(name, sizeof name, "s%d", i);
    char d[PATH_MAX];
    join(d, root, name);
    mkdirs(join(f, d, "routes.d"));
    mkdirs(join(f, d, "egress"));
    mkdirs(join(f, d, "pipelock"));
  }
  double t1 = now_ms();
  struct seen s;
  seen_init(&s);
  struct br_watch w;
  CHECK(br_watch_init(&w, &loop, root, &callbacks, &s) == 0);
  s.w = &w;
  struct slug_paths p;
  double t2 = now_ms(), half = 0;
  for (int i = 0; i < SLUGS; i++) {
    if (i == SLUGS / 2)
      half = now_ms();
    snprintf(name, sizeof name, "s%d", i);
    char src[PATH_MAX], f2[PATH_MAX];
    join(src, join(f2, git, "current/bottles"), name);
    CHECK(watch_standard(&w, root, name, src, &p) == 0);
  }
  double t3 = now_ms();
  size_t watches = br_watch_count(&w);
  CHECK(s.failed.n == 0);
  /* root + 4 per slug + GIT (the link) + rev-1/bottles (the missing dirs) */
  CHECK(watches == 1 + 4 * (size_t)SLUGS + 2);

  /* Re-adding every slug (what a full resync does) must not leak watches. */
  for (int i = 0; i < SLUGS; i++) {
    snprintf(name, sizeof name, "s%d", i);
    char src[PATH_MAX], f2[PATH_MAX];
    join(src, join(f2, git, "current/bottles"), name);
    CHECK(watch_standard(&w, root, name, src, &p) == 0);
  }
  double t4 = now_ms();
  CHECK(br_watch_count(&w) == watches);

  /* One record for a name nobody waits for, checked against the 10,000
   * users of the shared wd. */
  write_file(join(f, git, "rev-1/bottles/unrelated"), "");
  mkdirs(join(f, git, "rev-1/bottles/s42"));
  CHECK(wait_dirty(&s, "s42", 1));
  CHECK(dirty_count(&s, "s41") == 0);

  double t5 = now_ms();
  for (int i = 0; i < SLUGS; i++) {
    snprintf(name, sizeof name, "s%d", i);
    br_watch_forget(&w, name);
  }
  double t6 = now_ms();
  CHECK(br_watch_count(&w) == 1);
  /* The second half costing about what the first did is what shows that
   * adding a slug does not get slower with the slugs already there. */
  printf("scale: %d slugs: mkdir %.0f ms; br_watch_slug %.0f ms (%.1f us/slug; first half "
         "%.0f ms, second half %.0f ms; %zu watches); again (resync) %.0f ms; forget all %.0f ms\n",
         SLUGS, t1 - t0, t3 - t2, (t3 - t2) * 1000 / SLUGS, half - t2, t3 - half, watches, t4 - t3, t6 - t5);
  CHECK(t3 - t2 < 10000); /* quadratic behaviour would be minutes, not seconds */
  br_watch_close(&w, NULL);
  uv_run(&loop, UV_RUN_NOWAIT);
  seen_clear(&s);
}

static bool closed;
static void on_closed(struct br_watch *w) {
  (void)w;
  closed = true;
}

int main(void) {
  snprintf(base, sizeof base, "%s/br-watch-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (!mkdtemp(base)) {
    perror("mkdtemp");
    return 1;
  }
  /* Through a symlink, as /var/run -> /run would be. */
  char real_state[PATH_MAX];
  mkdirs(join(real_state, base, "real-state"));
  join(state, base, "state");
  CHECK(symlink("real-state", state) == 0);
  join(sentinel_src, base, "sentinel-src");
  mkdirs(sentinel_src);

  CHECK(uv_loop_init(&loop) == 0);
  br_strmap_init(&owned);
  struct seen s;
  seen_init(&s);
  struct br_watch w;
  CHECK(br_watch_init(&w, &loop, state, &callbacks, &s) == 0);
  s.w = &w;
  CHECK(br_watch_count(&w) == 1);
  char sentinel_dir[PATH_MAX];
  mkdirs(join(sentinel_dir, state, "sentinel"));
  CHECK(watch_sources(&w, "sentinel", sentinel_dir, sentinel_src) == 0);
  /* Relative paths are refused. */
  CHECK(watch_sources(&w, "bad", "relative/dir", sentinel_src) == -EINVAL);
  CHECK(watch_sources(&w, "bad", sentinel_dir, "relative") == -EINVAL);

  test_appear_vanish(&s);
  test_fragments(&w, &s);
  test_symlink_swap(&w, &s);
  test_configmap(&w, &s);
  test_missing_sources(&w, &s);
  test_vanish_forget(&w, &s);
  test_pidfiles(&w, &s);
  test_unanswered(&w, &s);

  /* Idle: the watcher holds no timer, so the loop would block forever. */
  CHECK(uv_backend_timeout(&loop) == -1);

  br_watch_close(&w, on_closed);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(closed);
  seen_clear(&s);

  test_root_moved();
  test_watch_failed();
  test_overflow();
  test_scale();
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
  for (size_t i = 0; i < owned.cap; i++)
    if (owned.slots[i].key)
      owned_free(owned.slots[i].value);
  br_strmap_free(&owned);
  remove_tree(base);
  CHECK_DONE();
}
