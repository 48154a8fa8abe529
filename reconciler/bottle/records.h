/* records: what the reconciler must remember across crashes and restarts,
 * under STATE/.reconciler/: reloads owed to a sidecar and settle times, and
 * the pipelock hosts this tool added. One small file of each per slug. */
#ifndef BR_RECONCILER_RECORDS_H
#define BR_RECONCILER_RECORDS_H

#include <stdbool.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/fileio.h"
#include "common/strv.h"
#include "config/config.h"

#define BR_RECORDS_DIR ".reconciler"

/* Records are opened beneath state_dir through no symlink in any component
 * (br_open_under): a symlink at STATE/.reconciler or below is -ELOOP.
 * state_dir should be resolved (br_config_resolve_state_dir). */

/* Creates STATE/.reconciler and its subdirectories when missing (refusing
 * any that is reached through a symlink, -ELOOP with the link named in
 * err), and moves
 * the reload records of the earlier one-file-per-record layout (pending/)
 * into the reload files. */
int br_records_init(const char *state_dir, struct br_buf *err);

/* A slug's reload file, STATE/.reconciler/reloads/<slug>: per sidecar
 * whether a reload is owed and until when a settle time runs, as four
 * fixed-width lines an operator can read:
 *
 *   pipelock reload owed 1795839967028330408
 *   egress   reload done 0000000000000000000
 *   pipelock settle wait 1795839967178330408
 *   egress   settle done 0000000000000000000
 *
 * "Reload owed" is set before the rename of a live file and cleared once the
 * sidecar was told: a converge that finds it reloads even when the file
 * already matches, so a crash between the rename and the signal cannot
 * leave a sidecar on its old config. Its time is when the write happened
 * (CLOCK_REALTIME), for the drivers' start-time check; 0 means unknown.
 * "Settle wait" holds when the next step may start (CLOCK_REALTIME): the
 * daemon waits settle times out in its queue rather than in a sleeping
 * worker, and this keeps any converge, early or from another process, from
 * taking the next step too soon.
 *
 * A converge opens the file once, under the slug's lock, and each change
 * rewrites one line in place: no rename, no new inode (renames and inode
 * creation in a directory shared by every slug were a sixth of a bulk
 * change's CPU). Nothing is fsync'd: the file matters only while a sidecar
 * outlives this process, and the page cache outlives a process; a machine
 * crash restarts the sidecars too, and they read the live files then. A
 * line that cannot be parsed (such a crash can leave the file empty) reads
 * as a reload owed at an unknown time, or as no settle time: at worst one
 * reload too many. */
enum br_reload_mark { BR_MARK_RELOAD_OWED, BR_MARK_SETTLE_UNTIL };

struct br_reloads {
  struct br_buf path;
  struct br_path_rule rule; /* how path is opened: beneath the state directory, through no symlink */
  int fd;                   /* -1 while the file does not exist */
  bool whole;               /* the file has the four lines; otherwise a change rewrites it all */
  bool writable;
  bool set[4]; /* per line of the file, in its order */
  int64_t ns[4];
};

/* Reads the slug's reload file; writable for a converge that may change it
 * (it must hold the slug's lock). An absent file marks nothing. Returns 0 or
 * -errno (with a line in err). Call br_reloads_close() in either case. */
int br_reloads_open(struct br_reloads *r, const char *state_dir, const char *slug, bool writable,
                    struct br_buf *err);
/* Returns true and fills *ns when the mark is set for sidecar. */
bool br_reloads_get(const struct br_reloads *r, enum br_sidecar sidecar, enum br_reload_mark mark, int64_t *ns);
int br_reloads_set(struct br_reloads *r, enum br_sidecar sidecar, enum br_reload_mark mark, int64_t ns,
                   struct br_buf *err);
int br_reloads_clear(struct br_reloads *r, enum br_sidecar sidecar, enum br_reload_mark mark, struct br_buf *err);
void br_reloads_close(struct br_reloads *r);

/* The pipelock hosts this tool added for a slug (prune mode removes only
 * those), STATE/.reconciler/added/<slug>.json:
 *
 *   {"hosts": ["a.example.com", ...], "hmac_sha256": "<64 hex digits>"}
 *
 * The MAC is HMAC-SHA256 under the record key, STATE/.reconciler/record.key
 * (32 random bytes, root's, mode 0600, made on the first signature), over
 * the slug and the host list. Whoever may write the state directory but not
 * read root's files cannot make a record that verifies: not by editing one,
 * copying another bottle's, writing one in the earlier version's format (a
 * bare JSON list, unsigned) or replacing the key or its directory. */

/* Appends the hosts of a record that verifies to hosts, which must be
 * empty. A missing record is an empty list. A record that does not verify
 * (above, or one that cannot be parsed: a machine crash can leave a record
 * that was not written durably empty) is an empty list too, *distrusted is
 * set and warnings says why and what to do: forgetting a host only means
 * prune leaves it in place, never that it removes one it did not add.
 * distrusted may be NULL. Returns 0 or -errno (the record not readable). */
int br_record_added_get(const char *state_dir, const char *slug, struct br_strv *hosts, bool *distrusted,
                        struct br_buf *warnings);
/* Replaces the list, signed (the key is made on first use). A key that
 * cannot be used (not a regular file of the daemon's user, mode 0600, one
 * link, in a directory that no one else may write) leaves the record
 * unsigned, with a line in warnings: prune mode will remove none of its
 * hosts.
 * durable: fsync'd before this returns, as prune mode needs (it must never
 * forget a host it added). Additive mode never removes a host, so there the
 * record only serves a later switch to prune, and two fsyncs per converge
 * (a third of a bulk change's) buy nothing: it is rewritten in place, and a
 * machine crash leaves the old list, the new one or one that cannot be
 * parsed. Returns 0 or -errno with a line in err. */
int br_record_added_set(const char *state_dir, const char *slug, const struct br_strv *hosts, bool durable,
                        struct br_buf *warnings, struct br_buf *err);
/* Signs the record of a slug as it stands, whatever it holds now: for the
 * operator who checked that this tool added every host it lists (a record
 * of the earlier version, or one that a restore from backup made
 * distrusted). The hosts signed are appended to hosts, which must be empty.
 * Returns 0, -ENOENT (no record), -EINVAL (not a record) or another -errno,
 * with a line in err. */
int br_record_added_trust(const char *state_dir, const char *slug, struct br_strv *hosts, struct br_buf *err);

/* STATE/.reconciler/projects/<project>: the slug of the bottle a compose
 * project belongs to, one line (see br_bottle_project_owned). */
/* Fills holder (size bytes) with the slug recorded for project. Returns 0,
 * -ENOENT (none recorded), -EINVAL (not a slug: treated as none) or
 * another -errno. */
int br_record_project_holder(const char *state_dir, const char *project, char *holder, size_t size);
/* Records slug as project's bottle: only when none is recorded (-EEXIST if
 * one is, say another bottle that got there first), or, with take_over,
 * over the one recorded. Returns 0 or -errno with a line in err. */
int br_record_project_claim(const char *state_dir, const char *project, const char *slug, bool take_over,
                            struct br_buf *err);

/* Drops every record of a slug (the bottle is gone). */
void br_records_forget(const char *state_dir, const char *slug);

#endif
