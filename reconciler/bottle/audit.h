/* audit: the audit log, one JSON object per line for every write and reload
 * (time, slug, sidecar, what changed, hashes before and after, outcome). */
#ifndef BR_RECONCILER_AUDIT_H
#define BR_RECONCILER_AUDIT_H

#include <jansson.h>

#include "common/buf.h"
#include "common/fileio.h"
#include "config/config.h"

/* A new audit record for a write or reload of sidecar's live file, appended
 * to list (which holds the reference, so the returned pointer is borrowed):
 * {"time", "slug", "sidecar", "file"}; the converge adds what it did. */
json_t *br_audit_record(json_t *list, const char *slug, enum br_sidecar sidecar, const char *file);

/* Appends each object of records as one line to the file at path (created
 * 0640), opened under rule (br_config_path_rule: through no symlink, so a
 * link at STATE/.reconciler cannot send the log elsewhere; -ELOOP). Each line is one write(2) on an O_APPEND
 * descriptor, so concurrent writers never interleave within a line. Returns 0 or -errno (a short write whose cause
 * is unknown is -EIO). */
int br_audit_append(const char *path, const struct br_path_rule *rule, const json_t *records);

#endif
