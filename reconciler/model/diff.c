/* diff: compares live and desired routes host by host and describes the
 * result for people and the audit log. Must never see or print token values. */
#include "reconciler/model/diff.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/strmap.h"

/* "SCHEME $ENV": the sidecar reads the token from that variable, so the
 * name is all there is to show. */
static int auth_text(const struct br_route *r, char **out) {
  *out = NULL;
  if (!r || !r->auth_scheme || !r->token_env)
    return 0;
  size_t n = strlen(r->auth_scheme) + strlen(r->token_env) + 3;
  if (!(*out = malloc(n)))
    return -ENOMEM;
  snprintf(*out, n, "%s $%s", r->auth_scheme, r->token_env);
  return 0;
}

static bool same_text(const char *a, const char *b) { return (!a && !b) || (a && b && strcmp(a, b) == 0); }

/* Paths of from that to lacks, in from's order, appended to out (empty).
 * Through sets: routes of 1,024 paths are a million comparisons each when
 * every path is looked up in a list. */
static int paths_missing(const struct br_route *from, const struct br_route *to, struct br_strv *out) {
  if (!from)
    return 0;
  struct br_strmap skip; /* to's paths, and those already in out */
  br_strmap_init(&skip);
  int rc = 0;
  for (size_t i = 0; to && i < to->paths.n && !rc; i++)
    rc = br_strmap_put(&skip, to->paths.v[i], out);
  for (size_t i = 0; i < from->paths.n && !rc; i++) {
    const char *path = from->paths.v[i];
    if (!br_strmap_get(&skip, path) && !(rc = br_strmap_put(&skip, path, out)))
      rc = br_strv_add(out, path);
  }
  br_strmap_free(&skip);
  return rc;
}

static void change_free(struct br_route_change *c) {
  free(c->host);
  br_strv_free(&c->paths_added);
  br_strv_free(&c->paths_removed);
  free(c->auth_before);
  free(c->auth_after);
}

/* Adds the change from before to after (either may be NULL, not both) unless
 * there is none. cap tracks the allocated length of d->v. */
static int add_change(struct br_diff *d, size_t *cap, const struct br_route *before,
                      const struct br_route *after) {
  struct br_route_change c = {0};
  br_strv_init(&c.paths_added);
  br_strv_init(&c.paths_removed);
  c.kind = !before ? BR_CHANGE_ADDED : !after ? BR_CHANGE_REMOVED : BR_CHANGE_MODIFIED;
  int rc = paths_missing(after, before, &c.paths_added);
  if (rc == 0)
    rc = paths_missing(before, after, &c.paths_removed);
  if (rc == 0)
    rc = auth_text(before, &c.auth_before);
  if (rc == 0)
    rc = auth_text(after, &c.auth_after);
  if (rc) {
    change_free(&c);
    return rc;
  }
  c.auth_changed = !same_text(c.auth_before, c.auth_after);
  c.all_paths_before = before && before->all_paths;
  c.all_paths_after = after && after->all_paths;
  if (c.kind == BR_CHANGE_MODIFIED && !c.auth_changed && c.paths_added.n == 0 && c.paths_removed.n == 0 &&
      c.all_paths_before == c.all_paths_after) {
    change_free(&c);
    return 0;
  }
  if (d->n == *cap) {
    size_t ncap = *cap ? *cap * 2 : 8;
    struct br_route_change *v = realloc(d->v, ncap * sizeof *v);
    if (!v) {
      change_free(&c);
      return -ENOMEM;
    }
    d->v = v;
    *cap = ncap;
  }
  if (!(c.host = strdup((after ? after : before)->host))) {
    change_free(&c);
    return -ENOMEM;
  }
  d->v[d->n++] = c;
  return 0;
}

/* Each host to its first route in r. */
static int index_first(const struct br_routes *r, struct br_strmap *index) {
  int rc = 0;
  for (size_t i = 0; i < r->n && !rc; i++)
    if (!br_strmap_get(index, r->v[i].host))
      rc = br_strmap_put(index, r->v[i].host, &r->v[i]);
  return rc;
}

int br_diff_routes(const struct br_routes *live, const struct br_routes *desired, struct br_diff *out) {
  out->v = NULL;
  out->n = 0;
  size_t cap = 0;
  /* Hosts are looked up in sets, so this is linear in routes and paths, not
   * quadratic: a bottle may hold thousands of each. Only the first route of
   * a host counts, as br_routes_find would find it. */
  struct br_strmap live_first, desired_first;
  br_strmap_init(&live_first);
  br_strmap_init(&desired_first);
  int rc = index_first(live, &live_first);
  if (rc == 0)
    rc = index_first(desired, &desired_first);
  for (size_t i = 0; rc == 0 && i < desired->n; i++) {
    const struct br_route *want = &desired->v[i];
    if (br_strmap_get(&desired_first, want->host) == want)
      rc = add_change(out, &cap, br_strmap_get(&live_first, want->host), want);
  }
  for (size_t i = 0; rc == 0 && i < live->n; i++) {
    const struct br_route *have = &live->v[i];
    if (!br_strmap_get(&desired_first, have->host) && br_strmap_get(&live_first, have->host) == have)
      rc = add_change(out, &cap, have, NULL);
  }
  br_strmap_free(&live_first);
  br_strmap_free(&desired_first);
  if (rc)
    br_diff_free(out);
  return rc;
}

void br_diff_free(struct br_diff *diff) {
  for (size_t i = 0; i < diff->n; i++)
    change_free(&diff->v[i]);
  free(diff->v);
  diff->v = NULL;
  diff->n = 0;
}

bool br_diff_empty(const struct br_diff *diff) { return diff->n == 0; }

/* Names come from files people write; a newline in one must not forge a
 * second line of plan output or of a log. */
static int put_name(struct br_buf *out, const char *s) {
  int rc = 0;
  for (; rc == 0 && *s; s++) {
    unsigned char c = (unsigned char)*s;
    rc = c < 0x20 || c == 0x7F ? br_buf_printf(out, "\\x%02x", c) : br_buf_add(out, s, 1);
  }
  return rc;
}

static int put_list(struct br_buf *out, const char *label, const struct br_strv *paths, bool label_each) {
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < paths->n; i++) {
    if (i == 0 || label_each)
      rc = br_buf_printf(out, "  %s", label);
    if (rc == 0)
      rc = br_buf_add(out, " ", 1);
    if (rc == 0)
      rc = put_name(out, paths->v[i]);
  }
  return rc;
}

static int put_auth(struct br_buf *out, const char *auth) { return put_name(out, auth ? auth : "none"); }

static int format_change(const struct br_route_change *c, const char *indent, struct br_buf *out) {
  static const char mark[] = {[BR_CHANGE_ADDED] = '+', [BR_CHANGE_REMOVED] = '-', [BR_CHANGE_MODIFIED] = '~'};
  int rc = br_buf_printf(out, "%s%c host ", indent ? indent : "", mark[c->kind]);
  if (rc == 0)
    rc = put_name(out, c->host);
  if (rc)
    return rc;
  switch (c->kind) {
  case BR_CHANGE_ADDED:
    rc = c->all_paths_after ? br_buf_adds(out, "  every path (no path_allowlist)")
                            : put_list(out, "paths", &c->paths_added, false);
    if (rc == 0 && c->auth_after) {
      rc = br_buf_adds(out, "  auth ");
      if (rc == 0)
        rc = put_auth(out, c->auth_after);
    }
    break;
  case BR_CHANGE_REMOVED:
    break;
  case BR_CHANGE_MODIFIED:
    if (c->all_paths_before != c->all_paths_after)
      rc = br_buf_adds(out, c->all_paths_after ? "  every path (no path_allowlist)"
                                               : "  no longer every path (a path_allowlist)");
    if (rc == 0)
      rc = put_list(out, "+path", &c->paths_added, true);
    if (rc == 0)
      rc = put_list(out, "-path", &c->paths_removed, true);
    if (rc == 0 && c->auth_changed) {
      rc = br_buf_adds(out, "  auth ");
      if (rc == 0)
        rc = put_auth(out, c->auth_before);
      if (rc == 0)
        rc = br_buf_adds(out, " -> ");
      if (rc == 0)
        rc = put_auth(out, c->auth_after);
    }
    break;
  }
  return rc ? rc : br_buf_add(out, "\n", 1);
}

int br_diff_format(const struct br_diff *diff, const char *indent, struct br_buf *out) {
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < diff->n; i++)
    rc = format_change(&diff->v[i], indent, out);
  return rc;
}

static json_t *strv_json(const struct br_strv *s) {
  json_t *a = json_array();
  for (size_t i = 0; a && i < s->n; i++) {
    if (json_array_append_new(a, json_string(s->v[i]))) {
      json_decref(a);
      return NULL;
    }
  }
  return a;
}

static json_t *opt_json(const char *s) { return s ? json_string(s) : json_null(); }

/* Fills j (the six keys already present) from one change. json_*_new steal
 * their argument even on failure, so NULLs from allocation need no cleanup
 * beyond the failed call. */
static int change_json(json_t *j, const struct br_route_change *c) {
  int fail = 0;
  if (c->kind == BR_CHANGE_ADDED)
    fail |= json_array_append_new(json_object_get(j, "hosts_added"), json_string(c->host));
  if (c->kind == BR_CHANGE_REMOVED)
    fail |= json_array_append_new(json_object_get(j, "hosts_removed"), json_string(c->host));
  if (c->paths_added.n)
    fail |= json_object_set_new(json_object_get(j, "paths_added"), c->host, strv_json(&c->paths_added));
  if (c->paths_removed.n)
    fail |= json_object_set_new(json_object_get(j, "paths_removed"), c->host, strv_json(&c->paths_removed));
  if (c->all_paths_before != c->all_paths_after)
    fail |= json_object_set_new(json_object_get(j, "every_path"), c->host, json_boolean(c->all_paths_after));
  if (c->auth_changed)
    fail |= json_array_append_new(json_object_get(j, "auth_changed"),
                                  json_pack("{s:s, s:o, s:o}", "host", c->host, "before", opt_json(c->auth_before),
                                            "after", opt_json(c->auth_after)));
  return fail ? -ENOMEM : 0;
}

json_t *br_diff_to_json(const struct br_diff *diff) {
  json_t *j = json_pack("{s:[], s:[], s:{}, s:{}, s:[], s:{}}", "hosts_added", "hosts_removed", "paths_added",
                        "paths_removed", "auth_changed", "every_path");
  for (size_t i = 0; j && i < diff->n; i++) {
    if (change_json(j, &diff->v[i])) {
      json_decref(j);
      return NULL;
    }
  }
  return j;
}
