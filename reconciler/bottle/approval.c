/* approval: approvals, take-backs and adoption as checked changes of one
 * fragment file each (see approval.h). */
#include "reconciler/bottle/approval.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/fileio.h"
#include "reconciler/bottle/change.h"
#include "reconciler/model/egress.h"
#include "reconciler/model/expiry.h"
#include "reconciler/model/fragment.h"

#define SLOT_PREFIX "EGRESS_TOKEN_"
#define LIVE_MAX (64u * 1024 * 1024)

void br_change_outcome_init(struct br_change_outcome *o) {
  memset(o, 0, sizeof *o);
  br_buf_init(&o->fragment, PATH_MAX);
  br_buf_init(&o->errors, 256 * 1024);
  br_buf_init(&o->notes, 16 * 1024);
  br_strv_init(&o->touched);
}

void br_change_outcome_free(struct br_change_outcome *o) {
  br_buf_free(&o->fragment);
  br_buf_free(&o->errors);
  br_buf_free(&o->notes);
  br_strv_free(&o->touched);
}

static int refuse(struct br_change_outcome *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int refuse(struct br_change_outcome *o, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  br_buf_vprintf(&o->errors, fmt, ap);
  va_end(ap);
  br_buf_adds(&o->errors, "\n");
  return -EINVAL;
}

/* Checks the change on the whole bottle, then makes it. */
static int checked_install(struct br_change *c, const char *name, const char *bytes, size_t len,
                           struct br_change_outcome *o) {
  struct br_desired after;
  int rc = br_change_preview(c, name, bytes, len, &after);
  if (rc == -EINVAL)
    br_buf_add(&o->errors, br_buf_str(&after.errors), after.errors.len);
  if (!rc && !after.managed && bytes)
    rc = refuse(o, "%s: not read as a source of %s", c->source, c->bottle->slug);
  if (!rc)
    rc = br_change_install(c, name, bytes, len, &o->errors);
  if (!rc) {
    memcpy(o->desired_hash, after.hash, sizeof o->desired_hash);
    br_change_path(c, name, &o->fragment);
    rc = br_strv_add_unique(&o->touched, name);
  }
  br_desired_free(&after);
  return rc;
}

/* Reads the desired state again after a change made under the same lock. */
static int reread(struct br_change *c, struct br_change_outcome *o) {
  br_desired_free(&c->before);
  br_desired_init(&c->before);
  int rc = br_desired_load(c->bottle->cfg, &c->bottle->sources, &c->before);
  if (rc)
    br_buf_printf(&o->errors, "%s", rc == -EINVAL ? br_buf_str(&c->before.errors) : strerror(-rc));
  return rc;
}

/* The live egress routes as a fragment, under the lock of c. */
static int adopt_locked(struct br_change *c, struct br_change_outcome *o) {
  const char *file = c->bottle->live[BR_SIDECAR_EGRESS];
  struct br_buf bytes, rendered, perr;
  br_buf_init(&bytes, LIVE_MAX);
  br_buf_init(&rendered, LIVE_MAX);
  br_buf_init(&perr, 4096);
  struct br_egress_live live;
  br_egress_live_init(&live);
  const struct br_path_rule rule = br_config_path_rule(c->bottle->cfg);
  int rc = br_file_read_under(file, LIVE_MAX, &rule, &bytes, NULL);
  if (rc == -ENOENT) {
    rc = 0; /* nothing runs yet: nothing to keep */
    goto out;
  }
  if (rc) {
    br_buf_printf(&o->errors, "%s: cannot read: %s\n", file, strerror(-rc));
    goto out;
  }
  if ((rc = br_egress_parse(file, bytes.data, bytes.len, &live, &perr))) {
    rc = refuse(o, "%s; cannot adopt a live file that cannot be read", br_buf_str(&perr));
    goto out;
  }
  /* What the model folds away (a second route for a host and its token, a
   * key such as "methods" that may restrict a route) would be lost or
   * widened by adopting it: the operator decides, not this tool. */
  if (live.drift.n) {
    for (size_t i = 0; i < live.drift.n; i++)
      br_buf_printf(&o->errors, "%s: %s\n", file, live.drift.v[i]);
    rc = refuse(o,
                "%s: cannot adopt a live file that is not in the canonical form (above); fix it, or write "
                "the bottle's fragment by hand",
                file);
    goto out;
  }
  if (!(rc = br_egress_render(&live.routes, NULL, &rendered)) &&
      !(rc = checked_install(c, BR_ADOPTED_NAME, rendered.data, rendered.len, o))) {
    o->adopted = true;
    br_buf_printf(&o->notes, "adopted the %zu live egress route%s of %s into %s\n", live.routes.n,
                  live.routes.n == 1 ? "" : "s", c->bottle->slug, br_buf_str(&o->fragment));
    rc = reread(c, o);
  } else if (rc == -EINVAL) {
    br_buf_printf(&o->errors, "%s: its routes cannot be adopted as a fragment as they are; write one by hand\n",
                  file);
  }
out:
  br_egress_live_free(&live);
  br_buf_free(&bytes);
  br_buf_free(&rendered);
  br_buf_free(&perr);
  return rc;
}

/* Begins a change, adopting the bottle first when it is not managed yet, so
 * that the change never drops a route it runs. */
static int begin_managed(struct br_change *c, struct br_bottle *b, struct br_change_outcome *o) {
  int rc = br_change_begin(c, b, &o->errors);
  if (!rc && !c->before.managed)
    rc = adopt_locked(c, o);
  return rc;
}

/* Ends a change; a refused one takes its adoption out again (under the same
 * lock), so that nothing of it is left installed and the bottle stays as
 * unmanaged as it was. */
static int end_managed(struct br_change *c, int rc, struct br_change_outcome *o) {
  if (rc && o->adopted) {
    struct br_buf err;
    br_buf_init(&err, 4096);
    if (br_change_install(c, BR_ADOPTED_NAME, NULL, 0, &err))
      br_buf_printf(&o->errors, "and the adoption could not be taken out again: %s", br_buf_str(&err));
    else
      o->adopted = false;
    br_buf_free(&err);
    br_buf_reset(&o->notes);
    br_buf_reset(&o->fragment);
  }
  br_change_end(c);
  return rc;
}

int br_adopt(struct br_bottle *b, struct br_change_outcome *o) {
  struct br_change c;
  int rc = br_change_begin(&c, b, &o->errors);
  if (!rc && c.before.managed) {
    o->unchanged = true;
    memcpy(o->desired_hash, c.before.hash, sizeof o->desired_hash);
  } else if (!rc) {
    rc = adopt_locked(&c, o);
    o->unchanged = !o->adopted;
  }
  br_change_end(&c);
  return rc;
}

static bool id_valid(const char *id) {
  size_t len = strlen(id);
  return len > 0 && len <= BR_APPROVAL_ID_MAX &&
         strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") == len && id[0] != '.';
}

/* A time-ordered id for a proposal that came without one. */
static void make_id(char *out, size_t size) {
  char when[BR_TIME_TEXT_MAX];
  int64_t now = br_realtime_ns();
  br_time_text(now, when, sizeof when);
  /* 2026-12-07T02:03:54.123Z -> 20261207T020354123Z */
  char compact[32];
  size_t n = 0;
  for (const char *s = when; *s && n + 1 < sizeof compact; s++)
    if (*s != '-' && *s != ':' && *s != '.')
      compact[n++] = *s;
  compact[n] = '\0';
  snprintf(out, size, "%s-%04x", compact, (unsigned)((now / 1000) ^ getpid()) & 0xffff);
}

static bool slot_used(const struct br_routes *routes, const char *slot) {
  for (size_t i = 0; i < routes->n; i++)
    if (routes->v[i].token_env && strcmp(routes->v[i].token_env, slot) == 0)
      return true;
  return false;
}

/* The lowest EGRESS_TOKEN_N no route of the bottle uses (the old tooling
 * counted the slots and could reuse a taken one when they had gaps), nor an
 * expired one whose fragment is still there: the egress container may still
 * hold that host's credential under the name. */
static void lowest_free_slot(const struct br_desired *d, char *out, size_t size) {
  for (unsigned n = 0;; n++) {
    snprintf(out, size, SLOT_PREFIX "%u", n);
    if (!slot_used(&d->routes, out) && !slot_used(&d->expired, out))
      return;
  }
}

/* An approval's bytes: its routes as egress JSON, with the expires of the
 * earliest of them on top when they end (an approval says it once, for all). */
static int render_approval(const struct br_routes *routes, struct br_buf *out) {
  int64_t expires = 0;
  for (size_t i = 0; i < routes->n; i++)
    if (routes->v[i].expires && (!expires || routes->v[i].expires < expires))
      expires = routes->v[i].expires;
  char when[BR_EXPIRY_TEXT_MAX];
  br_expiry_format(expires, when, sizeof when);
  json_t *doc = expires ? json_pack("{s:s}", "expires", when) : NULL;
  int rc = expires && !doc ? -ENOMEM : br_egress_render(routes, doc, out);
  json_decref(doc);
  return rc;
}

struct names_after {
  const char *bound;
  char *found;
};

static int name_after(const char *name, unsigned char type, void *arg) {
  (void)type;
  struct names_after *a = arg;
  if (br_fragment_name_counts(name) && strncmp(name, BR_APPROVAL_PREFIX, strlen(BR_APPROVAL_PREFIX)) != 0 &&
      strcmp(name, a->bound) > 0 && !a->found)
    a->found = strdup(name);
  return 0;
}

/* An operator fragment whose name sorts after the approvals would let an
 * approval decide a host's auth before it: refuse, with the fix. */
static int approvals_sort_last(struct br_change *c, struct br_change_outcome *o) {
  struct names_after a = {.bound = BR_APPROVAL_PREFIX};
  br_dir_each(c->source, name_after, &a);
  if (!a.found)
    return 0;
  int rc = refuse(o,
                  "%s/%s: sorts after the approvals (%s*), so an approval could decide the auth of a host it "
                  "names; rename it so that it starts with a letter or digit",
                  c->source, a.found, BR_APPROVAL_PREFIX);
  free(a.found);
  return rc;
}

/* The one route of an approval, as the existing tooling made it. */
static int proposal_route(struct br_change *c, const struct br_proposal *p, struct br_routes *out,
                          struct br_change_outcome *o) {
  char host[BR_HOST_MAX + 1];
  const char *why;
  if (!p->host || br_host_check(p->host, strlen(p->host), host, &why))
    return refuse(o, "proposal: host: \"%.80s\" %s", p->host ? p->host : "", p->host ? why : "missing");
  if (!p->auth_scheme != !p->token_ref)
    return refuse(o, "proposal: auth: expected scheme and token_ref together or neither");
  if (p->auth_scheme && !br_auth_scheme_valid(p->auth_scheme, strlen(p->auth_scheme)))
    return refuse(o, "proposal: auth.scheme: expected an HTTP auth scheme such as Bearer");
  struct br_route *r = br_routes_append(out, host);
  if (!r)
    return -ENOMEM;
  r->expires = p->expires;
  if (p->expires) {
    char when[BR_EXPIRY_TEXT_MAX];
    br_expiry_format(p->expires, when, sizeof when);
    br_buf_printf(&o->notes, "%s: this approval expires at %s\n", host, when);
  }
  for (size_t i = 0; i < p->paths.n; i++) {
    if (br_path_check(p->paths.v[i], strlen(p->paths.v[i]), &why))
      return refuse(o, "proposal: path_allowlist[%zu]: \"%.80s\" %s", i, p->paths.v[i], why);
    if (br_strv_add_unique(&r->paths, p->paths.v[i]))
      return -ENOMEM;
  }
  if (!r->paths.n && br_strv_add(&r->paths, "/"))
    return -ENOMEM;
  const struct br_route *existing = br_routes_find(&c->before.routes, host);
  if (existing || !p->auth_scheme) {
    /* The auth of a host the bottle has is never changed by an approval. */
    o->auth_ignored = existing && p->auth_scheme;
    if (o->auth_ignored)
      br_buf_printf(&o->notes, "%s already has its auth (%s); the proposed %s/%s was ignored\n", host,
                    existing->auth_scheme ? existing->auth_scheme : "none", p->auth_scheme, p->token_ref);
    return 0;
  }
  lowest_free_slot(&c->before, o->slot, sizeof o->slot);
  if (!(r->auth_scheme = strdup(p->auth_scheme)) || !(r->token_env = strdup(o->slot)))
    return -ENOMEM;
  br_buf_printf(&o->notes, "%s: credential slot %s: give the egress container a value for it (token_ref %s)\n",
                host, o->slot, p->token_ref);
  return 0;
}

int br_approval_add(struct br_bottle *b, const struct br_proposal *p, struct br_change_outcome *o) {
  if (p->id && !id_valid(p->id))
    return refuse(o, "--id \"%.80s\": expected 1 to %d of [A-Za-z0-9_.-], not starting with \".\"", p->id,
                  BR_APPROVAL_ID_MAX);
  if (p->id)
    snprintf(o->id, sizeof o->id, "%s", p->id);
  else
    make_id(o->id, sizeof o->id);
  struct br_change c;
  struct br_routes routes;
  struct br_buf bytes, name;
  br_routes_init(&routes);
  br_buf_init(&bytes, LIVE_MAX);
  br_buf_init(&name, PATH_MAX);
  int rc = begin_managed(&c, b, o);
  if (!rc)
    rc = approvals_sort_last(&c, o);
  if (!rc)
    rc = br_buf_printf(&name, BR_APPROVAL_PREFIX "%s.json", o->id);
  if (!rc) {
    struct br_buf path;
    br_buf_init(&path, PATH_MAX);
    br_change_path(&c, name.data, &path);
    if (access(path.data, F_OK) == 0)
      rc = refuse(o, "%s: an approval with id %s exists already; revoke it first or use another --id", path.data,
                  o->id);
    br_buf_free(&path);
  }
  if (!rc)
    rc = proposal_route(&c, p, &routes, o);
  if (!rc)
    rc = render_approval(&routes, &bytes);
  if (!rc)
    rc = checked_install(&c, name.data, bytes.data, bytes.len, o);
  end_managed(&c, rc, o);
  br_routes_free(&routes);
  br_buf_free(&bytes);
  br_buf_free(&name);
  return rc;
}

static bool is_approval(const struct br_change *c, const char *path) {
  size_t n = strlen(c->source);
  return strncmp(path, c->source, n) == 0 && path[n] == '/' &&
         strncmp(path + n + 1, BR_APPROVAL_PREFIX, strlen(BR_APPROVAL_PREFIX)) == 0;
}

/* Removes host (or its path) from one approval's routes; true when it named it. */
static bool take_back(struct br_routes *routes, const char *host, const char *path) {
  for (size_t i = 0; i < routes->n; i++) {
    struct br_route *r = &routes->v[i];
    if (strcmp(r->host, host) != 0)
      continue;
    int at = path ? br_strv_find(&r->paths, path) : -1;
    if (path && at < 0)
      return false;
    if (path && r->paths.n > 1) {
      free(r->paths.v[at]);
      memmove(&r->paths.v[at], &r->paths.v[at + 1], (r->paths.n - (size_t)at - 1) * sizeof *r->paths.v);
      r->paths.n--;
      return true;
    }
    br_route_free(r);
    memmove(r, r + 1, (routes->n - i - 1) * sizeof *r);
    routes->n--;
    return true;
  }
  return false;
}

/* Which fragments grant host (and path): approvals go in `mine`; any other
 * makes the take-back impossible, and says where. */
static int grants_of(struct br_change *c, const char *host, const char *path, struct br_strv *mine,
                     struct br_change_outcome *o) {
  int rc = 0;
  for (size_t i = 0; i < c->before.fragments.n && !rc; i++) {
    const char *file = c->before.fragments.v[i];
    struct br_routes routes;
    br_routes_init(&routes);
    struct br_buf err;
    br_buf_init(&err, 4096);
    rc = br_desired_check_file(c->bottle->cfg, file, &routes, &err);
    const struct br_route *r = rc ? NULL : br_routes_find(&routes, host);
    if (r && (!path || br_strv_contains(&r->paths, path))) {
      if (is_approval(c, file))
        rc = br_strv_add(mine, file);
      else if (strncmp(file, c->source, strlen(c->source)) == 0)
        rc = refuse(o, "%s: an operator fragment grants %s%s%s too; change it with `bottle-reconciler edit %s %s`",
                    file, host, path ? " " : "", path ? path : "", c->bottle->slug, strrchr(file, '/') + 1);
      else
        rc = refuse(o, "%s: grants %s%s%s from a source this tool does not own (change it there)", file, host,
                    path ? " " : "", path ? path : "");
    }
    br_routes_free(&routes);
    br_buf_free(&err);
  }
  return rc;
}

int br_approval_remove_route(struct br_bottle *b, const char *host_in, const char *path,
                             struct br_change_outcome *o) {
  char host[BR_HOST_MAX + 1];
  const char *why;
  if (br_host_check(host_in, strlen(host_in), host, &why))
    return refuse(o, "host \"%.80s\" %s", host_in, why);
  struct br_change c;
  struct br_strv mine;
  br_strv_init(&mine);
  int rc = br_change_begin(&c, b, &o->errors);
  if (!rc && !br_routes_find(&c.before.routes, host))
    rc = refuse(o, "%s: no route of %s names this host", host, b->slug);
  if (!rc)
    rc = grants_of(&c, host, path, &mine, o);
  if (!rc && !mine.n)
    rc = refuse(o, "%s: no approval grants %s%s%s", b->slug, host, path ? " " : "", path ? path : "");
  for (size_t i = 0; i < mine.n && !rc; i++) {
    struct br_routes routes;
    struct br_buf bytes;
    br_routes_init(&routes);
    br_buf_init(&bytes, LIVE_MAX);
    const char *name = strrchr(mine.v[i], '/') + 1;
    if (!(rc = br_desired_check_file(b->cfg, mine.v[i], &routes, &o->errors))) {
      take_back(&routes, host, path);
      if (routes.n && !(rc = render_approval(&routes, &bytes)))
        rc = checked_install(&c, name, bytes.data, bytes.len, o);
      else if (!rc)
        rc = checked_install(&c, name, NULL, 0, o);
    }
    br_routes_free(&routes);
    br_buf_free(&bytes);
  }
  br_change_end(&c);
  br_strv_free(&mine);
  return rc;
}

int br_approval_revoke(struct br_bottle *b, const char *id, struct br_change_outcome *o) {
  if (!id_valid(id))
    return refuse(o, "\"%.80s\": not an approval id, expected 1 to %d of [A-Za-z0-9_.-]", id, BR_APPROVAL_ID_MAX);
  snprintf(o->id, sizeof o->id, "%s", id);
  struct br_change c;
  struct br_buf name, path;
  br_buf_init(&name, PATH_MAX);
  br_buf_init(&path, PATH_MAX);
  int rc = br_change_begin(&c, b, &o->errors);
  if (!rc)
    rc = br_buf_printf(&name, BR_APPROVAL_PREFIX "%s.json", id);
  if (!rc && !br_change_path(&c, name.data, &path) && access(path.data, F_OK) != 0)
    rc = refuse(o, "%s: no approval %s for %s", path.data, id, b->slug);
  if (!rc)
    rc = checked_install(&c, name.data, NULL, 0, o);
  br_change_end(&c);
  br_buf_free(&name);
  br_buf_free(&path);
  return rc;
}

int br_fragment_install(struct br_bottle *b, const char *name, const char *bytes, size_t len,
                        struct br_change_outcome *o) {
  struct br_change c;
  int rc = begin_managed(&c, b, o);
  if (!rc)
    rc = checked_install(&c, name, bytes, len, o);
  return end_managed(&c, rc, o);
}
