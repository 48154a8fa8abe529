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
 * fragment as too large. The number of paths per route is not bounded here:
 * the union of bounded fragments is bounded by their count.
 *
 * warnings may be NULL to drop them. A warnings buffer that is full
 * (-EFBIG) loses warnings silently rather than failing the merge: warnings
 * are advice, the merged routes are what matter.
 *
 * Returns 0, -E2BIG or -ENOMEM. After -ENOMEM merged may be partly updated
 * (it stays valid and must still be freed) and should be discarded. */
int br_merge_add(struct br_routes *merged, const struct br_routes *fragment, const char *fragment_name,
                 size_t max_routes, struct br_buf *warnings);

#endif
