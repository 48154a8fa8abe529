/* desired: a slug's desired routes, read afresh from its source directories:
 * fragment discovery, the symlink rule, parsing and the merge. Reads only. */
#ifndef BR_RECONCILER_DESIRED_H
#define BR_RECONCILER_DESIRED_H

#include <stdbool.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/sha256.h"
#include "common/strv.h"
#include "config/config.h"
#include "reconciler/model/policy.h"
#include "reconciler/model/routes.h"

struct br_desired {
  bool managed;                     /* at least one source directory exists */
  struct br_routes routes;          /* merged desired routes (empty when invalid) */
  struct br_strv sources;           /* expanded source directories, merge order */
  struct br_strv fragments;         /* fragment paths read, merge order */
  struct br_buf errors;             /* "FILE:LINE:COLUMN: FIELD: ..." lines, one per bad fragment */
  struct br_buf warnings;           /* merge conflicts and the like */
  struct br_buf canonical;          /* the canonical egress rendering of routes
                                       alone ({"routes": [...]}): a live file of
                                       exactly these bytes runs the desired state */
  char hash[BR_SHA256_HEX_LEN + 1]; /* SHA-256 of canonical: names the desired state */
  /* Routes that carry expires, as their fragments declare them (before the
   * merge, with their origins): */
  struct br_routes expiring; /* desired until their expires */
  struct br_routes expired;  /* expires has passed: no longer desired, not an error */
  int64_t now;               /* the time (seconds since the epoch) they were judged at */
  int64_t next_expiry;       /* the earliest expires still to come, 0 = none; set even
                                when the bottle is invalid, so that a route that ends
                                can make it valid again */
};

void br_desired_init(struct br_desired *d);
void br_desired_free(struct br_desired *d);

/* Loads the desired state of a bottle from its source directories (the
 * record's, in merge order). Returns 0 (managed or not: see
 * d->managed), -EINVAL when a fragment is invalid (d->errors says which;
 * nothing of the slug may be applied), or another -errno for an I/O failure
 * worth retrying. Every fragment is checked even after the first error, so
 * an operator sees all that is wrong at once.
 *
 * The operator's policy (cfg->policy; reconciler/model/policy.h) is part
 * of validity: a denied host, a credential bound to a second host, a rule of
 * its source broken are errors like a malformed fragment, so nothing of a
 * bottle that breaks one is written. sources are the record's: sources[i]
 * is cfg->sources[i] expanded (br_bottle_derive), so its rules are
 * cfg->source_rules[i]; a list of another length gets no source rules.
 *
 * A route whose expires has passed is not desired: it goes to d->expired,
 * not into the merge, and breaks no rule but one: its credential stays
 * bound to its host while its fragment exists (the egress container may
 * still hold that credential's value under the same name). */
int br_desired_load(const struct br_config *cfg, const struct br_strv *sources, struct br_desired *d);

/* A change to one fragment file that is not made yet: the desired state is
 * loaded as if dir/name held bytes (NULL: as if it were gone). Commands
 * check a whole bottle with their change before they install it. */
struct br_desired_overlay {
  const char *dir;   /* a source directory, as the record names it */
  const char *name;  /* a fragment file name in it */
  const char *bytes; /* its new content, or NULL */
  size_t len;
};

/* br_desired_load with an overlay (NULL: none). */
int br_desired_load_overlay(const struct br_config *cfg, const struct br_strv *sources,
                            const struct br_desired_overlay *overlay, struct br_desired *d);

/* The policy of cfg as the model's checks take it (borrowing from cfg);
 * free it with br_desired_policy_free. Returns 0 or -ENOMEM. */
int br_desired_policy(const struct br_config *cfg, struct br_policy *p);
void br_desired_policy_free(struct br_policy *p);
/* The rules of cfg's source i, for br_policy_check_fragment. */
void br_desired_source_policy(const struct br_config *cfg, size_t i, struct br_policy_source *out);

/* Parses one file as a fragment, as `check` does. Returns 0 or -EINVAL/-errno
 * with a line in errors. */
int br_desired_check_file(const struct br_config *cfg, const char *path, struct br_routes *routes,
                          struct br_buf *errors);

/* `check`: one file, as br_desired_check_file reads it, under the policy's
 * deny rules (a file given by name belongs to no source, so no source rules
 * apply); an expires already past is an error here. Its routes with a credential are appended to declared (in the
 * order the files are given) for br_desired_check_credentials. Returns 0,
 * -EINVAL with the lines in errors, or another -errno. */
int br_desired_check_new(const struct br_config *cfg, const char *path, struct br_routes *routes,
                         struct br_routes *declared, struct br_buf *errors);
/* The credential rule over the files checked: one credential, one host. */
int br_desired_check_credentials(const struct br_config *cfg, const struct br_routes *declared,
                                 struct br_buf *errors);

#endif
