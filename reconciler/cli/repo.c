/* repo: finds the bottles of a GitOps repository tree by its layout (see
 * repo.h). Lists directories and resolves paths; reading and judging the
 * fragments is desired.c's, as it is the daemon's. */
#include "reconciler/cli/repo.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "reconciler/model/fragment.h"

#define BOTTLES "bottles"
#define HOSTS "hosts"
#define SLUG_TEMPLATE "{slug}"

void br_repo_init(struct br_repo *repo) { memset(repo, 0, sizeof *repo); }

void br_repo_free(struct br_repo *repo) {
  for (size_t i = 0; i < repo->n; i++) {
    free(repo->v[i].host);
    br_strv_free(&repo->v[i].sources);
  }
  free(repo->v);
  br_repo_init(repo);
}

/* The names in dir but dot names, in byte order, so that findings and
 * bottles come out the same on every machine. */
static int list_sorted(const char *dir, struct br_strv *names) {
  DIR *d = opendir(dir);
  if (!d)
    return -errno;
  int rc = 0;
  struct dirent *e;
  while (!rc && (e = readdir(d)))
    if (e->d_name[0] != '.')
      rc = br_strv_add(names, e->d_name);
  closedir(d);
  br_strv_sort(names);
  return rc;
}

/* prefix joined with name; prefix "" is the current directory. */
static int join(struct br_buf *out, const char *prefix, const char *name) {
  br_buf_reset(out);
  return prefix[0] ? br_buf_printf(out, "%s/%s", prefix, name) : br_buf_adds(out, name);
}

struct scan {
  const char *dir;      /* the tree as given, "" for "." */
  char real[PATH_MAX];  /* its real path: bottle folders must stay inside it */
  struct br_repo *repo; /* what it finds */
  struct br_buf *findings;
  struct br_strv refused; /* slugs whose bottles/<slug> is left out */
};

static bool inside_tree(const struct scan *s, const char *path, char *resolved) {
  if (!realpath(path, resolved))
    return false;
  size_t n = strlen(s->real);
  /* A tree at "/" holds every path; otherwise a prefix ending at a '/'. */
  return strcmp(s->real, "/") == 0 || (strncmp(resolved, s->real, n) == 0 && (!resolved[n] || resolved[n] == '/'));
}

static int add_bottle(struct scan *s, const char *slug, const char *host, const char *folder) {
  struct br_repo *repo = s->repo;
  if (repo->n == repo->cap) {
    size_t cap = repo->cap ? repo->cap * 2 : 16;
    struct br_repo_bottle *v = realloc(repo->v, cap * sizeof *v);
    if (!v)
      return -ENOMEM;
    repo->v = v;
    repo->cap = cap;
  }
  struct br_repo_bottle *b = &repo->v[repo->n];
  memset(b, 0, sizeof *b);
  snprintf(b->slug, sizeof b->slug, "%s", slug);
  br_strv_init(&b->sources);
  repo->n++;
  if (host && !(b->host = strdup(host)))
    return -ENOMEM;
  int rc = 0;
  /* A host merges the fleet's folder first, then its own (the order of the
   * documented sources); a fleet folder refused above is not read. */
  if (host && !br_strv_contains(&s->refused, slug)) {
    struct br_buf fleet;
    br_buf_init(&fleet, PATH_MAX);
    rc = join(&fleet, s->dir, BOTTLES "/");
    if (!rc)
      rc = br_buf_adds(&fleet, slug);
    if (!rc)
      rc = br_strv_add(&b->sources, fleet.data);
    br_buf_free(&fleet);
  }
  return rc ? rc : br_strv_add(&b->sources, folder);
}

/* Folders inside a bottle folder: the daemon reads none of them, and a
 * fragment put there would be silently ignored. */
static int scan_bottle_folder(struct scan *s, const char *folder) {
  struct br_strv names;
  br_strv_init(&names);
  int rc = list_sorted(folder, &names);
  struct br_buf path;
  br_buf_init(&path, PATH_MAX);
  for (size_t i = 0; !rc && i < names.n; i++) {
    struct stat st;
    if ((rc = join(&path, folder, names.v[i])))
      break;
    if (!br_fragment_name_counts(names.v[i]) && lstat(path.data, &st) == 0 && S_ISDIR(st.st_mode))
      br_buf_printf(s->findings,
                    "%s:1:1: (folder): a folder inside a bottle folder is never read, "
                    "expected its fragments directly in %s/\n",
                    path.data, folder);
  }
  br_buf_free(&path);
  br_strv_free(&names);
  /* Gone since the listing, or unreadable: reading its fragments says so. */
  return rc == -ENOMEM ? rc : 0;
}

/* The bottle folders under prefix ("bottles" or "hosts/<host>/bottles"). */
static int scan_bottles(struct scan *s, const char *prefix, const char *host) {
  struct br_buf dir, path;
  br_buf_init(&dir, PATH_MAX);
  br_buf_init(&path, PATH_MAX);
  struct br_strv names;
  br_strv_init(&names);
  int rc = join(&dir, s->dir, prefix);
  if (!rc)
    rc = list_sorted(dir.data, &names);
  for (size_t i = 0; !rc && i < names.n; i++) {
    const char *name = names.v[i];
    char resolved[PATH_MAX];
    struct stat st;
    if ((rc = join(&path, dir.data, name)))
      break;
    if (stat(path.data, &st) < 0 || !S_ISDIR(st.st_mode)) {
      if (br_fragment_name_counts(name))
        br_buf_printf(s->findings,
                      "%s:1:1: (file): a fragment outside a bottle folder is never read, "
                      "expected %s/<slug>/%s\n",
                      path.data, dir.data, name);
      continue;
    }
    if (!br_slug_valid(name)) {
      br_buf_printf(s->findings,
                    "%s:1:1: (folder): not a valid slug, expected [A-Za-z0-9][A-Za-z0-9_.-]* of at most "
                    "128 characters; no host reads this folder\n",
                    path.data);
      continue;
    }
    if (!inside_tree(s, path.data, resolved)) {
      br_buf_printf(s->findings,
                    "%s:1:1: (folder): leads outside the repository (to %s), expected a folder of the "
                    "repository; it is not read\n",
                    path.data, resolved);
      if (!host)
        rc = br_strv_add(&s->refused, name);
      continue;
    }
    rc = add_bottle(s, name, host, path.data);
    if (!rc)
      rc = scan_bottle_folder(s, path.data);
  }
  br_strv_free(&names);
  br_buf_free(&dir);
  br_buf_free(&path);
  return rc;
}

/* hosts/<host>/: its bottles/ folder; anything else there is never read. */
static int scan_hosts(struct scan *s) {
  struct br_buf dir, path;
  br_buf_init(&dir, PATH_MAX);
  br_buf_init(&path, PATH_MAX);
  struct br_strv names;
  br_strv_init(&names);
  int rc = join(&dir, s->dir, HOSTS);
  if (!rc)
    rc = list_sorted(dir.data, &names);
  for (size_t i = 0; !rc && i < names.n; i++) {
    struct stat st;
    if ((rc = join(&path, dir.data, names.v[i])))
      break;
    if (stat(path.data, &st) < 0 || !S_ISDIR(st.st_mode)) {
      if (br_fragment_name_counts(names.v[i]))
        br_buf_printf(s->findings,
                      "%s:1:1: (file): a fragment outside a bottle folder is never read, "
                      "expected %s/<host>/" BOTTLES "/<slug>/%s\n",
                      path.data, dir.data, names.v[i]);
      continue;
    }
    s->repo->hosts++;
    br_buf_reset(&path);
    if ((rc = br_buf_printf(&path, HOSTS "/%s/" BOTTLES, names.v[i])))
      break;
    rc = scan_bottles(s, path.data, names.v[i]);
    if (rc == -ENOENT || rc == -ENOTDIR) {
      rc = join(&path, dir.data, names.v[i]);
      if (!rc)
        br_buf_printf(s->findings,
                      "%s:1:1: (folder): holds no " BOTTLES "/ folder, expected %s/" BOTTLES
                      "/<slug>/ with that host's fragments\n",
                      path.data, path.data);
    }
  }
  br_strv_free(&names);
  br_buf_free(&dir);
  br_buf_free(&path);
  return rc;
}

int br_repo_scan(const char *dir, struct br_repo *repo, struct br_buf *findings) {
  struct scan s = {.dir = dir, .repo = repo, .findings = findings};
  br_strv_init(&s.refused);
  if (!realpath(dir, s.real))
    return -errno;
  struct stat st;
  if (stat(s.real, &st) < 0 || !S_ISDIR(st.st_mode))
    return -ENOTDIR;
  if (strcmp(s.dir, ".") == 0 || strcmp(s.dir, "./") == 0)
    s.dir = "";
  int rc = scan_bottles(&s, BOTTLES, NULL);
  bool fleet = rc == 0;
  if (rc == -ENOENT || rc == -ENOTDIR)
    rc = 0;
  if (!rc) {
    rc = scan_hosts(&s);
    if (rc == -ENOENT || rc == -ENOTDIR) {
      rc = 0;
      if (!fleet)
        br_buf_printf(findings,
                      "%s:1:1: (folder): holds neither " BOTTLES "/ nor " HOSTS "/, expected a repository "
                      "of bottles (" BOTTLES "/<slug>/*.yaml)\n",
                      dir);
    }
  }
  br_strv_free(&s.refused);
  return rc;
}

static bool ends_with(const char *s, size_t len, const char *suffix) {
  size_t n = strlen(suffix);
  return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

int br_repo_source_in_tree(const char *dir, const char *root, const char *tmpl, const char *source,
                           const char *slug, struct br_buf *out) {
  br_buf_reset(out);
  size_t len = strlen(source);
  if (root) {
    size_t n = strlen(root);
    while (n > 1 && root[n - 1] == '/')
      n--;
    if (strncmp(source, root, n) != 0 || (source[n] && source[n] != '/'))
      return -ENOENT;
    int rc = br_buf_adds(out, dir);
    return rc ? rc : br_buf_adds(out, source + n);
  }
  if (!ends_with(tmpl, strlen(tmpl), "/" BOTTLES "/" SLUG_TEMPLATE))
    return -ENOENT;
  /* source ends in "/bottles/<slug>" as its template does; a host's folder
   * is the two components before that, when they are "hosts/<host>". */
  size_t tail = strlen("/" BOTTLES "/") + strlen(slug);
  if (len < tail || !ends_with(source, len, slug) || !ends_with(source, len - strlen(slug), "/" BOTTLES "/"))
    return -ENOENT;
  size_t start = len - tail; /* the '/' before "bottles" */
  size_t host = start;
  while (host > 0 && source[host - 1] != '/')
    host--;
  if (host > 0 && host < start && ends_with(source, host, "/" HOSTS "/"))
    start = host - strlen("/" HOSTS "/");
  int rc = br_buf_adds(out, dir);
  return rc ? rc : br_buf_adds(out, source + start);
}

int br_repo_substitute(struct br_bottle *b, const char *dir, const char *root) {
  struct br_buf path;
  br_buf_init(&path, PATH_MAX);
  size_t moved = 0;
  int rc = 0;
  /* br_bottle_derive expands the templates in order: source i is template i. */
  for (size_t i = 0; !rc && i < b->sources.n && i < b->cfg->sources.n; i++) {
    rc = br_repo_source_in_tree(dir, root, b->cfg->sources.v[i], b->sources.v[i], b->slug, &path);
    if (rc == -ENOENT) {
      rc = 0;
      continue;
    }
    char *copy = rc ? NULL : strdup(path.data);
    if (!rc && !copy)
      rc = -ENOMEM;
    if (!rc) {
      free(b->sources.v[i]);
      b->sources.v[i] = copy;
      moved++;
    }
  }
  br_buf_free(&path);
  return rc ? rc : moved ? 0 : -ENOENT;
}
