/* diff: what a converge would change in a live egress file, for `plan`, the
 * audit log and status. Compares models only; it never decides or writes. */
#ifndef BR_RECONCILER_DIFF_H
#define BR_RECONCILER_DIFF_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/buf.h"
#include "common/strv.h"
#include "reconciler/model/routes.h"

enum br_change_kind {
  BR_CHANGE_ADDED,    /* the host is desired and not live */
  BR_CHANGE_REMOVED,  /* the host is live and not desired */
  BR_CHANGE_MODIFIED, /* both have it, with other paths or other auth */
};

/* One host's change. A host absent on one side counts as having no paths and
 * no auth there, so the fields mean the same for every kind: an added host
 * lists all its paths in paths_added, a removed one all of its live paths in
 * paths_removed. */
struct br_route_change {
  char *host; /* owned */
  enum br_change_kind kind;
  struct br_strv paths_added;   /* desired, not live; desired order */
  struct br_strv paths_removed; /* live, not desired; live order */
  bool auth_changed;            /* auth_before and auth_after differ */
  bool all_paths_before;        /* live allows every path (no path_allowlist) */
  bool all_paths_after;         /* desired does */
  char *auth_before;            /* "Bearer $TOKEN_ENV" live, or NULL for none; owned */
  char *auth_after;             /* the same for desired; owned */
};

struct br_diff {
  struct br_route_change *v; /* owned */
  size_t n;
};

/* Computes the changes that turn live into desired, semantically: the order
 * of routes and paths is ignored, as br_routes_equal ignores it, so an empty
 * diff is exactly br_routes_equal(live, desired). Changes come in desired
 * order for added and modified hosts, then removed hosts in live order. Both
 * inputs are expected to have unique hosts; a repeated host is considered at
 * its first occurrence only.
 *
 * out is initialised by this call. Returns 0 or -ENOMEM (out is then empty).
 * Free out with br_diff_free. */
int br_diff_routes(const struct br_routes *live, const struct br_routes *desired, struct br_diff *out);
void br_diff_free(struct br_diff *diff);
bool br_diff_empty(const struct br_diff *diff);

/* Appends one readable line per change to out, each starting with indent
 * (may be NULL) and ending in "\n":
 *   + host api.github.com  paths /a /b  auth Bearer $T
 *   - host old.example.com
 *   ~ host y.example.com  +path /c  -path /d  auth Bearer $A -> none
 * An added host shows "paths" and "auth" only when it has them; a modified
 * one shows "auth BEFORE -> AFTER" only when auth changed. Control
 * characters in names are shown as \xNN so one change stays one line.
 * Returns 0, -ENOMEM or -EFBIG. */
int br_diff_format(const struct br_diff *diff, const char *indent, struct br_buf *out);

/* The diff as a JSON object for the audit log; a new reference, NULL on
 * allocation failure (or a name that is not UTF-8, which validated routes
 * never have). Every key is always present:
 *   {"hosts_added": [host...], "hosts_removed": [host...],
 *    "paths_added": {host: [path...]}, "paths_removed": {host: [path...]},
 *    "auth_changed": [{"host": h, "before": "Bearer $A" | null,
 *                      "after": "Bearer $B" | null}]}
 * paths_added/paths_removed include added/removed hosts (all their paths)
 * and leave out hosts with no path change; auth_changed includes added
 * hosts with auth and removed hosts that had auth. Hosts appear in change
 * order (the order of br_diff_routes). */
json_t *br_diff_to_json(const struct br_diff *diff);

#endif
