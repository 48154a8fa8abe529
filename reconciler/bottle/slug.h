/* slug: which bottles exist on this host and what they are called: slug name
 * rules, the state root listing, and the compose project from metadata.json. */
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

/* The compose project of a slug: "compose_project" from
 * STATE/SLUG/metadata.json when present and valid, else the slug. A present
 * but invalid file is reported in warnings and the slug is used. */
int br_slug_project(const char *state_dir, const char *slug, struct br_buf *project, struct br_buf *warnings);

#endif
