/* converge: brings one slug's sidecars to its desired routes, in the safe
 * order. The one place that writes live files. No global state: the daemon's
 * workers and the one-shot commands call it alike. */
#ifndef BR_RECONCILER_CONVERGE_H
#define BR_RECONCILER_CONVERGE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "common/buf.h"
#include "common/sha256.h"
#include "config/config.h"
#include "reconciler/bottle/bottle.h"

enum br_outcome {
  BR_OUTCOME_CONVERGED, /* live files equal the desired state and the sidecars were told */
  BR_OUTCOME_CHANGES,   /* dry run only: a converge would change something */
  BR_OUTCOME_UNMANAGED, /* no source directory exists: the bottle is left alone */
  BR_OUTCOME_INVALID,   /* desired state or a live file is invalid, or a staged file
                           was refused: waits for its inputs to change */
  BR_OUTCOME_WAITING,   /* a file it needs does not exist yet (the pipelock config) */
  BR_OUTCOME_RETRY,     /* transient failure or a deferred reload: try again later */
  BR_OUTCOME_SETTLING,  /* BR_CONVERGE_ASYNC only: a sidecar was told and the next
                           step waits out its settle time; converge again after
                           retry_after_ms */
  BR_OUTCOME_COUNT
};

/* How a converge runs. */
enum br_converge_mode {
  BR_CONVERGE_PLAN,  /* dry run: read and compare, write and signal nothing */
  BR_CONVERGE_WAIT,  /* apply, sleeping through settle times (one-shot commands) */
  BR_CONVERGE_ASYNC, /* apply, but return SETTLING instead of sleeping, so a
                        daemon worker is not held for a settle time (the daemon) */
};

struct br_converge_report {
  enum br_outcome outcome;
  struct br_buf message;    /* one line: what happened, or what is wrong and where */
  struct br_buf errors;     /* INVALID: every "FILE:LINE:COLUMN: FIELD: ..." line */
  struct br_buf warnings;   /* merge conflicts, bad metadata.json, unparsable live egress file */
  struct br_buf plan;       /* the changes, readable: what a dry run would do, or what was done */
  unsigned retry_after_ms;  /* RETRY: a driver's hint (start-up grace), 0 = use backoff;
                               SETTLING: when the settle time is over */
  unsigned writes;          /* live files written by this converge */
  unsigned reloads;         /* sidecars told to reload */
  bool sidecar_not_running; /* converged, but a sidecar was absent and reads the file when it starts */
  char desired_hash[BR_SHA256_HEX_LEN + 1]; /* names the desired state; "" when invalid */
  json_t *audit;                            /* array: one object per write or reload, for the audit log */
  json_t *credentials; /* object: each token_env of the desired routes -> [hosts it serves], in
                          route order; NULL when the desired state was not loaded */
  json_t *expiring;    /* array: each route still to end, {host, path_allowlist or every_path,
                          expires, fragment}, soonest first; NULL when not loaded */
  int64_t next_expiry; /* the earliest expires to come among the bottle's fragments (seconds
                          since the epoch), 0 = none: converge again then */
};

/* Someone who wants to know about each live file a converge replaces, told
 * on the converge's thread just before the new file is renamed into place
 * at path (as configured; staged: its lstat, which the target then has).
 * The daemon uses it to recognise the inotify record of its own rename. */
struct br_converge_observer {
  void (*replacing)(void *ctx, const char *path, const struct stat *staged);
  void *ctx;
};

/* Lines about the desired state itself, for `plan`: which credential slot
 * goes to which host ("  credential EGRESS_TOKEN_0: api.github.com") and
 * what ends when ("  expires 2026-07-01T12:00:00Z: HOST PATHS (FILE:LINE)"). */
void br_converge_describe_desired(const struct br_converge_report *rep, struct br_buf *out);

void br_converge_report_init(struct br_converge_report *rep);
void br_converge_report_free(struct br_converge_report *rep);
const char *br_outcome_name(enum br_outcome outcome);

/* When br_bottle_derive refused the bottle (-EPERM: its compose project,
 * which a path names, may not be used; b->refusal says why): rep becomes
 * an invalid converge that says so and touched nothing. Returns 0, or rc
 * as it is for any other error. */
int br_converge_derive_refused(const struct br_bottle *b, int rc, struct br_converge_report *rep);

/* Converges a bottle once: reads everything afresh, then widens pipelock,
 * writes egress, narrows pipelock (prune mode), telling each sidecar as it goes.
 * A settle time separates a sidecar's reload from the next step only when a
 * next step follows. In PLAN mode nothing is written or signalled and the
 * report says what would be done. Blocks (file I/O, drivers, and settle
 * waits in WAIT mode): call it off the event loop. Holds an exclusive lock on the slug's directory while it
 * works, so two processes never converge one bottle at once. The record may
 * learn its project (br_bottle_project). Returns 0 with the outcome in rep. */
int br_converge_bottle(struct br_bottle *bottle, enum br_converge_mode mode,
                       const struct br_converge_observer *observer, struct br_converge_report *rep);
/* The same for a slug whose record is derived here (the one-shot commands);
 * a slug that is not valid is INVALID. */
int br_converge_slug(const struct br_config *cfg, const char *slug, enum br_converge_mode mode,
                     const struct br_converge_observer *observer, struct br_converge_report *rep);

/* Removes temp files that a crashed writer of this tool left beside the
 * bottle's live files and in its source directories; safe while converges
 * run. */
void br_converge_cleanup(const struct br_bottle *bottle);

#endif
