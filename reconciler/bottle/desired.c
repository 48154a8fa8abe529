/* desired: turns source directories into one slug's desired routes. Events
 * are only hints, so this reads every fragment again each time it runs. */
#include "reconciler/bottle/desired.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/diag.h"
#include "common/fileio.h"
#include "reconciler/model/egress.h"
#include "reconciler/model/fragment.h"
#include "reconciler/model/merge.h"

void br_desired_init(struct br_desired *d) {
  d->managed = false;
  br_routes_init(&d->routes);
  br_routes_init(&d->expiring);
  br_routes_init(&d->expired);
  d->now = d->next_expiry = 0;
  br_strv_init(&d->sources);
  br_strv_init(&d->fragments);
  br_buf_init(&d->errors, 64 * 1024);
  br_buf_init(&d->warnings, 64 * 1024);
  br_buf_init(&d->canonical, 256 * 1024 * 1024);
  d->hash[0] = '\0';
}

void br_desired_free(struct br_desired *d) {
  br_routes_free(&d->routes);
  br_routes_free(&d->expiring);
  br_routes_free(&d->expired);
  br_strv_free(&d->sources);
  br_strv_free(&d->fragments);
  br_buf_free(&d->errors);
  br_buf_free(&d->warnings);
  br_buf_free(&d->canonical);
}

static void limits_of(const struct br_config *cfg, struct br_limits *limits) {
  br_limits_default(limits);
  limits->max_file_bytes = cfg->max_file_bytes;
  limits->max_routes = cfg->max_routes;
  limits->max_paths = cfg->max_paths;
}

/* Says in errors why path could not be read (rc from br_file_read): as bad
 * input (-EINVAL) or as a failure worth a retry (rc itself). */
static int read_error(const struct br_config *cfg, const char *path, int rc, struct br_buf *errors) {
  if (rc == -EFBIG) {
    br_diag(errors, path, 1, 1, "(file)", "larger than %zu bytes, expected a smaller fragment",
            cfg->max_file_bytes);
    return -EINVAL;
  }
  if (rc == -EINVAL || rc == -EISDIR) {
    br_buf_printf(errors, "%s: not a regular file, expected a fragment file\n", path);
    return -EINVAL;
  }
  br_buf_printf(errors, "%s: cannot read: %s\n", path, strerror(-rc)); /* EACCES, EIO, ENOMEM... */
  return rc;
}

/* Reads and parses the file at path; an expires at or before expires_after
 * is an error (0: none is). */
static int parse_file(const struct br_config *cfg, const char *path, int64_t expires_after,
                      struct br_routes *routes, struct br_buf *errors) {
  struct br_limits limits;
  limits_of(cfg, &limits);
  limits.expires_after = expires_after;
  struct br_buf bytes;
  br_buf_init(&bytes, limits.max_file_bytes);
  int rc = br_file_read(path, limits.max_file_bytes, false, &bytes);
  if (rc)
    rc = read_error(cfg, path, rc, errors);
  else
    rc = br_fragment_parse(path, bytes.data, bytes.len, &limits, routes, errors);
  br_buf_free(&bytes);
  return rc == -E2BIG ? -EINVAL : rc;
}

int br_desired_check_file(const struct br_config *cfg, const char *path, struct br_routes *routes,
                          struct br_buf *errors) {
  return parse_file(cfg, path, 0, routes, errors);
}

int br_desired_check_new(const struct br_config *cfg, const char *path, struct br_routes *routes,
                         struct br_routes *declared, struct br_buf *errors) {
  struct br_policy p;
  size_t counted = 0, before = routes->n;
  /* A file checked or about to be installed must not end before it
   * starts: a time already past is a mistake here (the daemon, reading a
   * file whose time has come, takes the route as expired instead). */
  int rc = parse_file(cfg, path, br_realtime_ns() / 1000000000, routes, errors);
  if (!rc && !(rc = br_desired_policy(cfg, &p))) {
    struct br_routes mine = {.v = routes->v + before, .n = routes->n - before};
    rc = br_policy_check_fragment(&p, NULL, path, &mine, &counted, errors);
    for (size_t i = 0; i < mine.n && rc != -ENOMEM; i++)
      if (mine.v[i].token_env && br_routes_append_copy(declared, &mine.v[i]))
        rc = -ENOMEM;
    br_desired_policy_free(&p);
  }
  return rc;
}

int br_desired_check_credentials(const struct br_config *cfg, const struct br_routes *declared,
                                 struct br_buf *errors) {
  struct br_policy p;
  struct br_routes none;
  br_routes_init(&none);
  int rc = br_desired_policy(cfg, &p);
  if (!rc) {
    p.max_routes = 0; /* files checked by name make no bottle */
    rc = br_policy_check_bottle(&p, declared, &none, errors);
    br_desired_policy_free(&p);
  }
  return rc;
}

/* One fragment file of a listing, and what the listing says it is. */
struct listed {
  char *name;
  unsigned char type; /* DT_REG, DT_LNK, ... or DT_UNKNOWN */
};

struct listing {
  struct listed *v;
  size_t n, cap;
};

static int add_listed(const char *name, unsigned char type, void *arg) {
  struct listing *l = arg;
  if (!br_fragment_name_counts(name))
    return 0;
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 8;
    struct listed *v = realloc(l->v, cap * sizeof *v);
    if (!v)
      return -ENOMEM;
    l->v = v;
    l->cap = cap;
  }
  if (!(l->v[l->n].name = strdup(name)))
    return -ENOMEM;
  l->v[l->n++].type = type;
  return 0;
}

static void listing_free(struct listing *l) {
  for (size_t i = 0; i < l->n; i++)
    free(l->v[i].name);
  free(l->v);
}

static int cmp_listed(const void *a, const void *b) {
  /* byte order, whatever the locale */
  return strcmp(((const struct listed *)a)->name, ((const struct listed *)b)->name);
}

/* A symlinked fragment is followed only when it resolves inside its own
 * source directory (a ConfigMap's ..data layout); anything else could make a
 * bottle's routes come from a file its producers do not control. The source
 * directory's real path is worked out on the first symlinked fragment only
 * (source_real "" until then): realpath() costs a readlink per component,
 * and most sources hold plain files. */
static int resolve_fragment(const char *dir, char *source_real, const char *path, char *resolved,
                            struct br_buf *errors) {
  struct stat st;
  if (lstat(path, &st) < 0) {
    if (errno == ENOENT)
      return -ENOENT; /* removed since the listing: not an error */
    br_buf_printf(errors, "%s: cannot stat: %s\n", path, strerror(errno));
    return -EINVAL;
  }
  if (!S_ISLNK(st.st_mode)) {
    if (!S_ISREG(st.st_mode)) {
      br_buf_printf(errors, "%s: not a regular file, expected a fragment file\n", path);
      return -EINVAL;
    }
    snprintf(resolved, PATH_MAX, "%s", path);
    return 0;
  }
  if (!source_real[0] && !realpath(dir, source_real)) {
    br_buf_printf(errors, "%s: cannot resolve its source directory: %s\n", path, strerror(errno));
    source_real[0] = '\0';
    return -EINVAL;
  }
  if (!realpath(path, resolved)) {
    if (errno == ENOENT)
      br_buf_printf(errors, "%s: dangling symlink, expected it to resolve to a fragment file\n", path);
    else
      br_buf_printf(errors, "%s: cannot resolve: %s\n", path, strerror(errno));
    return -EINVAL;
  }
  size_t n = strlen(source_real);
  if (strncmp(resolved, source_real, n) != 0 || resolved[n] != '/') {
    br_buf_printf(errors,
                  "%s: symlink leads outside its source directory (to %s), "
                  "expected a link inside %s\n",
                  path, resolved, source_real);
    return -EINVAL;
  }
  return 0;
}

/* Reads one listed fragment into bytes. A file the listing calls regular is
 * read at once with O_NOFOLLOW (the read checks that it still is one: a
 * symlink swapped in since the listing is -ELOOP); anything else, or that,
 * goes through resolve_fragment(). Returns 0, -ENOENT (gone since the
 * listing), -EINVAL (bad input, reported in errors) or another -errno
 * (reported too; worth a retry). */
/* A fragment file, not through a symlink as its last component, nor in any
 * component when rule (a source beneath the state directory) says so. */
static int read_nofollow(const char *path, size_t max, const struct br_path_rule *rule, struct br_buf *bytes) {
  return rule ? br_file_read_under(path, max, rule, bytes, NULL) : br_file_read(path, max, true, bytes);
}

static int read_fragment(const struct br_config *cfg, const struct br_path_rule *rule, const char *dir,
                         char *source_real, const struct listed *f, const char *path, struct br_buf *bytes,
                         struct br_buf *errors) {
  int rc = -ELOOP;
  if (f->type == DT_REG)
    rc = read_nofollow(path, cfg->max_file_bytes, rule, bytes);
  if (rc == -ELOOP) {
    char resolved[PATH_MAX];
    if ((rc = resolve_fragment(dir, source_real, path, resolved, errors)))
      return rc;
    /* resolved holds no symlink: one that appears now is a swap in progress,
     * as is a target gone since it was resolved. Both are worth a retry;
     * skipping the fragment would publish routes without it. */
    rc = read_nofollow(resolved, cfg->max_file_bytes, rule, bytes);
    if (rc == -ENOENT || rc == -ELOOP) {
      br_buf_printf(errors, "%s: changed while it was read (%s); trying again\n", path, strerror(-rc));
      return -EAGAIN;
    }
  }
  return rc && rc != -ENOENT ? read_error(cfg, path, rc, errors) : rc;
}

/* The limits hold for the merged bottle as for each fragment: names the
 * fragment's route that takes the bottle past one. */
static int merge_excess(const struct br_config *cfg, const char *path, const struct br_routes *routes,
                        const struct br_merge_excess *excess, struct br_buf *errors) {
  const struct br_route *r = &routes->v[excess->route];
  const char *colon = r->origin ? strrchr(r->origin, ':') : NULL;
  size_t line = colon ? strtoul(colon + 1, NULL, 10) : 1;
  char field[64];
  snprintf(field, sizeof field, "routes[%zu].%s", excess->route, excess->paths ? "path_allowlist" : "host");
  if (excess->paths)
    br_diag(errors, path, line ? line : 1, 1, field,
            "takes host %s past %zu paths across the bottle's fragments, expected at most %zu per route "
            "(limits.max_paths)",
            r->host, cfg->max_paths, cfg->max_paths);
  else
    br_diag(errors, path, line ? line : 1, 1, field,
            "takes the bottle past %zu distinct hosts, expected at most %zu across its fragments "
            "(limits.max_routes)",
            cfg->max_routes, cfg->max_routes);
  return -EINVAL;
}

/* The overlay's change to a listing: its file added (or taken out, or
 * replaced: the bytes come from the overlay when it is read). */
static int overlay_listing(const struct br_desired_overlay *o, struct listing *frags) {
  for (size_t i = 0; i < frags->n; i++)
    if (strcmp(frags->v[i].name, o->name) == 0) {
      if (!o->bytes) {
        free(frags->v[i].name);
        frags->v[i] = frags->v[--frags->n];
      }
      return 0;
    }
  return o->bytes ? add_listed(o->name, DT_REG, frags) : 0;
}

int br_desired_policy(const struct br_config *cfg, struct br_policy *p) {
  const struct br_policy_config *pc = &cfg->policy;
  *p = (struct br_policy){.deny_hosts = &pc->deny_hosts,
                          .deny_hosts_at = &pc->deny_hosts_at,
                          .deny_ranges = &pc->deny_ip_ranges,
                          .deny_ranges_at = &pc->deny_ip_ranges_at,
                          .max_routes = pc->max_routes_per_bottle,
                          .max_routes_at = pc->max_routes_per_bottle_at};
  if (!pc->n_shared)
    return 0;
  struct br_policy_share *shares = calloc(pc->n_shared, sizeof *shares);
  if (!shares)
    return -ENOMEM;
  for (size_t i = 0; i < pc->n_shared; i++)
    shares[i] = (struct br_policy_share){
        .token_env = pc->shared[i].token_env, .hosts = &pc->shared[i].hosts, .at = pc->shared[i].at};
  p->shares = shares;
  p->n_shares = pc->n_shared;
  return 0;
}

void br_desired_policy_free(struct br_policy *p) {
  free((void *)p->shares);
  p->shares = NULL;
  p->n_shares = 0;
}

void br_desired_source_policy(const struct br_config *cfg, size_t i, struct br_policy_source *out) {
  const struct br_source_rules *r = &cfg->source_rules[i];
  *out = (struct br_policy_source){.index = i,
                                   .may_bind_credentials = r->may_bind_credentials,
                                   .may_allow_every_path = r->may_allow_every_path,
                                   .max_routes = r->max_routes,
                                   .bind_at = r->bind_at,
                                   .every_path_at = r->every_path_at,
                                   .max_routes_at = r->max_routes_at};
}

/* What one load carries from fragment to fragment and source to source. */
struct loading {
  struct br_policy policy;
  struct br_routes declared;     /* every route with a credential, in merge order (the policy's view) */
  struct br_routes bound_before; /* the same of routes that expired */
};

/* The policy on one parsed fragment of source index (SIZE_MAX: no rules of
 * its own). */
static int fragment_policy(const struct br_config *cfg, struct loading *ld, size_t index, const char *path,
                           const struct br_routes *routes, size_t *source_routes, struct br_desired *d) {
  struct br_policy_source src;
  if (index != SIZE_MAX)
    br_desired_source_policy(cfg, index, &src);
  return br_policy_check_fragment(&ld->policy, index != SIZE_MAX ? &src : NULL, path, routes, source_routes,
                                  &d->errors);
}

/* Its credentials, for the bottle-wide check: every binding, expired too.
 * The expired ones come first: they were made before, and a slot must not
 * pass to another host while the egress container may still hold their
 * value, so the message blames the newer binding. */
static int remember_bindings(struct loading *ld, const struct br_routes *routes, int64_t now) {
  for (size_t i = 0; i < routes->n; i++) {
    const struct br_route *r = &routes->v[i];
    bool over = r->expires && r->expires <= now;
    if (r->token_env && br_routes_append_copy(over ? &ld->bound_before : &ld->declared, r))
      return -ENOMEM;
  }
  return 0;
}

/* Takes the routes whose expires has passed out of routes (into
 * d->expired) and notes the others that will end (d->expiring). */
static int split_expired(struct br_routes *routes, struct br_desired *d) {
  size_t kept = 0;
  int rc = 0;
  for (size_t i = 0; i < routes->n; i++) {
    struct br_route *r = &routes->v[i];
    bool over = r->expires && r->expires <= d->now;
    if (!rc && r->expires)
      rc = br_routes_append_copy(over ? &d->expired : &d->expiring, r);
    if (r->expires && !over && (!d->next_expiry || r->expires < d->next_expiry))
      d->next_expiry = r->expires;
    if (over)
      br_route_free(r);
    else
      routes->v[kept++] = *r;
  }
  routes->n = kept;
  return rc;
}

/* A source directory beneath the state directory (routes.d) is reached
 * through no symlink: a link there would make a bottle's routes another
 * bottle's, or any directory's. The line in errors for one that is. */
static void source_symlinked(const char *dir, const struct br_path_rule *rule, struct br_buf *errors) {
  br_buf_printf(errors, "%s: ", dir);
  br_path_describe_error(dir, -ELOOP, rule, errors);
  br_buf_adds(errors, "; a source directory in the state directory is read through no symlink, expected a "
                      "directory (or list the link's directory in follow_symlinks)\n");
}

static int load_source(const struct br_config *cfg, struct loading *ld, size_t index, const char *dir,
                       const struct br_desired_overlay *overlay, struct br_desired *d) {
  char source_real[PATH_MAX] = ""; /* resolve_fragment() fills it when it needs it */
  struct listing frags = {0};
  const struct br_path_rule whole = br_config_path_rule(cfg);
  const struct br_path_rule *rule = br_config_source_rule(cfg, dir, &whole);
  int rc = br_dir_each_under(dir, rule, add_listed, &frags);
  if (rc == -ELOOP && rule) {
    source_symlinked(dir, rule, &d->errors);
    listing_free(&frags);
    return -EINVAL;
  }
  if (overlay && strcmp(overlay->dir, dir) != 0)
    overlay = NULL;
  if ((rc == -ENOENT || rc == -ENOTDIR) && !(overlay && overlay->bytes)) {
    listing_free(&frags);
    return 0; /* no source directory: not managed by this source */
  }
  if (overlay && (rc == -ENOENT || rc == -ENOTDIR))
    rc = 0; /* the overlay makes the directory */
  if (!rc && overlay)
    rc = overlay_listing(overlay, &frags);
  d->managed = true;
  if (frags.n > 1)
    qsort(frags.v, frags.n, sizeof *frags.v, cmp_listed);
  struct br_limits limits;
  limits_of(cfg, &limits);
  struct br_buf path, bytes;
  br_buf_init(&path, PATH_MAX);
  br_buf_init(&bytes, cfg->max_file_bytes);
  size_t source_routes = 0; /* declared by this source's fragments so far */
  for (size_t i = 0; !rc && i < frags.n; i++) {
    br_buf_reset(&path);
    br_buf_printf(&path, "%s/%s", dir, frags.v[i].name);
    int frc;
    if (overlay && strcmp(frags.v[i].name, overlay->name) == 0) {
      br_buf_reset(&bytes);
      frc = br_buf_add(&bytes, overlay->bytes, overlay->len) ? -EINVAL : 0;
      if (frc)
        br_buf_printf(&d->errors, "%s:1:1: (file): larger than %zu bytes, expected a smaller fragment\n",
                      path.data, cfg->max_file_bytes);
    } else {
      frc = read_fragment(cfg, rule, dir, source_real, &frags.v[i], path.data, &bytes, &d->errors);
    }
    if (frc == -ENOENT)
      continue; /* removed since the listing: not an error */
    struct br_routes routes;
    br_routes_init(&routes);
    if (!frc)
      frc = br_fragment_parse(path.data, bytes.data, bytes.len, &limits, &routes, &d->errors);
    if (frc == -EFBIG || frc == -E2BIG)
      frc = -EINVAL;
    if (!frc && !(frc = remember_bindings(ld, &routes, d->now)) && !(frc = split_expired(&routes, d)))
      frc = fragment_policy(cfg, ld, index, path.data, &routes, &source_routes, d);
    if (!frc && !d->errors.len) {
      struct br_merge_excess excess;
      frc = br_merge_add_limited(&d->routes, &routes, path.data, cfg->max_routes, cfg->max_paths, &excess,
                                 &d->warnings);
      if (frc == -E2BIG)
        frc = merge_excess(cfg, path.data, &routes, &excess, &d->errors);
    }
    br_routes_free(&routes);
    if (frc && frc != -EINVAL)
      rc = frc;
    if (!rc)
      rc = br_strv_add(&d->fragments, path.data);
  }
  br_buf_free(&path);
  br_buf_free(&bytes);
  listing_free(&frags);
  return rc;
}

int br_desired_load(const struct br_config *cfg, const struct br_strv *sources, struct br_desired *d) {
  return br_desired_load_overlay(cfg, sources, NULL, d);
}

int br_desired_load_overlay(const struct br_config *cfg, const struct br_strv *sources,
                            const struct br_desired_overlay *overlay, struct br_desired *d) {
  struct loading ld;
  br_routes_init(&ld.declared);
  br_routes_init(&ld.bound_before);
  d->now = br_realtime_ns() / 1000000000;
  int rc = br_desired_policy(cfg, &ld.policy);
  /* sources[i] is cfg->sources[i] expanded; another list has no rules. */
  bool rules = cfg->source_rules && sources->n == cfg->sources.n;
  for (size_t i = 0; !rc && i < sources->n; i++) {
    rc = br_strv_add(&d->sources, sources->v[i]);
    if (!rc)
      rc = load_source(cfg, &ld, rules ? i : SIZE_MAX, sources->v[i], overlay, d);
  }
  /* The bottle-wide rules need the whole bottle: a bound on its routes only
   * once every fragment merged; the credential rule sees every binding,
   * merged or not, so it is said even beside other errors. */
  if (!rc) {
    bool whole = !d->errors.len;
    struct br_policy bottle = ld.policy;
    if (!whole)
      bottle.max_routes = 0;
    for (size_t i = 0; !rc && i < ld.declared.n; i++)
      rc = br_routes_append_copy(&ld.bound_before, &ld.declared.v[i]);
    if (!rc)
      rc = br_policy_check_bottle(&bottle, &ld.bound_before, &d->routes, &d->errors);
    if (rc == -EINVAL)
      rc = 0;
  }
  br_desired_policy_free(&ld.policy);
  br_routes_free(&ld.declared);
  br_routes_free(&ld.bound_before);
  if (!rc && d->errors.len)
    rc = -EINVAL;
  if (rc) {
    br_routes_free(&d->routes); /* nothing of an invalid slug may be applied */
    return rc;
  }
  /* Kept: the converge compares the live file with it first, which settles
   * the common case (nothing changed) without parsing the live file. */
  br_buf_reset(&d->canonical);
  rc = br_egress_render(&d->routes, NULL, &d->canonical);
  if (!rc)
    br_sha256_hex(d->canonical.data, d->canonical.len, d->hash);
  return rc;
}
