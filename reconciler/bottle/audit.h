/* audit: the audit log, one JSON object per line for every write and reload
 * (time, slug, sidecar, what changed, hashes before and after, outcome). */
#ifndef BR_RECONCILER_AUDIT_H
#define BR_RECONCILER_AUDIT_H

#include <jansson.h>

#include "common/buf.h"

/* Appends each object of records as one line to the file at path (created
 * 0640). Each line is one write(2) on an O_APPEND descriptor, so concurrent
 * writers never interleave within a line. Returns 0 or -errno. */
int br_audit_append(const char *path, const json_t *records);

#endif
