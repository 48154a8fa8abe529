/* merge: the rules that fold fragments into one set of desired routes.
 * Pure: no I/O, no parsing, no opinion on which fragments exist. */
#include "reconciler/model/merge.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

static bool same_auth(const struct br_route *a, const struct br_route *b) {
  if (!a->auth_scheme || !b->auth_scheme)
    return !a->auth_scheme && !b->auth_scheme;
  return strcmp(a->auth_scheme, b->auth_scheme) == 0 && strcmp(a->token_env, b->token_env) == 0;
}

/* How many hosts of fragment merged does not have yet, each counted once. */
static size_t new_hosts(const struct br_routes *merged, const struct br_routes *fragment) {
  size_t n = 0;
  for (size_t i = 0; i < fragment->n; i++) {
    const char *host = fragment->v[i].host;
    if (br_routes_find(merged, host))
      continue;
    bool earlier = false;
    for (size_t j = 0; j < i && !earlier; j++)
      earlier = strcmp(fragment->v[j].host, host) == 0;
    n += !earlier;
  }
  return n;
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

int br_merge_add(struct br_routes *merged, const struct br_routes *fragment, const char *fragment_name,
                 size_t max_routes, struct br_buf *warnings) {
  if (max_routes && merged->n + new_hosts(merged, fragment) > max_routes)
    return -E2BIG;

  for (size_t i = 0; i < fragment->n; i++) {
    const struct br_route *route = &fragment->v[i];
    struct br_route *kept = br_routes_find(merged, route->host);
    int rc;
    if (!kept) {
      if ((rc = br_routes_append_copy(merged, route)))
        return rc;
      struct br_route *added = &merged->v[merged->n - 1];
      if (!added->origin && fragment_name && !(added->origin = strdup(fragment_name)))
        return -ENOMEM;
      continue;
    }
    /* Every path (no path_allowlist) covers any list: the union is every path. */
    if (route->all_paths && !kept->all_paths) {
      kept->all_paths = true;
      br_strv_free(&kept->paths);
      br_strv_init(&kept->paths);
    }
    for (size_t p = 0; p < route->paths.n && !kept->all_paths; p++)
      if ((rc = br_strv_add_unique(&kept->paths, route->paths.v[p])))
        return rc;
    if (!same_auth(kept, route) && (rc = warn_auth(warnings, kept, route, fragment_name)))
      return rc;
  }
  return 0;
}
