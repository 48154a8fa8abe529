/* approval: what an approval dashboard and an operator ask of one bottle:
 * approve one proposed route, take a route or an approval back, adopt the
 * routes a bottle runs before this tool manages it. Each approval is a
 * fragment file of its own, ~approval-<id>.json in the local source: "~"
 * sorts after the names operators use, so an approval never decides the
 * auth of a host an operator fragment names. */
#ifndef BR_RECONCILER_BOTTLE_APPROVAL_H
#define BR_RECONCILER_BOTTLE_APPROVAL_H

#include <stdbool.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/strv.h"
#include "reconciler/bottle/bottle.h"
#include "reconciler/model/routes.h"

#define BR_APPROVAL_PREFIX "~approval-"
#define BR_ADOPTED_NAME "00-adopted.json"
#define BR_APPROVAL_ID_MAX 64

/* One proposal, as the dashboard sends it. */
struct br_proposal {
  const char *host;
  struct br_strv paths;    /* path_allowlist; empty: "/" (every path) */
  const char *auth_scheme; /* with token_ref, or neither */
  const char *token_ref;   /* the dashboard's name for the credential; recorded, never a value */
  const char *id;          /* [A-Za-z0-9_.-], at most 64; NULL: one is made */
  int64_t expires;         /* when the approval ends (seconds since the epoch; the fragment's
                              expires), 0 = never */
};

/* What a change did, for the command's output and its JSON document. */
struct br_change_outcome {
  char id[BR_APPROVAL_ID_MAX + 1];
  struct br_buf fragment; /* the file installed, changed or removed */
  char slot[32];          /* EGRESS_TOKEN_N given to a new host's credential, or "" */
  bool auth_ignored;      /* the host had its auth already; the proposed one was not used */
  bool adopted;           /* the bottle's live routes were adopted first */
  bool unchanged;         /* nothing needed changing */
  char desired_hash[65];  /* the bottle's desired state after the change */
  struct br_buf errors;   /* why it was refused: FILE:LINE:COLUMN: FIELD: lines or one sentence */
  struct br_buf notes;    /* what the operator should know (the slot needs a value, ...) */
  struct br_strv touched; /* names of the files it installed or removed in the local source */
};

void br_change_outcome_init(struct br_change_outcome *o);
void br_change_outcome_free(struct br_change_outcome *o);

/* The results: 0 done, -EINVAL refused (errors says why; nothing changed),
 * another -errno for a failure (errors says it too). */

/* Adopts an unmanaged bottle: its live egress routes become the fragment
 * 00-adopted.json in its local source, so the first converge changes
 * nothing. Pipelock's hosts are recorded as added by no one: they were there
 * before this tool, and prune never removes what it did not add. A managed
 * bottle is left as it is (unchanged). */
int br_adopt(struct br_bottle *b, struct br_change_outcome *o);

/* Approves one proposal (adopting first when the bottle is unmanaged). */
int br_approval_add(struct br_bottle *b, const struct br_proposal *p, struct br_change_outcome *o);

/* Takes host (or only its path) back from the approvals that grant it.
 * Refused when another fragment grants it too: an operator's (edit it) or a
 * source this tool does not own. */
int br_approval_remove_route(struct br_bottle *b, const char *host, const char *path, struct br_change_outcome *o);

/* Removes the approval with this id. */
int br_approval_revoke(struct br_bottle *b, const char *id, struct br_change_outcome *o);

/* Installs bytes as fragment name (apply, edit), checked on the whole
 * bottle first, adopting first when unmanaged; bytes NULL removes it. */
int br_fragment_install(struct br_bottle *b, const char *name, const char *bytes, size_t len,
                        struct br_change_outcome *o);

#endif
