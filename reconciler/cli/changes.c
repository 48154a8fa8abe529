/* changes: the commands that change a bottle's fragments: apply, adopt,
 * add-route, remove-route, revoke, edit. Each checks the whole bottle, makes
 * one change, says what it did (text, or one JSON document with --json),
 * and with --wait returns only once the change is live, or taken out again
 * when a converge refuses it. Exit 0 done (live), 1 refused, 3 not live yet. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/fileio.h"
#include "reconciler/bottle/approval.h"
#include "reconciler/bottle/audit.h"
#include "reconciler/bottle/change.h"
#include "reconciler/bottle/converge.h"
#include "reconciler/bottle/desired.h"
#include "reconciler/cli/cli.h"
#include "reconciler/cli/edit.h"
#include "reconciler/cli/wait.h"
#include "reconciler/model/diff.h"
#include "reconciler/model/egress.h"
#include "reconciler/model/expiry.h"
#include "reconciler/model/fragment.h"
#include "reconciler/model/pipelock.h"

#define LIVE_MAX (64u * 1024 * 1024)

/* What the sidecars run and what the bottle asks for, at one moment. */
struct snapshot {
  json_t *egress;       /* the live egress file as JSON, or NULL */
  struct br_strv hosts; /* pipelock's api_allowlist */
  struct br_routes desired;
};

static void snapshot_take(struct br_bottle *b, struct snapshot *s) {
  memset(s, 0, sizeof *s);
  br_strv_init(&s->hosts);
  br_routes_init(&s->desired);
  if (!b->dir)
    return; /* no record: nothing to show */
  struct br_buf bytes, err;
  br_buf_init(&bytes, LIVE_MAX);
  br_buf_init(&err, 64 * 1024);
  const struct br_path_rule rule = br_config_path_rule(b->cfg);
  if (!br_file_read_under(b->live[BR_SIDECAR_EGRESS], LIVE_MAX, &rule, &bytes, NULL))
    s->egress = json_loadb(bytes.data, bytes.len, 0, NULL);
  br_buf_reset(&bytes);
  if (!br_file_read_under(b->live[BR_SIDECAR_PIPELOCK], LIVE_MAX, &rule, &bytes, NULL))
    br_pipelock_allowlist(b->live[BR_SIDECAR_PIPELOCK], bytes.data, bytes.len, &s->hosts, &err);
  br_buf_reset(&bytes);
  /* What the bottle asks for; for one not managed yet, what it runs. */
  struct br_desired d;
  br_desired_init(&d);
  struct br_egress_live live;
  br_egress_live_init(&live);
  if (!br_desired_load(b->cfg, &b->sources, &d) && d.managed) {
    s->desired = d.routes;
    br_routes_init(&d.routes);
  } else if (!br_file_read_under(b->live[BR_SIDECAR_EGRESS], LIVE_MAX, &rule, &bytes, NULL) &&
             !br_egress_parse(b->live[BR_SIDECAR_EGRESS], bytes.data, bytes.len, &live, NULL)) {
    s->desired = live.routes;
    br_routes_init(&live.routes);
  }
  br_egress_live_free(&live);
  br_desired_free(&d);
  br_buf_free(&bytes);
  br_buf_free(&err);
}

static void snapshot_free(struct snapshot *s) {
  json_decref(s->egress);
  br_strv_free(&s->hosts);
  br_routes_free(&s->desired);
}

/* The fragment files of the local source, for taking a refused change out
 * again: name and bytes of each. */
struct saved_file {
  char *name;
  struct br_buf bytes;
};
struct saved_dir {
  struct saved_file *v;
  size_t n;
};

static int save_one(const char *name, unsigned char type, void *arg) {
  (void)type;
  struct saved_dir *s = arg;
  if (!br_fragment_name_counts(name))
    return 0;
  struct saved_file *v = realloc(s->v, (s->n + 1) * sizeof *v);
  if (!v)
    return -ENOMEM;
  s->v = v;
  v[s->n].name = strdup(name);
  br_buf_init(&v[s->n].bytes, LIVE_MAX);
  s->n++;
  return v[s->n - 1].name ? 0 : -ENOMEM;
}

static void save_dir(const char *dir, struct saved_dir *s) {
  memset(s, 0, sizeof *s);
  if (!dir)
    return;
  br_dir_each(dir, save_one, s);
  char path[PATH_MAX];
  for (size_t i = 0; i < s->n; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, s->v[i].name);
    br_file_read(path, LIVE_MAX, false, &s->v[i].bytes);
  }
}

static void saved_dir_free(struct saved_dir *s) {
  for (size_t i = 0; i < s->n; i++) {
    free(s->v[i].name);
    br_buf_free(&s->v[i].bytes);
  }
  free(s->v);
}

/* Puts the files this command changed back as they were saved: a refused
 * change is taken out, and nothing another command installed meanwhile. */
static int restore_touched(const struct br_config *cfg, const char *dir, const struct saved_dir *saved,
                           const struct br_strv *touched, struct br_buf *err) {
  const struct br_path_rule rule = br_config_path_rule(cfg);
  int rc = 0;
  char path[PATH_MAX];
  for (size_t t = 0; t < touched->n && !rc; t++) {
    snprintf(path, sizeof path, "%s/%s", dir, touched->v[t]);
    const struct saved_file *was = NULL;
    for (size_t i = 0; i < saved->n && !was; i++)
      if (strcmp(saved->v[i].name, touched->v[t]) == 0)
        was = &saved->v[i];
    if (was)
      rc = br_file_write_atomic(path, was->bytes.data, was->bytes.len,
                                &(struct br_write_opts){.new_mode = 0644, .rule = &rule}, err);
    else if (unlink(path) < 0 && errno != ENOENT)
      rc = -errno;
  }
  return rc;
}

static json_t *strv_json(const struct br_strv *s) {
  json_t *a = json_array();
  for (size_t i = 0; i < s->n; i++)
    json_array_append_new(a, json_string(s->v[i]));
  return a;
}

/* One audit record for the change itself: who asked for what. */
static void audit_change(struct cli *cli, const struct br_bottle *b, const struct br_change_outcome *o,
                         const char *outcome) {
  json_t *list = json_array();
  json_t *rec = br_audit_record(list, b->slug, BR_SIDECAR_EGRESS, b->live[BR_SIDECAR_EGRESS]);
  json_object_del(rec, "sidecar");
  json_object_del(rec, "file");
  json_object_set_new(rec, "event", json_string(cli->command));
  json_object_set_new(rec, "actor", json_string(cli_actor(cli)));
  if (o->id[0])
    json_object_set_new(rec, "approval_id", json_string(o->id));
  json_object_set_new(rec, "fragment", json_string(br_buf_str(&o->fragment)));
  if (o->slot[0])
    json_object_set_new(rec, "slot", json_string(o->slot));
  json_object_set_new(rec, "outcome", json_string(outcome));
  if (o->desired_hash[0])
    json_object_set_new(rec, "desired_hash", json_string(o->desired_hash));
  write_audit(cli, list);
  json_decref(list);
}

/* The one JSON document of --json; its shape is documented in README.md. */
static void print_json(struct cli *cli, const struct br_bottle *b, const struct br_change_outcome *o,
                       const char *outcome, const struct snapshot *before, const struct snapshot *after,
                       const char *error) {
  struct br_diff diff = {0};
  br_diff_routes(&before->desired, &after->desired, &diff);
  json_t *doc = json_pack("{s:s, s:s, s:s, s:s?, s:s?, s:s?, s:b, s:b}", "command", cli->command, "slug", b->slug,
                          "outcome", outcome, "approval_id", o->id[0] ? o->id : NULL, "fragment",
                          o->fragment.len ? o->fragment.data : NULL, "slot", o->slot[0] ? o->slot : NULL,
                          "auth_ignored", o->auth_ignored, "adopted", o->adopted);
  json_object_set_new(doc, "desired_hash", o->desired_hash[0] ? json_string(o->desired_hash) : json_null());
  json_object_set(doc, "egress_before", before->egress ? before->egress : json_null());
  json_object_set(doc, "egress_after", after->egress ? after->egress : json_null());
  json_object_set_new(doc, "pipelock_before", strv_json(&before->hosts));
  json_object_set_new(doc, "pipelock_after", strv_json(&after->hosts));
  json_t *changes = br_diff_to_json(&diff);
  json_object_set_new(doc, "diff", changes ? changes : json_null());
  json_object_set_new(doc, "notes", json_string(br_buf_str(&o->notes)));
  json_object_set_new(doc, "error", error && *error ? json_string(error) : json_null());
  char *text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  if (text)
    printf("%s\n", text);
  free(text);
  json_decref(doc);
  br_diff_free(&diff);
}

static void print_text(const struct br_bottle *b, const struct br_change_outcome *o, const char *outcome,
                       const struct snapshot *before, const struct snapshot *after, const char *error) {
  if (error && *error) {
    fprintf(stderr, "%s", error);
    if (error[strlen(error) - 1] != '\n')
      fputc('\n', stderr);
  }
  print_indented(stdout, "", &o->notes);
  printf("%s: %s%s%s\n", b->slug, outcome, o->fragment.len ? ": " : "", br_buf_str(&o->fragment));
  struct br_diff diff = {0};
  struct br_buf text;
  br_buf_init(&text, 1024 * 1024);
  if (!br_diff_routes(&before->desired, &after->desired, &diff))
    br_diff_format(&diff, "  ", &text);
  fputs(br_buf_str(&text), stdout);
  br_buf_free(&text);
  br_diff_free(&diff);
}

/* After a change was tried: says what happened, waits when asked, takes a
 * refused change out again. Returns the exit code. */
static int finish_change(struct cli *cli, struct br_bottle *b, int rc, struct br_change_outcome *o,
                         const struct saved_dir *saved, const struct snapshot *before) {
  struct snapshot after;
  snapshot_take(b, &after);
  const char *outcome = rc ? "refused" : o->unchanged ? "unchanged" : "installed";
  int code = rc ? 1 : 0;
  struct br_buf why;
  br_buf_init(&why, 256 * 1024);
  if (rc)
    br_buf_add(&why, br_buf_str(&o->errors), o->errors.len);
  if (!rc && cli->wait) {
    bool by_daemon = false;
    enum br_live live = br_wait_live(cli, b, o->desired_hash, &why, &by_daemon);
    outcome = br_live_name(live);
    code = live == BR_LIVE ? 0 : live == BR_REFUSED ? 1 : EXIT_NOT_LIVE;
    if (live == BR_REFUSED) {
      /* Nothing of a refused change stays installed. */
      struct br_buf err;
      br_buf_init(&err, 4096);
      const char *dir = br_change_local_source(b);
      if (dir && restore_touched(b->cfg, dir, saved, &o->touched, &err))
        br_buf_printf(&why, "and it could not be taken out again: %s", br_buf_str(&err));
      else if (!by_daemon) {
        struct br_converge_report rep;
        br_converge_report_init(&rep);
        br_converge_here(cli, b, INT64_MAX, &rep); /* back to what ran before */
        br_converge_report_free(&rep);
      }
      br_buf_free(&err);
    }
    snapshot_free(&after);
    snapshot_take(b, &after);
  }
  audit_change(cli, b, o, outcome);
  if (cli->json)
    print_json(cli, b, o, outcome, before, &after, why.data);
  else
    print_text(b, o, outcome, before, &after, why.data);
  br_buf_free(&why);
  snapshot_free(&after);
  return code;
}

/* Derives the bottle, saves its local source, runs change, reports. */
static int run_change(struct cli *cli, const char *slug,
                      int (*change)(struct cli *cli, struct br_bottle *b, void *arg, struct br_change_outcome *o),
                      void *arg) {
  if (!br_slug_valid(slug))
    return usage_error("\"%s\" is not a valid slug", slug);
  if (load_config(cli, true)) /* STATE/.reconciler: the audit and the records */
    return 1;
  struct br_bottle b;
  struct br_change_outcome o;
  br_change_outcome_init(&o);
  int rc = br_bottle_derive(&b, &cli->cfg, slug, &o.errors);
  /* What runs and what is asked for before the change, and the files to
   * put back should a converge refuse it. */
  struct saved_dir saved;
  struct snapshot before;
  save_dir(rc ? NULL : br_change_local_source(&b), &saved);
  snapshot_take(&b, &before);
  if (!rc)
    rc = change(cli, &b, arg, &o);
  int code = finish_change(cli, &b, rc, &o, &saved, &before);
  snapshot_free(&before);
  saved_dir_free(&saved);
  br_change_outcome_free(&o);
  br_bottle_free(&b);
  return code;
}

/* ---- the commands --------------------------------------------------------- */

struct file_arg {
  const char *name;
  const char *path;    /* FILE as given, for messages */
  struct br_buf bytes; /* what is installed: FILE, with expires when --for */
  int64_t now;         /* seconds since the epoch */
  bool expires_added;  /* --for edited the text */
  struct br_buf given; /* FILE as it is, when --for edited it */
};

/* Install time: FILE must not end before it starts, so a time already past
 * is an error here (the daemon takes a route whose time has come as
 * expired, not as wrong). The whole-bottle check follows in the install. */
static int parse_checked(struct cli *cli, const struct file_arg *f, const struct br_buf *bytes,
                         struct br_buf *err) {
  struct br_limits limits;
  br_limits_default(&limits);
  limits.max_file_bytes = cli->cfg.max_file_bytes;
  limits.max_routes = cli->cfg.max_routes;
  limits.max_paths = cli->cfg.max_paths;
  limits.expires_after = f->now;
  struct br_routes routes;
  br_routes_init(&routes);
  int rc = br_fragment_parse(f->path, br_buf_str(bytes), bytes->len, &limits, &routes, err);
  br_routes_free(&routes);
  return rc ? -EINVAL : 0;
}

static int check_times(struct cli *cli, struct file_arg *f, struct br_change_outcome *o) {
  struct br_buf err;
  br_buf_init(&err, 64 * 1024);
  int rc = parse_checked(cli, f, &f->bytes, &err);
  /* An error in the edited text would point at a line FILE does not have:
   * say FILE's own, or what --for could not do. */
  if (rc && f->expires_added) {
    br_buf_reset(&err);
    if (!parse_checked(cli, f, &f->given, &err))
      br_buf_printf(&err,
                    "%s: --for cannot add expires to it (it says expires already, or is not one plain "
                    "mapping); write expires into the file instead\n",
                    f->path);
  }
  if (rc)
    br_buf_add(&o->errors, br_buf_str(&err), err.len);
  br_buf_free(&err);
  return rc;
}

static int do_install(struct cli *cli, struct br_bottle *b, void *arg, struct br_change_outcome *o) {
  struct file_arg *f = arg;
  int rc = check_times(cli, f, o);
  return rc ? rc : br_fragment_install(b, f->name, f->bytes.data ? f->bytes.data : "", f->bytes.len, o);
}

/* --for: FILE's text with expires = now + the duration on top. */
static int add_expires(struct cli *cli, struct file_arg *f) {
  char when[BR_EXPIRY_TEXT_MAX];
  br_expiry_format(f->now + cli->for_s, when, sizeof when);
  struct br_buf edited;
  br_buf_init(&edited, f->bytes.max + 64);
  int rc = br_expiry_insert(br_buf_str(&f->bytes), f->bytes.len, when, &edited);
  if (!rc) {
    f->given = f->bytes;
    f->bytes = edited;
    f->expires_added = true;
  } else {
    br_buf_free(&edited);
  }
  return rc;
}

int cmd_apply(struct cli *cli, int argc, char **argv) {
  if (argc != 2)
    return usage_error("%s", "apply needs SLUG and FILE");
  const char *file = argv[1], *slash = strrchr(file, '/');
  struct file_arg f = {.name = cli->name ? cli->name : (slash ? slash + 1 : file),
                       .path = file,
                       .now = br_realtime_ns() / 1000000000};
  if (strchr(f.name, '/') || !br_fragment_name_counts(f.name))
    return usage_error("--name \"%s\": expected a file name ending in .yaml, .yml or .json, not starting with '.'",
                       f.name);
  if (load_config(cli, false))
    return 1;
  br_buf_init(&f.bytes, cli->cfg.max_file_bytes);
  int rc = br_file_read(file, cli->cfg.max_file_bytes, false, &f.bytes);
  if (rc) {
    fprintf(stderr, "bottle-reconciler: %s: %s\n", file,
            rc == -EFBIG ? "larger than limits.max_file_bytes" : strerror(-rc));
    br_buf_free(&f.bytes);
    return 1;
  }
  br_buf_init(&f.given, 0);
  if (cli->for_s && (rc = add_expires(cli, &f))) {
    fprintf(stderr, "bottle-reconciler: %s: %s\n", file, strerror(-rc));
    br_buf_free(&f.bytes);
    return 1;
  }
  int code = run_change(cli, argv[0], do_install, &f);
  br_buf_free(&f.bytes);
  br_buf_free(&f.given);
  return code;
}

static int do_adopt(struct cli *cli, struct br_bottle *b, void *arg, struct br_change_outcome *o) {
  (void)cli;
  (void)arg;
  return br_adopt(b, o);
}

int cmd_adopt(struct cli *cli, int argc, char **argv) {
  bool all = cli->all;
  if ((argc == 0) == !all)
    return usage_error("%s", "adopt needs SLUG... or --all");
  if (!all) {
    int code = 0;
    for (int i = 0; i < argc; i++) {
      int c = run_change(cli, argv[i], do_adopt, NULL);
      code = c > code ? c : code;
    }
    return code;
  }
  if (load_config(cli, false))
    return 1;
  struct br_strv slugs;
  struct br_buf warnings;
  br_strv_init(&slugs);
  br_buf_init(&warnings, 64 * 1024);
  int rc = br_slugs_list(cli->cfg.state_dir, &slugs, &warnings);
  print_indented(stderr, "warning: ", &warnings);
  int code = rc ? 1 : 0;
  for (size_t i = 0; !rc && i < slugs.n; i++) {
    int c = run_change(cli, slugs.v[i], do_adopt, NULL);
    code = c > code ? c : code;
  }
  br_strv_free(&slugs);
  br_buf_free(&warnings);
  return code;
}

/* The dashboard's proposal JSON: {"host", "path_allowlist", "auth":
 * {"scheme", "token_ref"}}; flags given as well win. */
static int read_proposal(struct cli *cli, const char *from, struct br_proposal *p, json_t **doc) {
  *doc = NULL;
  const char *shown = from && strcmp(from, "-") == 0 ? "<stdin>" : from;
  if (from) {
    json_error_t jerr;
    *doc = strcmp(from, "-") == 0 ? json_loadf(stdin, JSON_REJECT_DUPLICATES, &jerr)
                                  : json_load_file(from, JSON_REJECT_DUPLICATES, &jerr);
    if (!*doc || !json_is_object(*doc)) {
      fprintf(
          stderr, "%s:%d:%d: (proposal): %s, expected a JSON object {\"host\", \"path_allowlist\", \"auth\"}\n",
          strcmp(from, "-") == 0 ? "<stdin>" : from, jerr.line, jerr.column, *doc ? "not an object" : jerr.text);
      return 1;
    }
    const char *key;
    json_t *value;
    json_object_foreach(*doc, key, value) {
      if (strcmp(key, "host") && strcmp(key, "path_allowlist") && strcmp(key, "auth") && strcmp(key, "id")) {
        fprintf(stderr, "%s: %s: unknown key, expected host, path_allowlist, auth or id\n", shown, key);
        return 1;
      }
    }
    p->host = json_string_value(json_object_get(*doc, "host"));
    p->id = json_string_value(json_object_get(*doc, "id"));
    json_t *paths = json_object_get(*doc, "path_allowlist"), *auth = json_object_get(*doc, "auth");
    size_t i;
    json_array_foreach(paths, i, value) {
      if (!json_is_string(value)) {
        fprintf(stderr, "%s: path_allowlist[%zu]: expected a string\n", shown, i);
        return 1;
      }
      br_strv_add(&p->paths, json_string_value(value));
    }
    if (auth && !json_is_null(auth)) {
      p->auth_scheme = json_string_value(json_object_get(auth, "scheme"));
      p->token_ref = json_string_value(json_object_get(auth, "token_ref"));
    }
  }
  if (cli->host)
    p->host = cli->host;
  for (size_t i = 0; i < cli->paths.n; i++)
    br_strv_add_unique(&p->paths, cli->paths.v[i]);
  if (cli->auth_scheme)
    p->auth_scheme = cli->auth_scheme;
  if (cli->token_ref)
    p->token_ref = cli->token_ref;
  if (cli->id)
    p->id = cli->id;
  if (!p->host) {
    usage_error("%s", "add-route needs a proposal with a host (PROPOSAL file, - for stdin, or --host)");
    return EXIT_USAGE;
  }
  return 0;
}

static int do_add_route(struct cli *cli, struct br_bottle *b, void *arg, struct br_change_outcome *o) {
  (void)cli;
  return br_approval_add(b, arg, o);
}

int cmd_add_route(struct cli *cli, int argc, char **argv) {
  if (argc < 1 || argc > 2)
    return usage_error("%s", "add-route needs SLUG and at most one PROPOSAL (a file, or - for stdin)");
  struct br_proposal p = {0};
  br_strv_init(&p.paths);
  if (cli->for_s)
    p.expires = br_realtime_ns() / 1000000000 + cli->for_s;
  json_t *doc;
  int code = read_proposal(cli, argc == 2 ? argv[1] : NULL, &p, &doc);
  if (!code)
    code = run_change(cli, argv[0], do_add_route, &p);
  br_strv_free(&p.paths);
  json_decref(doc);
  return code;
}

static int do_remove_route(struct cli *cli, struct br_bottle *b, void *arg, struct br_change_outcome *o) {
  return br_approval_remove_route(b, arg, cli->paths.n ? cli->paths.v[0] : NULL, o);
}

int cmd_remove_route(struct cli *cli, int argc, char **argv) {
  if (argc != 2 || cli->paths.n > 1)
    return usage_error("%s", "remove-route needs SLUG and HOST, and at most one --path");
  return run_change(cli, argv[0], do_remove_route, argv[1]);
}

static int do_revoke(struct cli *cli, struct br_bottle *b, void *arg, struct br_change_outcome *o) {
  (void)cli;
  return br_approval_revoke(b, arg, o);
}

int cmd_revoke(struct cli *cli, int argc, char **argv) {
  if (argc != 2)
    return usage_error("%s", "revoke needs SLUG and the approval ID");
  return run_change(cli, argv[0], do_revoke, argv[1]);
}

static int do_edit(struct cli *cli, struct br_bottle *b, void *arg, struct br_change_outcome *o) {
  return br_edit_fragment(cli, b, arg, o);
}

int cmd_edit(struct cli *cli, int argc, char **argv) {
  if (argc < 1 || argc > 2)
    return usage_error("%s", "edit needs SLUG and at most one NAME");
  const char *name = argc == 2 ? argv[1] : BR_EDIT_DEFAULT_NAME;
  if (strchr(name, '/') || !br_fragment_name_counts(name))
    return usage_error(
        "\"%s\": expected a fragment file name ending in .yaml, .yml or .json, not starting with '.'", name);
  return run_change(cli, argv[0], do_edit, (void *)name);
}
