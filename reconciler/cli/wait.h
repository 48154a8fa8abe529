/* wait: `--wait` of the commands that change fragments: returns once the
 * bottle runs a desired state, or cannot. With a daemon running it asks the
 * daemon (woken by the converge itself); without one it converges the bottle
 * here, under the bottle's lock. */
#ifndef BR_RECONCILER_CLI_WAIT_H
#define BR_RECONCILER_CLI_WAIT_H

#include "common/buf.h"
#include "reconciler/bottle/bottle.h"
#include "reconciler/bottle/converge.h"
#include "reconciler/cli/cli.h"

enum br_live {
  BR_LIVE,     /* both sidecars run it (and were told, confirmed where the driver confirms) */
  BR_REFUSED,  /* a converge found it invalid (a validate command, a driver that cannot work) */
  BR_NOT_LIVE, /* not yet: why says what it waits for; the daemon keeps retrying */
};

const char *br_live_name(enum br_live live);

/* Waits up to cli->wait_s for the bottle to run desired_hash. why gets the
 * reason of a refusal (its FILE:LINE:COLUMN: FIELD: lines) or of a wait that
 * ran out; by_daemon tells who converged. */
enum br_live br_wait_live(struct cli *cli, struct br_bottle *b, const char *desired_hash, struct br_buf *why,
                          bool *by_daemon);

/* Converges the bottle here (once and the commands without a daemon): the
 * short start-up grace of a young sidecar is waited out, as long as that
 * ends before deadline_ns (CLOCK_MONOTONIC; INT64_MAX: none). Writes the
 * audit. */
int br_converge_here(struct cli *cli, struct br_bottle *b, int64_t deadline_ns, struct br_converge_report *rep);

#endif
