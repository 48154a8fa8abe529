/* watch: owns the inotify fd and maps its records to slugs. It must not read
 * fragments, converge, or decide when anything runs: a record is a hint. */
#include "reconciler/daemon/watch.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "reconciler/model/fragment.h"

/* Why a slug holds a watch. The kernel hands out one wd per inode, so one
 * wd can serve several roles for several slugs (every slug of a shared git
 * checkout watches the directory holding its `current` link). */
enum role {
  ROLE_SLUG_FILE, /* the slug dir, for one file in it (metadata.json): dirty */
  ROLE_SOURCE,    /* a source directory: fragment events make the slug dirty */
  ROLE_PATH,      /* a directory holding a symlink, a missing component, or the first
                     component under the slug dir of a watched path: events for that name
                     re-resolve the slug's watches (its owner hands its paths over again) */
  ROLE_LIVE,      /* a live file's directory: events for its basename are drift */
  ROLE_PIDFILE,   /* a pidfile's directory: its basename written or moved in is a
                     sidecar that (re)started */
};

/* Everything a role can want. IN_ONLYDIR because every watch is on a
 * directory: if a file took the directory's place between our lstat() and
 * inotify_add_watch(), failing is better than watching the wrong thing. */
#define SELF_EVENTS (IN_DELETE_SELF | IN_MOVE_SELF)
#define ROOT_MASK (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | SELF_EVENTS)
#define FILE_EVENTS (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE)
/* A sidecar that starts writes its pidfile (in place or by a rename); one
 * that stops and removes it changes nothing a converge could use. */
#define PIDFILE_EVENTS (IN_CLOSE_WRITE | IN_MOVED_TO)

static uint32_t role_mask(enum role role) {
  switch (role) {
  case ROLE_SLUG_FILE:
    return FILE_EVENTS | IN_CREATE | SELF_EVENTS;
  case ROLE_SOURCE:
    return FILE_EVENTS | IN_CREATE | SELF_EVENTS;
  case ROLE_PATH:
    return IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | SELF_EVENTS;
  case ROLE_LIVE:
    return FILE_EVENTS | SELF_EVENTS;
  case ROLE_PIDFILE:
    return PIDFILE_EVENTS | SELF_EVENTS;
  }
  return 0;
}

/* One watch a slug needs; lives in its record's uses array. 16 bytes, of
 * which 10,000 slugs hold about 100,000. */
struct use {
  struct br_watch_wd *wd;
  uint32_t at : 29;  /* index of our entry in wd's users (MAX_USERS) */
  uint32_t role : 3; /* enum role */
  uint32_t name;     /* interned (name_get); 0 (none) for ROLE_SOURCE */
};
#define MAX_USERS (1u << 29)

/* Memory matters here: a host with 10,000 bottles holds about 50,000 of
 * these and 10,000 slug records, so each is one allocation with its strings
 * inside, arrays grow from their exact first size, and the one user most
 * wds have is kept inline.
 *
 * A wd's users are the slugs using it, one entry per use. A use keeps its
 * index here, so that dropping it is O(1) however many slugs share the wd
 * (10,000 slugs of one git checkout); the way back is a scan of the slug's
 * few uses (use_of), which spares an index on each of 100,000 entries. */
struct br_watch_wd {
  int wd;
  bool root;                   /* the state root's watch: never removed for lack of users */
  bool gone;                   /* the kernel already dropped it (IN_IGNORED): no rm_watch */
  uint32_t mask;               /* every mask bit added so far (masks only grow: IN_MASK_ADD) */
  uint32_t n_users, cap_users; /* cap_users <= 1: users.one */
  union {
    struct br_watch_slugrec *one;
    struct br_watch_slugrec **many;
  } users;
  struct br_watch_wd *next; /* hash chain */
  char *path;               /* the path it was last added under, for lstat() and messages:
                               first_path, or its own allocation after a rename */
  char first_path[];
};

/* A slug's paths are not kept: its owner derives them and hands them over
 * again when they move (paths_moved), which at 10,000 slugs saves about
 * 3 MB of strings the owner can always produce. */
struct br_watch_slugrec {
  struct use *uses;
  uint32_t n_uses, cap_uses;
  bool complete;                 /* every watch in place; watch_failed fires when this turns false */
  bool dead;                     /* forgotten while callbacks run; freed when they return */
  bool handed;                   /* br_watch_slug() ran since paths_moved last asked */
  uint64_t seen;                 /* generation of the last record that put it on the work list */
  size_t work_at;                /* its place on the work list for that record */
  struct br_watch_slugrec *next; /* hash chain, later the graveyard list */
  char name[];
};

/* A slug a record concerns, collected before any callback runs so that the
 * callbacks may change the tables freely. */
struct br_watch_work {
  struct br_watch_slugrec *slug;
  enum role role;
  bool refresh;
};

/* Grows from exactly what is needed first: a slug's uses are trimmed after
 * each refresh anyway. */
static int grow(void **v, uint32_t *cap, size_t need, size_t size) {
  if (need <= *cap)
    return 0;
  size_t n = *cap ? (size_t)*cap * 2 : need;
  while (n < need)
    n *= 2;
  void *p = realloc(*v, n * size);
  if (!p)
    return -ENOMEM;
  *v = p;
  *cap = n;
  return 0;
}

/* ---- wd table: hash of wd -> entry ---- */

static size_t wd_bucket(const struct br_watch *w, int wd) {
  return ((uint32_t)wd * 2654435761u) & (w->wds_cap - 1);
}

static struct br_watch_wd *wd_find(const struct br_watch *w, int wd) {
  if (!w->wds_cap)
    return NULL;
  for (struct br_watch_wd *e = w->wds[wd_bucket(w, wd)]; e; e = e->next)
    if (e->wd == wd)
      return e;
  return NULL;
}

static int wd_insert(struct br_watch *w, struct br_watch_wd *e) {
  if (w->wds_len + 1 > w->wds_cap) {
    size_t cap = w->wds_cap ? w->wds_cap * 2 : 64;
    struct br_watch_wd **t = calloc(cap, sizeof *t);
    if (!t)
      return -ENOMEM;
    for (size_t i = 0; i < w->wds_cap; i++)
      for (struct br_watch_wd *x = w->wds[i], *next; x; x = next) {
        next = x->next;
        size_t b = ((uint32_t)x->wd * 2654435761u) & (cap - 1);
        x->next = t[b];
        t[b] = x;
      }
    free(w->wds);
    w->wds = t;
    w->wds_cap = cap;
  }
  size_t b = wd_bucket(w, e->wd);
  e->next = w->wds[b];
  w->wds[b] = e;
  w->wds_len++;
  return 0;
}

static void wd_unlink(struct br_watch *w, struct br_watch_wd *e) {
  for (struct br_watch_wd **p = &w->wds[wd_bucket(w, e->wd)]; *p; p = &(*p)->next)
    if (*p == e) {
      *p = e->next;
      w->wds_len--;
      return;
    }
}

static struct br_watch_slugrec **users(struct br_watch_wd *e) {
  return e->cap_users > 1 ? e->users.many : &e->users.one;
}

/* Room for need users; from the inline one to an array of two, then doubling. */
static int users_reserve(struct br_watch_wd *e, uint32_t need) {
  if (need <= 1 || need <= e->cap_users)
    return 0;
  if (need > MAX_USERS)
    return -ENOMEM;
  uint32_t cap = e->cap_users > 1 ? e->cap_users : 1;
  while (cap < need)
    cap *= 2;
  struct br_watch_slugrec **v =
      e->cap_users > 1 ? realloc(e->users.many, cap * sizeof *v) : malloc(cap * sizeof *v);
  if (!v)
    return -ENOMEM;
  if (e->cap_users <= 1)
    v[0] = e->users.one;
  e->users.many = v;
  e->cap_users = cap;
  return 0;
}

static void wd_free(struct br_watch_wd *e) {
  if (e->path != e->first_path)
    free(e->path);
  if (e->cap_users > 1)
    free(e->users.many);
  free(e);
}

static struct br_watch_wd *wd_new(int wd, const char *path) {
  size_t len = strlen(path) + 1;
  struct br_watch_wd *e = calloc(1, sizeof *e + len);
  if (!e)
    return NULL;
  e->wd = wd;
  e->path = e->first_path;
  memcpy(e->first_path, path, len);
  return e;
}

/* Forgets a wd nobody uses any more, and tells the kernel unless the kernel
 * told us first. Records already queued for it find no entry and are
 * skipped; the kernel allocates wds cyclically, so a new watch does not get
 * the old number while those records are still around. */
static void wd_drop(struct br_watch *w, struct br_watch_wd *e) {
  if (!e->gone) {
    inotify_rm_watch(w->fd, e->wd);
    wd_unlink(w, e);
  }
  wd_free(e);
}

/* ---- slug table: hash of name -> record; interned names ---- */

/* A name events must carry ("metadata.json", "routes.d"), shared by every
 * use that waits for it: 10,000 slugs need a handful of distinct names (or
 * one each, for a missing directory named after its slug). A use holds its
 * index, 4 bytes where a pointer took 8; index 0 is no name. The map gives
 * a name's index; the string is the map's own copy of the key. */
struct br_watch_name {
  const char *s; /* NULL while free */
  uint32_t refs; /* uses holding it; while free, the next free index (0: none) */
};

static uint32_t name_get(struct br_watch *w, const char *name) {
  uint32_t ix = (uint32_t)(uintptr_t)br_strmap_get(&w->names, name);
  if (!ix) {
    ix = w->names_free;
    if (!ix) { /* a new slot at the end; slot 0 stays unused */
      if (!w->names_n)
        w->names_n = 1;
      if (w->names_n == UINT32_MAX ||
          grow((void **)&w->names_v, &w->names_cap, w->names_n + 1, sizeof *w->names_v) < 0)
        return 0;
      ix = w->names_n;
    }
    struct br_strmap_entry *e;
    if (br_strmap_put(&w->names, name, (void *)(uintptr_t)ix) || !(e = br_strmap_entry(&w->names, name)))
      return 0;
    if (ix == w->names_n)
      w->names_n++;
    else
      w->names_free = w->names_v[ix].refs;
    w->names_v[ix] = (struct br_watch_name){.s = e->key};
  }
  w->names_v[ix].refs++;
  return ix;
}

static const char *name_str(const struct br_watch *w, uint32_t ix) { return ix ? w->names_v[ix].s : NULL; }

static void name_put(struct br_watch *w, uint32_t ix) {
  if (!ix || --w->names_v[ix].refs)
    return;
  br_strmap_del(&w->names, w->names_v[ix].s); /* reads the key before freeing it */
  w->names_v[ix] = (struct br_watch_name){.s = NULL, .refs = w->names_free};
  w->names_free = ix;
}

static struct br_watch_slugrec *slug_find(const struct br_watch *w, const char *name) {
  if (!w->slugs_cap)
    return NULL;
  for (struct br_watch_slugrec *s = w->slugs[(size_t)br_str_hash(name) & (w->slugs_cap - 1)]; s; s = s->next)
    if (strcmp(s->name, name) == 0)
      return s;
  return NULL;
}

static int slug_insert(struct br_watch *w, struct br_watch_slugrec *s) {
  if (w->slugs_len + 1 > w->slugs_cap) {
    size_t cap = w->slugs_cap ? w->slugs_cap * 2 : 64;
    struct br_watch_slugrec **t = calloc(cap, sizeof *t);
    if (!t)
      return -ENOMEM;
    for (size_t i = 0; i < w->slugs_cap; i++)
      for (struct br_watch_slugrec *x = w->slugs[i], *next; x; x = next) {
        next = x->next;
        size_t b = (size_t)br_str_hash(x->name) & (cap - 1);
        x->next = t[b];
        t[b] = x;
      }
    free(w->slugs);
    w->slugs = t;
    w->slugs_cap = cap;
  }
  size_t b = (size_t)br_str_hash(s->name) & (w->slugs_cap - 1);
  s->next = w->slugs[b];
  w->slugs[b] = s;
  w->slugs_len++;
  return 0;
}

static void slug_unlink(struct br_watch *w, struct br_watch_slugrec *s) {
  for (struct br_watch_slugrec **p = &w->slugs[(size_t)br_str_hash(s->name) & (w->slugs_cap - 1)]; *p;
       p = &(*p)->next)
    if (*p == s) {
      *p = s->next;
      w->slugs_len--;
      return;
    }
}

/* Its uses are gone (use_drop released their names), or the watcher is
 * closing and frees every name at once. */
static void slug_free(struct br_watch_slugrec *s) {
  free(s->uses);
  free(s);
}

/* ---- uses: the link between a slug and a wd ---- */

/* The index of s's use that is entry at of e's users. */
static size_t use_of(const struct br_watch_slugrec *s, const struct br_watch_wd *e, uint32_t at) {
  size_t i = 0;
  while (i < s->n_uses && (s->uses[i].wd != e || s->uses[i].at != at))
    i++;
  return i; /* found: every user entry has its use */
}

/* Removes use i of s, and the wd with it when it was the last user. */
static void use_drop(struct br_watch *w, struct br_watch_slugrec *s, size_t i) {
  struct use *u = &s->uses[i];
  struct br_watch_wd *e = u->wd;
  struct br_watch_slugrec **v = users(e), *last = v[--e->n_users];
  if (u->at != e->n_users) {
    last->uses[use_of(last, e, e->n_users)].at = u->at;
    v[u->at] = last;
  }
  if (e->n_users == 0 && !e->root)
    wd_drop(w, e);
  name_put(w, u->name);
  s->uses[i] = s->uses[--s->n_uses];
}

/* Adds a watch on dir for role, unless this refresh (uses from first_new
 * on) already holds the same one. IN_MASK_ADD because inotify_add_watch()
 * on an inode we already watch replaces its mask, and we only learn that it
 * is the same inode from the wd it returns; a mask never shrinks as roles
 * leave, which costs only records we filter out. A directory this refresh
 * already added with every bit role needs (a slug dir serves four uses) is
 * not asked for again: its wd cannot have changed in between without a
 * record that re-resolves the slug anyway. */
static int use_add(struct br_watch *w, struct br_watch_slugrec *s, size_t first_new, const char *dir,
                   enum role role, const char *name) {
  uint32_t mask = role_mask(role);
  struct br_watch_wd *e = NULL;
  for (size_t i = first_new; i < s->n_uses && !e; i++) {
    struct br_watch_wd *x = s->uses[i].wd;
    if ((x->mask & mask) == mask && strcmp(x->path, dir) == 0)
      e = x;
  }
  if (!e) {
    /* Every dir here was resolved by a walk: IN_DONT_FOLLOW, so that a
     * symlink swapped in since then fails instead of being followed. */
    int wd = inotify_add_watch(w->fd, dir, mask | IN_MASK_ADD | IN_ONLYDIR | IN_DONT_FOLLOW);
    if (wd < 0)
      return -errno;
    e = wd_find(w, wd);
    if (e) {
      /* The same inode reached under a new path (a renamed directory):
       * the newest path is the one lstat() must use. */
      if (strcmp(e->path, dir) != 0) {
        char *path = strdup(dir);
        if (!path)
          return -ENOMEM;
        if (e->path != e->first_path)
          free(e->path);
        e->path = path;
      }
    } else if (!(e = wd_new(wd, dir)) || wd_insert(w, e) < 0) {
      free(e);
      inotify_rm_watch(w->fd, wd);
      return -ENOMEM;
    }
    e->mask |= mask;
  }
  for (size_t i = first_new; i < s->n_uses; i++) {
    const struct use *u = &s->uses[i];
    const char *has = name_str(w, u->name);
    if (u->wd == e && u->role == role && (has == name || (has && name && strcmp(has, name) == 0)))
      return 0;
  }
  uint32_t interned = 0;
  if (grow((void **)&s->uses, &s->cap_uses, s->n_uses + 1, sizeof *s->uses) < 0 ||
      users_reserve(e, e->n_users + 1) < 0 || (name && !(interned = name_get(w, name)))) {
    if (e->n_users == 0 && !e->root)
      wd_drop(w, e);
    return -ENOMEM;
  }
  s->uses[s->n_uses] = (struct use){.wd = e, .at = e->n_users, .role = role, .name = interned};
  users(e)[e->n_users++] = s;
  s->n_uses++;
  return 0;
}

/* ---- resolving a path into watches ---- */

/* What one refresh remembers about the first watch the kernel refused. */
struct failure {
  int err;
  char path[PATH_MAX];
};

static void note_failure(struct failure *f, int err, const char *path) {
  if (err && !f->err) {
    f->err = err;
    snprintf(f->path, sizeof f->path, "%s", path);
  }
}

/* comp does not exist in dir (or is not a directory): watch dir for it to
 * appear. Not in the state root: its own watch reports directories
 * appearing there, and the caller answers with br_watch_slug(). */
static void watch_missing(struct br_watch *w, struct br_watch_slugrec *s, size_t first_new, const char *dir,
                          const char *comp, struct failure *f) {
  if (strcmp(dir, w->state_dir) == 0)
    return;
  int rc = use_add(w, s, first_new, dir, ROLE_PATH, comp);
  /* dir vanished since we looked: whoever removed it also removed what we
   * wait for, and the watch further up that saw it go re-resolves. */
  if (rc != -ENOENT && rc != -ENOTDIR)
    note_failure(f, rc, dir);
}

/* Walks path one component at a time, as the kernel would, and watches the
 * directory it leads to for role. Each symlink on the way has the directory
 * holding it watched for its name, because git-sync and Kubernetes swap
 * such links with rename(2), which moves the path to another inode without
 * any event inside the old or the new directory. The walk ends early at a
 * missing component, whose nearest existing ancestor is then watched for
 * it. The walk starts at from, a directory resolved by an earlier walk, or
 * at "/" when from is NULL. resolved, if not NULL, receives the directory
 * reached ("" if none). */
static void watch_path(struct br_watch *w, struct br_watch_slugrec *s, size_t first_new, const char *from,
                       const char *path, enum role role, const char *name, char *resolved, struct failure *f) {
  char done[PATH_MAX] = ""; /* resolved so far: real, existing; "" is "/" */
  char rest[PATH_MAX];      /* what is left to walk */
  char cand[PATH_MAX];
  if (resolved)
    resolved[0] = '\0';
  if (from && strcmp(from, "/") != 0)
    memcpy(done, from, strlen(from) + 1); /* from < PATH_MAX: it came from a walk */
  if (snprintf(rest, sizeof rest, "%s", path) >= (int)sizeof rest) {
    note_failure(f, -ENAMETOOLONG, path);
    return;
  }
  const char *p = rest;
  unsigned links = 0;
  for (;;) {
    while (*p == '/')
      p++;
    if (!*p)
      break;
    size_t len = strcspn(p, "/");
    char comp[NAME_MAX + 1];
    if (len > NAME_MAX) {
      note_failure(f, -ENAMETOOLONG, path);
      return;
    }
    memcpy(comp, p, len);
    comp[len] = '\0';
    p += len;
    if (strcmp(comp, ".") == 0)
      continue;
    if (strcmp(comp, "..") == 0) {
      /* done holds no symlinks, so its lexical parent is its real one. */
      char *slash = strrchr(done, '/');
      if (slash)
        *slash = '\0';
      continue;
    }
    if (snprintf(cand, sizeof cand, "%s/%s", done, comp) >= (int)sizeof cand) {
      note_failure(f, -ENAMETOOLONG, path);
      return;
    }
    /* The last component is usually a plain directory: watching it right
     * away proves that (IN_ONLYDIR, IN_DONT_FOLLOW) and saves the lstat()
     * that 10,000 slugs would pay three times each. Any failure takes the
     * careful way below, which knows symlinks and missing components. */
    const char *after = p + strspn(p, "/");
    if (!*after && use_add(w, s, first_new, cand, role, name) == 0) {
      if (resolved)
        memcpy(resolved, cand, strlen(cand) + 1);
      return;
    }
    struct stat st;
    if (lstat(cand, &st) < 0) {
      if (errno == ENOENT || errno == ENOTDIR)
        watch_missing(w, s, first_new, done[0] ? done : "/", comp, f);
      else
        note_failure(f, -errno, cand);
      return;
    }
    if (S_ISLNK(st.st_mode)) {
      int rc = use_add(w, s, first_new, done[0] ? done : "/", ROLE_PATH, comp);
      if (rc) {
        note_failure(f, rc, done[0] ? done : "/");
        return;
      }
      /* A loop of links: the link watches above notice when it is fixed,
       * and the loader reports the loop meanwhile. */
      if (++links > 40)
        return;
      char target[PATH_MAX];
      ssize_t n = readlink(cand, target, sizeof target - 1);
      if (n < 0) {
        /* Swapped again since the lstat(): its watch is in place, and the
         * record for that swap re-resolves. */
        return;
      }
      target[n] = '\0';
      char next[PATH_MAX];
      if (snprintf(next, sizeof next, "%s/%s", target, p) >= (int)sizeof next) {
        note_failure(f, -ENAMETOOLONG, cand);
        return;
      }
      memcpy(rest, next, strlen(next) + 1);
      p = rest;
      if (target[0] == '/')
        done[0] = '\0';
      continue;
    }
    if (!S_ISDIR(st.st_mode)) {
      /* A file where a directory should be: wait for it to become one. */
      watch_missing(w, s, first_new, done[0] ? done : "/", comp, f);
      return;
    }
    memcpy(done, cand, strlen(cand) + 1);
  }
  const char *dir = done[0] ? done : "/";
  int rc = use_add(w, s, first_new, dir, role, name);
  if (rc == -ENOENT || rc == -ENOTDIR) {
    /* Removed between the walk and the watch: wait for it to come back. */
    char *slash = strrchr(done, '/');
    if (slash && slash != done) {
      *slash = '\0';
      watch_missing(w, s, first_new, done, slash + 1, f);
    }
    return;
  }
  if (rc) {
    note_failure(f, rc, dir);
    return;
  }
  if (resolved)
    memcpy(resolved, dir, strlen(dir) + 1);
}

/* The first component of path below dir ("routes.d" for
 * STATE/SLUG/routes.d/x), when path lies strictly below dir/COMPONENT/.. or
 * is dir/COMPONENT itself and want_self. */
static bool first_below(const char *dir, const char *path, bool want_self, char *comp) {
  size_t n = strlen(dir);
  if (strncmp(path, dir, n) != 0 || path[n] != '/')
    return false;
  const char *p = path + n;
  while (*p == '/')
    p++;
  size_t len = strcspn(p, "/");
  if (len == 0 || len > NAME_MAX)
    return false;
  const char *after = p + len;
  while (*after == '/')
    after++;
  if (!*after && !want_self)
    return false;
  memcpy(comp, p, len);
  comp[len] = '\0';
  return true;
}

/* What follows "dir/" in path ("" for dir itself), or NULL when path is not
 * below dir. */
static const char *below(const char *dir, const char *path) {
  size_t n = strlen(dir);
  if (strncmp(path, dir, n) != 0 || (path[n] != '/' && path[n] != '\0'))
    return NULL;
  return path + n + (path[n] == '/');
}

/* What one refresh walks from: the slug dir as given and where its walk
 * ended ("" when it did not), so that paths below it need not re-walk (and
 * re-stat) the state root each. */
struct slug_base {
  const char *dir;
  char real[PATH_MAX];
};

/* Watches one source directory, and the slug dir for the first component
 * on its way (routes.d renamed away or removed shows there first). */
static void watch_source(struct br_watch *w, struct br_watch_slugrec *s, size_t first_new,
                         const struct slug_base *b, const char *src, struct failure *f) {
  const char *from = b->real[0] ? b->real : NULL, *rel;
  char comp[NAME_MAX + 1];
  if (from && (rel = below(b->dir, src)))
    watch_path(w, s, first_new, from, rel, ROLE_SOURCE, NULL, NULL, f);
  else
    watch_path(w, s, first_new, NULL, src, ROLE_SOURCE, NULL, NULL, f);
  if (b->real[0] && first_below(b->dir, src, true, comp)) {
    int rc = use_add(w, s, first_new, b->real, ROLE_PATH, comp);
    if (rc != -ENOENT && rc != -ENOTDIR)
      note_failure(f, rc, b->real);
  }
}

/* Live files and pidfiles alike: their directory, for their basename. */
static void watch_file(struct br_watch *w, struct br_watch_slugrec *s, size_t first_new, const struct slug_base *b,
                       const char *file, enum role role, struct failure *f) {
  const char *from = b->real[0] ? b->real : NULL, *rel;
  const char *slash = strrchr(file, '/');
  char dir[PATH_MAX], comp[NAME_MAX + 1];
  size_t dlen = slash ? (size_t)(slash - file) : 0;
  if (!slash || !slash[1] || dlen >= sizeof dir) {
    note_failure(f, -EINVAL, file);
    return;
  }
  memcpy(dir, file, dlen);
  dir[dlen] = '\0';
  if (from && (rel = below(b->dir, dir)))
    watch_path(w, s, first_new, from, rel, role, slash + 1, NULL, f);
  else
    watch_path(w, s, first_new, NULL, dlen ? dir : "/", role, slash + 1, NULL, f);
  if (b->real[0] && first_below(b->dir, file, false, comp)) {
    int rc = use_add(w, s, first_new, b->real, ROLE_PATH, comp);
    if (rc != -ENOENT && rc != -ENOTDIR)
      note_failure(f, rc, b->real);
  }
}

/* Resolves every path spec names (slug_dir without trailing slashes) and
 * moves s's watches to match. New watches are added before old ones are
 * dropped, so a wd both sets need is never removed and re-added (which
 * would lose the records in between). */
static void refresh(struct br_watch *w, struct br_watch_slugrec *s, const char *slug_dir,
                    const struct br_watch_spec *spec) {
  struct failure f = {0};
  size_t first_new = s->n_uses;
  struct slug_base b = {.dir = slug_dir};
  const char *rel;
  /* The state root is a real path that its own watch guards (moved or
   * deleted: every slug is re-resolved), so a slug dir below it is walked
   * from there rather than from "/". */
  if (w->root && (rel = below(w->state_dir, slug_dir)) && *rel)
    watch_path(w, s, first_new, w->state_dir, rel, ROLE_SLUG_FILE, "metadata.json", b.real, &f);
  else
    watch_path(w, s, first_new, NULL, slug_dir, ROLE_SLUG_FILE, "metadata.json", b.real, &f);
  for (size_t i = 0; spec->sources && i < spec->sources->n; i++)
    watch_source(w, s, first_new, &b, spec->sources->v[i], &f);
  for (size_t i = 0; spec->live_files && i < spec->live_files->n; i++)
    watch_file(w, s, first_new, &b, spec->live_files->v[i], ROLE_LIVE, &f);
  for (size_t i = 0; spec->pidfiles && i < spec->pidfiles->n; i++)
    watch_file(w, s, first_new, &b, spec->pidfiles->v[i], ROLE_PIDFILE, &f);
  /* Drop the old uses from the back: use_drop() fills the hole with the
   * last use, which is a new one and must stay. */
  for (size_t i = first_new; i-- > 0;)
    use_drop(w, s, i);
  if (s->n_uses && s->n_uses < s->cap_uses) {
    struct use *exact = realloc(s->uses, s->n_uses * sizeof *s->uses);
    if (exact) {
      s->uses = exact;
      s->cap_uses = s->n_uses;
    }
  }

  bool was_complete = s->complete;
  s->complete = f.err == 0;
  if (f.err && was_complete && w->cb->watch_failed)
    w->cb->watch_failed(w->ctx, s->name, f.path, f.err);
}

/* ---- dispatch ---- */

static void enter(struct br_watch *w) { w->dispatching++; }

/* Slugs forgotten while callbacks ran may still be on a work list; they are
 * freed once the outermost call returns. */
static void leave(struct br_watch *w) {
  if (--w->dispatching > 0)
    return;
  while (w->graveyard) {
    struct br_watch_slugrec *s = w->graveyard;
    w->graveyard = s->next;
    slug_free(s);
  }
}

static bool is_dir_at(const char *dir, const char *name) {
  char path[PATH_MAX];
  struct stat st;
  return snprintf(path, sizeof path, "%s/%s", dir, name) < (int)sizeof path && stat(path, &st) == 0 &&
         S_ISDIR(st.st_mode);
}

/* What one record means for the name in it, worked out once per record
 * however many slugs share the wd. */
struct record {
  const struct inotify_event *ev;
  const char *dir;  /* the wd's path */
  const char *name; /* NULL for records about the directory itself */
  uint32_t name_ix; /* its interned index; 0 when no use waits for it */
  int lstat_done;   /* 0 not yet, 1 st valid, -1 failed */
  struct stat st;
};

static const struct stat *record_lstat(struct record *r) {
  if (!r->lstat_done) {
    char path[PATH_MAX];
    r->lstat_done =
        snprintf(path, sizeof path, "%s/%s", r->dir, r->name) < (int)sizeof path && lstat(path, &r->st) == 0 ? 1
                                                                                                             : -1;
  }
  return r->lstat_done > 0 ? &r->st : NULL;
}

/* A regular file just created with one link is being written: its
 * IN_CLOSE_WRITE follows, and marking it now would converge on half a
 * file. A symlink, a hard link or anything gone already gets no
 * close-write, so it counts now. */
static bool create_counts(struct record *r) {
  const struct stat *st = record_lstat(r);
  return !st || !S_ISREG(st->st_mode) || st->st_nlink != 1;
}

static bool source_record_counts(struct record *r) {
  uint32_t m = r->ev->mask;
  if (r->name[0] == '.') {
    /* Kubernetes' atomic writer renames ..data_tmp over ..data; the
     * fragments are links through it and see no event of their own.
     * Temp files of editors and producers are never symlinks moved in. */
    if (!(m & IN_MOVED_TO))
      return false;
    const struct stat *st = record_lstat(r);
    return st && S_ISLNK(st->st_mode);
  }
  if (!br_fragment_name_counts(r->name))
    return false;
  if (m & FILE_EVENTS)
    return true;
  return (m & IN_CREATE) && create_counts(r);
}

enum { MATCH_NONE = 0, MATCH_DIRTY = 1, MATCH_REFRESH = 2 };

static int match(const struct use *u, struct record *r) {
  uint32_t m = r->ev->mask;
  if (m & (SELF_EVENTS | IN_IGNORED))
    return MATCH_DIRTY | MATCH_REFRESH;
  if (!r->name)
    return MATCH_NONE;
  if (u->role == ROLE_SOURCE)
    return source_record_counts(r) ? MATCH_DIRTY : MATCH_NONE;
  if (u->name != r->name_ix)
    return MATCH_NONE;
  switch (u->role) {
  case ROLE_SLUG_FILE:
    return (m & FILE_EVENTS) || ((m & IN_CREATE) && create_counts(r)) ? MATCH_DIRTY : MATCH_NONE;
  case ROLE_PATH:
    return m & (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO) ? MATCH_DIRTY | MATCH_REFRESH : MATCH_NONE;
  case ROLE_LIVE:
    return m & FILE_EVENTS ? MATCH_DIRTY : MATCH_NONE;
  case ROLE_PIDFILE:
    return m & PIDFILE_EVENTS ? MATCH_DIRTY : MATCH_NONE;
  case ROLE_SOURCE:
    break;
  }
  return MATCH_NONE;
}

static const char *verb(uint32_t m) {
  if (m & IN_CLOSE_WRITE)
    return "written";
  if (m & IN_MOVED_TO)
    return "moved in";
  if (m & IN_MOVED_FROM)
    return "moved out";
  if (m & IN_DELETE)
    return "deleted";
  if (m & IN_CREATE)
    return "created";
  if (m & IN_DELETE_SELF)
    return "deleted";
  if (m & IN_MOVE_SELF)
    return "moved away";
  if (m & IN_IGNORED)
    return "no longer watched";
  return "changed";
}

/* Asks the owner for s's paths again (dir: where the record was). Not
 * handed over (no callback, or the owner could not), s's watches may be
 * wrong from now on: it counts as not fully watched, and watch_failed
 * tells the owner to poll it until a br_watch_slug() puts them right. */
static void ask_paths(struct br_watch *w, struct br_watch_slugrec *s, const char *dir) {
  s->handed = false;
  if (w->cb->paths_moved)
    w->cb->paths_moved(w->ctx, s->name);
  if (s->dead || w->closing || s->handed)
    return;
  bool was_complete = s->complete;
  s->complete = false;
  if (was_complete && w->cb->watch_failed)
    w->cb->watch_failed(w->ctx, s->name, dir, -ESTALE);
}

static int work_add(struct br_watch *w, struct br_watch_slugrec *s, enum role role, int found) {
  if (s->seen == w->generation) {
    if (found & MATCH_REFRESH)
      w->work[s->work_at].refresh = true;
    return 0;
  }
  if (grow((void **)&w->work, &w->work_cap, w->work_len + 1, sizeof *w->work) < 0)
    return -ENOMEM;
  s->seen = w->generation;
  s->work_at = w->work_len;
  w->work[w->work_len++] =
      (struct br_watch_work){.slug = s, .role = role, .refresh = (found & MATCH_REFRESH) != 0};
  return 0;
}

/* Records on the state root: directories appearing and disappearing. */
static void root_record(struct br_watch *w, struct br_watch_wd *e, const struct inotify_event *ev) {
  uint32_t m = ev->mask;
  if (m & SELF_EVENTS) {
    br_log(BR_LOG_WARN, NULL, "state root %s was %s; watching it again once it is back, resyncing every slug",
           w->state_dir, m & IN_MOVE_SELF ? "moved" : "deleted");
    /* A moved root keeps its wd but no longer lives at state_dir: drop it,
     * br_watch_rearm() adds the watch again. */
    e->root = false;
    w->root = NULL;
    if (e->n_users == 0)
      wd_drop(w, e);
    if (w->cb->overflow)
      w->cb->overflow(w->ctx);
    return;
  }
  if (!ev->len || ev->name[0] == '.')
    return; /* .reconciler is ours; dot names are never slugs */
  if (m & (IN_CREATE | IN_MOVED_TO)) {
    /* A symlink to a directory counts as a slug too (br_slugs_list
     * follows links), and its IN_CREATE carries no IN_ISDIR. */
    if (((m & IN_ISDIR) || is_dir_at(w->state_dir, ev->name)) && w->cb->slug_appeared)
      w->cb->slug_appeared(w->ctx, ev->name);
  } else if (m & (IN_DELETE | IN_MOVED_FROM)) {
    if (w->cb->slug_vanished)
      w->cb->slug_vanished(w->ctx, ev->name);
  }
}

static void handle_record(struct br_watch *w, const struct inotify_event *ev) {
  if (ev->mask & IN_Q_OVERFLOW) {
    if (w->cb->overflow)
      w->cb->overflow(w->ctx);
    return;
  }
  struct br_watch_wd *e = wd_find(w, ev->wd);
  if (!e)
    return; /* a watch we removed; its last records are still queued */
  if (e->root) {
    if (ev->mask & IN_IGNORED) {
      /* Gone without a DELETE_SELF first: its filesystem was unmounted. */
      br_log(BR_LOG_WARN, NULL, "state root %s is no longer watchable; resyncing every slug", w->state_dir);
      e->root = false;
      w->root = NULL;
      if (w->cb->overflow)
        w->cb->overflow(w->ctx);
      if (w->closing || !(e = wd_find(w, ev->wd)))
        return;
    } else {
      root_record(w, e, ev);
      /* The callbacks may have changed the tables. */
      if (w->closing || !(e = wd_find(w, ev->wd)))
        return;
    }
  }

  struct record r = {.ev = ev, .dir = e->path, .name = ev->len ? ev->name : NULL};
  if (r.name)
    r.name_ix = (uint32_t)(uintptr_t)br_strmap_get(&w->names, r.name);
  bool lost = false;
  w->generation++;
  w->work_len = 0;
  for (size_t i = 0; i < e->n_users && !lost; i++) {
    struct br_watch_slugrec *s = users(e)[i];
    const struct use *u = &s->uses[use_of(s, e, (uint32_t)i)];
    int found = match(u, &r);
    lost = found && work_add(w, s, u->role, found) < 0;
  }

  char why[PATH_MAX + 64];
  const char *shown = e->path;
  size_t root_len = strlen(w->state_dir);
  if (strncmp(shown, w->state_dir, root_len) == 0 && shown[root_len] == '/')
    shown += root_len + 1;
  snprintf(why, sizeof why, "%s%s%s %s", shown, r.name ? "/" : "", r.name ? r.name : "", verb(ev->mask));
  char live[PATH_MAX] = ""; /* the live file a drift record names (e is gone after IN_IGNORED) */
  if (r.name && snprintf(live, sizeof live, "%s/%s", e->path, r.name) >= (int)sizeof live)
    live[0] = '\0';
  char dir[PATH_MAX]; /* and the directory, for watch_failed */
  snprintf(dir, sizeof dir, "%s", e->path);

  if (ev->mask & IN_IGNORED) {
    /* The kernel removed the watch (its directory is gone): unhook every
     * user; each is asked for its paths below (every use matched with
     * MATCH_REFRESH), and its answer puts its watches where they belong. */
    wd_unlink(w, e);
    e->gone = true;
    if (e->n_users == 0) {
      wd_free(e);
    } else {
      while (e->n_users > 1) {
        struct br_watch_slugrec *last = users(e)[e->n_users - 1];
        use_drop(w, last, use_of(last, e, e->n_users - 1));
      }
      struct br_watch_slugrec *last = users(e)[0];
      use_drop(w, last, use_of(last, e, 0)); /* frees e */
    }
  }

  for (size_t i = 0; i < w->work_len && !w->closing; i++) {
    struct br_watch_work item = w->work[i];
    if (item.slug->dead)
      continue;
    if (item.refresh)
      ask_paths(w, item.slug, dir);
    if (item.slug->dead || w->closing || !w->cb->slug_dirty)
      continue;
    if (item.role == ROLE_LIVE) {
      char drift[sizeof why + 8];
      snprintf(drift, sizeof drift, "drift: %s", why);
      w->cb->slug_dirty(w->ctx, item.slug->name, BR_WATCH_DRIFT, drift, live[0] ? live : NULL);
    } else if (item.role == ROLE_PIDFILE) {
      char started[sizeof why + 24];
      snprintf(started, sizeof started, "sidecar (re)started: %s", why);
      w->cb->slug_dirty(w->ctx, item.slug->name, BR_WATCH_SIDECAR, started, NULL);
    } else {
      enum br_watch_reason reason = item.role == ROLE_SLUG_FILE ? BR_WATCH_METADATA : BR_WATCH_INPUT;
      w->cb->slug_dirty(w->ctx, item.slug->name, reason, why, NULL);
    }
  }
  w->work_len = 0;
  /* Out of memory for the work list: the slugs left off are recovered by
   * the resync an overflow causes. */
  if (lost && !w->closing && w->cb->overflow)
    w->cb->overflow(w->ctx);
}

/* Reads until the queue is empty (EAGAIN), but at most a bounded number of
 * buffers per wakeup: under a storm the loop gets to run its other handles,
 * and the poll is level-triggered, so we are called again at once. */
static void on_readable(uv_poll_t *handle, int status, int events) {
  struct br_watch *w = handle->data;
  (void)events;
  if (status < 0) {
    br_log(BR_LOG_ERROR, NULL, "inotify poll failed: %s; resyncing every slug", uv_strerror(status));
    if (w->cb->overflow)
      w->cb->overflow(w->ctx);
    return;
  }
  /* The kernel writes whole struct inotify_event records back to back,
   * each padded so the next stays aligned; the union aligns the first. */
  union {
    struct inotify_event ev;
    char bytes[16 * 1024];
  } buf;
  enter(w);
  for (int reads = 0; reads < 64 && !w->closing; reads++) {
    ssize_t n = read(w->fd, buf.bytes, sizeof buf.bytes);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno != EAGAIN) {
        br_log(BR_LOG_ERROR, NULL, "reading inotify events failed: %s; resyncing every slug", strerror(errno));
        if (w->cb->overflow)
          w->cb->overflow(w->ctx);
      }
      break;
    }
    if (n == 0)
      break;
    for (size_t off = 0; off + sizeof(struct inotify_event) <= (size_t)n && !w->closing;) {
      const struct inotify_event *ev = (const struct inotify_event *)(buf.bytes + off);
      handle_record(w, ev);
      off += sizeof *ev + ev->len;
    }
  }
  leave(w);
}

/* ---- public ---- */

static int add_root(struct br_watch *w) {
  int wd = inotify_add_watch(w->fd, w->state_dir, ROOT_MASK | IN_MASK_ADD | IN_ONLYDIR);
  if (wd < 0)
    return -errno;
  struct br_watch_wd *e = wd_find(w, wd);
  if (!e) {
    if (!(e = wd_new(wd, w->state_dir)) || wd_insert(w, e) < 0) {
      free(e);
      inotify_rm_watch(w->fd, wd);
      return -ENOMEM;
    }
  }
  e->mask |= ROOT_MASK;
  e->root = true;
  w->root = e;
  return 0;
}

int br_watch_init(struct br_watch *w, uv_loop_t *loop, const char *state_dir, const struct br_watch_callbacks *cb,
                  void *ctx) {
  memset(w, 0, sizeof *w);
  w->loop = loop;
  w->cb = cb;
  w->ctx = ctx;
  w->fd = -1;
  /* The real path, so that comparisons with resolved paths hold when the
   * state root is reached through a symlink. */
  w->state_dir = realpath(state_dir, NULL);
  if (!w->state_dir)
    return -errno;
  int rc;
  w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (w->fd < 0) {
    rc = -errno;
    goto fail;
  }
  if ((rc = add_root(w)) < 0)
    goto fail;
  if ((rc = uv_poll_init(loop, &w->poll, w->fd)) < 0)
    goto fail;
  w->poll.data = w;
  if ((rc = uv_poll_start(&w->poll, UV_READABLE, on_readable)) < 0) {
    /* The handle exists now and only its close callback may free the
     * rest (libuv's unix backend cannot fail here, but say what happens). */
    br_watch_close(w, NULL);
    return rc;
  }
  return 0;
fail:
  if (w->root)
    wd_free(w->root);
  free(w->wds);
  if (w->fd >= 0)
    close(w->fd);
  free(w->state_dir);
  memset(w, 0, sizeof *w);
  w->fd = -1;
  return rc;
}

/* Every path absolute and shorter than PATH_MAX, checked before anything
 * changes. */
static bool spec_valid(const struct br_watch_spec *spec) {
  if (!spec->slug || !spec->slug[0] || !spec->slug_dir || spec->slug_dir[0] != '/' ||
      strlen(spec->slug_dir) >= PATH_MAX)
    return false;
  const struct br_strv *lists[] = {spec->sources, spec->live_files, spec->pidfiles};
  for (size_t l = 0; l < 3; l++)
    for (size_t i = 0; lists[l] && i < lists[l]->n; i++)
      if (lists[l]->v[i][0] != '/' || strlen(lists[l]->v[i]) >= PATH_MAX)
        return false;
  return true;
}

int br_watch_slug(struct br_watch *w, const struct br_watch_spec *spec) {
  if (w->closing)
    return -ECANCELED;
  if (!spec_valid(spec))
    return -EINVAL;
  struct br_watch_slugrec *s = slug_find(w, spec->slug);
  if (!s) {
    size_t len = strlen(spec->slug) + 1;
    s = calloc(1, sizeof *s + len);
    if (!s)
      return -ENOMEM;
    memcpy(s->name, spec->slug, len);
    if (slug_insert(w, s) < 0) {
      free(s);
      return -ENOMEM;
    }
    s->complete = true;
  }
  /* Without trailing slashes: "STATE/SLUG/" must compare as a prefix of
   * "STATE/SLUG/routes.d". */
  char slug_dir[PATH_MAX];
  size_t dir_len = strlen(spec->slug_dir);
  while (dir_len > 1 && spec->slug_dir[dir_len - 1] == '/')
    dir_len--;
  memcpy(slug_dir, spec->slug_dir, dir_len);
  slug_dir[dir_len] = '\0';
  s->handed = true;
  enter(w);
  refresh(w, s, slug_dir, spec);
  leave(w);
  return 0;
}

void br_watch_forget(struct br_watch *w, const char *slug) {
  struct br_watch_slugrec *s = slug_find(w, slug);
  if (!s)
    return;
  slug_unlink(w, s);
  while (s->n_uses)
    use_drop(w, s, s->n_uses - 1);
  if (w->dispatching) {
    s->dead = true;
    s->next = w->graveyard;
    w->graveyard = s;
  } else {
    slug_free(s);
  }
}

bool br_watch_complete(const struct br_watch *w, const char *slug) {
  const struct br_watch_slugrec *s = slug_find(w, slug);
  return s && s->complete;
}

int br_watch_rearm(struct br_watch *w) {
  if (w->closing)
    return -ECANCELED;
  return w->root ? 0 : add_root(w);
}

size_t br_watch_count(const struct br_watch *w) { return w->wds_len; }

static void on_poll_closed(uv_handle_t *handle) {
  struct br_watch *w = handle->data;
  close(w->fd);
  w->fd = -1;
  for (size_t i = 0; i < w->slugs_cap; i++)
    for (struct br_watch_slugrec *s = w->slugs[i], *next; s; s = next) {
      next = s->next;
      slug_free(s);
    }
  while (w->graveyard) {
    struct br_watch_slugrec *s = w->graveyard;
    w->graveyard = s->next;
    slug_free(s);
  }
  for (size_t i = 0; i < w->wds_cap; i++)
    for (struct br_watch_wd *e = w->wds[i], *next; e; e = next) {
      next = e->next;
      wd_free(e);
    }
  free(w->wds);
  free(w->slugs);
  free(w->work);
  br_strmap_free(&w->names);
  free(w->names_v);
  w->names_v = NULL;
  w->names_n = w->names_cap = w->names_free = 0;
  free(w->state_dir);
  w->wds = NULL;
  w->slugs = NULL;
  w->work = NULL;
  w->state_dir = NULL;
  w->root = NULL;
  w->wds_cap = w->wds_len = w->slugs_cap = w->slugs_len = w->work_cap = w->work_len = 0;
  if (w->on_closed)
    w->on_closed(w);
}

void br_watch_close(struct br_watch *w, void (*on_closed)(struct br_watch *w)) {
  if (w->closing)
    return;
  w->closing = true;
  w->on_closed = on_closed;
  uv_close((uv_handle_t *)&w->poll, on_poll_closed);
}
