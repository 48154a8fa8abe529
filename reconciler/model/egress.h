/* egress: the live egress routes file: lenient parsing of what the sidecar
 * runs, canonical rendering of what it should run. No file I/O (converge.c). */
#ifndef BR_RECONCILER_EGRESS_H
#define BR_RECONCILER_EGRESS_H

#include <jansson.h>
#include <stddef.h>

#include "common/buf.h"
#include "reconciler/model/routes.h"

/* What the egress sidecar currently runs. */
struct br_egress_live {
  json_t *doc;             /* the whole top-level object as parsed, so keys the
                              daemon does not own survive a rewrite; NULL when
                              there was no file; one reference, owned */
  struct br_routes routes; /* "routes" as a model: unique lowercase hosts,
                              unique paths, origin NULL; owned */
};

/* An empty live state, as for a bottle whose egress file does not exist yet. */
void br_egress_live_init(struct br_egress_live *live);
/* Frees doc and routes; live is empty (as after init) afterwards. */
void br_egress_live_free(struct br_egress_live *live);

/* Parses the bytes of a live egress file named name (for messages only).
 *
 * Lenient about what older tooling wrote, since the file is not ours alone:
 * a missing or null path_allowlist means every path (all_paths; the old
 * tooling writes a route so when a proposal names no paths), hosts are lowercased,
 * duplicate paths are dropped, keys of a route other than host,
 * path_allowlist, auth_scheme and token_env are ignored (and not kept on a
 * rewrite), null auth_scheme/token_env count as absent, and a host listed
 * twice becomes one route whose paths are the union in first-seen order and
 * whose auth is the first occurrence's.
 *
 * Strict about the shape the sidecar needs: a JSON object whose "routes" is an
 * array of objects, each with a non-empty string "host", paths that are
 * strings, auth_scheme and token_env strings given both or neither. Anything
 * else returns -EINVAL with one line appended to err (no trailing newline):
 * "NAME:LINE:COLUMN: FIELD: what is wrong, expected what", e.g.
 * "egress_routes.yaml:7:15: routes[1].host: is a number, expected a string".
 * LINE and COLUMN (1-based, columns count characters) point at the offending
 * value, or at the enclosing value when a key is missing. err may be NULL.
 *
 * Integers beyond 64 bits and reals beyond double range anywhere in the file
 * are rejected (jansson cannot hold them), as are strings containing \u0000.
 *
 * Returns 0, -EINVAL or -ENOMEM. out is initialised by this call; on error it
 * is left empty and need not be freed (freeing it is harmless). */
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

#endif
