/* routes: the routes model shared by fragments, the merge and the live egress
 * file: hosts with their path allowlists and optional auth. No I/O here. */
#ifndef BR_RECONCILER_ROUTES_H
#define BR_RECONCILER_ROUTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/strv.h"

struct br_route {
  char *host;           /* lowercase, validated; owned */
  struct br_strv paths; /* path_allowlist, first-seen order, no duplicates */
  bool all_paths;       /* no path_allowlist at all: every path of the host (the
                           old tooling's way to say so); paths is then empty */
  char *auth_scheme;    /* NULL when the route has no auth; owned */
  char *token_env;      /* NULL exactly when auth_scheme is NULL; owned */
  char *origin;         /* "FILE:LINE" that declared it, for messages; owned, may be NULL */
  size_t column;        /* of its mapping in that file (1-based; 0 when origin is NULL) */
  size_t index;         /* its place in the file's routes list, routes[index] */
  int64_t expires;      /* seconds since the epoch from which it is no longer desired
                           (its own expires, or its fragment's, the earlier); 0 = never */
};

struct br_routes {
  struct br_route *v; /* owned array; each element owns its strings */
  size_t n;
  size_t cap;
};

/* Bounds on desired input, so a hostile file cannot exhaust memory. */
struct br_limits {
  size_t max_file_bytes; /* default 1 MiB */
  size_t max_routes;     /* default 4096 per fragment and per merged slug */
  size_t max_paths;      /* default 1024 per route */
  size_t max_depth;      /* YAML nesting, default 16 */
  int64_t expires_after; /* when a fragment is installed or checked (not when the daemon reads
                            it): an expires at or before this time (seconds since the epoch) is
                            an error; default 0, not checked */
};

void br_limits_default(struct br_limits *l);

void br_routes_init(struct br_routes *r);
void br_routes_free(struct br_routes *r);
void br_route_free(struct br_route *route);
/* Appends an empty route whose host is a copy of host; returns it or NULL on
 * -ENOMEM. The pointer is valid until the next append. */
struct br_route *br_routes_append(struct br_routes *r, const char *host);
/* Deep copy of one route onto the end of r. Returns 0 or -ENOMEM. */
int br_routes_append_copy(struct br_routes *r, const struct br_route *src);
struct br_route *br_routes_find(const struct br_routes *r, const char *host);
/* Semantic equality, as the egress sidecar sees it: the same hosts, each with
 * the same set of paths and the same auth. Order of routes and paths is
 * irrelevant to enforcement, so it is ignored. */
bool br_routes_equal(const struct br_routes *a, const struct br_routes *b);
/* Every host, in route order, appended to out. */
int br_routes_hosts(const struct br_routes *r, struct br_strv *out);

#endif
