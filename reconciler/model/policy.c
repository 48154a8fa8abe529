/* policy: the checks of the operator's rules on routes (see policy.h). Every
 * message names the route's place and the rule's place in the config, so
 * that whoever must act knows where. No I/O, no opinion on which files. */
#include "reconciler/model/policy.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/cidr.h"
#include "common/diag.h"
#include "common/strmap.h"
#include "reconciler/model/expiry.h"

/* How many bytes of a route's origin "FILE:LINE" are the file, and the line. */
static size_t origin_split(const char *origin, size_t *line) {
  const char *colon = origin ? strrchr(origin, ':') : NULL;
  *line = 1;
  if (!colon)
    return 0;
  size_t n = 0;
  for (const char *s = colon + 1; *s >= '0' && *s <= '9'; s++)
    n = n * 10 + (size_t)(*s - '0');
  *line = n ? n : 1;
  return (size_t)(colon - origin);
}

static int at_route(struct br_buf *errors, const struct br_route *r, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* One message line at the route r: "FILE:LINE:COLUMN: routes[I].FIELD: ...". */
static int at_route(struct br_buf *errors, const struct br_route *r, const char *field, const char *fmt, ...) {
  size_t line, file_len = origin_split(r->origin, &line);
  struct br_buf file, name;
  br_buf_init(&file, SIZE_MAX);
  br_buf_init(&name, 256);
  int rc = file_len ? br_buf_add(&file, r->origin, file_len) : br_buf_adds(&file, "(unknown)");
  if (!rc)
    rc = br_buf_printf(&name, "routes[%zu]%s%s", r->index, *field ? "." : "", field);
  if (!rc) {
    va_list ap;
    va_start(ap, fmt);
    rc = br_vdiag(errors, file.data, line, r->column ? r->column : 1, name.data, fmt, ap);
    va_end(ap);
  }
  br_buf_free(&file);
  br_buf_free(&name);
  return rc == -ENOMEM ? -ENOMEM : -EINVAL; /* a full buffer still refuses */
}

static size_t list_n(const struct br_strv *list) { return list ? list->n : 0; }

static const char *list_at(const struct br_strv *at, size_t i) { return at && i < at->n ? at->v[i] : "?"; }

/* "*.suffix" covers the suffix and every name under it; a name covers itself. */
static bool pattern_covers(const char *pattern, const char *host) {
  if (strncmp(pattern, "*.", 2) != 0)
    return strcmp(pattern, host) == 0;
  const char *suffix = pattern + 2;
  size_t sl = strlen(suffix), hl = strlen(host);
  if (hl == sl)
    return strcmp(host, suffix) == 0;
  return hl > sl && host[hl - sl - 1] == '.' && strcmp(host + hl - sl, suffix) == 0;
}

/* The deny rules on one route's host: the first rule that refuses it is
 * said (names before ranges); more would only repeat the fix. */
static int check_denied(const struct br_policy *p, const struct br_route *r, struct br_buf *errors) {
  for (size_t i = 0; i < list_n(p->deny_hosts); i++)
    if (pattern_covers(p->deny_hosts->v[i], r->host))
      return at_route(
          errors, r, "host",
          "\"%s\" is denied by policy.deny_hosts[%zu] \"%s\" (%s), expected a host the operator allows", r->host,
          i, p->deny_hosts->v[i], list_at(p->deny_hosts_at, i));
  unsigned char addr[16];
  if (!list_n(p->deny_ranges) || !br_ip_parse(r->host, addr))
    return 0;
  for (size_t i = 0; i < p->deny_ranges->n; i++) {
    struct br_cidr range;
    const char *why;
    if (br_cidr_parse(p->deny_ranges->v[i], &range, &why) == 0 && br_cidr_contains(&range, addr))
      return at_route(errors, r, "host",
                      "\"%s\" is in %s, denied by policy.deny_ip_ranges[%zu] (%s), expected an address the "
                      "operator allows",
                      r->host, p->deny_ranges->v[i], i, list_at(p->deny_ranges_at, i));
  }
  return 0;
}

static bool every_path(const struct br_route *r) { return r->all_paths || br_strv_contains(&r->paths, "/"); }

/* What a less trusted source may not say, route by route. */
static int check_source_route(const struct br_policy_source *src, const struct br_route *r,
                              struct br_buf *errors) {
  int rc = 0;
  if (!src->may_bind_credentials && r->token_env)
    rc = at_route(errors, r, "token_env",
                  "binds the credential %s to %s, but sources[%zu].may_bind_credentials is false (%s), expected "
                  "a route without auth_scheme and token_env from this source",
                  r->token_env, r->host, src->index, src->bind_at ? src->bind_at : "the config");
  if (rc != -ENOMEM && !src->may_allow_every_path && every_path(r))
    rc = at_route(errors, r, r->all_paths ? "" : "path_allowlist",
                  "allows every path of %s (%s), but sources[%zu].may_allow_every_path is false (%s), expected "
                  "the paths it needs, such as /repos/acme/",
                  r->host, r->all_paths ? "no path_allowlist" : "\"/\"", src->index,
                  src->every_path_at ? src->every_path_at : "the config");
  return rc;
}

int br_policy_check_fragment(const struct br_policy *p, const struct br_policy_source *src, const char *fragment,
                             const struct br_routes *routes, size_t *source_routes, struct br_buf *errors) {
  int rc = 0, one;
  for (size_t i = 0; i < routes->n && rc != -ENOMEM; i++) {
    if ((one = check_denied(p, &routes->v[i], errors)))
      rc = one;
    if (src && rc != -ENOMEM && (one = check_source_route(src, &routes->v[i], errors)))
      rc = one;
  }
  size_t before = *source_routes;
  *source_routes += routes->n;
  /* Said once, by the fragment that passes the bound. */
  if (rc != -ENOMEM && src && src->max_routes && *source_routes > src->max_routes && before <= src->max_routes) {
    one = br_diag(
        errors, fragment, 1, 1, "routes",
        "brings the routes of sources[%zu] for this bottle to %zu, more than sources[%zu].max_routes %zu (%s), "
        "expected fewer routes from this source",
        src->index, *source_routes, src->index, src->max_routes,
        src->max_routes_at ? src->max_routes_at : "the config");
    rc = one == -ENOMEM ? -ENOMEM : -EINVAL;
  }
  return rc;
}

static const struct br_policy_share *share_of(const struct br_policy *p, const char *token_env) {
  for (size_t i = 0; i < p->n_shares; i++)
    if (strcmp(p->shares[i].token_env, token_env) == 0)
      return &p->shares[i];
  return NULL;
}

/* "a.example, b.example" for a message. */
static void join_hosts(struct br_buf *out, const struct br_strv *hosts) {
  for (size_t i = 0; i < hosts->n; i++)
    br_buf_printf(out, "%s%s", i ? (i + 1 == hosts->n ? " and " : ", ") : "", hosts->v[i]);
}

/* A shared credential serves exactly the hosts its share lists. */
static int check_shared(const struct br_policy_share *share, const struct br_route *r, struct br_buf *errors) {
  if (br_strv_contains(share->hosts, r->host))
    return 0;
  struct br_buf hosts;
  br_buf_init(&hosts, 64 * 1024);
  join_hosts(&hosts, share->hosts);
  int rc = at_route(errors, r, "token_env",
                    "%s is shared with %s only (policy.shared_credentials at %s), so egress must not inject it "
                    "into requests to %s; add %s to that share or give this route a credential of its own",
                    r->token_env, br_buf_str(&hosts), share->at, r->host, r->host);
  br_buf_free(&hosts);
  return rc;
}

/* The first binding of each credential decides its host; a binding of it
 * to another host is refused where it is written. */
static int check_credentials(const struct br_policy *p, const struct br_routes *declared, struct br_buf *errors) {
  struct br_strmap first; /* token_env -> the first route that binds it */
  br_strmap_init(&first);
  int rc = 0, one;
  for (size_t i = 0; i < declared->n && rc != -ENOMEM; i++) {
    const struct br_route *r = &declared->v[i], *owner;
    if (!r->token_env)
      continue;
    const struct br_policy_share *share = share_of(p, r->token_env);
    if (share) {
      if ((one = check_shared(share, r, errors)))
        rc = one;
    } else if (!(owner = br_strmap_get(&first, r->token_env))) {
      if (br_strmap_put(&first, r->token_env, (void *)r))
        rc = -ENOMEM;
    } else if (strcmp(owner->host, r->host) != 0) {
      char until[BR_EXPIRY_TEXT_MAX + 16] = "";
      if (owner->expires) {
        char when[BR_EXPIRY_TEXT_MAX];
        br_expiry_format(owner->expires, when, sizeof when);
        snprintf(until, sizeof until, ", expires %s", when);
      }
      rc = at_route(errors, r, "token_env",
                    "%s is bound to %s already (%s:%zu%s), so egress would inject that credential into "
                    "requests to %s too; one credential serves one host: give %s a token_env of its "
                    "own, or share it on purpose in policy.shared_credentials",
                    r->token_env, owner->host, owner->origin ? owner->origin : "an earlier route", owner->column,
                    until, r->host, r->host);
    }
  }
  br_strmap_free(&first);
  return rc;
}

int br_policy_check_bottle(const struct br_policy *p, const struct br_routes *declared,
                           const struct br_routes *merged, struct br_buf *errors) {
  int rc = check_credentials(p, declared, errors);
  if (rc != -ENOMEM && p->max_routes && merged->n > p->max_routes) {
    const struct br_route *past = &merged->v[p->max_routes];
    int one = at_route(errors, past, "host",
                       "%s is route %zu of this bottle (of %zu), more than policy.max_routes_per_bottle %zu (%s), "
                       "expected fewer routes across its fragments",
                       past->host, p->max_routes + 1, merged->n, p->max_routes,
                       p->max_routes_at ? p->max_routes_at : "the config");
    rc = rc == -ENOMEM ? rc : one;
  }
  return rc;
}
