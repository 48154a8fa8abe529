/* policy: the operator's rules on what a bottle's desired routes may say:
 * hosts it denies, a credential confined to one host, what a less trusted
 * source may declare. Pure: rules and routes in, messages out; the caller
 * reads them from the config and the fragments, and refuses the bottle. */
#ifndef BR_RECONCILER_POLICY_H
#define BR_RECONCILER_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include "common/buf.h"
#include "common/strv.h"
#include "reconciler/model/routes.h"

/* One credential shared on purpose: token_env may serve each of hosts. */
struct br_policy_share {
  const char *token_env;
  const struct br_strv *hosts;
  const char *at; /* "FILE:LINE:COLUMN" of the config entry */
};

/* The bottle-wide rules. Everything is borrowed; a NULL list is empty. The
 * _at lists are parallel to theirs and say where the config file names each
 * entry ("FILE:LINE:COLUMN"), for messages. */
struct br_policy {
  const struct br_strv *deny_hosts, *deny_hosts_at;   /* exact names and "*.suffix" */
  const struct br_strv *deny_ranges, *deny_ranges_at; /* CIDR text (br_cidr_parse) */
  size_t max_routes;                                  /* hosts per bottle, 0 = no bound */
  const char *max_routes_at;
  const struct br_policy_share *shares;
  size_t n_shares;
};

/* What the fragments of one source may say (a sources entry). */
struct br_policy_source {
  size_t index; /* i of sources[i], for messages */
  bool may_bind_credentials;
  bool may_allow_every_path;
  size_t max_routes; /* routes its fragments may declare for one bottle, 0 = no bound */
  const char *bind_at, *every_path_at, *max_routes_at; /* "FILE:LINE:COLUMN", NULL = default */
};

/* Every message is one line "FILE:LINE:COLUMN: FIELD: message\n" where
 * FILE:LINE is a route's origin and COLUMN its column (routes[INDEX] its
 * field), and names the rule broken with the config key and its place. Each
 * check appends a line per broken rule (all of them, so an operator sees
 * everything at once) and returns -EINVAL when it appended one, else 0;
 * -ENOMEM when out of memory. */

/* The deny rules on each route of one fragment (hosts, and IP-literal hosts
 * in ranges), and, when src is not NULL, its source's rules. source_routes
 * counts the routes the source's fragments declared before this one and is
 * advanced by this fragment's; passing the bound makes the message name
 * the fragment (fragment, a path) that passes it. */
int br_policy_check_fragment(const struct br_policy *p, const struct br_policy_source *src, const char *fragment,
                             const struct br_routes *routes, size_t *source_routes, struct br_buf *errors);

/* The bottle-wide rules: declared is every route of every fragment of the
 * bottle in merge order (before the merge, so a binding the merge ignores
 * is still seen), merged the merged routes.
 *  - One credential serves one host: a token_env bound to a second host
 *    is an error at the second binding, naming both hosts and both places,
 *    unless a share lists both; a shared token_env serves only the hosts of
 *    its share.
 *  - max_routes: the merged route past the bound is named. */
int br_policy_check_bottle(const struct br_policy *p, const struct br_routes *declared,
                           const struct br_routes *merged, struct br_buf *errors);

#endif
