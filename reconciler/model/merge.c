/* merge: the rules that fold fragments into one set of desired routes.
 * Pure: no I/O, no parsing, no opinion on which fragments exist. */
#include "reconciler/model/merge.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/strmap.h"

static bool same_auth(const struct br_route *a, const struct br_route *b) {
  if (!a->auth_scheme || !b->auth_scheme)
    return !a->auth_scheme && !b->auth_scheme;
  return strcmp(a->auth_scheme, b->auth_scheme) == 0 && strcmp(a->token_env, b->token_env) == 0;
}

static int warn_auth(struct br_buf *warnings, const struct br_route *kept, const struct br_route *ignored,
                     const char *fragment_name) {
  if (!warnings)
    return 0;
  const char *where = ignored->origin ? ignored->origin : fragment_name;
  struct br_buf line;
  br_buf_init(&line, warnings->max);
  int rc = br_buf_printf(&line, "%s: host %s: ", where ? where : "a later fragment", ignored->host);
  if (rc == 0 && ignored->auth_scheme)
    rc = br_buf_printf(&line, "auth %s/%s ignored, ", ignored->auth_scheme, ignored->token_env);
  else if (rc == 0)
    rc = br_buf_adds(&line, "no auth ignored, ");
  if (rc == 0)
    rc =
        br_buf_printf(&line,
                      "%s already set by %s (the first fragment that names a host decides "
                      "its auth)\n",
                      kept->auth_scheme ? "auth" : "no auth", kept->origin ? kept->origin : "an earlier fragment");
  /* The line goes in whole or not at all, so a full buffer never ends in
   * half a message. */
  if (rc == 0)
    rc = br_buf_add(warnings, line.data, line.len);
  br_buf_free(&line);
  return rc == -EFBIG ? 0 : rc;
}

/* The union of one host's paths as a fragment's routes add to it: a set,
 * so each path costs O(1) and a fragment of many routes for one host is
 * linear, not quadratic, in its paths (126 routes of 1,024 paths for one
 * host took 27 s). */
struct host_paths {
  struct br_strmap set; /* the paths so far; values unused */
  bool all_paths;
};

static void host_paths_free(struct br_strmap *hosts) {
  for (size_t i = 0; i < hosts->cap; i++)
    if (hosts->slots[i].key) {
      struct host_paths *h = hosts->slots[i].value;
      br_strmap_free(&h->set);
      free(h);
    }
  br_strmap_free(hosts);
}

/* The set of host's paths in hosts, made from kept's paths (NULL: a host
 * new to merged) the first time host is asked for. */
static struct host_paths *host_paths_of(struct br_strmap *hosts, const char *host, const struct br_route *kept,
                                        int *rc) {
  struct host_paths *h = br_strmap_get(hosts, host);
  if (h)
    return h;
  if (!(h = calloc(1, sizeof *h))) {
    *rc = -ENOMEM;
    return NULL;
  }
  br_strmap_init(&h->set);
  h->all_paths = kept && kept->all_paths;
  for (size_t p = 0; kept && p < kept->paths.n && !*rc; p++)
    *rc = br_strmap_put(&h->set, kept->paths.v[p], h);
  if (!*rc)
    *rc = br_strmap_put(hosts, host, h);
  if (*rc) {
    br_strmap_free(&h->set);
    free(h);
    return NULL;
  }
  return h;
}

/* merged's hosts, each to its index plus one (0 is "absent" to strmap). */
static int index_hosts(const struct br_routes *merged, struct br_strmap *index) {
  for (size_t i = 0; i < merged->n; i++) {
    int rc = br_strmap_put(index, merged->v[i].host, (void *)(uintptr_t)(i + 1));
    if (rc)
      return rc;
  }
  return 0;
}

static struct br_route *find(const struct br_routes *merged, const struct br_strmap *index, const char *host) {
  uintptr_t at = (uintptr_t)br_strmap_get(index, host);
  return at ? &merged->v[at - 1] : NULL;
}

/* What merged would be after the fragment, counted, not made: the first
 * route of the fragment that takes merged past a limit, or fragment->n. */
static int first_crossing(const struct br_routes *merged, const struct br_strmap *index,
                          const struct br_routes *fragment, size_t max_routes, size_t max_paths,
                          struct br_merge_excess *at) {
  struct br_strmap hosts;
  br_strmap_init(&hosts);
  size_t count = merged->n;
  int rc = 0;
  at->route = fragment->n;
  for (size_t i = 0; i < fragment->n && !rc && at->route == fragment->n; i++) {
    const struct br_route *route = &fragment->v[i];
    bool seen = br_strmap_get(&hosts, route->host) != NULL;
    const struct br_route *kept = find(merged, index, route->host);
    struct host_paths *h = host_paths_of(&hosts, route->host, kept, &rc);
    if (!h)
      break;
    if (!seen && !kept && max_routes && ++count > max_routes) {
      *at = (struct br_merge_excess){.route = i, .paths = false};
      break;
    }
    h->all_paths |= route->all_paths;
    for (size_t p = 0; p < route->paths.n && !h->all_paths && !rc; p++)
      rc = br_strmap_put(&h->set, route->paths.v[p], h);
    if (!rc && max_paths && !h->all_paths && h->set.n > max_paths)
      *at = (struct br_merge_excess){.route = i, .paths = true};
  }
  host_paths_free(&hosts);
  return rc;
}

int br_merge_add_limited(struct br_routes *merged, const struct br_routes *fragment, const char *fragment_name,
                         size_t max_routes, size_t max_paths, struct br_merge_excess *excess,
                         struct br_buf *warnings) {
  struct br_strmap index, hosts;
  br_strmap_init(&index);
  br_strmap_init(&hosts);
  struct br_merge_excess at = {.route = fragment->n};
  int rc = index_hosts(merged, &index);
  if (!rc && (max_routes || max_paths))
    rc = first_crossing(merged, &index, fragment, max_routes, max_paths, &at);
  if (!rc && at.route < fragment->n) {
    if (excess)
      *excess = at;
    rc = -E2BIG;
  }
  for (size_t i = 0; i < fragment->n && !rc; i++) {
    const struct br_route *route = &fragment->v[i];
    struct br_route *kept = find(merged, &index, route->host);
    if (!kept) {
      if ((rc = br_routes_append_copy(merged, route)))
        break;
      struct br_route *added = &merged->v[merged->n - 1];
      if (!added->origin && fragment_name && !(added->origin = strdup(fragment_name)))
        rc = -ENOMEM;
      if (!rc)
        rc = br_strmap_put(&index, route->host, (void *)(uintptr_t)merged->n);
      continue;
    }
    /* Every path (no path_allowlist) covers any list: the union is every path. */
    if (route->all_paths && !kept->all_paths) {
      kept->all_paths = true;
      br_strv_free(&kept->paths);
      br_strv_init(&kept->paths);
    }
    struct host_paths *h = kept->all_paths ? NULL : host_paths_of(&hosts, route->host, kept, &rc);
    for (size_t p = 0; h && p < route->paths.n && !rc; p++)
      if (!br_strmap_get(&h->set, route->paths.v[p]) && !(rc = br_strmap_put(&h->set, route->paths.v[p], h)))
        rc = br_strv_add(&kept->paths, route->paths.v[p]);
    if (!rc && !same_auth(kept, route))
      rc = warn_auth(warnings, kept, route, fragment_name);
  }
  br_strmap_free(&index);
  host_paths_free(&hosts);
  return rc;
}

int br_merge_add(struct br_routes *merged, const struct br_routes *fragment, const char *fragment_name,
                 size_t max_routes, struct br_buf *warnings) {
  return br_merge_add_limited(merged, fragment, fragment_name, max_routes, 0, NULL, warnings);
}
