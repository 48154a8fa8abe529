/* main: the command-line interface: parses arguments, loads the config and
 * hands each command to the core. It decides exit codes, nothing else. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/fileio.h"
#include "common/log.h"
#include "config/config.h"
#include "reconciler/bottle/audit.h"
#include "reconciler/bottle/bottle.h"
#include "reconciler/bottle/converge.h"
#include "reconciler/bottle/records.h"
#include "reconciler/bottle/slug.h"
#include "reconciler/cli/cli.h"
#include "reconciler/cli/repo.h"
#include "reconciler/cli/wait.h"
#include "reconciler/daemon/daemon.h"
#include "reconciler/daemon/status.h"
#include "reconciler/model/expiry.h"
#include "reconciler/model/fragment.h"
#include "reconciler/model/merge.h"

static const char usage_text[] =
    "usage: bottle-reconciler [--config FILE] [--state-dir DIR] COMMAND [ARGS]\n"
    "\n"
    "Keeps the egress and pipelock sidecars of every bottle on this host equal\n"
    "to the route fragments in STATE/<slug>/routes.d/.\n"
    "\n"
    "commands:\n"
    "  run                    watch and converge until stopped (the daemon)\n"
    "  once [SLUG...]         converge now and exit; 0 when every slug converged\n"
    "  plan [SLUG...]         show what a converge would change; 0 none, 2 pending, 1 errors\n"
    "  plan --tree DIR [--source-root ROOT] [SLUG...]\n"
    "                         the same, had the repository tree DIR been published\n"
    "  check FILE...          validate fragment files and their merge; 0 valid, 1 invalid\n"
    "  check --tree DIR       validate every bottle of a GitOps repository tree\n"
    "                         (check --format github: GitHub workflow annotations)\n"
    "  apply SLUG FILE [--name NAME] [--for DURATION]\n"
    "                         validate FILE and install it as STATE/SLUG/routes.d/NAME\n"
    "  adopt SLUG...|--all    make the live egress routes of unmanaged bottles a fragment\n"
    "  add-route SLUG [PROPOSAL|-]\n"
    "                         approve one proposed route (its own fragment, a token slot)\n"
    "  remove-route SLUG HOST [--path PATH]\n"
    "                         take a host or path back from the approvals\n"
    "  revoke SLUG ID         remove one approval\n"
    "  edit SLUG [NAME]       edit an operator fragment in $EDITOR, checked on save\n"
    "  status [SLUG] [--json] ask the running daemon for every slug's phase\n"
    "  resync [SLUG]          ask the running daemon to converge now\n"
    "  trust-record SLUG      sign the added-hosts record of SLUG as it stands (root)\n"
    "\n"
    "options (any command):\n"
    "  -c, --config FILE      daemon config (YAML); default: built-in defaults\n"
    "  -s, --state-dir DIR    state root; overrides state_dir of the config\n"
    "      --log-level LEVEL  debug, info, warn or error (default info)\n"
    "      --log-format FMT   text or json (default text)\n"
    "      --wait[=SECONDS]   changes: return once live (default 30 s); exit 3 if not yet\n"
    "      --json             once, plan, status and changes: one JSON document\n"
    "      --for DURATION     apply, add-route: the routes expire after it (30m, 2h, 7d)\n"
    "  -h, --help             this text (COMMAND --help: the command's own)\n"
    "  -V, --version          print the version\n";

int usage_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "bottle-reconciler: ");
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\nTry 'bottle-reconciler --help'.\n");
  return EXIT_USAGE;
}

#define CHANGE_EXITS                                                                                              \
  "Exit 0 installed (with --wait: live, both sidecars told), 1 refused (nothing is left\n"                        \
  "installed), 3 installed but not live within the wait (the daemon keeps retrying).\n"

static void command_help(const char *command) {
  static const struct {
    const char *name, *text;
  } help[] = {
      {"run", "usage: bottle-reconciler run [--config FILE] [--state-dir DIR] [--log-level L] [--log-format F]\n"
              "Watches the state root with inotify and converges every managed slug whenever\n"
              "its fragments or live files change, retrying failures with backoff. SIGHUP\n"
              "re-reads the config. SIGTERM or SIGINT drains (converges in flight finish,\n"
              "at most 30 s) and exits 0, or 1 when the 30 s ran out; a second SIGINT exits\n"
              "130 at once.\n"},
      {"once", "usage: bottle-reconciler once [SLUG...]\n"
               "Converges the named slugs (default: every slug in the state root) and exits:\n"
               "pipelock widened and reloaded first, then egress. One line per slug.\n"
               "Exit 0 when every slug converged (or has no sources), 1 otherwise.\n"},
      {"plan", "usage: bottle-reconciler plan [SLUG...]\n"
               "       bottle-reconciler plan --tree DIR [--source-root ROOT] [SLUG...]\n"
               "Shows per slug what a converge would change; writes and signals nothing.\n"
               "With --tree, the repository tree DIR stands in for the git checkout among the\n"
               "configured sources (each source ending in /bottles/{slug} or\n"
               "/hosts/<host>/bottles/{slug}; with --source-root, each source inside ROOT),\n"
               "against this host's live files: what publishing DIR would change here.\n"
               "Exit 0 nothing to do, 2 changes pending, 1 errors.\n"},
      {"check", "usage: bottle-reconciler check FILE... [--format text|github]\n"
                "       bottle-reconciler check --tree DIR [--format text|github]\n"
                "Validates fragment files and their merge, in the order given (one bottle's\n"
                "fragments). With --tree, validates a GitOps repository tree: every fragment,\n"
                "every bottle's merge (bottles/<slug>/, and hosts/<host>/bottles/<slug>/ merged\n"
                "after it) with the daemon's rules and limits; merge conflicts and folders no\n"
                "host reads are findings too. One finding per line on stderr as\n"
                "FILE:LINE:COLUMN: FIELD: message; --format github prints GitHub workflow\n"
                "annotations (::error file=F,line=L,col=C::message) on stdout instead.\n"
                "Exit 0 valid, 1 findings.\n"},
      {"apply",
       "usage: bottle-reconciler apply SLUG FILE [--name NAME] [--for DURATION] [--wait[=SECONDS]] [--json]\n"
       "          [--actor NAME]\n"
       "Checks FILE with the whole bottle and installs it atomically as NAME (default:\n"
       "FILE's base name) in the bottle's local source (STATE/SLUG/routes.d). A bottle\n"
       "not managed yet is adopted first (see adopt). --for 2h writes expires (now plus\n"
       "the duration) into the installed file; an expires already past is refused.\n" CHANGE_EXITS},
      {"adopt", "usage: bottle-reconciler adopt SLUG...|--all [--json]\n"
                "Writes the live egress routes of each unmanaged bottle as routes.d/00-adopted.json,\n"
                "so that managing it changes nothing. Exit 0 adopted or nothing to do, 1 refused.\n"},
      {"add-route", "usage: bottle-reconciler add-route SLUG [PROPOSAL|-] [--host HOST] [--path PATH]...\n"
                    "          [--auth-scheme SCHEME --token-ref REF] [--id ID] [--for DURATION] [--actor NAME]\n"
                    "          [--wait[=S]] [--json]\n"
                    "Approves one proposed route ({\"host\", \"path_allowlist\", \"auth\": {\"scheme\",\n"
                    "\"token_ref\"}}) as its own fragment ~approval-ID.json. A new host with auth gets\n"
                    "the lowest free slot EGRESS_TOKEN_N; a host the bottle has keeps its auth.\n"
                    "--for 30m: the approval expires then (its fragment says expires).\n" CHANGE_EXITS},
      {"remove-route", "usage: bottle-reconciler remove-route SLUG HOST [--path PATH] [--wait[=S]] [--json]\n"
                       "Takes HOST (or one PATH of it) back from the approvals that grant it; refused\n"
                       "when an operator fragment or another source grants it too.\n" CHANGE_EXITS},
      {"revoke", "usage: bottle-reconciler revoke SLUG ID [--wait[=S]] [--json]\n"
                 "Removes the approval ID (~approval-ID.json).\n" CHANGE_EXITS},
      {"edit", "usage: bottle-reconciler edit SLUG [NAME] [--wait[=S]] [--json]\n"
               "Opens $VISUAL or $EDITOR on a copy of the operator's fragment NAME (default\n"
               "50-operator.yaml), checks the whole bottle on save and reopens it with the\n"
               "errors on top until it is valid; unchanged changes nothing, emptied removes it.\n" CHANGE_EXITS},
      {"status", "usage: bottle-reconciler status [SLUG] [--json]\n"
                 "Asks the running daemon (STATE/.reconciler/control.sock) for each slug's phase.\n"},
      {"resync", "usage: bottle-reconciler resync [SLUG]\n"
                 "Asks the running daemon to converge one slug, or all, now.\n"},
      {"trust-record", "usage: bottle-reconciler trust-record SLUG [--actor NAME] [--json]\n"
                       "Signs STATE/.reconciler/added/SLUG.json, the pipelock hosts prune mode may\n"
                       "remove, as it stands: a record of an earlier version (unsigned) or one that\n"
                       "does not verify. Run it only once you checked that this tool added every host\n"
                       "it lists. Prints the hosts signed (--json: one document). The audit names\n"
                       "--actor, else the user sudo ran as, else $USER. Needs the record key (root).\n"
                       "Exit 0 signed, 1 no record or not signed.\n"},
  };
  for (size_t i = 0; i < sizeof help / sizeof *help; i++)
    if (strcmp(help[i].name, command) == 0) {
      fputs(help[i].text, stdout);
      return;
    }
  fputs(usage_text, stdout);
}

/* Loads the config, applies --state-dir, and prepares STATE/.reconciler. */
int load_config(struct cli *cli, bool need_state) {
  struct br_buf err;
  br_buf_init(&err, 64 * 1024);
  /* apply reads the config for its limits, then again for the change:
   * the first one is freed, not leaked (freeing a zeroed config is safe). */
  br_config_free(&cli->cfg);
  int rc = br_config_load(&cli->cfg, cli->config_path, &err);
  if (rc) {
    fprintf(stderr, "%s", err.data ? err.data : "cannot load the config\n");
    br_buf_free(&err);
    return 1;
  }
  if (cli->state_dir) {
    char *dir = realpath(cli->state_dir, NULL);
    if (!dir) {
      fprintf(stderr, "bottle-reconciler: --state-dir %s: %s\n", cli->state_dir, strerror(errno));
      br_buf_free(&err);
      return 1;
    }
    free(cli->cfg.state_dir);
    cli->cfg.state_dir = dir;
  } else if ((rc = br_config_resolve_state_dir(&cli->cfg, &err)) && need_state) {
    /* Resolved once: the root every live file and record is opened beneath. */
    fprintf(stderr, "%s", err.data);
    br_buf_free(&err);
    return 1;
  }
  br_buf_reset(&err);
  if (need_state && (rc = br_records_init(cli->cfg.state_dir, &err))) {
    fprintf(stderr, "%s", err.data);
    br_buf_free(&err);
    return 1;
  }
  br_buf_free(&err);
  return 0;
}

void print_indented(FILE *f, const char *prefix, const struct br_buf *text) {
  if (!text->len)
    return;
  const char *p = text->data;
  while (*p) {
    size_t n = strcspn(p, "\n");
    fprintf(f, "%s%.*s\n", prefix, (int)n, p);
    p += n + (p[n] == '\n');
  }
}

/* The slugs named on the command line, or every slug of the state root. */
static int slugs_of(struct cli *cli, int argc, char **argv, struct br_strv *slugs) {
  br_strv_init(slugs);
  if (argc) {
    for (int i = 0; i < argc; i++) {
      if (!br_slug_valid(argv[i])) {
        fprintf(stderr, "bottle-reconciler: \"%s\" is not a valid slug, expected [A-Za-z0-9][A-Za-z0-9_.-]*\n",
                argv[i]);
        return 1;
      }
      br_strv_add(slugs, argv[i]);
    }
    return 0;
  }
  struct br_buf warnings;
  br_buf_init(&warnings, 64 * 1024);
  int rc = br_slugs_list(cli->cfg.state_dir, slugs, &warnings);
  print_indented(stderr, "warning: ", &warnings);
  br_buf_free(&warnings);
  if (rc) {
    fprintf(stderr, "bottle-reconciler: %s: %s\n", cli->cfg.state_dir, strerror(-rc));
    return 1;
  }
  return 0;
}

const char *cli_actor(const struct cli *cli) {
  if (cli->actor)
    return cli->actor;
  const char *who = getenv("SUDO_USER");
  return who && *who ? who : getenv("USER") ? getenv("USER") : "unknown";
}

void write_audit(struct cli *cli, const json_t *records) {
  struct br_buf path;
  br_buf_init(&path, PATH_MAX);
  const struct br_path_rule rule = br_config_path_rule(&cli->cfg);
  if (!br_config_expand(&cli->cfg, cli->cfg.audit_log, NULL, NULL, &path)) {
    int rc = br_audit_append(path.data, &rule, records);
    if (rc)
      br_log(BR_LOG_WARN, NULL, "audit log %s: %s", path.data, strerror(-rc));
  }
  br_buf_free(&path);
}

/* The exit code after one more slug: 1 (an error) wins over 2 (changes pending). */
static int exit_of(const struct br_converge_report *rep, int exit_code) {
  if (rep->outcome == BR_OUTCOME_CHANGES && exit_code == 0)
    return 2;
  if (rep->outcome != BR_OUTCOME_CONVERGED && rep->outcome != BR_OUTCOME_UNMANAGED &&
      rep->outcome != BR_OUTCOME_CHANGES)
    return 1;
  return exit_code;
}

/* once and plan --json: one object per slug, the report as it is. */
static json_t *slug_json(const char *slug, int rc, const struct br_converge_report *rep) {
  if (rc)
    return json_pack("{s:s, s:s, s:s}", "slug", slug, "outcome", "error", "message", strerror(-rc));
  return json_pack("{s:s, s:s, s:s, s:s?, s:i, s:i, s:s, s:s, s:s, s:O}", "slug", slug, "outcome",
                   br_outcome_name(rep->outcome), "message", br_buf_str(&rep->message), "desired_hash",
                   rep->desired_hash[0] ? rep->desired_hash : NULL, "writes", (json_int_t)rep->writes, "reloads",
                   (json_int_t)rep->reloads, "plan", br_buf_str(&rep->plan), "errors", br_buf_str(&rep->errors),
                   "warnings", br_buf_str(&rep->warnings), "audit", rep->audit);
}

static int cmd_converge(struct cli *cli, int argc, char **argv, bool dry_run) {
  if (load_config(cli, !dry_run))
    return 1;
  struct br_strv slugs;
  if (slugs_of(cli, argc, argv, &slugs)) {
    br_strv_free(&slugs);
    return 1;
  }
  /* plan --tree: the candidate tree stands in for the checkout among each
   * bottle's sources; the converge's plan mode does the rest and writes
   * nothing, so the preview is exactly what publishing would do here. */
  char *tree = cli->tree ? realpath(cli->tree, NULL) : NULL;
  if (cli->tree && !tree) {
    fprintf(stderr, "bottle-reconciler: --tree %s: %s\n", cli->tree, strerror(errno));
    br_strv_free(&slugs);
    return 1;
  }
  int exit_code = 0;
  json_t *doc = cli->json ? json_array() : NULL;
  for (size_t i = 0; i < slugs.n; i++) {
    const char *slug = slugs.v[i];
    struct br_converge_report rep;
    br_converge_report_init(&rep);
    struct br_bottle bottle;
    int rc = br_bottle_derive(&bottle, &cli->cfg, slug, &rep.warnings);
    bool refused = rc == -EPERM && !(rc = br_converge_derive_refused(&bottle, rc, &rep));
    if (!rc && !refused && !dry_run)
      br_converge_cleanup(&bottle);
    if (!rc && !refused && tree && (rc = br_repo_substitute(&bottle, tree, cli->source_root)) == -ENOENT)
      fprintf(stderr,
              "%s: none of its sources lies in the git checkout, expected one ending in /bottles/{slug}%s%s\n",
              slug, cli->source_root ? " or inside " : "; or name the checkout with --source-root",
              cli->source_root ? cli->source_root : "");
    if (refused)
      ; /* rep says why */
    else if (!rc && dry_run)
      rc = br_converge_bottle(&bottle, BR_CONVERGE_PLAN, NULL, &rep);
    else if (!rc)
      rc = br_converge_here(cli, &bottle, INT64_MAX, &rep); /* writes the audit */
    br_bottle_free(&bottle);
    if (doc)
      json_array_append_new(doc, slug_json(slug, rc, &rep));
    if (rc) {
      if (rc != -ENOENT || !tree)
        fprintf(stderr, "%s: %s\n", slug, strerror(-rc));
      exit_code = 1;
    } else if (doc) {
      exit_code = exit_of(&rep, exit_code);
    } else {
      print_indented(stderr, "warning: ", &rep.warnings);
      printf("%s: %s: %s\n", slug, br_outcome_name(rep.outcome), br_buf_str(&rep.message));
      if (dry_run || rep.outcome == BR_OUTCOME_CONVERGED)
        fputs(br_buf_str(&rep.plan), stdout);
      if (dry_run) {
        struct br_buf desired;
        br_buf_init(&desired, 1024 * 1024);
        br_converge_describe_desired(&rep, &desired);
        fputs(br_buf_str(&desired), stdout);
        br_buf_free(&desired);
      }
      if (rep.outcome == BR_OUTCOME_INVALID)
        fputs(br_buf_str(&rep.errors), stderr);
      exit_code = exit_of(&rep, exit_code);
    }
    fflush(stdout);
    br_converge_report_free(&rep);
  }
  if (doc) {
    json_t *all = json_pack("{s:s, s:o, s:i}", "command", cli->command, "slugs", doc, "exit", exit_code);
    char *text = json_dumps(all, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (text)
      printf("%s\n", text);
    free(text);
    json_decref(all);
  }
  br_strv_free(&slugs);
  free(tree);
  return exit_code;
}

int main(int argc, char **argv) {
  struct cli cli = {.wait_s = 30};
  br_strv_init(&cli.paths);
  enum br_log_level level = BR_LOG_INFO;
  enum br_log_format format = BR_LOG_TEXT;
  static const struct option options[] = {
      {"config", required_argument, NULL, 'c'},
      {"state-dir", required_argument, NULL, 's'},
      {"log-level", required_argument, NULL, 'L'},
      {"log-format", required_argument, NULL, 'F'},
      {"name", required_argument, NULL, 'n'},
      {"json", no_argument, NULL, 'j'},
      {"wait", optional_argument, NULL, 'w'},
      {"all", no_argument, NULL, 'l'},
      {"id", required_argument, NULL, 'i'},
      {"actor", required_argument, NULL, 'a'},
      {"host", required_argument, NULL, 'H'},
      {"path", required_argument, NULL, 'p'},
      {"auth-scheme", required_argument, NULL, 'A'},
      {"token-ref", required_argument, NULL, 'T'},
      {"tree", required_argument, NULL, 't'},
      {"source-root", required_argument, NULL, 'R'},
      {"format", required_argument, NULL, 'f'},
      {"help", no_argument, NULL, 'h'},
      {"for", required_argument, NULL, 'o'},
      {"version", no_argument, NULL, 'V'},
      {NULL, 0, NULL, 0},
  };
  bool help = false, format_given = false;
  int opt;
  while ((opt = getopt_long(argc, argv, "c:s:hV", options, NULL)) != -1) {
    switch (opt) {
    case 'c':
      cli.config_path = optarg;
      break;
    case 's':
      cli.state_dir = optarg;
      break;
    case 'L':
      if (br_log_level_parse(optarg, &level))
        return usage_error("--log-level %s: expected debug, info, warn or error", optarg);
      break;
    case 'F':
      if (br_log_format_parse(optarg, &format))
        return usage_error("--log-format %s: expected text or json", optarg);
      break;
    case 'n':
      cli.name = optarg;
      break;
    case 'j':
      cli.json = true;
      break;
    case 'w': {
      char *end = NULL;
      unsigned long s = optarg ? strtoul(optarg, &end, 10) : 30;
      if (optarg && (!*optarg || *end || s == 0 || s > 86400))
        return usage_error("--wait=%s: expected a number of seconds, 1-86400", optarg);
      cli.wait = true;
      cli.wait_s = (unsigned)s;
      break;
    }
    case 'l':
      cli.all = true;
      break;
    case 'i':
      cli.id = optarg;
      break;
    case 'a':
      cli.actor = optarg;
      break;
    case 'H':
      cli.host = optarg;
      break;
    case 'p':
      br_strv_add(&cli.paths, optarg);
      break;
    case 'A':
      cli.auth_scheme = optarg;
      break;
    case 'T':
      cli.token_ref = optarg;
      break;
    case 't':
      cli.tree = optarg;
      break;
    case 'R':
      cli.source_root = optarg;
      break;
    case 'f':
      if (strcmp(optarg, "github") != 0 && strcmp(optarg, "text") != 0)
        return usage_error("--format %s: expected text or github", optarg);
      cli.github = strcmp(optarg, "github") == 0;
      format_given = true;
      break;
    case 'o': {
      const char *why;
      if (br_duration_parse(optarg, &cli.for_s, &why))
        return usage_error("--for %s: %s", optarg, why);
      break;
    }
    case 'h':
      help = true;
      break;
    case 'V':
      printf("bottle-reconciler %s\n", BR_VERSION);
      return 0;
    default:
      return EXIT_USAGE;
    }
  }
  br_log_setup(level, format);
  int rest = argc - optind;
  char **args = argv + optind;
  if (rest == 0) {
    if (help) {
      fputs(usage_text, stdout);
      return 0;
    }
    return usage_error("%s", "a COMMAND is required");
  }
  cli.command = args[0];
  if (help) {
    command_help(cli.command);
    return 0;
  }
  bool changes = strcmp(cli.command, "apply") == 0 || strcmp(cli.command, "add-route") == 0 ||
                 strcmp(cli.command, "remove-route") == 0 || strcmp(cli.command, "revoke") == 0 ||
                 strcmp(cli.command, "edit") == 0 || strcmp(cli.command, "adopt") == 0;
  bool adding = strcmp(cli.command, "add-route") == 0;
  if (cli.all && strcmp(cli.command, "adopt") != 0)
    return usage_error("%s", "--all belongs to adopt");
  if (cli.name && strcmp(cli.command, "apply") != 0)
    return usage_error("%s", "--name belongs to apply");
  bool trusting = strcmp(cli.command, "trust-record") == 0;
  if (cli.json && !changes && !trusting && strcmp(cli.command, "status") != 0 &&
      strcmp(cli.command, "once") != 0 && strcmp(cli.command, "plan") != 0)
    return usage_error(
        "%s", "--json belongs to once, plan, status, trust-record and the commands that change fragments");
  if (cli.wait && (!changes || strcmp(cli.command, "adopt") == 0))
    return usage_error("%s", "--wait belongs to apply, add-route, remove-route, revoke and edit");
  if ((cli.id || cli.host || cli.auth_scheme || cli.token_ref) && !adding)
    return usage_error("%s", "--id, --host, --auth-scheme and --token-ref belong to add-route");
  if (cli.paths.n && !adding && strcmp(cli.command, "remove-route") != 0)
    return usage_error("%s", "--path belongs to add-route and remove-route");
  if (cli.actor && !changes && !trusting)
    return usage_error("%s", "--actor belongs to trust-record and the commands that change fragments");
  bool checking = strcmp(cli.command, "check") == 0, planning = strcmp(cli.command, "plan") == 0;
  if (cli.tree && !checking && !planning)
    return usage_error("%s", "--tree belongs to check and plan");
  if (format_given && !checking)
    return usage_error("%s", "--format belongs to check");
  if (cli.source_root && !(planning && cli.tree))
    return usage_error("%s", "--source-root belongs to plan --tree");
  if (cli.for_s && !adding && strcmp(cli.command, "apply") != 0)
    return usage_error("%s", "--for belongs to apply and add-route");
  int code;
  if (checking)
    code = cmd_check(&cli, rest - 1, args + 1);
  else if (planning)
    code = cmd_converge(&cli, rest - 1, args + 1, true);
  else if (strcmp(cli.command, "once") == 0)
    code = cmd_converge(&cli, rest - 1, args + 1, false);
  else if (strcmp(cli.command, "apply") == 0)
    code = cmd_apply(&cli, rest - 1, args + 1);
  else if (strcmp(cli.command, "adopt") == 0)
    code = cmd_adopt(&cli, rest - 1, args + 1);
  else if (strcmp(cli.command, "add-route") == 0)
    code = cmd_add_route(&cli, rest - 1, args + 1);
  else if (strcmp(cli.command, "remove-route") == 0)
    code = cmd_remove_route(&cli, rest - 1, args + 1);
  else if (strcmp(cli.command, "revoke") == 0)
    code = cmd_revoke(&cli, rest - 1, args + 1);
  else if (strcmp(cli.command, "edit") == 0)
    code = cmd_edit(&cli, rest - 1, args + 1);
  else if (strcmp(cli.command, "run") == 0)
    code = rest > 1 ? usage_error("%s", "run takes no arguments")
                    : (load_config(&cli, true) ? 1 : br_daemon_run(&cli.cfg, cli.config_path, cli.state_dir));
  else if (strcmp(cli.command, "trust-record") == 0)
    code = cmd_trust_record(&cli, rest - 1, args + 1);
  else if (strcmp(cli.command, "status") == 0 || strcmp(cli.command, "resync") == 0)
    code = rest > 2 ? usage_error("%s takes at most one SLUG", cli.command)
                    : (load_config(&cli, false)
                           ? 1
                           : br_daemon_client(&cli.cfg, cli.command, rest > 1 ? args[1] : NULL, cli.json));
  else
    return usage_error("unknown command \"%s\"", cli.command);
  br_config_free(&cli.cfg);
  br_strv_free(&cli.paths);
  return code;
}
