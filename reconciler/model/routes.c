/* routes: the in-memory routes model. Construction, lookup and semantic
 * comparison only; parsing and rendering live in fragment.c and egress.c. */
#include "reconciler/model/routes.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/strmap.h"

void br_limits_default(struct br_limits *l) {
  l->max_file_bytes = 1024 * 1024;
  l->max_routes = 4096;
  l->max_paths = 1024;
  l->max_depth = 16;
  l->expires_after = 0;
}

void br_routes_init(struct br_routes *r) {
  r->v = NULL;
  r->n = 0;
  r->cap = 0;
}

void br_route_free(struct br_route *route) {
  free(route->host);
  br_strv_free(&route->paths);
  free(route->auth_scheme);
  free(route->token_env);
  free(route->origin);
  memset(route, 0, sizeof *route);
}

void br_routes_free(struct br_routes *r) {
  for (size_t i = 0; i < r->n; i++)
    br_route_free(&r->v[i]);
  free(r->v);
  br_routes_init(r);
}

struct br_route *br_routes_append(struct br_routes *r, const char *host) {
  if (r->n == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 8;
    struct br_route *v = realloc(r->v, cap * sizeof *v);
    if (!v)
      return NULL;
    r->v = v;
    r->cap = cap;
  }
  struct br_route *route = &r->v[r->n];
  memset(route, 0, sizeof *route);
  br_strv_init(&route->paths);
  route->host = strdup(host);
  if (!route->host)
    return NULL;
  r->n++;
  return route;
}

static int dup_opt(char **dst, const char *src) {
  *dst = NULL;
  if (src && !(*dst = strdup(src)))
    return -ENOMEM;
  return 0;
}

int br_routes_append_copy(struct br_routes *r, const struct br_route *src) {
  struct br_route *route = br_routes_append(r, src->host);
  if (!route)
    return -ENOMEM;
  route->all_paths = src->all_paths;
  route->column = src->column;
  route->index = src->index;
  route->expires = src->expires;
  if (br_strv_copy(&route->paths, &src->paths) || dup_opt(&route->auth_scheme, src->auth_scheme) ||
      dup_opt(&route->token_env, src->token_env) || dup_opt(&route->origin, src->origin))
    return -ENOMEM; /* the partly filled route stays in r and is freed with it */
  return 0;
}

struct br_route *br_routes_find(const struct br_routes *r, const char *host) {
  for (size_t i = 0; i < r->n; i++)
    if (strcmp(r->v[i].host, host) == 0)
      return &r->v[i];
  return NULL;
}

static bool same_opt(const char *a, const char *b) { return (!a && !b) || (a && b && strcmp(a, b) == 0); }

/* Sets of hosts and of paths (strmap, values unused), so that comparing two
 * bottles of 4,096 routes of 1,024 paths costs their size, not its square. */
static int index_hosts(const struct br_routes *r, struct br_strmap *index) {
  int rc = 0;
  for (size_t i = 0; i < r->n && !rc; i++)
    if (!br_strmap_get(index, r->v[i].host))
      rc = br_strmap_put(index, r->v[i].host, &r->v[i]);
  return rc;
}

static bool same_paths(const struct br_strv *a, const struct br_strv *b, int *rc) {
  if (a->n != b->n)
    return false;
  struct br_strmap set;
  br_strmap_init(&set);
  for (size_t i = 0; i < b->n && !*rc; i++)
    *rc = br_strmap_put(&set, b->v[i], &set);
  bool same = !*rc;
  for (size_t i = 0; i < a->n && same; i++)
    same = br_strmap_get(&set, a->v[i]) != NULL;
  br_strmap_free(&set);
  return same;
}

bool br_routes_equal(const struct br_routes *a, const struct br_routes *b) {
  if (a->n != b->n)
    return false;
  struct br_strmap index;
  br_strmap_init(&index);
  int rc = index_hosts(b, &index);
  bool equal = !rc;
  for (size_t i = 0; i < a->n && equal; i++) {
    const struct br_route *x = &a->v[i];
    const struct br_route *y = br_strmap_get(&index, x->host);
    equal = y && x->all_paths == y->all_paths && same_paths(&x->paths, &y->paths, &rc) &&
            same_opt(x->auth_scheme, y->auth_scheme) && same_opt(x->token_env, y->token_env);
  }
  br_strmap_free(&index);
  /* Out of memory: "different", so a converge rewrites rather than trusts. */
  return equal && !rc;
}

int br_routes_hosts(const struct br_routes *r, struct br_strv *out) {
  struct br_strmap seen;
  br_strmap_init(&seen);
  int rc = 0;
  for (size_t i = 0; i < out->n && !rc; i++)
    rc = br_strmap_put(&seen, out->v[i], out);
  for (size_t i = 0; i < r->n && !rc; i++)
    if (!br_strmap_get(&seen, r->v[i].host) && !(rc = br_strmap_put(&seen, r->v[i].host, out)))
      rc = br_strv_add(out, r->v[i].host);
  br_strmap_free(&seen);
  return rc;
}
