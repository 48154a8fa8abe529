/* pipelock_plan: which hosts an api_allowlist lets through, by pipelock's own
 * rule, and which entries to add or remove. Lists only, never the file. */
#ifndef BR_RECONCILER_PIPELOCK_PLAN_H
#define BR_RECONCILER_PIPELOCK_PLAN_H

#include <stdbool.h>

#include "common/strv.h"

/* Lower-cases ASCII letters and strips one trailing dot, in place: what
 * pipelock does to a host name and to each entry before comparing them. */
void br_pipelock_host_normalise(char *host);

/* Whether pipelock would let host through an allowlist: after normalising
 * both, an entry equal to host, or a leading-"*." entry whose suffix equals
 * host or ends it after a dot (*.example.com allows example.com and
 * a.b.example.com). Entries with a port or scheme (any ':' or '/') and a bare
 * "*" match nothing, as in pipelock, which accepts them silently. An empty
 * host is never allowed. */
bool br_pipelock_allows(const struct br_strv *allowlist, const char *host);

/* Plans an allowlist change, in two steps that converge applies in that order:
 *
 * widened: live, then each needed host that the list so far does not already
 *   allow (br_pipelock_allows: a wildcard entry that covers a host counts, so
 *   *.github.com means api.github.com is not added), in needed's order and as
 *   written there. hosts_added lists exactly the hosts appended.
 * narrowed: with prune, widened without the entries that are in added_by_us
 *   (exact string) and that allow no needed host: it never removes an entry
 *   this daemon did not add, nor one a route still needs. hosts_removed lists
 *   them (each once). Without prune, narrowed equals widened and nothing is
 *   removed.
 *
 * All four outputs must be initialised; results are appended to them. Returns
 * 0 or -ENOMEM, after which the outputs are left as they were. Lookups are
 * linear (like br_strv's), which suits lists of a few thousand hosts. */
int br_pipelock_plan(const struct br_strv *live, const struct br_strv *needed, const struct br_strv *added_by_us,
                     bool prune, struct br_strv *widened, struct br_strv *narrowed, struct br_strv *hosts_added,
                     struct br_strv *hosts_removed);

#endif
