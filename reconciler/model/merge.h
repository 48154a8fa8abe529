/* merge: folds a slug's fragments, in merge order, into its desired routes.
 * Knows the merge rules only; parsing and ordering fragments happen elsewhere. */
#ifndef BR_RECONCILER_MERGE_H
#define BR_RECONCILER_MERGE_H

#include <stddef.h>

#include "common/buf.h"
#include "reconciler/model/routes.h"

/* Adds one fragment's routes to merged. Call it once per fragment in merge
 * order (source by source, file names in byte order), starting from an empty,
 * initialised merged.
 *
 * Rules (DESIGN.md, "Desired state"):
 *  - A host not yet in merged is appended: a deep copy of the fragment's
 *    route. Its origin is the fragment route's origin or, when that is NULL,
 *    fragment_name, so later messages can always name where it came from.
 *  - A host already in merged (from an earlier fragment or earlier in this
 *    one) gets the fragment's paths added that it lacks, in order: path lists
 *    are united in first-seen order. It keeps its origin.
 *  - The first route that names a host decides its auth. A later route whose
 *    auth differs (another scheme or token_env, auth where the first had none,
 *    or none where the first had auth) changes nothing and appends one line
 *    to warnings, e.g.
 *      b.yaml:4: host api.github.com: auth Bearer/TOKEN_B ignored, auth
 *      already set by a.yaml:2 (the first fragment that names a host decides
 *      its auth)
 *    (on one line, ending in "\n"); the other cases read "no auth ignored,
 *    auth already set by ..." and "auth X/Y ignored, no auth already set by
 *    ...". Only scheme and env names appear, never a token value.
 *
 * max_routes bounds the number of distinct hosts in merged (0: no bound). A
 * fragment that would take merged past it returns -E2BIG before anything is
 * changed: merged and warnings are as they were; the caller reports the
 * fragment as too large. br_merge_add_limited bounds the paths of each
 * merged route too.
 *
 * Each call costs time linear in merged's hosts and in the paths the
 * fragment adds and those of the hosts it names (sets, not scans).
 *
 * warnings may be NULL to drop them. A warnings buffer that is full
 * (-EFBIG) loses warnings silently rather than failing the merge: warnings
 * are advice, the merged routes are what matter.
 *
 * Returns 0, -E2BIG or -ENOMEM. After -ENOMEM merged may be partly updated
 * (it stays valid and must still be freed) and should be discarded. */
int br_merge_add(struct br_routes *merged, const struct br_routes *fragment, const char *fragment_name,
                 size_t max_routes, struct br_buf *warnings);

/* Which limit a fragment would take merged past. */
struct br_merge_excess {
  size_t route; /* index in the fragment of the first route that crosses it */
  bool paths;   /* max_paths, by that route's host; else max_routes */
};

/* br_merge_add, and max_paths (0: no bound) bounds the paths of every merged
 * route: 64 fragments of 1,024 paths for one host must not make a route of
 * 65,536 when each fragment alone is within the limit. On -E2BIG nothing is
 * changed and *excess (when not NULL) says where the fragment crosses a
 * limit (a route with every path has no paths to count). */
int br_merge_add_limited(struct br_routes *merged, const struct br_routes *fragment, const char *fragment_name,
                         size_t max_routes, size_t max_paths, struct br_merge_excess *excess,
                         struct br_buf *warnings);

#endif
