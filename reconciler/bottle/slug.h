/* slug: which bottles exist on this host and what they are called: slug name
 * rules and the state root listing. A bottle's other facts are its record
 * (bottle.h). */
#ifndef BR_RECONCILER_SLUG_H
#define BR_RECONCILER_SLUG_H

#include <stdbool.h>

#include "common/buf.h"
#include "common/strv.h"

#define BR_SLUG_MAX 128

/* [A-Za-z0-9][A-Za-z0-9_.-]*, at most 128 characters: safe as a path
 * component and in file names of records. */
bool br_slug_valid(const char *name);

/* Lists the slugs of state_dir (directories with a valid name), sorted.
 * Entries with other names are skipped with a line in warnings, except dot
 * files (.reconciler is ours). */
int br_slugs_list(const char *state_dir, struct br_strv *slugs, struct br_buf *warnings);

#endif
