/* cli: what the command files share: the parsed command line, config
 * loading, printing and the audit. main.c parses; each command file acts. */
#ifndef BR_RECONCILER_CLI_CLI_H
#define BR_RECONCILER_CLI_CLI_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "common/buf.h"
#include "common/strv.h"
#include "config/config.h"

#define EXIT_USAGE 64   /* sysexits.h EX_USAGE */
#define EXIT_NOT_LIVE 3 /* installed, but not live yet (--wait) */

struct cli {
  const char *command;
  const char *config_path;
  const char *state_dir;
  const char *name;        /* apply --name, edit's NAME */
  bool json;               /* --json: one JSON document on stdout */
  bool all;                /* adopt --all */
  bool wait;               /* --wait[=SECONDS] */
  unsigned wait_s;         /* default 30 */
  const char *id, *actor;  /* add-route --id; --actor (the commands that change fragments, trust-record) */
  const char *host;        /* add-route --host */
  struct br_strv paths;    /* add-route --path (repeatable), remove-route --path */
  const char *auth_scheme; /* add-route --auth-scheme */
  const char *token_ref;   /* add-route --token-ref */
  const char *tree;        /* check, plan --tree: a GitOps repository tree */
  const char *source_root; /* plan --source-root: the checkout the tree stands in for */
  bool github;             /* check --format github: workflow annotations */
  int64_t for_s;           /* apply, add-route --for DURATION: seconds until it expires; 0 = never */
  struct br_config cfg;
};

int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Loads the config, applies --state-dir, and prepares STATE/.reconciler. */
int load_config(struct cli *cli, bool need_state);
void print_indented(FILE *f, const char *prefix, const struct br_buf *text);
/* Appends records (an array) to the configured audit log; warns on failure. */
void write_audit(struct cli *cli, const json_t *records);
/* Who the audit names: --actor, else the user sudo ran as, else $USER. */
const char *cli_actor(const struct cli *cli);

/* check FILE... and check --tree DIR (check.c). */
int cmd_check(struct cli *cli, int argc, char **argv);

/* trust-record SLUG (trust.c). */
int cmd_trust_record(struct cli *cli, int argc, char **argv);

/* The commands that change fragments (changes.c). */
int cmd_apply(struct cli *cli, int argc, char **argv);
int cmd_adopt(struct cli *cli, int argc, char **argv);
int cmd_add_route(struct cli *cli, int argc, char **argv);
int cmd_remove_route(struct cli *cli, int argc, char **argv);
int cmd_revoke(struct cli *cli, int argc, char **argv);
int cmd_edit(struct cli *cli, int argc, char **argv);

#endif
