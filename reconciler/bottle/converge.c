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

#include "common/fileio.h"
#include "common/proc.h"
#include "reconciler/bottle/desired.h"
#include "reconciler/bottle/records.h"
#include "reconciler/bottle/slug.h"
#include "reconciler/drivers/driver.h"
#include "reconciler/model/diff.h"
#include "reconciler/model/egress.h"
#include "reconciler/model/pipelock.h"

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

/* Everything one converge works with; lives on the caller's stack. */
struct run {
  const struct br_config *cfg;
  const char *slug;
  enum br_converge_mode mode;
  const struct br_converge_observer *observer; /* may be NULL */
  struct br_converge_report *rep;
  struct br_buf project; /* read by project_of() */
  bool project_read;
  int project_rc;
  const char *paths_project; /* the project when a source or live file path names it, else NULL */
  struct br_buf pipelock_file;
  struct br_buf egress_file;
  struct br_reloads reloads; /* reloads owed and settle times, read under the lock */
  /* The live files this converge replaced, held until it is over (see
   * br_write_opts.replaced): up to three writes, pipelock twice in prune mode. */
  int replaced[3];
  size_t n_replaced;
};

static int64_t realtime_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The slug's compose project (metadata.json), read when first needed: most
 * converges find nothing to do and never need it, unless a source or live
 * file path names it (then br_converge_slug reads it up front). */
static const char *project_of(struct run *run) {
  if (!run->project_read) {
    run->project_read = true;
    run->project_rc = br_slug_project(run->cfg->state_dir, run->slug, &run->project, &run->rep->warnings);
  }
  /* NULL only when out of memory: in a template NULL would stand for the
   * slug, so callers must not pass it on. */
  return run->project_rc ? NULL : run->project.data;
}

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

static int finish(struct run *run, enum br_outcome outcome, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int finish(struct run *run, enum br_outcome outcome, const char *fmt, ...) {
  run->rep->outcome = outcome;
  br_buf_reset(&run->rep->message);
  va_list ap;
  va_start(ap, fmt);
  br_buf_vprintf(&run->rep->message, fmt, ap);
  va_end(ap);
  return 0;
}

static json_t *strv_json(const struct br_strv *s) {
  json_t *a = json_array();
  for (size_t i = 0; i < s->n; i++)
    json_array_append_new(a, json_string(s->v[i]));
  return a;
}

static json_t *audit_record(struct run *run, const char *sidecar, const char *file) {
  char ts[64];
  struct timespec now;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &now);
  gmtime_r(&now.tv_sec, &tm);
  size_t n = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(ts + n, sizeof ts - n, ".%03ldZ", now.tv_nsec / 1000000);
  json_t *rec = json_pack("{s:s, s:s, s:s, s:s}", "time", ts, "slug", run->slug, "sidecar", sidecar, "file", file);
  json_array_append_new(run->rep->audit, rec);
  return rec; /* borrowed: the report's array holds the reference */
}

/* The staged file is shown to the operator's validate command before it can
 * replace the live one. */
struct stage {
  struct run *run;
  const struct br_sidecar_config *sc;
  const char *sidecar;
  const char *file; /* the live file */
  int64_t written_at_ns;
  struct stat staged; /* the new file, filled by br_file_write_atomic */
};

static int validate_staged(const char *staged_path, void *arg) {
  struct stage *st = arg;
  if (st->sc->validate.n == 0)
    return 0;
  struct br_strv argv;
  struct br_buf word;
  br_strv_init(&argv);
  br_buf_init(&word, PATH_MAX * 2);
  int rc = 0;
  for (size_t i = 0; i < st->sc->validate.n && !rc; i++) {
    br_buf_reset(&word);
    const char *project = project_of(st->run);
    rc = project ? br_config_expand_sidecar(st->run->cfg, st->sc, st->sc->validate.v[i], st->run->slug, project,
                                            staged_path, &word)
                 : -ENOMEM;
    if (!rc)
      rc = br_strv_add(&argv, word.data);
  }
  br_buf_free(&word);
  struct br_proc_result proc = {0};
  if (!rc)
    rc = br_proc_run(argv.v, 30000, &proc);
  if (rc || !proc.exited || proc.exit_status != 0) {
    struct br_buf *msg = &st->run->rep->errors;
    br_buf_printf(msg, "%s: the %s validate command refused the new file (", st->sidecar, st->sidecar);
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
    obs->replacing(obs->ctx, st->file, &st->staged);
  st->written_at_ns = realtime_ns();
  return br_reloads_set(&st->run->reloads, st->sidecar, BR_MARK_RELOAD_OWED, st->written_at_ns,
                        &st->run->rep->errors);
}

enum step_result {
  STEP_DONE,    /* written and/or told, or nothing to do */
  STEP_SETTLE,  /* told; the next step waits out the settle time (ASYNC mode) */
  STEP_RETRY,   /* transient: the message says why; retry later */
  STEP_REFUSED, /* the validate command refused the file: permanent */
};

/* The next step must not start before a sidecar that was just told has the
 * new config (pipelock: its own watcher's debounce, or the reload itself).
 * WAIT mode sleeps; ASYNC mode records when the wait ends and hands it back. */
static enum step_result settle(struct run *run, const struct br_sidecar_config *sc, const char *sidecar) {
  if (run->mode != BR_CONVERGE_ASYNC) {
    /* Before the wait, not after: a sidecar that watches the file itself
     * (not its directory) hears of the replacement only when the old file
     * is gone. */
    release_replaced(run);
    sleep_ms(sc->settle_ms);
    return STEP_DONE;
  }
  int64_t until = realtime_ns() + (int64_t)sc->settle_ms * 1000000;
  if (br_reloads_set(&run->reloads, sidecar, BR_MARK_SETTLE_UNTIL, until, &run->rep->errors)) {
    release_replaced(run);
    sleep_ms(sc->settle_ms); /* cannot record it: wait here rather than not at all */
    return STEP_DONE;
  }
  run->rep->retry_after_ms = sc->settle_ms;
  finish(run, BR_OUTCOME_SETTLING, "%s told; the next step follows after its %u ms settle time", sidecar,
         sc->settle_ms);
  return STEP_SETTLE;
}

/* A settle time recorded by an earlier ASYNC converge that is not over yet:
 * ASYNC hands the rest back, WAIT sleeps it out. */
static enum step_result settled(struct run *run, const struct br_sidecar_config *sc, const char *sidecar) {
  int64_t until = 0;
  /* Without a settle time there is nothing to wait for, whatever an earlier
   * config left on record: no need to look. */
  if (!sc->settle_ms || !br_reloads_get(&run->reloads, sidecar, BR_MARK_SETTLE_UNTIL, &until))
    return STEP_DONE;
  int64_t left_ms = (until - realtime_ns()) / 1000000;
  if (left_ms > 0 && run->mode == BR_CONVERGE_ASYNC) {
    run->rep->retry_after_ms = (unsigned)left_ms;
    finish(run, BR_OUTCOME_SETTLING, "%s settling for %lld ms more", sidecar, (long long)left_ms);
    return STEP_SETTLE;
  }
  if (left_ms > 0)
    sleep_ms((unsigned)left_ms);
  br_reloads_clear(&run->reloads, sidecar, BR_MARK_SETTLE_UNTIL, &run->rep->warnings);
  return STEP_DONE;
}

/* Writes new_bytes (when not NULL) to the sidecar's live file and tells the
 * sidecar; when a next step follows (more), it waits the settle time. With
 * new_bytes NULL it only delivers a reload owed from an earlier write
 * (written_at_ns from the record). */
static enum step_result apply(struct run *run, const struct br_sidecar_config *sc, const char *sidecar,
                              const char *file, const struct br_buf *new_bytes, int64_t written_at_ns, bool more,
                              json_t *audit) {
  struct br_converge_report *rep = run->rep;
  struct stage st = {.run = run, .sc = sc, .sidecar = sidecar, .file = file, .written_at_ns = written_at_ns};
  if (new_bytes) {
    struct br_buf err;
    br_buf_init(&err, 4096);
    int replaced = -1;
    struct br_write_opts opts = {.new_mode = 0644,
                                 .validate = validate_staged,
                                 .before_rename = before_rename,
                                 .arg = &st,
                                 .staged = run->observer ? &st.staged : NULL,
                                 .replaced = run->n_replaced < 3 ? &replaced : NULL};
    int rc = br_file_write_atomic(file, new_bytes->data, new_bytes->len, &opts, &err);
    if (replaced >= 0)
      run->replaced[run->n_replaced++] = replaced;
    if (rc == -ECANCELED) {
      br_buf_free(&err);
      json_object_set_new(audit, "write", json_string("refused by validate"));
      finish(run, BR_OUTCOME_INVALID, "%s file refused by its validate command", sidecar);
      return STEP_REFUSED;
    }
    if (rc) {
      json_object_set_new(audit, "write", json_string(strerror(-rc)));
      finish(run, BR_OUTCOME_RETRY, "cannot write the %s file: %.*s", sidecar,
             (int)(err.len && err.data[err.len - 1] == '\n' ? err.len - 1 : err.len), err.data ? err.data : "");
      br_buf_free(&err);
      return STEP_RETRY;
    }
    br_buf_free(&err);
    rep->writes++;
    json_object_set_new(audit, "write", json_string("ok"));
  }

  if (!project_of(run)) {
    finish(run, BR_OUTCOME_RETRY, "%s reload: out of memory", sidecar);
    return STEP_RETRY;
  }
  struct br_reload_request req = {
      .config = run->cfg,
      .reload = &sc->reload,
      .sidecar = sidecar,
      .slug = run->slug,
      .project = project_of(run),
      .file = file,
      .written_at_ns = st.written_at_ns,
  };
  struct br_reload_result res;
  br_reload_result_init(&res);
  br_driver_reload(&req, &res);
  json_object_set_new(audit, "reload", json_string(br_reload_status_name(res.status)));
  json_object_set_new(audit, "reload_detail", json_string(res.message.data ? res.message.data : ""));
  enum step_result out = STEP_DONE;
  switch (res.status) {
  case BR_RELOAD_OK:
    rep->reloads++;
    /* fall through */
  case BR_RELOAD_NOT_NEEDED:
  case BR_RELOAD_NOT_RUNNING:
    if (res.status == BR_RELOAD_NOT_RUNNING)
      rep->sidecar_not_running = true;
    br_reloads_clear(&run->reloads, sidecar, BR_MARK_RELOAD_OWED, &rep->warnings);
    if (more && sc->settle_ms && res.status != BR_RELOAD_NOT_RUNNING)
      out = settle(run, sc, sidecar);
    break;
  case BR_RELOAD_DEFER:
    rep->retry_after_ms = res.retry_after_ms;
    finish(run, BR_OUTCOME_RETRY, "%s reload deferred: %s", sidecar, res.message.data);
    out = STEP_RETRY;
    break;
  case BR_RELOAD_TRANSIENT:
    finish(run, BR_OUTCOME_RETRY, "%s reload failed: %s", sidecar, res.message.data);
    out = STEP_RETRY;
    break;
  case BR_RELOAD_PERMANENT:
    /* The live file is written and stays owed a reload; only a config change helps. */
    br_buf_printf(&rep->errors, "%s reload: %s\n", sidecar, res.message.data);
    finish(run, BR_OUTCOME_INVALID, "%s reload impossible: %s", sidecar, res.message.data);
    out = STEP_REFUSED;
    break;
  }
  br_reload_result_free(&res);
  return out;
}

static void plan_hosts(struct br_buf *plan, const char *what, const struct br_strv *hosts) {
  if (!hosts->n)
    return;
  br_buf_printf(plan, "  pipelock: %s", what);
  for (size_t i = 0; i < hosts->n; i++)
    br_buf_printf(plan, " %s", hosts->v[i]);
  br_buf_adds(plan, "\n");
}

/* Splices list into the pipelock bytes and applies them. */
static enum step_result pipelock_write(struct run *run, struct br_buf *live_bytes, const struct br_strv *list,
                                       const struct br_strv *added, const struct br_strv *removed, bool more) {
  struct br_buf spliced;
  br_buf_init(&spliced, LIVE_FILE_MAX);
  int rc = br_pipelock_splice(run->pipelock_file.data, live_bytes->data, live_bytes->len, list, &spliced,
                              &run->rep->errors);
  if (rc) {
    br_buf_free(&spliced);
    finish(run, BR_OUTCOME_INVALID, "cannot edit api_allowlist of %s safely", run->pipelock_file.data);
    return STEP_REFUSED;
  }
  json_t *audit = audit_record(run, "pipelock", run->pipelock_file.data);
  char before[BR_SHA256_HEX_LEN + 1], after[BR_SHA256_HEX_LEN + 1];
  br_sha256_hex(live_bytes->data, live_bytes->len, before);
  br_sha256_hex(spliced.data, spliced.len, after);
  json_object_set_new(audit, "hosts_added", strv_json(added));
  json_object_set_new(audit, "hosts_removed", strv_json(removed));
  json_object_set_new(audit, "sha256_before", json_string(before));
  json_object_set_new(audit, "sha256_after", json_string(after));
  enum step_result out =
      apply(run, &run->cfg->pipelock, "pipelock", run->pipelock_file.data, &spliced, 0, more, audit);
  if (out == STEP_DONE || out == STEP_SETTLE) {
    /* Later steps splice on top of what is live now. */
    br_buf_reset(live_bytes);
    br_buf_add(live_bytes, spliced.data, spliced.len);
  }
  br_buf_free(&spliced);
  return out;
}

static int converge_locked(struct run *run) {
  const struct br_config *cfg = run->cfg;
  struct br_converge_report *rep = run->rep;
  struct br_desired desired;
  struct br_buf pl_bytes, eg_bytes, rendered;
  struct br_strv pl_live, pl_added_record, needed, widened, narrowed, hosts_added, hosts_removed;
  struct br_egress_live eg_live;
  struct br_diff diff = {0};
  br_desired_init(&desired);
  br_buf_init(&pl_bytes, LIVE_FILE_MAX);
  br_buf_init(&eg_bytes, LIVE_FILE_MAX);
  br_buf_init(&rendered, LIVE_FILE_MAX);
  br_strv_init(&pl_live);
  br_strv_init(&pl_added_record);
  br_strv_init(&needed);
  br_strv_init(&widened);
  br_strv_init(&narrowed);
  br_strv_init(&hosts_added);
  br_strv_init(&hosts_removed);
  br_egress_live_init(&eg_live);
  int rc = 0;

  /* 1. Desired state: all fragments, afresh. */
  int drc = br_desired_load(cfg, run->slug, run->paths_project, &desired);
  br_buf_add(&rep->warnings, desired.warnings.data ? desired.warnings.data : "", desired.warnings.len);
  if (drc == -EINVAL) {
    br_buf_add(&rep->errors, desired.errors.data, desired.errors.len);
    size_t first = strcspn(desired.errors.data, "\n");
    finish(run, BR_OUTCOME_INVALID, "invalid desired routes, live config untouched: %.*s", (int)first,
           desired.errors.data);
    goto out;
  }
  if (drc) {
    finish(run, BR_OUTCOME_RETRY, "cannot read desired routes: %s", strerror(-drc));
    goto out;
  }
  if (!desired.managed) {
    finish(run, BR_OUTCOME_UNMANAGED, "no source directory (%s); left alone",
           desired.sources.n ? desired.sources.v[0] : "none configured");
    goto out;
  }
  memcpy(rep->desired_hash, desired.hash, sizeof rep->desired_hash);

  /* 2. Live state: what the sidecars' files say now. */
  int prc = br_file_read(run->pipelock_file.data, LIVE_FILE_MAX, true, &pl_bytes);
  if (prc == -ENOENT) {
    /* Creating it would need every key pipelock requires; that is not ours. */
    finish(run, BR_OUTCOME_WAITING, "waiting for its pipelock config %s (the file does not exist)",
           run->pipelock_file.data);
    goto out;
  }
  if (prc) {
    finish(run, prc == -ELOOP || prc == -EFBIG || prc == -EISDIR ? BR_OUTCOME_INVALID : BR_OUTCOME_RETRY,
           "cannot read %s: %s", run->pipelock_file.data,
           prc == -ELOOP ? "it is a symlink, expected a regular file" : strerror(-prc));
    goto out;
  }
  if (br_pipelock_allowlist(run->pipelock_file.data, pl_bytes.data, pl_bytes.len, &pl_live, &rep->errors)) {
    finish(run, BR_OUTCOME_INVALID, "live pipelock config is invalid, left untouched: %.*s",
           (int)strcspn(rep->errors.data, "\n"), rep->errors.data);
    goto out;
  }
  int erc = br_file_read(run->egress_file.data, LIVE_FILE_MAX, true, &eg_bytes);
  bool egress_exists = erc == 0;
  if (erc && erc != -ENOENT) {
    finish(run, erc == -ELOOP ? BR_OUTCOME_INVALID : BR_OUTCOME_RETRY, "cannot read %s: %s", run->egress_file.data,
           erc == -ELOOP ? "it is a symlink, expected a regular file" : strerror(-erc));
    goto out;
  }
  bool egress_parsed = true;
  if (egress_exists) {
    struct br_buf perr;
    br_buf_init(&perr, 4096);
    if (br_egress_parse(run->egress_file.data, eg_bytes.data, eg_bytes.len, &eg_live, &perr)) {
      /* The desired state is the truth; an unreadable live file is replaced. */
      egress_parsed = false;
      br_buf_printf(&rep->warnings, "%s (it will be rewritten from the desired routes)\n",
                    perr.data ? perr.data : "unparsable live egress file");
      br_egress_live_free(&eg_live);
      br_egress_live_init(&eg_live);
    }
    br_buf_free(&perr);
  }

  /* 3. Plan. */
  /* A plan goes on without the reload file (its warning says so); a
   * converge cannot know what it owes. Only an operator fixes a symlink or
   * a directory in its place. */
  bool planning = run->mode == BR_CONVERGE_PLAN;
  int orc = br_reloads_open(&run->reloads, cfg->state_dir, run->slug, !planning,
                            planning ? &rep->warnings : &rep->errors);
  if (orc && !planning) {
    finish(run, orc == -ELOOP || orc == -EISDIR ? BR_OUTCOME_INVALID : BR_OUTCOME_RETRY,
           "cannot read its reload file %s: %s", run->reloads.path.data,
           orc == -ELOOP    ? "it is a symlink, expected a regular file; remove it"
           : orc == -EISDIR ? "it is a directory, expected a regular file; remove it"
                            : strerror(-orc));
    goto out;
  }
  int64_t pl_owed_at = 0, eg_owed_at = 0;
  bool pl_owed = br_reloads_get(&run->reloads, "pipelock", BR_MARK_RELOAD_OWED, &pl_owed_at);
  bool eg_owed = br_reloads_get(&run->reloads, "egress", BR_MARK_RELOAD_OWED, &eg_owed_at);
  /* Only prune plans with the record of hosts this tool added; additive
   * mode reads it when it adds a host (below), not on every converge. */
  bool prune = cfg->mirror == BR_MIRROR_PRUNE;
  if ((rc = br_routes_hosts(&desired.routes, &needed)) ||
      (prune && (rc = br_record_added_get(cfg->state_dir, run->slug, &pl_added_record, &rep->warnings))) ||
      (rc = br_pipelock_plan(&pl_live, &needed, &pl_added_record, prune, &widened, &narrowed, &hosts_added,
                             &hosts_removed)) ||
      (rc = br_diff_routes(&eg_live.routes, &desired.routes, &diff)))
    goto out;
  bool egress_differs = !egress_exists || !egress_parsed || !br_routes_equal(&desired.routes, &eg_live.routes);
  plan_hosts(&rep->plan, "allow", &hosts_added);
  if (egress_differs) {
    if (!egress_exists)
      br_buf_printf(&rep->plan, "  egress: create %s\n", run->egress_file.data);
    else if (!egress_parsed)
      br_buf_printf(&rep->plan, "  egress: rewrite unparsable %s\n", run->egress_file.data);
    br_diff_format(&diff, "  egress: ", &rep->plan);
  }
  plan_hosts(&rep->plan, "remove", &hosts_removed);
  if (pl_owed && !hosts_added.n)
    br_buf_adds(&rep->plan, "  pipelock: reload owed from an earlier write\n");
  if (eg_owed && !egress_differs)
    br_buf_adds(&rep->plan, "  egress: reload owed from an earlier write\n");
  bool anything = hosts_added.n || hosts_removed.n || egress_differs || pl_owed || eg_owed;
  if (run->mode == BR_CONVERGE_PLAN) {
    finish(run, anything ? BR_OUTCOME_CHANGES : BR_OUTCOME_CONVERGED, anything ? "changes pending" : "no changes");
    goto out;
  }
  if (!anything) {
    finish(run, BR_OUTCOME_CONVERGED, "no changes");
    goto out;
  }

  /* A settle time an earlier converge began is still running out. */
  enum step_result step = settled(run, &cfg->pipelock, "pipelock");
  if (step == STEP_DONE)
    step = settled(run, &cfg->egress, "egress");
  if (step != STEP_DONE)
    goto out;

  /* 4. Widen pipelock first: the outer gate never allows less than egress. */
  bool egress_step = egress_differs || eg_owed;
  if (hosts_added.n) {
    if (!prune && (rc = br_record_added_get(cfg->state_dir, run->slug, &pl_added_record, &rep->warnings)))
      goto out;
    struct br_strv record;
    if ((rc = br_strv_copy(&record, &pl_added_record)))
      goto out;
    for (size_t i = 0; i < hosts_added.n && !rc; i++)
      rc = br_strv_add_unique(&record, hosts_added.v[i]);
    /* Recorded before the write: after a crash in between, prune may only
     * think it added a host that is not there, never forget one it added. */
    if (!rc)
      rc = br_record_added_set(cfg->state_dir, run->slug, &record, prune, &rep->errors);
    br_strv_free(&record);
    if (rc) {
      finish(run, BR_OUTCOME_RETRY, "cannot record added pipelock hosts: %s", strerror(-rc));
      rc = 0;
      goto out;
    }
    struct br_strv none;
    br_strv_init(&none);
    step = pipelock_write(run, &pl_bytes, &widened, &hosts_added, &none, egress_step || hosts_removed.n);
  } else if (pl_owed) {
    json_t *audit = audit_record(run, "pipelock", run->pipelock_file.data);
    json_object_set_new(audit, "owed", json_true());
    step = apply(run, &cfg->pipelock, "pipelock", run->pipelock_file.data, NULL, pl_owed_at,
                 egress_step || hosts_removed.n, audit);
  }
  if (step != STEP_DONE)
    goto out;

  /* 5. Egress. */
  if (egress_differs) {
    if ((rc = br_egress_render(&desired.routes, eg_live.doc, &rendered)))
      goto out;
    json_t *audit = audit_record(run, "egress", run->egress_file.data);
    char before[BR_SHA256_HEX_LEN + 1] = "", after[BR_SHA256_HEX_LEN + 1];
    if (egress_exists)
      br_sha256_hex(eg_bytes.data, eg_bytes.len, before);
    br_sha256_hex(rendered.data, rendered.len, after);
    json_object_set_new(audit, "changes", br_diff_to_json(&diff));
    json_object_set_new(audit, "sha256_before", egress_exists ? json_string(before) : json_null());
    json_object_set_new(audit, "sha256_after", json_string(after));
    step = apply(run, &cfg->egress, "egress", run->egress_file.data, &rendered, 0, hosts_removed.n, audit);
  } else if (eg_owed) {
    json_t *audit = audit_record(run, "egress", run->egress_file.data);
    json_object_set_new(audit, "owed", json_true());
    step = apply(run, &cfg->egress, "egress", run->egress_file.data, NULL, eg_owed_at, hosts_removed.n, audit);
  }
  if (step != STEP_DONE)
    goto out;

  /* 6. Narrow pipelock last (prune mode): egress no longer needs these hosts. */
  if (hosts_removed.n) {
    struct br_strv none;
    br_strv_init(&none);
    step = pipelock_write(run, &pl_bytes, &narrowed, &none, &hosts_removed, false);
    if (step != STEP_DONE)
      goto out;
    struct br_strv record;
    br_strv_init(&record);
    for (size_t i = 0; i < pl_added_record.n && !rc; i++)
      if (!br_strv_contains(&hosts_removed, pl_added_record.v[i]))
        rc = br_strv_add(&record, pl_added_record.v[i]);
    for (size_t i = 0; i < hosts_added.n && !rc; i++)
      rc = br_strv_add_unique(&record, hosts_added.v[i]);
    if (!rc)
      br_record_added_set(cfg->state_dir, run->slug, &record, true, &rep->warnings);
    br_strv_free(&record);
    rc = 0;
  }
  finish(run, BR_OUTCOME_CONVERGED, "%u file%s written, %u reload%s%s", rep->writes, rep->writes == 1 ? "" : "s",
         rep->reloads, rep->reloads == 1 ? "" : "s",
         rep->sidecar_not_running ? " (a sidecar is not running; it reads the new file when it starts)" : "");
out:
  br_desired_free(&desired);
  br_buf_free(&pl_bytes);
  br_buf_free(&eg_bytes);
  br_buf_free(&rendered);
  br_strv_free(&pl_live);
  br_strv_free(&pl_added_record);
  br_strv_free(&needed);
  br_strv_free(&widened);
  br_strv_free(&narrowed);
  br_strv_free(&hosts_added);
  br_strv_free(&hosts_removed);
  br_egress_live_free(&eg_live);
  br_diff_free(&diff);
  return rc;
}

int br_converge_slug(const struct br_config *cfg, const char *slug, enum br_converge_mode mode,
                     const struct br_converge_observer *observer, struct br_converge_report *rep) {
  struct run run = {.cfg = cfg, .slug = slug, .mode = mode, .observer = observer, .rep = rep, .reloads.fd = -1};
  br_buf_init(&run.project, 256);
  br_buf_init(&run.pipelock_file, PATH_MAX);
  br_buf_init(&run.egress_file, PATH_MAX);
  int rc = 0, lockfd = -1;
  if (!br_slug_valid(slug)) {
    finish(&run, BR_OUTCOME_INVALID, "not a valid slug, expected [A-Za-z0-9][A-Za-z0-9_.-]*");
    goto out;
  }
  struct br_buf slug_dir;
  br_buf_init(&slug_dir, PATH_MAX);
  br_buf_printf(&slug_dir, "%s/%s", cfg->state_dir, slug);
  lockfd = open(slug_dir.data, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  br_buf_free(&slug_dir);
  if (lockfd < 0) {
    /* A bottle exists on this host iff its state directory does. */
    finish(&run, BR_OUTCOME_UNMANAGED, "no bottle %s on this host (%s/%s: %s)", slug, cfg->state_dir, slug,
           strerror(errno));
    goto out;
  }
  if (mode != BR_CONVERGE_PLAN && flock(lockfd, LOCK_EX) < 0) {
    finish(&run, BR_OUTCOME_RETRY, "cannot lock the slug directory: %s", strerror(errno));
    goto out;
  }
  if (br_config_paths_use_project(cfg) && !(run.paths_project = project_of(&run))) {
    rc = -ENOMEM;
    goto out;
  }
  if ((rc = br_config_expand_sidecar(cfg, &cfg->pipelock, cfg->pipelock.file, slug, run.paths_project, NULL,
                                     &run.pipelock_file)) ||
      (rc = br_config_expand_sidecar(cfg, &cfg->egress, cfg->egress.file, slug, run.paths_project, NULL,
                                     &run.egress_file)))
    goto out;
  rc = converge_locked(&run);
out:
  /* Freeing the replaced files' blocks waits for the disk: once this
   * converge is over, not on the way to telling the sidecars. */
  release_replaced(&run);
  br_reloads_close(&run.reloads);
  if (lockfd >= 0)
    close(lockfd); /* releases the lock */
  br_buf_free(&run.project);
  br_buf_free(&run.pipelock_file);
  br_buf_free(&run.egress_file);
  return rc;
}

void br_converge_cleanup(const struct br_config *cfg, const char *slug) {
  struct br_buf dir, project, warnings;
  br_buf_init(&dir, PATH_MAX);
  br_buf_init(&project, 256);
  br_buf_init(&warnings, 4096);
  br_slug_project(cfg->state_dir, slug, &project, &warnings);
  const struct br_sidecar_config *sidecars[] = {&cfg->pipelock, &cfg->egress};
  for (size_t i = 0; i < 2; i++) {
    br_buf_reset(&dir);
    if (!br_config_expand_sidecar(cfg, sidecars[i], sidecars[i]->file, slug, project.data, NULL, &dir)) {
      char *slash = strrchr(dir.data, '/');
      if (slash)
        *slash = '\0';
      br_file_remove_stale_temps(dir.data);
    }
  }
  for (size_t i = 0; i < cfg->sources.n; i++) {
    br_buf_reset(&dir);
    if (!br_config_expand(cfg, cfg->sources.v[i], slug, project.data, &dir))
      br_file_remove_stale_temps(dir.data);
  }
  br_buf_free(&dir);
  br_buf_free(&project);
  br_buf_free(&warnings);
}
