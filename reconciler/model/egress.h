/* egress: the live egress routes file: lenient parsing of what the sidecar
 * runs, canonical rendering of what it should run. No file I/O (converge.c). */
#ifndef BR_RECONCILER_EGRESS_H
#define BR_RECONCILER_EGRESS_H

#include <jansson.h>
#include <stddef.h>

#include "common/buf.h"
#include "reconciler/model/routes.h"

/* A top-level member of the live file other than "routes": another tool's,
 * kept on a rewrite. */
struct br_egress_member {
  char *key; /* decoded; may hold a NUL (JSON allows "\u0000"), so keylen
                counts; owned */
  size_t keylen;
  json_t *value; /* one reference, owned; NULL when jansson cannot hold the
                    value exactly (an integer beyond 64 bits, a number beyond
                    double range, a NUL in a key, a lone surrogate) */
  char *raw;     /* then: the value's bytes as the file has them; owned */
  size_t rawlen;
};

/* What the egress sidecar currently runs. */
struct br_egress_live {
  struct br_egress_member *members; /* the other top-level keys in file order
                                       (each once); owned */
  size_t n_members;
  size_t routes_at;        /* "routes" sits before members[routes_at] (n_members:
                              last, also when the file has none) */
  struct br_routes routes; /* "routes" as a model: unique lowercase hosts,
                              unique paths, origin NULL; owned */
  struct br_strv drift;    /* why the file is not what the canonical rendering of
                              its own routes would be, beyond layout: one line
                              each ("routes[2]: unknown key \"x\"; ..."); owned */
};

/* An empty live state, as for a bottle whose egress file does not exist yet. */
void br_egress_live_init(struct br_egress_live *live);
/* Frees everything; live is empty (as after init) afterwards. */
void br_egress_live_free(struct br_egress_live *live);

/* Parses the bytes of a live egress file named name (for messages only).
 *
 * Lenient about what older tooling or a hand edit wrote, since the file is
 * not ours alone, but never silent about it: a missing or null
 * path_allowlist means every path (all_paths; the old tooling writes a route
 * so when a proposal names no paths), hosts are lowercased, duplicate paths
 * are dropped, keys of a route other than host, path_allowlist, auth_scheme
 * and token_env are ignored, null auth_scheme/token_env count as absent, and
 * a host listed twice becomes one route whose paths are the union in
 * first-seen order and whose auth is the first occurrence's. Each of these,
 * a duplicate key anywhere and a byte order mark add a line to drift: the
 * model hides them, yet a reader of the file may act on them (a second
 * route's token, say), so the converge rewrites such a file.
 *
 * Strict about the shape the sidecar needs: one JSON text (RFC 8259, UTF-8)
 * whose top level is an object whose "routes" is an array of objects, each
 * with a non-empty string "host", paths that are strings, auth_scheme and
 * token_env strings given both or neither, no string of a route holding
 * \u0000. Anything else returns -EINVAL with one line appended to err (no
 * trailing newline): "NAME:LINE:COLUMN: FIELD: what is wrong, expected what",
 * e.g. "egress_routes.yaml:7:15: routes[1].host: is a number, expected a
 * string". LINE and COLUMN (1-based, columns count characters) point at the
 * offending value, or at the enclosing value when a key is missing. err may
 * be NULL.
 *
 * Returns 0, -EINVAL or -ENOMEM. out is initialised by this call. On
 * -EINVAL, routes and drift are empty, and members hold the file's other
 * top-level keys when its top level was a readable object (only "routes"
 * was wrong), so that a rewrite keeps them; free out in every case. */
int br_egress_parse(const char *name, const char *bytes, size_t len, struct br_egress_live *out,
                    struct br_buf *err);

/* Appends to out the canonical bytes of the egress file for routes: exactly
 * what Python's json.dumps(cfg, indent=2) + "\n" gives, where cfg is doc with
 * its "routes" value replaced in place (or, when doc is NULL or has no
 * "routes", {"routes": ...} / doc with "routes" appended last). Each route is
 * {"host", "path_allowlist", "auth_scheme", "token_env"} in that order, the
 * auth keys only when the route has auth; routes and paths in model order.
 *
 * doc, when not NULL, must be an object; it is not modified. Returns 0,
 * -EINVAL (doc is not an object, holds a NaN or infinity, or a string is not
 * valid UTF-8), -ENOMEM or -EFBIG (out's maximum). On error out may hold a
 * partial rendering; the caller discards it. */
int br_egress_render(const struct br_routes *routes, const json_t *doc, struct br_buf *out);

/* The same for a live file: routes placed among live's members where the
 * file had "routes". A member kept as raw bytes is copied as it is, so what
 * jansson cannot hold survives a rewrite byte for byte; every other member is
 * written as json.dumps writes it. live may be NULL (no file): {"routes": ...}.
 * Returns as br_egress_render. */
int br_egress_render_live(const struct br_routes *routes, const struct br_egress_live *live, struct br_buf *out);

#endif
