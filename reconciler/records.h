/* records: what the reconciler must remember across crashes and restarts,
 * under STATE/.reconciler/: reloads owed to a sidecar, and the pipelock hosts
 * this tool added. Small files, each written atomically. */
#ifndef BR_RECONCILER_RECORDS_H
#define BR_RECONCILER_RECORDS_H

#include <stdbool.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/strv.h"

#define BR_RECORDS_DIR ".reconciler"

/* Creates STATE/.reconciler and its subdirectories when missing. */
int br_records_init(const char *state_dir, struct br_buf *err);

/* "Written but not yet reloaded": set before the rename of a live file,
 * cleared once the sidecar was told. A converge that finds one reloads even
 * when the file already matches, so a crash between the rename and the signal
 * cannot leave a sidecar on its old config. written_at_ns is when the write
 * happened (CLOCK_REALTIME), for the drivers' start-time check. */
int br_record_pending_set(const char *state_dir, const char *slug, const char *sidecar,
                          int64_t written_at_ns, struct br_buf *err);
/* Returns 1 and fills *written_at_ns when a reload is owed, 0 when not. */
int br_record_pending_get(const char *state_dir, const char *slug, const char *sidecar,
                          int64_t *written_at_ns);
int br_record_pending_clear(const char *state_dir, const char *slug, const char *sidecar);

/* "Settling until": a sidecar was told, and the next step must not start
 * before until_ns (CLOCK_REALTIME). The daemon waits settle times out in its
 * queue rather than in a sleeping worker; this record keeps any converge,
 * early or from another process, from taking the next step too soon. */
int br_record_settle_set(const char *state_dir, const char *slug, const char *sidecar, int64_t until_ns,
                         struct br_buf *err);
/* Returns 1 and fills *until_ns when a record exists, 0 when not. */
int br_record_settle_get(const char *state_dir, const char *slug, const char *sidecar, int64_t *until_ns);
int br_record_settle_clear(const char *state_dir, const char *slug, const char *sidecar);

/* The pipelock hosts this tool added for a slug (prune mode removes only
 * those). A missing record is an empty list; so is one that cannot be
 * parsed (a machine crash can leave a record that was not written durably
 * empty), with a line in warnings: forgetting a host only means prune
 * leaves it in place, never that it removes one it did not add. */
int br_record_added_get(const char *state_dir, const char *slug, struct br_strv *hosts,
                        struct br_buf *warnings);
/* Replaces the list. durable: fsync'd before this returns, as prune mode
 * needs (it must never forget a host it added). Additive mode never removes
 * a host, so there the record only serves a later switch to prune, and two
 * fsyncs per converge (a third of a bulk change's) buy nothing. */
int br_record_added_set(const char *state_dir, const char *slug, const struct br_strv *hosts, bool durable,
                        struct br_buf *err);

/* Drops every record of a slug (the bottle is gone). */
void br_records_forget(const char *state_dir, const char *slug);

#endif
