/* converge: the convergence of one slug, step by step as DESIGN.md orders it.
 * Every live-file write and every reload of the tool happens here; the
 * pieces it calls (desired, pipelock, egress, drivers) only compute or read. */
#include "reconciler/bottle/converge.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/fileio.h"
#include "common/proc.h"
#include "reconciler/bottle/audit.h"
#include "reconciler/bottle/desired.h"
#include "reconciler/bottle/records.h"
#include "reconciler/bottle/slug.h"
#include "reconciler/drivers/driver.h"
#include "reconciler/model/diff.h"
#include "reconciler/model/egress.h"
#include "reconciler/model/expiry.h"
#include "reconciler/model/pipelock.h"
#include "reconciler/model/pipelock_plan.h"

/* Live files may be larger than one fragment (they hold a merge of many). */
#define LIVE_FILE_MAX (64u * 1024 * 1024)

void br_converge_report_init(struct br_converge_report *rep) {
  memset(rep, 0, sizeof *rep);
  br_buf_init(&rep->message, 64 * 1024);
  br_buf_init(&rep->errors, 256 * 1024);
  br_buf_init(&rep->warnings, 256 * 1024);
  br_buf_init(&rep->plan, 4 * 1024 * 1024);
  rep->audit = json_array();
}

void br_converge_report_free(struct br_converge_report *rep) {
  br_buf_free(&rep->message);
  br_buf_free(&rep->errors);
  br_buf_free(&rep->warnings);
  br_buf_free(&rep->plan);
  json_decref(rep->audit);
  rep->audit = NULL;
  json_decref(rep->credentials);
  rep->credentials = NULL;
  json_decref(rep->expiring);
  rep->expiring = NULL;
}

void br_converge_describe_desired(const struct br_converge_report *rep, struct br_buf *out) {
  const char *slot;
  json_t *hosts;
  json_object_foreach(rep->credentials, slot, hosts) {
    br_buf_printf(out, "  credential %s:", slot);
    size_t i;
    json_t *host;
    json_array_foreach(hosts, i, host) br_buf_printf(out, "%s %s", i ? "," : "", json_string_value(host));
    br_buf_adds(out, json_array_size(hosts) > 1 ? " (shared)\n" : "\n");
  }
  size_t i;
  json_t *route;
  json_array_foreach(rep->expiring, i, route) {
    br_buf_printf(out, "  expires %s: %s", json_string_value(json_object_get(route, "expires")),
                  json_string_value(json_object_get(route, "host")));
    size_t j;
    json_t *path;
    json_array_foreach(json_object_get(route, "path_allowlist"), j, path)
        br_buf_printf(out, " %s", json_string_value(path));
    if (json_is_true(json_object_get(route, "every_path")))
      br_buf_adds(out, " (every path)");
    br_buf_printf(out, " (%s)\n", json_string_value(json_object_get(route, "fragment")));
  }
}

const char *br_outcome_name(enum br_outcome outcome) {
  switch (outcome) {
  case BR_OUTCOME_CONVERGED:
    return "converged";
  case BR_OUTCOME_CHANGES:
    return "changes-pending";
  case BR_OUTCOME_UNMANAGED:
    return "unmanaged";
  case BR_OUTCOME_INVALID:
    return "invalid";
  case BR_OUTCOME_WAITING:
    return "waiting";
  case BR_OUTCOME_RETRY:
    return "retrying";
  case BR_OUTCOME_SETTLING:
    return "settling";
  case BR_OUTCOME_COUNT:
    break;
  }
  return "?";
}

/* What a converge found and decided: filled by the read and plan steps,
 * used by the write steps. */
struct plan {
  struct br_desired desired;
  struct br_buf pl_bytes; /* the live pipelock file; later steps splice on top */
  struct br_strv pl_live; /* its api_allowlist */
  struct br_buf eg_bytes;
  struct br_egress_live eg_live;
  bool egress_exists, egress_parsed, egress_differs;
  bool egress_same;                 /* the live bytes are the desired canonical rendering */
  struct br_strv added_record;      /* pipelock hosts this tool added (read in prune mode, or to add one) */
  bool record_distrusted;           /* the record does not verify: added_record is empty, nothing is pruned */
  struct br_strv widened, narrowed; /* pipelock's list after widening, after narrowing */
  struct br_strv hosts_added, hosts_removed; /* what changes in pipelock */
  struct br_diff diff;                       /* what changes in egress */
  /* The bytes each write will install, made and checked (validate
   * commands) before the first of them: a refusal changes nothing. */
  struct br_buf pl_widened, eg_rendered, pl_narrowed;
  bool owed[BR_SIDECAR_COUNT]; /* a reload owed from an earlier write */
  int64_t owed_at[BR_SIDECAR_COUNT];
};

/* Everything one converge works with; lives on the caller's stack. */
struct run {
  const struct br_config *cfg;
  struct br_bottle *bottle;
  enum br_converge_mode mode;
  const struct br_converge_observer *observer; /* may be NULL */
  /* How every live file is opened: through no symlink in any component
   * (br_config_path_rule), so that a link in the bottle's directory cannot
   * send a read, a write or, through them, a reload anywhere else. */
  struct br_path_rule rule;
  struct br_converge_report *rep;
  struct br_reloads reloads; /* reloads owed and settle times, read under the lock */
  struct plan plan;
  /* The live files this converge replaced, held until it is over (see
   * br_write_opts.replaced): up to three writes, pipelock twice in prune mode. */
  int replaced[3];
  size_t n_replaced;
  /* A sidecar told but not confirmed within its settle time (the bound on
   * what a next step waits for): the steps went on, as without a
   * confirmation; the converge ends retrying, its reload still owed. */
  bool unconfirmed;
  enum br_sidecar unconfirmed_sidecar;
};

static const char *live_file(const struct run *run, enum br_sidecar sidecar) { return run->bottle->live[sidecar]; }

/* Lets go of the live files this converge replaced (see run.replaced). */
static void release_replaced(struct run *run) {
  for (size_t i = 0; i < run->n_replaced; i++)
    close(run->replaced[i]);
  run->n_replaced = 0;
}

static void sleep_ms(unsigned ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
    ;
}

/* How a step ended. */
enum step_result {
  STEP_DONE,    /* written and/or told, or nothing to do: the next step follows */
  STEP_SETTLE,  /* told; the next step waits out the settle time (ASYNC mode) */
  STEP_RETRY,   /* transient: the message says why; retry later */
  STEP_REFUSED, /* permanent: invalid input, a refused file, a misconfigured driver */
  STEP_STOP,    /* the converge is over early with its outcome set (unmanaged,
                   waiting, a plan, nothing to do) */
};

static enum step_result finish(struct run *run, enum step_result step, enum br_outcome outcome, const char *fmt,
                               ...) __attribute__((format(printf, 4, 5)));

/* Sets the converge's outcome and its one-line message; returns step. */
static enum step_result finish(struct run *run, enum step_result step, enum br_outcome outcome, const char *fmt,
                               ...) {
  run->rep->outcome = outcome;
  br_buf_reset(&run->rep->message);
  va_list ap;
  va_start(ap, fmt);
  br_buf_vprintf(&run->rep->message, fmt, ap);
  va_end(ap);
  return step;
}

static json_t *strv_json(const struct br_strv *s) {
  json_t *a = json_array();
  for (size_t i = 0; i < s->n; i++)
    json_array_append_new(a, json_string(s->v[i]));
  return a;
}

/* ---- writing a live file and telling its sidecar ------------------------- */

/* The staged file is shown to the operator's validate command before it can
 * replace the live one. */
struct stage {
  struct run *run;
  enum br_sidecar sidecar;
  int64_t written_at_ns;
  struct stat staged; /* the new file, filled by br_file_write_atomic */
};

/* before_rename of a staged file that was only to be checked. */
#define CHECKED_ONLY (-EALREADY)

static int validate_staged(const char *staged_path, void *arg) {
  struct stage *st = arg;
  const struct br_sidecar_config *sc = br_config_sidecar(st->run->cfg, st->sidecar);
  if (sc->validate.n == 0)
    return 0;
  struct br_strv argv;
  struct br_buf word;
  br_strv_init(&argv);
  br_buf_init(&word, PATH_MAX * 2);
  int rc = 0;
  for (size_t i = 0; i < sc->validate.n && !rc; i++)
    if (!(rc = br_bottle_expand(st->run->bottle, st->sidecar, sc->validate.v[i], staged_path, &word,
                                &st->run->rep->warnings)))
      rc = br_strv_add(&argv, word.data);
  br_buf_free(&word);
  struct br_proc_result proc = {0};
  if (!rc)
    rc = br_proc_run(argv.v, 30000, &proc);
  if (rc || !proc.exited || proc.exit_status != 0) {
    struct br_buf *msg = &st->run->rep->errors;
    const char *name = br_sidecar_name(st->sidecar);
    br_buf_printf(msg, "%s: the %s validate command refused the new file (", name, name);
    if (rc)
      br_buf_printf(msg, "cannot run %s: %s", argv.n ? argv.v[0] : "?", strerror(-rc));
    else
      br_proc_describe(&proc, 30000, msg);
    br_buf_adds(msg, "); the live file was left unchanged\n");
    rc = -ECANCELED;
  }
  br_buf_free(&proc.output);
  br_strv_free(&argv);
  return rc;
}

static int before_rename(void *arg) {
  struct stage *st = arg;
  const struct br_converge_observer *obs = st->run->observer;
  if (obs && obs->replacing)
    obs->replacing(obs->ctx, live_file(st->run, st->sidecar), &st->staged);
  st->written_at_ns = br_realtime_ns();
  return br_reloads_set(&st->run->reloads, st->sidecar, BR_MARK_RELOAD_OWED, st->written_at_ns,
                        &st->run->rep->errors);
}

/* The next step must not start before a sidecar that was just told has the
 * new config (pipelock: its own watcher's debounce, or the reload itself).
 * WAIT mode sleeps; ASYNC mode records when the wait ends and hands it back.
 * A confirmed reload ends the wait: the sidecar reported that it runs the
 * new bytes, so settle_ms is the most a sidecar that cannot say so is
 * given, not a minimum. */
static enum step_result settle(struct run *run, enum br_sidecar sidecar, bool confirmed) {
  unsigned settle_ms = br_config_sidecar(run->cfg, sidecar)->settle_ms;
  if (confirmed)
    return STEP_DONE;
  if (run->mode != BR_CONVERGE_ASYNC) {
    /* Before the wait, not after: a sidecar that watches the file itself
     * (not its directory) hears of the replacement only when the old file
     * is gone. */
    release_replaced(run);
    sleep_ms(settle_ms);
    return STEP_DONE;
  }
  int64_t until = br_realtime_ns() + (int64_t)settle_ms * 1000000;
  if (br_reloads_set(&run->reloads, sidecar, BR_MARK_SETTLE_UNTIL, until, &run->rep->errors)) {
    release_replaced(run);
    sleep_ms(settle_ms); /* cannot record it: wait here rather than not at all */
    return STEP_DONE;
  }
  run->rep->retry_after_ms = settle_ms;
  return finish(run, STEP_SETTLE, BR_OUTCOME_SETTLING,
                "%s told; the next step follows after its %u ms settle time", br_sidecar_name(sidecar), settle_ms);
}

/* A settle time recorded by an earlier ASYNC converge that is not over yet:
 * ASYNC hands the rest back, WAIT sleeps it out. */
static enum step_result settled(struct run *run, enum br_sidecar sidecar) {
  int64_t until = 0;
  /* Without a settle time there is nothing to wait for, whatever an earlier
   * config left on record: no need to look. */
  if (!br_config_sidecar(run->cfg, sidecar)->settle_ms ||
      !br_reloads_get(&run->reloads, sidecar, BR_MARK_SETTLE_UNTIL, &until))
    return STEP_DONE;
  int64_t left_ms = (until - br_realtime_ns()) / 1000000;
  if (left_ms > 0 && run->mode == BR_CONVERGE_ASYNC) {
    run->rep->retry_after_ms = (unsigned)left_ms;
    return finish(run, STEP_SETTLE, BR_OUTCOME_SETTLING, "%s settling for %lld ms more", br_sidecar_name(sidecar),
                  (long long)left_ms);
  }
  if (left_ms > 0)
    sleep_ms((unsigned)left_ms);
  br_reloads_clear(&run->reloads, sidecar, BR_MARK_SETTLE_UNTIL, &run->rep->warnings);
  return STEP_DONE;
}

/* Writes new_bytes to the sidecar's live file, atomically, after its
 * validate command. */
static enum step_result write_live(struct run *run, struct stage *st, const struct br_buf *new_bytes,
                                   json_t *audit) {
  const char *name = br_sidecar_name(st->sidecar);
  struct br_buf err;
  br_buf_init(&err, 4096);
  int replaced = -1;
  /* The bytes were checked by check_staged: validate does not run twice. */
  struct br_write_opts opts = {.new_mode = 0644,
                               .rule = &run->rule,
                               .before_rename = before_rename,
                               .arg = st,
                               .staged = run->observer ? &st->staged : NULL,
                               .replaced = run->n_replaced < 3 ? &replaced : NULL};
  int rc = br_file_write_atomic(live_file(run, st->sidecar), new_bytes->data, new_bytes->len, &opts, &err);
  if (replaced >= 0)
    run->replaced[run->n_replaced++] = replaced;
  enum step_result out = STEP_DONE;
  if (rc == -ECANCELED) {
    json_object_set_new(audit, "write", json_string("refused by validate"));
    out = finish(run, STEP_REFUSED, BR_OUTCOME_INVALID, "%s file refused by its validate command", name);
  } else if (rc) {
    json_object_set_new(audit, "write", json_string(strerror(-rc)));
    out = finish(run, STEP_RETRY, BR_OUTCOME_RETRY, "cannot write the %s file: %.*s", name,
                 (int)(err.len && err.data[err.len - 1] == '\n' ? err.len - 1 : err.len), br_buf_str(&err));
  } else {
    run->rep->writes++;
    json_object_set_new(audit, "write", json_string("ok"));
  }
  br_buf_free(&err);
  return out;
}

/* Tells the sidecar through its driver; on success the owed mark goes, and
 * when a next step follows (more) it waits the settle time. */
static enum step_result tell(struct run *run, const struct stage *st, bool more, json_t *audit) {
  struct br_converge_report *rep = run->rep;
  const char *name = br_sidecar_name(st->sidecar);
  const char *project = br_bottle_project(run->bottle, &rep->warnings);
  if (!project && run->bottle->refusal)
    return finish(run, STEP_REFUSED, BR_OUTCOME_INVALID, "%s reload refused: %s", name, run->bottle->refusal);
  if (!project)
    return finish(run, STEP_RETRY, BR_OUTCOME_RETRY, "%s reload: out of memory", name);
  const struct br_sidecar_config *sc = br_config_sidecar(run->cfg, st->sidecar);
  struct br_reload_request req = {
      .config = run->cfg,
      .reload = &sc->reload,
      .sidecar = st->sidecar,
      .slug = run->bottle->slug,
      .project = project,
      .file = live_file(run, st->sidecar),
      .written_at_ns = st->written_at_ns,
      /* A next step waits for the confirmation, but never longer than the
       * settle time it would wait without one. */
      .confirm_within_ms = more ? sc->settle_ms : 0,
  };
  struct br_reload_result res;
  br_reload_result_init(&res);
  br_driver_reload(&req, &res);
  json_object_set_new(audit, "reload", json_string(br_reload_status_name(res.status)));
  json_object_set_new(audit, "reload_detail", json_string(br_buf_str(&res.message)));
  enum step_result out = STEP_DONE;
  switch (res.status) {
  case BR_RELOAD_OK:
    if (res.confirm_late) { /* the settle time is over: go on, owed */
      run->unconfirmed = true;
      run->unconfirmed_sidecar = st->sidecar;
      break;
    }
    rep->reloads++;
    /* fall through */
  case BR_RELOAD_NOT_NEEDED:
  case BR_RELOAD_NOT_RUNNING:
    if (res.status == BR_RELOAD_NOT_RUNNING)
      rep->sidecar_not_running = true;
    br_reloads_clear(&run->reloads, st->sidecar, BR_MARK_RELOAD_OWED, &rep->warnings);
    if (more && sc->settle_ms && res.status != BR_RELOAD_NOT_RUNNING)
      out = settle(run, st->sidecar, res.confirmed);
    break;
  case BR_RELOAD_DEFER:
    rep->retry_after_ms = res.retry_after_ms;
    out = finish(run, STEP_RETRY, BR_OUTCOME_RETRY, "%s reload deferred: %s", name, res.message.data);
    break;
  case BR_RELOAD_TRANSIENT:
    out = finish(run, STEP_RETRY, BR_OUTCOME_RETRY, "%s reload failed: %s", name, res.message.data);
    break;
  case BR_RELOAD_PERMANENT:
    /* The live file is written and stays owed a reload; only a config change helps. */
    br_buf_printf(&rep->errors, "%s reload: %s\n", name, res.message.data);
    out = finish(run, STEP_REFUSED, BR_OUTCOME_INVALID, "%s reload impossible: %s", name, res.message.data);
    break;
  }
  br_reload_result_free(&res);
  return out;
}

/* Writes new_bytes (when not NULL) to the sidecar's live file and tells the
 * sidecar; when a next step follows (more), it waits the settle time. With
 * new_bytes NULL it only delivers a reload owed from an earlier write
 * (written_at_ns from the record). */
static enum step_result apply(struct run *run, enum br_sidecar sidecar, const struct br_buf *new_bytes,
                              int64_t written_at_ns, bool more, json_t *audit) {
  struct stage st = {.run = run, .sidecar = sidecar, .written_at_ns = written_at_ns};
  enum step_result out = new_bytes ? write_live(run, &st, new_bytes, audit) : STEP_DONE;
  return out == STEP_DONE ? tell(run, &st, more, audit) : out;
}

/* Only delivers a reload an earlier write left owed. */
static enum step_result apply_owed(struct run *run, enum br_sidecar sidecar, bool more) {
  json_t *audit = br_audit_record(run->rep->audit, run->bottle->slug, sidecar, live_file(run, sidecar));
  json_object_set_new(audit, "owed", json_true());
  return apply(run, sidecar, NULL, run->plan.owed_at[sidecar], more, audit);
}

/* A route that ends, or ended, as its fragment declares it. */
static json_t *route_expiry_json(const struct br_route *r) {
  char when[BR_EXPIRY_TEXT_MAX];
  br_expiry_format(r->expires, when, sizeof when);
  json_t *out = json_pack("{s:s}", "host", r->host);
  if (r->all_paths)
    json_object_set_new(out, "every_path", json_true());
  else
    json_object_set_new(out, "path_allowlist", strv_json(&r->paths));
  json_object_set_new(out, "expires", json_string(when));
  json_object_set_new(out, "fragment", json_string(r->origin ? r->origin : "?"));
  return out;
}

static int cmp_expires(const void *a, const void *b) {
  const struct br_route *x = *(const struct br_route *const *)a, *y = *(const struct br_route *const *)b;
  return x->expires < y->expires ? -1 : x->expires > y->expires;
}

/* What ends when, soonest first. */
static json_t *expiring_json(const struct br_routes *expiring) {
  json_t *out = json_array();
  const struct br_route **order = calloc(expiring->n + 1, sizeof *order);
  for (size_t i = 0; order && i < expiring->n; i++)
    order[i] = &expiring->v[i];
  if (order)
    qsort(order, expiring->n, sizeof *order, cmp_expires);
  for (size_t i = 0; order && i < expiring->n; i++)
    json_array_append_new(out, route_expiry_json(order[i]));
  free(order);
  return out;
}

/* The routes that expired among those of hosts, for the audit: why a write
 * took them away. NULL when none did. */
static json_t *expired_json(const struct run *run, const struct br_strv *hosts) {
  const struct br_routes *expired = &run->plan.desired.expired;
  json_t *out = NULL;
  for (size_t i = 0; i < expired->n; i++) {
    if (!br_strv_contains(hosts, expired->v[i].host))
      continue;
    if (!out)
      out = json_array();
    json_array_append_new(out, route_expiry_json(&expired->v[i]));
  }
  return out;
}

/* The fragment files that declared these hosts (their routes' origins,
 * "FILE:LINE"), for the audit: what caused a write. */
static json_t *causes(const struct run *run, const struct br_strv *hosts) {
  struct br_strv files;
  br_strv_init(&files);
  for (size_t i = 0; i < hosts->n; i++) {
    const struct br_route *r = br_routes_find(&run->plan.desired.routes, hosts->v[i]);
    const char *colon = r && r->origin ? strrchr(r->origin, ':') : NULL;
    if (colon)
      br_strv_addn(&files, r->origin, (size_t)(colon - r->origin));
  }
  br_strv_sort(&files);
  json_t *out = json_array();
  for (size_t i = 0; i < files.n; i++)
    if (!i || strcmp(files.v[i], files.v[i - 1]) != 0)
      json_array_append_new(out, json_string(files.v[i]));
  br_strv_free(&files);
  return out;
}

/* Applies new pipelock bytes (spliced by stage_bytes) on top of live_bytes. */
static enum step_result pipelock_write(struct run *run, const struct br_buf *before, const struct br_buf *spliced,
                                       const struct br_strv *added, const struct br_strv *removed, bool more) {
  const struct br_buf *live_bytes = before;
  const char *file = live_file(run, BR_SIDECAR_PIPELOCK);
  json_t *audit = br_audit_record(run->rep->audit, run->bottle->slug, BR_SIDECAR_PIPELOCK, file);
  char before_hash[BR_SHA256_HEX_LEN + 1], after[BR_SHA256_HEX_LEN + 1];
  br_sha256_hex(live_bytes->data, live_bytes->len, before_hash);
  br_sha256_hex(spliced->data, spliced->len, after);
  json_object_set_new(audit, "hosts_added", strv_json(added));
  json_object_set_new(audit, "hosts_removed", strv_json(removed));
  json_object_set_new(audit, "fragments", causes(run, added));
  json_t *expired = expired_json(run, removed);
  if (expired)
    json_object_set_new(audit, "expired", expired);
  json_object_set_new(audit, "sha256_before", json_string(before_hash));
  json_object_set_new(audit, "sha256_after", json_string(after));
  return apply(run, BR_SIDECAR_PIPELOCK, spliced, 0, more, audit);
}

/* ---- the steps of a converge, in order ----------------------------------- */

/* Which credential slot goes to which host, from the desired routes: what
 * the egress container's token values must match. */
static json_t *credentials_json(const struct br_routes *routes) {
  json_t *out = json_object();
  for (size_t i = 0; i < routes->n; i++) {
    const struct br_route *r = &routes->v[i];
    if (!r->token_env)
      continue;
    json_t *hosts = json_object_get(out, r->token_env);
    if (!hosts)
      json_object_set_new(out, r->token_env, hosts = json_array());
    json_array_append_new(hosts, json_string(r->host));
  }
  return out;
}

/* 1. Desired state: all fragments, afresh, and the operator's policy on
 * them (br_desired_load): a bottle that breaks a rule is refused here, so
 * nothing of it is staged, checked or written. */
static enum step_result load_desired(struct run *run) {
  struct br_converge_report *rep = run->rep;
  struct br_desired *desired = &run->plan.desired;
  int rc = br_desired_load(run->cfg, &run->bottle->sources, desired);
  br_buf_add(&rep->warnings, br_buf_str(&desired->warnings), desired->warnings.len);
  /* Even for an invalid bottle: a route that ends may make it valid again. */
  rep->next_expiry = desired->next_expiry;
  if (rc == -EINVAL) {
    br_buf_add(&rep->errors, desired->errors.data, desired->errors.len);
    size_t first = strcspn(desired->errors.data, "\n");
    return finish(run, STEP_REFUSED, BR_OUTCOME_INVALID, "invalid desired routes, live config untouched: %.*s",
                  (int)first, desired->errors.data);
  }
  if (rc)
    return finish(run, STEP_RETRY, BR_OUTCOME_RETRY, "cannot read desired routes: %s", strerror(-rc));
  if (!desired->managed)
    return finish(run, STEP_STOP, BR_OUTCOME_UNMANAGED, "no source directory (%s); left alone",
                  desired->sources.n ? desired->sources.v[0] : "none configured");
  memcpy(rep->desired_hash, desired->hash, sizeof rep->desired_hash);
  rep->credentials = credentials_json(&desired->routes);
  rep->expiring = expiring_json(&desired->expiring);
  return STEP_DONE;
}

/* A live file that cannot be read: a symlink on its way is the operator's
 * to fix (or to list in follow_symlinks), and is named with its target;
 * nothing of the bottle has been written yet, and nothing will be. */
static enum step_result unreadable(struct run *run, const char *file, int rc) {
  struct br_buf why;
  br_buf_init(&why, 2 * PATH_MAX);
  br_path_describe_error(file, rc, &run->rule, &why);
  if (rc == -ELOOP)
    br_buf_adds(&why, "; live files are read and written through no symlink (follow_symlinks lists "
                      "directories that may be one), so nothing of this bottle was written or signalled");
  bool permanent = rc == -ELOOP || rc == -EFBIG || rc == -EISDIR;
  if (permanent)
    br_buf_printf(&run->rep->errors, "%s: %s\n", file, br_buf_str(&why));
  enum step_result out = finish(run, permanent ? STEP_REFUSED : STEP_RETRY,
                                permanent ? BR_OUTCOME_INVALID : BR_OUTCOME_RETRY, "cannot read %s: %s", file,
                                rc == -EISDIR ? "it is a directory, expected a regular file" : br_buf_str(&why));
  br_buf_free(&why);
  return out;
}

/* 2. Live state: what the sidecars' files say now. */
static enum step_result read_live(struct run *run) {
  struct br_converge_report *rep = run->rep;
  struct plan *p = &run->plan;
  const char *pl_file = live_file(run, BR_SIDECAR_PIPELOCK), *eg_file = live_file(run, BR_SIDECAR_EGRESS);
  int rc = br_file_read_under(pl_file, LIVE_FILE_MAX, &run->rule, &p->pl_bytes, NULL);
  if (rc == -ENOENT) /* creating it would need every key pipelock requires; that is not ours */
    return finish(run, STEP_STOP, BR_OUTCOME_WAITING,
                  "waiting for its pipelock config %s (the file does not exist)", pl_file);
  if (rc)
    return unreadable(run, pl_file, rc);
  if (br_pipelock_allowlist(pl_file, p->pl_bytes.data, p->pl_bytes.len, &p->pl_live, &rep->errors))
    return finish(run, STEP_REFUSED, BR_OUTCOME_INVALID, "live pipelock config is invalid, left untouched: %.*s",
                  (int)strcspn(rep->errors.data, "\n"), rep->errors.data);
  rc = br_file_read_under(eg_file, LIVE_FILE_MAX, &run->rule, &p->eg_bytes, NULL);
  p->egress_exists = rc == 0;
  if (rc && rc != -ENOENT)
    return unreadable(run, eg_file, rc);
  p->egress_parsed = true;
  const struct br_buf *canonical = &p->desired.canonical;
  /* Nothing changed, the common case: no need to parse it. */
  p->egress_same = p->egress_exists && p->eg_bytes.len == canonical->len &&
                   memcmp(p->eg_bytes.data, canonical->data, canonical->len) == 0;
  if (p->egress_exists && !p->egress_same) {
    struct br_buf perr;
    br_buf_init(&perr, 4096);
    if (br_egress_parse(eg_file, p->eg_bytes.data, p->eg_bytes.len, &p->eg_live, &perr)) {
      /* The desired state is the truth; an unreadable live file is replaced,
       * keeping what the parse could keep of it (eg_live.members). */
      p->egress_parsed = false;
      br_buf_printf(&rep->warnings, "%s (it will be rewritten from the desired routes)\n",
                    perr.data ? perr.data : "unparsable live egress file");
    }
    br_buf_free(&perr);
  }
  return STEP_DONE;
}

/* The reload file, under the lock. A plan goes on without it (its warning
 * says so); a converge cannot know what it owes. Only an operator fixes a
 * symlink or a directory in its place. */
static enum step_result read_reloads(struct run *run) {
  bool planning = run->mode == BR_CONVERGE_PLAN;
  struct br_converge_report *rep = run->rep;
  int rc = br_reloads_open(&run->reloads, run->cfg->state_dir, run->bottle->slug, !planning,
                           planning ? &rep->warnings : &rep->errors);
  if (rc && !planning) {
    bool fix = rc == -ELOOP || rc == -EISDIR;
    return finish(run, fix ? STEP_REFUSED : STEP_RETRY, fix ? BR_OUTCOME_INVALID : BR_OUTCOME_RETRY,
                  "cannot read its reload file %s: %s", run->reloads.path.data,
                  rc == -ELOOP    ? "it is a symlink, expected a regular file; remove it"
                  : rc == -EISDIR ? "it is a directory, expected a regular file; remove it"
                                  : strerror(-rc));
  }
  for (int s = 0; s < BR_SIDECAR_COUNT; s++)
    run->plan.owed[s] =
        br_reloads_get(&run->reloads, (enum br_sidecar)s, BR_MARK_RELOAD_OWED, &run->plan.owed_at[s]);
  return STEP_DONE;
}

static void plan_hosts(struct br_buf *plan, const char *what, const struct br_strv *hosts) {
  if (!hosts->n)
    return;
  br_buf_printf(plan, "  pipelock: %s", what);
  for (size_t i = 0; i < hosts->n; i++)
    br_buf_printf(plan, " %s", hosts->v[i]);
  br_buf_adds(plan, "\n");
}

/* Why routes went: those of the changed hosts that expired. */
static void describe_expired(const struct run *run, struct br_buf *out) {
  const struct br_routes *expired = &run->plan.desired.expired;
  for (size_t i = 0; i < expired->n; i++) {
    const struct br_route *r = &expired->v[i];
    bool changed = false;
    for (size_t c = 0; c < run->plan.diff.n && !changed; c++)
      changed = strcmp(run->plan.diff.v[c].host, r->host) == 0;
    char when[BR_EXPIRY_TEXT_MAX];
    br_expiry_format(r->expires, when, sizeof when);
    if (changed)
      br_buf_printf(out, "  egress: %s expired at %s (%s)\n", r->host, when, r->origin ? r->origin : "?");
  }
}

/* The plan's lines, in the order the steps would take them. */
static void describe_plan(struct run *run) {
  struct plan *p = &run->plan;
  struct br_buf *out = &run->rep->plan;
  const char *eg_file = live_file(run, BR_SIDECAR_EGRESS);
  plan_hosts(out, "allow", &p->hosts_added);
  if (p->egress_differs) {
    if (!p->egress_exists)
      br_buf_printf(out, "  egress: create %s\n", eg_file);
    else if (!p->egress_parsed)
      br_buf_printf(out, "  egress: rewrite unparsable %s: %s\n", eg_file,
                    p->eg_live.n_members ? "its routes are dropped, its other top-level keys kept"
                                         : "everything in it is dropped");
    for (size_t i = 0; i < p->eg_live.drift.n; i++)
      br_buf_printf(out, "  egress: rewrite: %s\n", p->eg_live.drift.v[i]);
    br_diff_format(&p->diff, "  egress: ", out);
    describe_expired(run, out);
  }
  plan_hosts(out, "remove", &p->hosts_removed);
  if (p->record_distrusted)
    br_buf_printf(out, "  pipelock: added-hosts record does not verify; pruning none of the hosts it lists\n");
  if (p->owed[BR_SIDECAR_PIPELOCK] && !p->hosts_added.n)
    br_buf_adds(out, "  pipelock: reload owed from an earlier write\n");
  if (p->owed[BR_SIDECAR_EGRESS] && !p->egress_differs)
    br_buf_adds(out, "  egress: reload owed from an earlier write\n");
}

static enum step_result stage_bytes(struct run *run);
static enum step_result check_staged(struct run *run);

/* Before anything is written: the reloads that follow go to the containers
 * of the bottle's compose project, so the project must be its own (and its
 * metadata.json no symlink). Read only now: a converge with nothing to do
 * never needs it. A plan looks; a converge also records the project as
 * this bottle's. */
static enum step_result owned_project(struct run *run) {
  struct br_converge_report *rep = run->rep;
  int rc = br_bottle_project_owned(run->bottle, run->mode != BR_CONVERGE_PLAN, &rep->warnings, &rep->errors);
  if (rc == -EPERM) {
    br_buf_printf(&rep->errors, "%s\n", run->bottle->refusal);
    return finish(run, STEP_REFUSED, BR_OUTCOME_INVALID, "%s", run->bottle->refusal);
  }
  if (rc)
    return finish(run, STEP_RETRY, BR_OUTCOME_RETRY, "cannot tell whose its compose project is: %s",
                  strerror(-rc));
  return STEP_DONE;
}

/* 3. Plan: what pipelock and egress need. Only prune plans with the record
 * of hosts this tool added; additive mode reads it when it adds a host
 * (widen_pipelock), not on every converge. */
static enum step_result make_plan(struct run *run) {
  struct plan *p = &run->plan;
  bool prune = run->cfg->mirror == BR_MIRROR_PRUNE;
  struct br_strv needed;
  br_strv_init(&needed);
  int rc = br_routes_hosts(&p->desired.routes, &needed);
  if (!rc && prune)
    rc = br_record_added_get(run->cfg->state_dir, run->bottle->slug, &p->added_record, &p->record_distrusted,
                             &run->rep->warnings);
  if (!rc)
    rc = br_pipelock_plan(&p->pl_live, &needed, &p->added_record, prune, &p->widened, &p->narrowed,
                          &p->hosts_added, &p->hosts_removed);
  if (!rc && !p->egress_same)
    rc = br_diff_routes(&p->eg_live.routes, &p->desired.routes, &p->diff);
  br_strv_free(&needed);
  if (rc)
    return finish(run, STEP_RETRY, BR_OUTCOME_RETRY, "cannot plan: %s", strerror(-rc));
  /* Drift is anything in the live file that the canonical rendering would
   * not produce. Converged: the file is that rendering byte for byte, or it
   * differs from it in layout alone (spacing, escapes, the order of keys,
   * routes and paths), which every JSON reader reads alike, and which a
   * bottle written by hand and then adopted keeps (adoption promises that
   * managing it changes nothing). Everything else a reader might read
   * otherwise than the model does: a second entry for a host (another
   * token), an unknown key of a route, a null, an upper-case host, a
   * duplicate key or path, a byte order mark. The parse names each (drift),
   * and any one is a rewrite, even where the folded model equals the
   * desired routes. */
  p->egress_differs = !p->egress_same && (!p->egress_exists || !p->egress_parsed || p->eg_live.drift.n ||
                                          !br_routes_equal(&p->desired.routes, &p->eg_live.routes));
  describe_plan(run);
  if (stage_bytes(run) != STEP_DONE)
    return STEP_REFUSED;
  bool anything = p->hosts_added.n || p->hosts_removed.n || p->egress_differs || p->owed[BR_SIDECAR_PIPELOCK] ||
                  p->owed[BR_SIDECAR_EGRESS];
  if (anything && owned_project(run) != STEP_DONE)
    return STEP_REFUSED;
  if (run->mode == BR_CONVERGE_PLAN)
    return finish(run, STEP_STOP, anything ? BR_OUTCOME_CHANGES : BR_OUTCOME_CONVERGED,
                  anything ? "changes pending" : "no changes");
  if (!anything)
    return finish(run, STEP_STOP, BR_OUTCOME_CONVERGED, "no changes");
  if (check_staged(run) != STEP_DONE)
    return STEP_REFUSED;
  /* A settle time an earlier converge began may still be running out. */
  enum step_result step = settled(run, BR_SIDECAR_PIPELOCK);
  return step == STEP_DONE ? settled(run, BR_SIDECAR_EGRESS) : step;
}

/* The bytes of every write this converge will make: pipelock widened,
 * egress rendered, pipelock narrowed on top of the widened file. */
static enum step_result stage_bytes(struct run *run) {
  struct plan *p = &run->plan;
  const char *pl_file = live_file(run, BR_SIDECAR_PIPELOCK);
  if (p->hosts_added.n && br_pipelock_splice(pl_file, p->pl_bytes.data, p->pl_bytes.len, &p->widened,
                                             &p->pl_widened, &run->rep->errors))
    return finish(run, STEP_REFUSED, BR_OUTCOME_INVALID, "cannot edit api_allowlist of %s safely", pl_file);
  const struct br_buf *base = p->hosts_added.n ? &p->pl_widened : &p->pl_bytes;
  if (p->hosts_removed.n &&
      br_pipelock_splice(pl_file, base->data, base->len, &p->narrowed, &p->pl_narrowed, &run->rep->errors))
    return finish(run, STEP_REFUSED, BR_OUTCOME_INVALID, "cannot edit api_allowlist of %s safely", pl_file);
  int rc = p->egress_differs ? br_egress_render_live(&p->desired.routes, &p->eg_live, &p->eg_rendered) : 0;
  if (rc)
    return finish(run, STEP_RETRY, BR_OUTCOME_RETRY, "cannot render the egress file: %s", strerror(-rc));
  return STEP_DONE;
}

static int checked_only(void *arg) {
  (void)arg;
  return CHECKED_ONLY;
}

/* Runs a sidecar's validate command on bytes staged beside its live file,
 * installing nothing. */
static enum step_result check_one(struct run *run, enum br_sidecar sidecar, const struct br_buf *bytes) {
  if (!bytes->data || !br_config_sidecar(run->cfg, sidecar)->validate.n)
    return STEP_DONE;
  struct stage st = {.run = run, .sidecar = sidecar};
  struct br_buf err;
  br_buf_init(&err, 4096);
  struct br_write_opts opts = {.new_mode = 0644,
                               .rule = &run->rule,
                               .validate = validate_staged,
                               .before_rename = checked_only,
                               .arg = &st};
  int rc = br_file_write_atomic(live_file(run, sidecar), bytes->data, bytes->len, &opts, &err);
  enum step_result out = STEP_DONE;
  if (rc == -ECANCELED)
    out = finish(run, STEP_REFUSED, BR_OUTCOME_INVALID,
                 "%s file refused by its validate command; neither sidecar's live file was changed",
                 br_sidecar_name(sidecar));
  else if (rc != CHECKED_ONLY)
    out = finish(run, STEP_RETRY, BR_OUTCOME_RETRY, "cannot stage the %s file for its validate command: %s",
                 br_sidecar_name(sidecar), err.len ? br_buf_str(&err) : strerror(-rc));
  br_buf_free(&err);
  return out;
}

/* Every validate command passes on the exact bytes before the first rename:
 * a refusal of the egress file must not leave pipelock widened. The
 * operator's policy passed before these bytes were made (load_desired):
 * together they are every check, and none of them writes anything. */
static enum step_result check_staged(struct run *run) {
  struct plan *p = &run->plan;
  enum step_result out = check_one(run, BR_SIDECAR_PIPELOCK, &p->pl_widened);
  if (out == STEP_DONE)
    out = check_one(run, BR_SIDECAR_EGRESS, &p->eg_rendered);
  if (out == STEP_DONE)
    out = check_one(run, BR_SIDECAR_PIPELOCK, &p->pl_narrowed);
  if (out == STEP_REFUSED) {
    /* The audit says what was refused, as a refused write did before. */
    json_t *audit =
        br_audit_record(run->rep->audit, run->bottle->slug, BR_SIDECAR_EGRESS, live_file(run, BR_SIDECAR_EGRESS));
    json_object_set_new(audit, "write", json_string("refused by validate"));
  }
  return out;
}

static bool egress_step(const struct plan *p) { return p->egress_differs || p->owed[BR_SIDECAR_EGRESS]; }

/* 4. Widen pipelock first: the outer gate never allows less than egress. The
 * hosts are recorded before the write: after a crash in between, prune may
 * only think it added a host that is not there, never forget one it added. */
static enum step_result widen_pipelock(struct run *run) {
  struct plan *p = &run->plan;
  bool more = egress_step(p) || p->hosts_removed.n;
  if (!p->hosts_added.n)
    return p->owed[BR_SIDECAR_PIPELOCK] ? apply_owed(run, BR_SIDECAR_PIPELOCK, more) : STEP_DONE;
  bool prune = run->cfg->mirror == BR_MIRROR_PRUNE;
  int rc = 0;
  if (!prune)
    rc = br_record_added_get(run->cfg->state_dir, run->bottle->slug, &p->added_record, &p->record_distrusted,
                             &run->rep->warnings);
  struct br_strv record;
  br_strv_init(&record);
  if (!rc)
    rc = br_strv_copy(&record, &p->added_record);
  for (size_t i = 0; i < p->hosts_added.n && !rc; i++)
    rc = br_strv_add_unique(&record, p->hosts_added.v[i]);
  if (!rc)
    rc = br_record_added_set(run->cfg->state_dir, run->bottle->slug, &record, prune, &run->rep->warnings,
                             &run->rep->errors);
  br_strv_free(&record);
  if (rc)
    return finish(run, STEP_RETRY, BR_OUTCOME_RETRY, "cannot record added pipelock hosts: %s", strerror(-rc));
  struct br_strv none;
  br_strv_init(&none);
  return pipelock_write(run, &p->pl_bytes, &p->pl_widened, &p->hosts_added, &none, more);
}

/* 5. Egress: the canonical rendering of the desired routes. */
static enum step_result write_egress(struct run *run) {
  struct plan *p = &run->plan;
  bool more = p->hosts_removed.n > 0;
  if (!p->egress_differs)
    return p->owed[BR_SIDECAR_EGRESS] ? apply_owed(run, BR_SIDECAR_EGRESS, more) : STEP_DONE;
  const struct br_buf *rendered = &p->eg_rendered;
  const char *file = live_file(run, BR_SIDECAR_EGRESS);
  json_t *audit = br_audit_record(run->rep->audit, run->bottle->slug, BR_SIDECAR_EGRESS, file);
  char before[BR_SHA256_HEX_LEN + 1] = "", after[BR_SHA256_HEX_LEN + 1];
  if (p->egress_exists)
    br_sha256_hex(p->eg_bytes.data, p->eg_bytes.len, before);
  br_sha256_hex(rendered->data, rendered->len, after);
  json_object_set_new(audit, "changes", br_diff_to_json(&p->diff));
  if (p->eg_live.drift.n)
    json_object_set_new(audit, "drift", strv_json(&p->eg_live.drift));
  struct br_strv changed;
  br_strv_init(&changed);
  for (size_t i = 0; i < p->diff.n; i++)
    br_strv_add(&changed, p->diff.v[i].host);
  json_object_set_new(audit, "fragments", causes(run, &changed));
  json_t *expired = expired_json(run, &changed);
  if (expired)
    json_object_set_new(audit, "expired", expired);
  br_strv_free(&changed);
  json_object_set_new(audit, "sources", strv_json(&p->desired.sources));
  json_object_set_new(audit, "sha256_before", p->egress_exists ? json_string(before) : json_null());
  json_object_set_new(audit, "sha256_after", json_string(after));
  return apply(run, BR_SIDECAR_EGRESS, rendered, 0, more, audit);
}

/* 6. Narrow pipelock last (prune mode): egress no longer needs these hosts.
 * The record then forgets them; failing to write it only leaves hosts prune
 * would try to remove again. */
static enum step_result narrow_pipelock(struct run *run) {
  struct plan *p = &run->plan;
  if (!p->hosts_removed.n)
    return STEP_DONE;
  struct br_strv none;
  br_strv_init(&none);
  const struct br_buf *before = p->hosts_added.n ? &p->pl_widened : &p->pl_bytes;
  enum step_result step = pipelock_write(run, before, &p->pl_narrowed, &none, &p->hosts_removed, false);
  if (step != STEP_DONE)
    return step;
  struct br_strv record;
  br_strv_init(&record);
  int rc = 0;
  for (size_t i = 0; i < p->added_record.n && !rc; i++)
    if (!br_strv_contains(&p->hosts_removed, p->added_record.v[i]))
      rc = br_strv_add(&record, p->added_record.v[i]);
  for (size_t i = 0; i < p->hosts_added.n && !rc; i++)
    rc = br_strv_add_unique(&record, p->hosts_added.v[i]);
  if (!rc)
    br_record_added_set(run->cfg->state_dir, run->bottle->slug, &record, true, &run->rep->warnings,
                        &run->rep->warnings);
  br_strv_free(&record);
  return STEP_DONE;
}

static void plan_init(struct plan *p) {
  memset(p, 0, sizeof *p);
  br_desired_init(&p->desired);
  br_buf_init(&p->pl_bytes, LIVE_FILE_MAX);
  br_buf_init(&p->eg_bytes, LIVE_FILE_MAX);
  br_buf_init(&p->pl_widened, LIVE_FILE_MAX);
  br_buf_init(&p->eg_rendered, LIVE_FILE_MAX);
  br_buf_init(&p->pl_narrowed, LIVE_FILE_MAX);
  br_strv_init(&p->pl_live);
  br_strv_init(&p->added_record);
  br_strv_init(&p->widened);
  br_strv_init(&p->narrowed);
  br_strv_init(&p->hosts_added);
  br_strv_init(&p->hosts_removed);
  br_egress_live_init(&p->eg_live);
}

static void plan_free(struct plan *p) {
  br_desired_free(&p->desired);
  br_buf_free(&p->pl_bytes);
  br_buf_free(&p->eg_bytes);
  br_buf_free(&p->pl_widened);
  br_buf_free(&p->eg_rendered);
  br_buf_free(&p->pl_narrowed);
  br_strv_free(&p->pl_live);
  br_strv_free(&p->added_record);
  br_strv_free(&p->widened);
  br_strv_free(&p->narrowed);
  br_strv_free(&p->hosts_added);
  br_strv_free(&p->hosts_removed);
  br_egress_live_free(&p->eg_live);
  br_diff_free(&p->diff);
}

/* The steps in DESIGN.md's order; each ends the converge unless it is DONE. */
static void converge_locked(struct run *run) {
  static enum step_result (*const steps[])(struct run *) = {
      load_desired, read_live, read_reloads, make_plan, widen_pipelock, write_egress, narrow_pipelock,
  };
  for (size_t i = 0; i < sizeof steps / sizeof *steps; i++)
    if (steps[i](run) != STEP_DONE)
      return;
  struct br_converge_report *rep = run->rep;
  if (run->unconfirmed) {
    enum br_sidecar s = run->unconfirmed_sidecar;
    finish(run, STEP_RETRY, BR_OUTCOME_RETRY,
           "%s did not confirm its reload within its %u ms settle time; the next steps followed as without "
           "confirmation, and its reload is delivered again",
           br_sidecar_name(s), br_config_sidecar(run->cfg, s)->settle_ms);
    return;
  }
  finish(run, STEP_DONE, BR_OUTCOME_CONVERGED, "%u file%s written, %u reload%s%s", rep->writes,
         rep->writes == 1 ? "" : "s", rep->reloads, rep->reloads == 1 ? "" : "s",
         rep->sidecar_not_running ? " (a sidecar is not running; it reads the new file when it starts)" : "");
}

int br_converge_bottle(struct br_bottle *bottle, enum br_converge_mode mode,
                       const struct br_converge_observer *observer, struct br_converge_report *rep) {
  struct run run = {.cfg = bottle->cfg,
                    .bottle = bottle,
                    .mode = mode,
                    .observer = observer,
                    .rule = br_config_path_rule(bottle->cfg),
                    .rep = rep,
                    .reloads.fd = -1};
  plan_init(&run.plan);
  run.reloads.fd = -1;
  int lockfd = br_open_under(bottle->dir, O_RDONLY | O_DIRECTORY, 0, &run.rule);
  if (lockfd == -ELOOP) {
    unreadable(&run, bottle->dir, lockfd);
  } else if (lockfd < 0) {
    /* A bottle exists on this host iff its state directory does. */
    finish(&run, STEP_STOP, BR_OUTCOME_UNMANAGED, "no bottle %s on this host (%s: %s)", bottle->slug, bottle->dir,
           strerror(-lockfd));
  } else if (mode != BR_CONVERGE_PLAN && flock(lockfd, LOCK_EX) < 0) {
    finish(&run, STEP_RETRY, BR_OUTCOME_RETRY, "cannot lock the slug directory: %s", strerror(errno));
  } else {
    converge_locked(&run);
  }
  /* Said in the one line status shows, for as long as it holds: a warning
   * alone scrolls by in the log. */
  if (run.plan.record_distrusted && bottle->cfg->mirror == BR_MIRROR_PRUNE &&
      (rep->outcome == BR_OUTCOME_CONVERGED || rep->outcome == BR_OUTCOME_CHANGES))
    br_buf_adds(&rep->message, "; added-hosts record does not verify: pruning none of its hosts");
  /* Freeing the replaced files' blocks waits for the disk: once this
   * converge is over, not on the way to telling the sidecars. */
  release_replaced(&run);
  br_reloads_close(&run.reloads);
  if (lockfd >= 0)
    close(lockfd); /* releases the lock */
  plan_free(&run.plan);
  return 0;
}

void br_converge_cleanup(const struct br_bottle *bottle) {
  const struct br_path_rule rule = br_config_path_rule(bottle->cfg);
  struct br_buf dir;
  br_buf_init(&dir, PATH_MAX);
  for (int s = 0; s < BR_SIDECAR_COUNT; s++) {
    br_buf_reset(&dir);
    if (!br_buf_adds(&dir, bottle->live[s])) {
      char *slash = strrchr(dir.data, '/');
      if (slash)
        *slash = '\0';
      br_file_remove_stale_temps_under(dir.data, &rule);
    }
  }
  /* Sources outside the state directory keep the layout their sync gives
   * them (git-sync's "current" link): only those beneath it take the rule. */
  for (size_t i = 0; i < bottle->sources.n; i++)
    br_file_remove_stale_temps_under(bottle->sources.v[i],
                                     br_config_source_rule(bottle->cfg, bottle->sources.v[i], &rule));
  br_buf_free(&dir);
}

int br_converge_derive_refused(const struct br_bottle *b, int rc, struct br_converge_report *rep) {
  if (rc != -EPERM || !b->refusal)
    return rc;
  rep->outcome = BR_OUTCOME_INVALID;
  br_buf_reset(&rep->message);
  br_buf_adds(&rep->message, b->refusal);
  br_buf_printf(&rep->errors, "%s\n", b->refusal);
  return 0;
}

int br_converge_slug(const struct br_config *cfg, const char *slug, enum br_converge_mode mode,
                     const struct br_converge_observer *observer, struct br_converge_report *rep) {
  struct br_bottle bottle;
  int rc = br_bottle_derive(&bottle, cfg, slug, &rep->warnings);
  if (rc == -EINVAL && !br_slug_valid(slug)) {
    rep->outcome = BR_OUTCOME_INVALID;
    br_buf_adds(&rep->message, "not a valid slug, expected [A-Za-z0-9][A-Za-z0-9_.-]*");
    rc = 0;
  } else if (!rc) {
    rc = br_converge_bottle(&bottle, mode, observer, rep);
  } else {
    rc = br_converge_derive_refused(&bottle, rc, rep);
  }
  br_bottle_free(&bottle);
  return rc;
}
