/* config: defaults, strict loading from YAML and template expansion for the
 * daemon's own settings. It must not touch bottles, sidecars or the network. */
#include "config/config.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/cidr.h"
#include "common/diag.h"
#include "common/fileio.h"
#include "common/template.h"
#include "common/yamldoc.h"

/* A config file is a screenful of settings; anything near this is a mistake
 * (or a hostile file) and is refused before parsing. */
#define CONFIG_MAX_BYTES (64 * 1024)
#define CONFIG_MAX_NODES 4096
#define CONFIG_MAX_DEPTH 8
#define CONFIG_MAX_SOURCES 64
#define CONFIG_MAX_ARGV 64
#define CONFIG_MAX_FOLLOW 64

/* ---- signals ------------------------------------------------------------ */

/* The signals a reload may send. USR1 is known only to be refused by name:
 * pipelock treats it as its kill switch toggle, so a typo would cut every
 * bottle off the network instead of reloading it. */
static const struct {
  int signo;
  const char *name;
} signals[] = {
    {SIGHUP, "HUP"},   {SIGUSR2, "USR2"},   {SIGTERM, "TERM"}, {SIGINT, "INT"},
    {SIGQUIT, "QUIT"}, {SIGWINCH, "WINCH"}, {SIGUSR1, "USR1"},
};
#define SIGNAL_CHOICES "HUP, USR2, TERM, INT, QUIT or WINCH"

/* The signal a name denotes, USR1 included; 0 when unknown. */
static int signal_lookup(const char *name) {
  if (strncasecmp(name, "SIG", 3) == 0)
    name += 3;
  for (size_t i = 0; i < sizeof signals / sizeof *signals; i++)
    if (strcasecmp(name, signals[i].name) == 0)
      return signals[i].signo;
  return 0;
}

int br_signal_parse(const char *name) {
  int signo = name ? signal_lookup(name) : 0;
  return signo && signo != SIGUSR1 ? signo : -EINVAL;
}

const char *br_signal_name(int signo) {
  for (size_t i = 0; i < sizeof signals / sizeof *signals; i++)
    if (signals[i].signo == signo)
      return signals[i].name;
  return NULL;
}

static const char *const driver_names[] = {
    [BR_DRIVER_NONE] = "none",
    [BR_DRIVER_SIGNAL] = "signal",
    [BR_DRIVER_EXEC] = "exec",
    [BR_DRIVER_DOCKER] = "docker",
};

const char *br_driver_name(enum br_driver_kind driver) {
  if ((size_t)driver < sizeof driver_names / sizeof *driver_names)
    return driver_names[driver];
  return NULL;
}

/* ---- defaults ----------------------------------------------------------- */

static void reload_free(struct br_reload_config *rl) {
  free(rl->pidfile);
  free(rl->container);
  free(rl->expect_exe);
  free(rl->expect_comm);
  free(rl->expect_cmdline);
  free(rl->confirm_status_file);
  free(rl->confirm_log_file);
  free(rl->confirm_match);
  br_strv_free(&rl->argv);
  memset(rl, 0, sizeof *rl);
}

/* A driver's defaults; only docker has a default target, since a pidfile or
 * a command cannot be guessed. */
static int reload_defaults(struct br_reload_config *rl, enum br_driver_kind driver, const char *sidecar) {
  memset(rl, 0, sizeof *rl);
  br_strv_init(&rl->argv);
  rl->driver = driver;
  rl->signo = SIGHUP;
  rl->timeout_ms = 5000;
  rl->grace_ms = 2000;
  if (driver != BR_DRIVER_DOCKER)
    return 0;
  struct br_buf name;
  br_buf_init(&name, 256);
  if (br_buf_printf(&name, "{project}-%s-1", sidecar) || !(rl->container = br_buf_steal(&name))) {
    br_buf_free(&name);
    return -ENOMEM;
  }
  return 0;
}

static void sidecar_free(struct br_sidecar_config *sc) {
  free(sc->file);
  reload_free(&sc->reload);
  br_strv_free(&sc->validate);
  memset(sc, 0, sizeof *sc);
}

static int sidecar_defaults(struct br_sidecar_config *sc, enum br_sidecar which, const char *file,
                            unsigned settle_ms) {
  memset(sc, 0, sizeof *sc);
  br_strv_init(&sc->validate);
  sc->which = which;
  sc->settle_ms = settle_ms;
  if (!(sc->file = strdup(file)))
    return -ENOMEM;
  return reload_defaults(&sc->reload, BR_DRIVER_DOCKER, br_sidecar_name(which));
}

static void source_rules_free(struct br_source_rules *rules, size_t n) {
  for (size_t i = 0; rules && i < n; i++) {
    free(rules[i].bind_at);
    free(rules[i].every_path_at);
    free(rules[i].max_routes_at);
  }
  free(rules);
}

static void policy_free(struct br_policy_config *p) {
  br_strv_free(&p->deny_hosts);
  br_strv_free(&p->deny_hosts_at);
  br_strv_free(&p->deny_ip_ranges);
  br_strv_free(&p->deny_ip_ranges_at);
  free(p->max_routes_per_bottle_at);
  for (size_t i = 0; i < p->n_shared; i++) {
    free(p->shared[i].token_env);
    br_strv_free(&p->shared[i].hosts);
    free(p->shared[i].at);
  }
  free(p->shared);
  memset(p, 0, sizeof *p);
}

void br_config_free(struct br_config *cfg) {
  free(cfg->state_dir);
  source_rules_free(cfg->source_rules, cfg->sources.n);
  br_strv_free(&cfg->sources);
  policy_free(&cfg->policy);
  sidecar_free(&cfg->pipelock);
  sidecar_free(&cfg->egress);
  free(cfg->audit_log);
  free(cfg->metrics_file);
  br_strv_free(&cfg->follow_symlinks);
  memset(cfg, 0, sizeof *cfg);
}

int br_config_defaults(struct br_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  br_strv_init(&cfg->sources);
  br_strv_init(&cfg->follow_symlinks);
  cfg->debounce_ms = 20;
  cfg->max_wait_ms = 1000;
  cfg->resync_interval_s = 300;
  cfg->backoff_initial_ms = 100;
  cfg->backoff_max_ms = 30000;
  cfg->workers = 4;
  cfg->max_file_bytes = 1024 * 1024;
  cfg->max_routes = 4096;
  cfg->max_paths = 1024;
  cfg->mirror = BR_MIRROR_ADDITIVE;
  cfg->metrics_file = NULL;
  br_strv_init(&cfg->policy.deny_hosts);
  br_strv_init(&cfg->policy.deny_hosts_at);
  br_strv_init(&cfg->policy.deny_ip_ranges);
  br_strv_init(&cfg->policy.deny_ip_ranges_at);
  if (!(cfg->state_dir = strdup("/var/lib/bot-bottle/state")) ||
      !(cfg->source_rules = calloc(1, sizeof *cfg->source_rules)) ||
      br_strv_add(&cfg->sources, "{state_dir}/{slug}/routes.d") ||
      !(cfg->audit_log = strdup("{state_dir}/.reconciler/audit.jsonl")) ||
      sidecar_defaults(&cfg->pipelock, BR_SIDECAR_PIPELOCK, "{state_dir}/{slug}/pipelock/pipelock.yaml", 150) ||
      sidecar_defaults(&cfg->egress, BR_SIDECAR_EGRESS, "{state_dir}/{slug}/egress/egress_routes.yaml", 0)) {
    br_config_free(cfg);
    return -ENOMEM;
  }
  cfg->source_rules[0] = (struct br_source_rules){.may_bind_credentials = true, .may_allow_every_path = true};
  return 0;
}

/* ---- template names ----------------------------------------------------- */

struct names {
  const char *const *v;
  size_t n;
};

/* Each list is a prefix of the next, so expansion can use the longest. */
static const char *const template_names[] = {"state_dir", "slug", "project", "sidecar", "file"};

static const struct names names_none = {NULL, 0};
static const struct names names_global = {template_names, 1};
static const struct names names_source = {template_names, 3};
static const struct names names_sidecar = {template_names, 4};
static const struct names names_validate = {template_names, 5};

/* ---- loading ------------------------------------------------------------ */

struct loader {
  const char *name; /* the file, as messages name it */
  struct br_buf *err;
  /* Remembered for the checks that relate two settings, so the message can
   * point at whichever of them the file actually wrote. */
  const struct br_ynode *debounce, *max_wait, *backoff_initial, *backoff_max;
};

static int fail(struct loader *ld, const struct br_ynode *at, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Appends "NAME:LINE:COLUMN: FIELD: message" and returns -EINVAL, so every
 * check can end with "return fail(...)". */
static int fail(struct loader *ld, const struct br_ynode *at, const char *field, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  br_vdiag(ld->err, ld->name, at ? at->line : 1, at ? at->column : 1, field, fmt, ap);
  va_end(ap);
  return -EINVAL;
}

/* The same with the node's value quoted in front: FIELD: "VALUE" message. */
static int fail_value(struct loader *ld, const struct br_ynode *at, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail_value(struct loader *ld, const struct br_ynode *at, const char *field, const char *fmt, ...) {
  br_diag_start(ld->err, ld->name, at->line, at->column, field);
  br_quote_excerpt(ld->err, at->value, at->len, 40);
  br_buf_adds(ld->err, " ");
  va_list ap;
  va_start(ap, fmt);
  br_buf_vprintf(ld->err, fmt, ap);
  va_end(ap);
  br_buf_adds(ld->err, "\n");
  return -EINVAL;
}

/* "a.b" or just "b" at the top level. Field names are made of this file's
 * keys; the buffers grow by level (FIELD_SIDECAR, FIELD_RELOAD, FIELD_ITEM)
 * so that each holds its parent's name and one more key. */
#define FIELD_SIDECAR 64
#define FIELD_RELOAD 128
#define FIELD_ITEM 192
static void join(char *out, size_t size, const char *prefix, const char *key) {
  snprintf(out, size, "%s%s%s", prefix, *prefix ? "." : "", key);
}

static bool key_is(const struct br_ynode *key, const char *name) {
  return key->kind == BR_YNODE_SCALAR && strlen(name) == key->len && strcmp(key->value, name) == 0;
}

/* "one of a, b or c" from a NULL-terminated list. */
static void list_choices(struct br_buf *out, const char *const *keys) {
  size_t n = 0;
  while (keys[n])
    n++;
  br_buf_adds(out, n == 1 ? "only " : "one of ");
  for (size_t i = 0; i < n; i++)
    br_buf_printf(out, "%s%s", i == 0 ? "" : i + 1 == n ? " or " : ", ", keys[i]);
}

/* Reports a key that is not in keys; the path shows the key the way yamldoc
 * does, and the message lists what the mapping accepts. */
static int fail_key(struct loader *ld, const struct br_ynode *key, const char *prefix, const char *what,
                    const char *const *keys) {
  struct br_buf field, choices;
  br_buf_init(&field, 512);
  br_buf_init(&choices, 512);
  br_buf_printf(&field, "%s%s", prefix, *prefix ? "." : "");
  if (key->kind != BR_YNODE_SCALAR)
    br_buf_adds(&field, "<complex key>");
  else if (key->len && strspn(key->value, "abcdefghijklmnopqrstuvwxyz"
                                          "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == key->len)
    br_buf_add(&field, key->value, key->len);
  else
    br_quote_excerpt(&field, key->value, key->len, 40);
  list_choices(&choices, keys);
  int rc = fail(ld, key, field.data ? field.data : prefix, "%s, expected %s", what, br_buf_str(&choices));
  br_buf_free(&field);
  br_buf_free(&choices);
  return rc;
}

static bool in_list(const struct br_ynode *key, const char *const *keys) {
  for (size_t i = 0; keys[i]; i++)
    if (key_is(key, keys[i]))
      return true;
  return false;
}

static int want_map(struct loader *ld, const struct br_ynode *node, const char *field, const char *expected) {
  if (node->kind == BR_YNODE_MAP)
    return 0;
  return fail(ld, node, field, "got %s, expected %s", br_ynode_describe(node), expected);
}

/* A whole decimal number in [lo, hi]. YAML 1.1 readers take 010 as octal and
 * 1_000 as a thousand; only plain digits mean the same to every reader. */
static int get_uint(struct loader *ld, const struct br_ynode *node, const char *field, unsigned long long lo,
                    unsigned long long hi, unsigned long long *out) {
  enum br_yscalar_type type = br_yscalar_type(node);
  if (node->kind != BR_YNODE_SCALAR || (type != BR_YINT && type != BR_YFLOAT))
    return fail(ld, node, field, "got %s, expected a number", br_ynode_describe(node));
  const char *what = NULL;
  unsigned long long v = 0;
  if (node->value[0] == '-')
    what = "is negative";
  else if (node->len == 0 || strspn(node->value, "0123456789") != node->len ||
           (node->len > 1 && node->value[0] == '0'))
    what = "is not a plain decimal number";
  for (size_t i = 0; !what && i < node->len; i++) {
    unsigned d = (unsigned)(node->value[i] - '0');
    if (v > hi / 10 || v * 10 + d > hi)
      what = "is too large";
    else
      v = v * 10 + d;
  }
  if (!what && v < lo)
    what = "is too small";
  if (what)
    return fail_value(ld, node, field, "%s, expected a whole number from %llu to %llu", what, lo, hi);
  *out = v;
  return 0;
}

static int get_unsigned(struct loader *ld, const struct br_ynode *node, const char *field, unsigned lo,
                        unsigned hi, unsigned *out) {
  unsigned long long v;
  int rc = get_uint(ld, node, field, lo, hi, &v);
  if (!rc)
    *out = (unsigned)v;
  return rc;
}

static int get_size(struct loader *ld, const struct br_ynode *node, const char *field, size_t lo, size_t hi,
                    size_t *out) {
  unsigned long long v;
  int rc = get_uint(ld, node, field, lo, hi, &v);
  if (!rc)
    *out = (size_t)v;
  return rc;
}

/* A string scalar, or NULL for null when nullable. The value stays owned by
 * the node. */
static int get_string(struct loader *ld, const struct br_ynode *node, const char *field, bool nullable,
                      const char **out) {
  enum br_yscalar_type type = br_yscalar_type(node);
  *out = NULL;
  if (nullable && node->kind == BR_YNODE_SCALAR && type == BR_YNULL)
    return 0;
  /* An unquoted "{state_dir}" is a YAML flow mapping; say how to fix it. */
  if (node->kind == BR_YNODE_MAP && node->flow)
    return fail(ld, node, field, "got a mapping, expected a string (quote a template that starts with \"{\")");
  if (node->kind != BR_YNODE_SCALAR || type != BR_YSTR)
    return fail(ld, node, field, "got %s, expected a string%s", br_ynode_describe(node),
                nullable ? " or null" : "");
  if (strlen(node->value) != node->len)
    return fail(ld, node, field, "contains a NUL byte, expected text");
  *out = node->value;
  return 0;
}

static int check_template(struct loader *ld, const struct br_ynode *node, const char *field, const char *value,
                          struct names names) {
  struct br_buf why;
  br_buf_init(&why, 512);
  int rc = br_template_check(value, names.v, names.n, &why);
  if (rc)
    rc = fail(ld, node, field, "%s", why.data ? why.data : "bad placeholder");
  br_buf_free(&why);
  return rc;
}

/* Relative paths would resolve against whatever directory the daemon was
 * started in, which under systemd is "/": refuse them rather than guess. */
static int check_path(struct loader *ld, const struct br_ynode *node, const char *field, const char *value) {
  if (value[0] == '/' || strncmp(value, "{state_dir}", strlen("{state_dir}")) == 0)
    return 0;
  return fail_value(ld, node, field,
                    "is a relative path, expected an absolute path or one that starts with "
                    "{state_dir}");
}

static int set_string(char **dst, const char *value) {
  char *copy = NULL;
  if (value && !(copy = strdup(value)))
    return -ENOMEM;
  free(*dst);
  *dst = copy;
  return 0;
}

/* A non-empty string template with the given names; path templates must be
 * absolute. expected says what the value is, for the empty-string message. */
static int get_template(struct loader *ld, const struct br_ynode *node, const char *field, struct names names,
                        bool path, bool nullable, const char *expected, char **dst) {
  const char *value;
  int rc = get_string(ld, node, field, nullable, &value);
  if (rc)
    return rc;
  if (value && !*value)
    return fail(ld, node, field, "empty string, expected %s", expected);
  if (value && (rc = check_template(ld, node, field, value, names)))
    return rc;
  if (value && path && (rc = check_path(ld, node, field, value)))
    return rc;
  return set_string(dst, value);
}

/* A list of argv templates. Only the program may not be empty: an empty
 * argument is a legitimate word of a command line. */
static int get_argv(struct loader *ld, const struct br_ynode *node, const char *field, struct names names,
                    struct br_strv *dst) {
  if (node->kind != BR_YNODE_SEQ)
    return fail(ld, node, field, "got %s, expected a list of strings", br_ynode_describe(node));
  if (node->n > CONFIG_MAX_ARGV)
    return fail(ld, node, field, "%zu arguments, expected at most %d", node->n, CONFIG_MAX_ARGV);
  struct br_strv argv;
  br_strv_init(&argv);
  int rc = 0;
  for (size_t i = 0; i < node->n && !rc; i++) {
    const struct br_ynode *word = node->items[i];
    char item[FIELD_ITEM];
    snprintf(item, sizeof item, "%s[%zu]", field, i);
    const char *value;
    if ((rc = get_string(ld, word, item, false, &value)))
      break;
    if (i == 0 && !*value)
      rc = fail(ld, word, item, "empty string, expected the program to run");
    else if (!(rc = check_template(ld, word, item, value, names)))
      rc = br_strv_add(&argv, value);
  }
  if (rc) {
    br_strv_free(&argv);
    return rc;
  }
  br_strv_free(dst);
  *dst = argv;
  return 0;
}

static const char *const reload_keys_docker[] = {"driver", "container", "signal", "grace_ms",
                                                 "verify", "confirm",   NULL};
static const char *const reload_keys_signal[] = {"driver", "pidfile", "signal", "grace_ms",
                                                 "expect", "confirm", NULL};
static const char *const reload_keys_exec[] = {"driver", "argv", "timeout_ms", "confirm", NULL};
static const char *const reload_keys_none[] = {"driver", NULL};
static const char *const reload_keys_all[] = {"driver",     "container", "pidfile", "signal", "grace_ms", "argv",
                                              "timeout_ms", "verify",    "confirm", "expect", NULL};
static const char *const confirm_keys_docker[] = {"timeout_ms", NULL};
/* Drivers without a container log: the sidecar reports its loads in a file. */
static const char *const confirm_keys_file[] = {"status_file", "log_file", "match", "timeout_ms", NULL};
static const char *const match_names[] = {"sha256"};
static const char *const expect_keys[] = {"exe", "comm", "cmdline_contains", NULL};
/* The kernel keeps the first 15 bytes of a process name (TASK_COMM_LEN 16). */
#define COMM_MAX 15
#define CONFIRM_DEFAULT_TIMEOUT_MS 5000

static int get_signal(struct loader *ld, const struct br_ynode *node, const char *field, int *out) {
  const char *value;
  int rc = get_string(ld, node, field, false, &value);
  if (rc)
    return rc;
  int signo = signal_lookup(value);
  if (signo == SIGUSR1)
    return fail_value(ld, node, field, "toggles pipelock's kill switch, expected " SIGNAL_CHOICES);
  if (!signo)
    return fail_value(ld, node, field, "is not a signal name, expected " SIGNAL_CHOICES);
  *out = signo;
  return 0;
}

/* Only true and false: YAML 1.1 would also read yes, on and y as true, and a
 * reader of the file should not have to know that. */
static int get_bool(struct loader *ld, const struct br_ynode *node, const char *field, bool *out) {
  if (node->kind == BR_YNODE_SCALAR && node->plain && strcmp(node->value, "true") == 0)
    *out = true;
  else if (node->kind == BR_YNODE_SCALAR && node->plain && strcmp(node->value, "false") == 0)
    *out = false;
  else if (node->kind == BR_YNODE_SCALAR)
    return fail_value(ld, node, field, "is not a boolean, expected true or false");
  else
    return fail(ld, node, field, "got %s, expected true or false", br_ynode_describe(node));
  return 0;
}

/* confirm.match: the text of the sidecar's load line, with "{sha256}" once
 * where the hash stands. */
static int get_match(struct loader *ld, const struct br_ynode *node, const char *field, char **dst) {
  const char *value;
  int rc = get_string(ld, node, field, false, &value);
  if (rc)
    return rc;
  struct br_buf why;
  br_buf_init(&why, 512);
  if (br_template_check(value, match_names, 1, &why))
    rc = fail(ld, node, field, "%s", br_buf_str(&why));
  else if (!strstr(value, "{sha256}"))
    rc = fail_value(ld, node, field, "has no {sha256}, expected it where the line holds the hash");
  else if (strstr(strstr(value, "{sha256}") + 1, "{sha256}"))
    rc = fail_value(ld, node, field, "has {sha256} more than once, expected it once");
  else if (strchr(value, '\n'))
    rc = fail_value(ld, node, field, "holds a newline, expected the text of one line");
  br_buf_free(&why);
  return rc ? rc : set_string(dst, value);
}

/* The keys of confirm without docker's container log: exactly one of
 * status_file and log_file, and match with log_file only. */
static int check_confirm_file(struct loader *ld, const struct br_ynode *node, const char *field,
                              const struct br_reload_config *rl) {
  if (!rl->confirm_status_file && !rl->confirm_log_file)
    return fail(ld, node, field,
                "needs status_file or log_file, expected where the sidecar reports the SHA-256 of what it loaded");
  if (rl->confirm_status_file && rl->confirm_log_file)
    return fail(ld, node, field, "both status_file and log_file, expected one of them");
  if (rl->confirm_log_file && !rl->confirm_match)
    return fail(ld, node, field,
                "log_file needs match, expected the text of the sidecar's load line with {sha256} for the hash, "
                "such as \"egress: loaded sha256={sha256} \"");
  if (rl->confirm_status_file && rl->confirm_match)
    return fail(ld, br_ymap_get(node, "match"), field,
                "match is a key of log_file, expected it only with log_file");
  return 0;
}

/* confirm: the mapping itself turns confirmation on. docker reads the
 * container's log: {timeout_ms: N}, and {} means "with the default timeout".
 * signal and exec have no log of their own to read: {status_file: T} or
 * {log_file: T, match: M}, each with an optional timeout_ms. */
static int get_confirm(struct loader *ld, const struct br_ynode *node, const char *field,
                       struct br_reload_config *rl) {
  int rc = want_map(ld, node, field, "a mapping such as {timeout_ms: 5000}");
  const char *const *keys = rl->driver == BR_DRIVER_DOCKER ? confirm_keys_docker : confirm_keys_file;
  unsigned ms = CONFIRM_DEFAULT_TIMEOUT_MS;
  for (size_t i = 0; i + 1 < node->n && !rc; i += 2) {
    const struct br_ynode *key = node->items[i], *value = node->items[i + 1];
    char sub[FIELD_ITEM];
    if (!in_list(key, keys))
      return fail_key(ld, key, field,
                      in_list(key, confirm_keys_file) ? "not a key of driver docker (it reads the container's log)"
                                                      : "unknown key",
                      keys);
    join(sub, sizeof sub, field, key->value);
    if (key_is(key, "timeout_ms"))
      rc = get_unsigned(ld, value, sub, 1, 600000, &ms);
    else if (key_is(key, "status_file"))
      rc = get_template(ld, value, sub, names_sidecar, true, false, "the path of the sidecar's status file",
                        &rl->confirm_status_file);
    else if (key_is(key, "log_file"))
      rc = get_template(ld, value, sub, names_sidecar, true, false, "the path of the sidecar's log",
                        &rl->confirm_log_file);
    else
      rc = get_match(ld, value, sub, &rl->confirm_match);
  }
  if (!rc && rl->driver != BR_DRIVER_DOCKER)
    rc = check_confirm_file(ld, node, field, rl);
  if (!rc)
    rl->confirm_timeout_ms = ms;
  return rc;
}

/* expect: {exe, comm, cmdline_contains}: what the process a pidfile names
 * must be. At least one key: an empty mapping would look like a check and
 * check nothing. */
static int get_expect(struct loader *ld, const struct br_ynode *node, const char *field,
                      struct br_reload_config *rl) {
  int rc = want_map(ld, node, field, "a mapping such as {exe: /usr/local/bin/pipelock}");
  if (!rc && node->n == 0)
    return fail(ld, node, field, "empty mapping, expected at least one of exe, comm or cmdline_contains");
  for (size_t i = 0; i + 1 < node->n && !rc; i += 2) {
    const struct br_ynode *key = node->items[i], *value = node->items[i + 1];
    char sub[FIELD_ITEM];
    if (!in_list(key, expect_keys))
      return fail_key(ld, key, field, "unknown key", expect_keys);
    join(sub, sizeof sub, field, key->value);
    if (key_is(key, "exe")) {
      if (!(rc = get_template(ld, value, sub, names_none, false, false,
                              "the absolute path of the sidecar's executable", &rl->expect_exe)) &&
          rl->expect_exe[0] != '/')
        rc = fail_value(ld, value, sub,
                        "is a relative path, expected the absolute path of the sidecar's executable");
    } else if (key_is(key, "comm")) {
      if (!(rc = get_template(ld, value, sub, names_none, false, false, "the sidecar's process name",
                              &rl->expect_comm)) &&
          strlen(rl->expect_comm) > COMM_MAX)
        rc = fail_value(ld, value, sub,
                        "is longer than %d bytes, expected at most %d (the kernel keeps only the first %d bytes "
                        "of a process name)",
                        COMM_MAX, COMM_MAX, COMM_MAX);
    } else {
      rc = get_template(ld, value, sub, names_sidecar, false, false, "text of the sidecar's command line",
                        &rl->expect_cmdline);
    }
  }
  return rc;
}

/* A reload mapping replaces the sidecar's reload settings as a whole: the
 * driver is read first, then only that driver's keys are accepted, so a
 * pidfile left over from an edit cannot silently do nothing. */
static int parse_reload(struct loader *ld, const struct br_ynode *node, const char *prefix,
                        const char *sidecar_name, struct br_reload_config *out) {
  int rc = want_map(ld, node, prefix, "a mapping such as {driver: docker}");
  if (rc)
    return rc;
  enum br_driver_kind driver = BR_DRIVER_DOCKER;
  const struct br_ynode *driver_node = br_ymap_get(node, "driver");
  char field[FIELD_RELOAD];
  if (driver_node) {
    join(field, sizeof field, prefix, "driver");
    const char *value;
    if ((rc = get_string(ld, driver_node, field, false, &value)))
      return rc;
    size_t i;
    for (i = 0; i < sizeof driver_names / sizeof *driver_names; i++)
      if (strcmp(value, driver_names[i]) == 0)
        break;
    if (i == sizeof driver_names / sizeof *driver_names)
      return fail_value(ld, driver_node, field, "is not a driver, expected docker, signal, exec or none");
    driver = (enum br_driver_kind)i;
  }
  const char *const *keys = driver == BR_DRIVER_DOCKER   ? reload_keys_docker
                            : driver == BR_DRIVER_SIGNAL ? reload_keys_signal
                            : driver == BR_DRIVER_EXEC   ? reload_keys_exec
                                                         : reload_keys_none;

  struct br_reload_config rl;
  if ((rc = reload_defaults(&rl, driver, sidecar_name)))
    return rc;
  for (size_t i = 0; i + 1 < node->n && !rc; i += 2) {
    const struct br_ynode *key = node->items[i], *value = node->items[i + 1];
    if (!in_list(key, reload_keys_all)) {
      rc = fail_key(ld, key, prefix, "unknown key", keys);
      break;
    }
    if (!in_list(key, keys)) {
      char what[64];
      snprintf(what, sizeof what, "not a key of driver %s", driver_names[driver]);
      rc = fail_key(ld, key, prefix, what, keys);
      break;
    }
    join(field, sizeof field, prefix, key->value);
    if (key_is(key, "container"))
      rc = get_template(ld, value, field, names_sidecar, false, false, "a container name", &rl.container);
    else if (key_is(key, "pidfile"))
      rc = get_template(ld, value, field, names_sidecar, true, false, "the path of a pidfile", &rl.pidfile);
    else if (key_is(key, "signal"))
      rc = get_signal(ld, value, field, &rl.signo);
    else if (key_is(key, "grace_ms"))
      rc = get_unsigned(ld, value, field, 0, 600000, &rl.grace_ms);
    else if (key_is(key, "timeout_ms"))
      rc = get_unsigned(ld, value, field, 1, 600000, &rl.timeout_ms);
    else if (key_is(key, "verify"))
      rc = get_bool(ld, value, field, &rl.verify);
    else if (key_is(key, "confirm"))
      rc = get_confirm(ld, value, field, &rl);
    else if (key_is(key, "expect"))
      rc = get_expect(ld, value, field, &rl);
    else if (key_is(key, "argv")) {
      if (!(rc = get_argv(ld, value, field, names_sidecar, &rl.argv)) && rl.argv.n == 0)
        rc = fail(ld, value, field, "empty list, expected the program and its arguments");
    }
  }
  if (!rc && driver == BR_DRIVER_SIGNAL && !rl.pidfile)
    rc = fail(ld, node, prefix,
              "driver signal needs pidfile, expected the path of the "
              "sidecar's pidfile");
  if (!rc && driver == BR_DRIVER_EXEC && rl.argv.n == 0)
    rc = fail(ld, node, prefix, "driver exec needs argv, expected the program and its arguments");
  if (rc) {
    reload_free(&rl);
    return rc;
  }
  reload_free(out);
  *out = rl;
  return 0;
}

static const char *const pipelock_keys[] = {"file", "mirror", "settle_ms", "validate", "reload", NULL};
static const char *const egress_keys[] = {"file", "settle_ms", "validate", "reload", NULL};

/* mirror is not NULL only for pipelock, the one sidecar this daemon may
 * remove hosts from. */
static int parse_sidecar(struct loader *ld, const struct br_ynode *node, struct br_sidecar_config *sc,
                         enum br_mirror_mode *mirror) {
  const char *name = br_sidecar_name(sc->which);
  int rc = want_map(ld, node, name, "a mapping of sidecar settings");
  if (rc)
    return rc;
  const char *const *keys = mirror ? pipelock_keys : egress_keys;
  char field[FIELD_SIDECAR];
  for (size_t i = 0; i + 1 < node->n && !rc; i += 2) {
    const struct br_ynode *key = node->items[i], *value = node->items[i + 1];
    if (!in_list(key, keys))
      return fail_key(ld, key, name, key_is(key, "mirror") ? "only pipelock has a mirror mode" : "unknown key",
                      keys);
    join(field, sizeof field, name, key->value);
    if (key_is(key, "file")) {
      rc = get_template(ld, value, field, names_sidecar, true, false, "the path of the live file", &sc->file);
    } else if (key_is(key, "mirror")) {
      const char *mode;
      if ((rc = get_string(ld, value, field, false, &mode)))
        break;
      if (strcmp(mode, "additive") == 0)
        *mirror = BR_MIRROR_ADDITIVE;
      else if (strcmp(mode, "prune") == 0)
        *mirror = BR_MIRROR_PRUNE;
      else
        rc = fail_value(ld, value, field, "is not a mirror mode, expected additive or prune");
    } else if (key_is(key, "settle_ms")) {
      rc = get_unsigned(ld, value, field, 0, 60000, &sc->settle_ms);
    } else if (key_is(key, "validate")) {
      if ((rc = get_argv(ld, value, field, names_validate, &sc->validate)))
        break;
      /* A validator that is not given the staged file checks something
       * else and would pass every write. */
      bool names_file = sc->validate.n == 0;
      for (size_t w = 0; w < sc->validate.n && !names_file; w++)
        names_file = strstr(sc->validate.v[w], "{file}") != NULL;
      if (!names_file)
        rc = fail(ld, value, field, "no argument contains {file}, expected the staged file's path as \"{file}\"");
    } else if (key_is(key, "reload")) {
      rc = parse_reload(ld, value, field, name, &sc->reload);
    }
  }
  return rc;
}

static const char *const backoff_keys[] = {"initial_ms", "max_ms", NULL};
static const char *const limits_keys[] = {"max_file_bytes", "max_routes", "max_paths", NULL};

static int parse_backoff(struct loader *ld, const struct br_ynode *node, struct br_config *cfg) {
  int rc = want_map(ld, node, "backoff", "a mapping such as {initial_ms: 100, max_ms: 30000}");
  for (size_t i = 0; i + 1 < node->n && !rc; i += 2) {
    const struct br_ynode *key = node->items[i], *value = node->items[i + 1];
    if (key_is(key, "initial_ms")) {
      ld->backoff_initial = value;
      rc = get_unsigned(ld, value, "backoff.initial_ms", 1, 3600000, &cfg->backoff_initial_ms);
    } else if (key_is(key, "max_ms")) {
      ld->backoff_max = value;
      rc = get_unsigned(ld, value, "backoff.max_ms", 1, 86400000, &cfg->backoff_max_ms);
    } else {
      rc = fail_key(ld, key, "backoff", "unknown key", backoff_keys);
    }
  }
  return rc;
}

static int parse_limits(struct loader *ld, const struct br_ynode *node, struct br_config *cfg) {
  int rc = want_map(ld, node, "limits", "a mapping such as {max_file_bytes: 1048576}");
  for (size_t i = 0; i + 1 < node->n && !rc; i += 2) {
    const struct br_ynode *key = node->items[i], *value = node->items[i + 1];
    if (key_is(key, "max_file_bytes"))
      rc = get_size(ld, value, "limits.max_file_bytes", 1, 64 * 1024 * 1024, &cfg->max_file_bytes);
    else if (key_is(key, "max_routes"))
      rc = get_size(ld, value, "limits.max_routes", 1, 1000000, &cfg->max_routes);
    else if (key_is(key, "max_paths"))
      rc = get_size(ld, value, "limits.max_paths", 1, 1000000, &cfg->max_paths);
    else
      rc = fail_key(ld, key, "limits", "unknown key", limits_keys);
  }
  return rc;
}

/* "FILE:LINE:COLUMN" of node, for a message that names the rule it sets. */
static int where(const struct loader *ld, const struct br_ynode *node, char **out) {
  struct br_buf at;
  br_buf_init(&at, PATH_MAX + 64);
  int rc = br_buf_printf(&at, "%s:%zu:%zu", ld->name, node->line, node->column);
  if (!rc && !(*out = br_buf_steal(&at)))
    rc = -ENOMEM;
  br_buf_free(&at);
  return rc;
}

static const char *const source_keys[] = {"path", "may_bind_credentials", "may_allow_every_path", "max_routes",
                                          NULL};

/* A source written as a mapping: its path and what its fragments may say. */
static int parse_source_map(struct loader *ld, const struct br_ynode *node, const char *field, char **dir,
                            struct br_source_rules *rules) {
  int rc = 0;
  const struct br_ynode *path = NULL;
  char sub[FIELD_ITEM];
  for (size_t i = 0; i + 1 < node->n && !rc; i += 2) {
    const struct br_ynode *key = node->items[i], *value = node->items[i + 1];
    if (!in_list(key, source_keys))
      return fail_key(ld, key, field, "unknown key", source_keys);
    join(sub, sizeof sub, field, key->value);
    if (key_is(key, "path")) {
      path = value;
      rc = get_template(ld, value, sub, names_source, true, false,
                        "a directory template such as \"{state_dir}/{slug}/routes.d\"", dir);
    } else if (key_is(key, "may_bind_credentials")) {
      if (!(rc = get_bool(ld, value, sub, &rules->may_bind_credentials)))
        rc = where(ld, value, &rules->bind_at);
    } else if (key_is(key, "may_allow_every_path")) {
      if (!(rc = get_bool(ld, value, sub, &rules->may_allow_every_path)))
        rc = where(ld, value, &rules->every_path_at);
    } else if (!(rc = get_size(ld, value, sub, 1, 1000000, &rules->max_routes))) {
      rc = where(ld, value, &rules->max_routes_at);
    }
  }
  if (!rc && !path)
    rc = fail(ld, node, field, "no path, expected the source directory as path: \"...\"");
  return rc;
}

/* One sources entry: a directory template, or a mapping with its rules. */
static int parse_source(struct loader *ld, const struct br_ynode *node, const char *field, char **dir,
                        struct br_source_rules *rules) {
  *rules = (struct br_source_rules){.may_bind_credentials = true, .may_allow_every_path = true};
  if (node->kind == BR_YNODE_MAP && !node->flow)
    return parse_source_map(ld, node, field, dir, rules);
  /* A flow mapping is a source with rules when it names one of their keys;
   * else it is most likely the unquoted template "{state_dir}/...", which
   * get_string explains. */
  for (size_t i = 0; node->kind == BR_YNODE_MAP && i < node->n; i += 2)
    if (in_list(node->items[i], source_keys))
      return parse_source_map(ld, node, field, dir, rules);
  return get_template(ld, node, field, names_source, true, false,
                      "a directory template such as \"{state_dir}/{slug}/routes.d\"", dir);
}

static int parse_sources(struct loader *ld, const struct br_ynode *node, struct br_config *cfg) {
  if (node->kind != BR_YNODE_SEQ)
    return fail(ld, node, "sources", "got %s, expected a list of directory templates", br_ynode_describe(node));
  if (node->n == 0)
    return fail(ld, node, "sources", "empty list, expected at least one source directory");
  if (node->n > CONFIG_MAX_SOURCES)
    return fail(ld, node, "sources", "%zu sources, expected at most %d", node->n, CONFIG_MAX_SOURCES);
  struct br_strv sources;
  br_strv_init(&sources);
  struct br_source_rules *rules = calloc(node->n, sizeof *rules);
  int rc = rules ? 0 : -ENOMEM;
  for (size_t i = 0; i < node->n && !rc; i++) {
    char field[32];
    snprintf(field, sizeof field, "sources[%zu]", i);
    char *dir = NULL;
    const struct br_ynode *item = node->items[i];
    if ((rc = parse_source(ld, item, field, &dir, &rules[i]))) {
      free(dir);
      break;
    }
    /* The same directory twice would merge every fragment in it twice;
     * harmless, but never what was meant. */
    const struct br_ynode *path = item->kind == BR_YNODE_MAP ? br_ymap_get(item, "path") : item;
    if (br_strv_contains(&sources, dir))
      rc = fail_value(ld, path, field, "is listed twice, expected each source once");
    else
      rc = br_strv_add(&sources, dir);
    free(dir);
  }
  if (rc) {
    source_rules_free(rules, node->n);
    br_strv_free(&sources);
    return rc;
  }
  source_rules_free(cfg->source_rules, cfg->sources.n);
  br_strv_free(&cfg->sources);
  cfg->sources = sources;
  cfg->source_rules = rules;
  return 0;
}

/* ---- policy ------------------------------------------------------------- */

#define POLICY_MAX_ENTRIES 1024
#define HOST_MAX 253

/* A host name as fragments write it, lowered into out (HOST_MAX + 1 bytes):
 * labels of letters, digits and "-", 1 to 63 long, at most 253 in all. The
 * fragment reader's rules are stricter still; this is enough for a rule
 * that names a host to be able to match one. Returns what is wrong, or NULL. */
static const char *host_name_check(const char *s, char *out) {
  size_t len = strlen(s);
  if (len == 0 || len > HOST_MAX)
    return len ? "is longer than 253 characters" : "is empty";
  size_t label = 0;
  for (size_t i = 0; i <= len; i++) {
    char c = i < len ? s[i] : '.';
    if (c >= 'A' && c <= 'Z')
      c = (char)(c - 'A' + 'a');
    if (c == '.') {
      if (label == 0 || label > 63)
        return "has an empty label or one longer than 63 characters";
      if (out[i - 1] == '-' || out[i - label] == '-')
        return "has a label that starts or ends with \"-\"";
      label = 0;
    } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-') {
      label++;
    } else {
      return "contains a character other than letters, digits, \"-\" and \".\"";
    }
    out[i] = i < len ? c : '\0';
  }
  return NULL;
}

/* A token_env name, as fragments write it: [A-Z_][A-Z0-9_]*. */
static bool token_env_ok(const char *s) {
  size_t len = strlen(s);
  return len > 0 && len <= 128 && !(s[0] >= '0' && s[0] <= '9') &&
         strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == len;
}

/* A list of strings for a policy key, each checked by item(). */
static int get_policy_list(struct loader *ld, const struct br_ynode *node, const char *field, const char *expected,
                           int (*item)(struct loader *, const struct br_ynode *, const char *, const char *,
                                       struct br_strv *, struct br_strv *),
                           struct br_strv *values, struct br_strv *at) {
  if (node->kind != BR_YNODE_SEQ)
    return fail(ld, node, field, "got %s, expected a list of %s", br_ynode_describe(node), expected);
  if (node->n > POLICY_MAX_ENTRIES)
    return fail(ld, node, field, "%zu entries, expected at most %d", node->n, POLICY_MAX_ENTRIES);
  int rc = 0;
  for (size_t i = 0; i < node->n && !rc; i++) {
    char sub[FIELD_ITEM + 96];
    snprintf(sub, sizeof sub, "%s[%zu]", field, i);
    const char *value;
    if (!(rc = get_string(ld, node->items[i], sub, false, &value)))
      rc = item(ld, node->items[i], sub, value, values, at);
  }
  return rc;
}

static int add_entry(struct loader *ld, const struct br_ynode *node, const char *field, const char *value,
                     struct br_strv *values, struct br_strv *at) {
  if (br_strv_contains(values, value))
    return fail_value(ld, node, field, "is listed twice, expected each entry once");
  char *pos = NULL;
  int rc = where(ld, node, &pos);
  if (!rc && !(rc = br_strv_add(values, value)))
    rc = br_strv_add(at, pos);
  free(pos);
  return rc;
}

/* "name" or "*.suffix", lowered. */
static int deny_host_item(struct loader *ld, const struct br_ynode *node, const char *field, const char *value,
                          struct br_strv *values, struct br_strv *at) {
  char lowered[HOST_MAX + 3];
  bool wildcard = strncmp(value, "*.", 2) == 0;
  const char *why = host_name_check(value + (wildcard ? 2 : 0), lowered + 2);
  if (why)
    return fail_value(ld, node, field, "%s, expected an exact host name, or \"*.\" and a host name", why);
  memcpy(lowered, "*.", 2);
  return add_entry(ld, node, field, lowered + (wildcard ? 0 : 2), values, at);
}

/* An exact host name, lowered. */
static int host_item(struct loader *ld, const struct br_ynode *node, const char *field, const char *value,
                     struct br_strv *values, struct br_strv *at) {
  char lowered[HOST_MAX + 1];
  const char *why = host_name_check(value, lowered);
  if (why)
    return fail_value(ld, node, field, "%s, expected an exact host name", why);
  return add_entry(ld, node, field, lowered, values, at);
}

static int deny_range_item(struct loader *ld, const struct br_ynode *node, const char *field, const char *value,
                           struct br_strv *values, struct br_strv *at) {
  struct br_cidr range;
  const char *why;
  if (br_cidr_parse(value, &range, &why))
    return fail_value(ld, node, field, "%s", why);
  return add_entry(ld, node, field, value, values, at);
}

static const char *const shared_keys[] = {"token_env", "hosts", NULL};

static int parse_shared_one(struct loader *ld, const struct br_ynode *node, const char *field,
                            const struct br_policy_config *p, struct br_shared_credential *out) {
  int rc =
      want_map(ld, node, field, "a mapping such as {token_env: EGRESS_TOKEN_9, hosts: [a.example, b.example]}");
  const struct br_ynode *env = NULL, *hosts = NULL;
  for (size_t i = 0; i + 1 < node->n && !rc; i += 2) {
    const struct br_ynode *key = node->items[i], *value = node->items[i + 1];
    char sub[FIELD_ITEM + 64];
    if (!in_list(key, shared_keys))
      return fail_key(ld, key, field, "unknown key", shared_keys);
    join(sub, sizeof sub, field, key->value);
    const char *name;
    if (key_is(key, "token_env") && !(rc = get_string(ld, env = value, sub, false, &name))) {
      if (!token_env_ok(name))
        rc = fail_value(ld, value, sub, "is not an environment variable name, expected [A-Z_][A-Z0-9_]*");
      for (size_t s = 0; s < p->n_shared && !rc; s++)
        if (strcmp(p->shared[s].token_env, name) == 0)
          rc = fail_value(ld, value, sub, "is shared already by the entry at %s, expected each token_env once",
                          p->shared[s].at);
      if (!rc && !(out->token_env = strdup(name)))
        rc = -ENOMEM;
    } else if (key_is(key, "hosts")) {
      struct br_strv at;
      br_strv_init(&at);
      hosts = value;
      if (!(rc = get_policy_list(ld, value, sub, "host names", host_item, &out->hosts, &at)) && out->hosts.n < 2)
        rc = fail(ld, value, sub, "%zu host%s, expected at least two (a credential for one host needs no sharing)",
                  out->hosts.n, out->hosts.n == 1 ? "" : "s");
      br_strv_free(&at);
    }
  }
  if (!rc && (!env || !hosts))
    rc = fail(ld, node, field, "missing %s, expected token_env and hosts", env ? "hosts" : "token_env");
  if (!rc)
    rc = where(ld, node, &out->at);
  return rc;
}

static int parse_shared(struct loader *ld, const struct br_ynode *node, struct br_policy_config *p) {
  static const char field[] = "policy.shared_credentials";
  if (node->kind != BR_YNODE_SEQ)
    return fail(ld, node, field, "got %s, expected a list of {token_env, hosts}", br_ynode_describe(node));
  if (node->n > POLICY_MAX_ENTRIES)
    return fail(ld, node, field, "%zu entries, expected at most %d", node->n, POLICY_MAX_ENTRIES);
  if (!(p->shared = calloc(node->n + 1, sizeof *p->shared)))
    return -ENOMEM;
  int rc = 0;
  for (size_t i = 0; i < node->n && !rc; i++) {
    char sub[FIELD_ITEM];
    snprintf(sub, sizeof sub, "%s[%zu]", field, i);
    br_strv_init(&p->shared[i].hosts);
    rc = parse_shared_one(ld, node->items[i], sub, p, &p->shared[i]);
    p->n_shared = i + 1; /* freed with the rest, parsed or not */
  }
  return rc;
}

static const char *const policy_keys[] = {"deny_hosts", "deny_ip_ranges", "max_routes_per_bottle",
                                          "shared_credentials", NULL};

/* policy: parsed into a fresh value, which replaces the defaults only whole. */
static int parse_policy(struct loader *ld, const struct br_ynode *node, struct br_config *cfg) {
  int rc = want_map(ld, node, "policy", "a mapping such as {deny_hosts: [metadata.google.internal]}");
  struct br_policy_config p;
  memset(&p, 0, sizeof p);
  for (size_t i = 0; i + 1 < node->n && !rc; i += 2) {
    const struct br_ynode *key = node->items[i], *value = node->items[i + 1];
    if (key_is(key, "deny_hosts")) {
      rc = get_policy_list(ld, value, "policy.deny_hosts", "host names or *.suffix patterns", deny_host_item,
                           &p.deny_hosts, &p.deny_hosts_at);
    } else if (key_is(key, "deny_ip_ranges")) {
      rc = get_policy_list(ld, value, "policy.deny_ip_ranges", "CIDR ranges", deny_range_item, &p.deny_ip_ranges,
                           &p.deny_ip_ranges_at);
    } else if (key_is(key, "max_routes_per_bottle")) {
      bool null = value->kind == BR_YNODE_SCALAR && br_yscalar_type(value) == BR_YNULL;
      if (!null &&
          !(rc = get_size(ld, value, "policy.max_routes_per_bottle", 1, 1000000, &p.max_routes_per_bottle)))
        rc = where(ld, value, &p.max_routes_per_bottle_at);
    } else if (key_is(key, "shared_credentials")) {
      rc = parse_shared(ld, value, &p);
    } else {
      rc = fail_key(ld, key, "policy", "unknown key", policy_keys);
    }
  }
  if (rc) {
    policy_free(&p);
    return rc;
  }
  policy_free(&cfg->policy);
  cfg->policy = p;
  return 0;
}

/* The root of everything else: no placeholders, absolute, and without the
 * trailing "/" that would double up in "{state_dir}/{slug}". */
static int parse_state_dir(struct loader *ld, const struct br_ynode *node, struct br_config *cfg) {
  char *dir = NULL;
  int rc = get_template(ld, node, "state_dir", names_none, false, false,
                        "an absolute directory such as /var/lib/bot-bottle/state", &dir);
  if (rc)
    return rc;
  if (dir[0] != '/') {
    free(dir);
    return fail_value(ld, node, "state_dir", "is a relative path, expected an absolute path");
  }
  size_t len = strlen(dir);
  while (len > 1 && dir[len - 1] == '/')
    dir[--len] = '\0';
  free(cfg->state_dir);
  cfg->state_dir = dir;
  return 0;
}

/* One follow_symlinks entry: an absolute directory, named as the paths
 * under it will be (no ".", "..", or doubled "/"), below "/" (following
 * symlinks everywhere would turn the rule off, not make an exception). */
static const char *follow_dir_check(const char *dir) {
  if (dir[0] != '/')
    return "is a relative path, expected an absolute directory";
  if (!dir[1])
    return "is the root directory, expected a directory below it (the exception must be narrow)";
  for (const char *c = dir; *c; c++)
    if (c[0] == '/' &&
        (c[1] == '/' || (c[1] == '.' && (c[2] == '/' || !c[2] || (c[2] == '.' && (c[3] == '/' || !c[3]))))))
      return "has an empty, \".\" or \"..\" component, expected a plain absolute directory";
  return NULL;
}

static int parse_follow_symlinks(struct loader *ld, const struct br_ynode *node, struct br_config *cfg) {
  if (node->kind != BR_YNODE_SEQ)
    return fail(ld, node, "follow_symlinks", "got %s, expected a list of absolute directories",
                br_ynode_describe(node));
  if (node->n > CONFIG_MAX_FOLLOW)
    return fail(ld, node, "follow_symlinks", "%zu directories, expected at most %d", node->n, CONFIG_MAX_FOLLOW);
  struct br_strv dirs;
  br_strv_init(&dirs);
  int rc = 0;
  for (size_t i = 0; i < node->n && !rc; i++) {
    char field[48];
    snprintf(field, sizeof field, "follow_symlinks[%zu]", i);
    char *dir = NULL;
    const char *why;
    if ((rc = get_template(ld, node->items[i], field, names_none, false, false, "an absolute directory", &dir)))
      break;
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/')
      dir[--len] = '\0';
    if ((why = follow_dir_check(dir)))
      rc = fail_value(ld, node->items[i], field, "%s", why);
    else if (br_strv_contains(&dirs, dir))
      rc = fail_value(ld, node->items[i], field, "is listed twice, expected each directory once");
    else
      rc = br_strv_add(&dirs, dir);
    free(dir);
  }
  if (rc) {
    br_strv_free(&dirs);
    return rc;
  }
  br_strv_free(&cfg->follow_symlinks);
  cfg->follow_symlinks = dirs;
  return 0;
}

static const char *const top_keys[] = {
    "state_dir", "sources", "debounce_ms", "max_wait_ms",     "resync_interval_s",
    "workers",   "backoff", "limits",      "audit_log",       "metrics_file",
    "pipelock",  "egress",  "policy",      "follow_symlinks", NULL};

static int apply(struct loader *ld, const struct br_ynode *root, struct br_config *cfg) {
  for (size_t i = 0; i + 1 < root->n; i += 2) {
    const struct br_ynode *key = root->items[i], *value = root->items[i + 1];
    int rc;
    if (key_is(key, "state_dir"))
      rc = parse_state_dir(ld, value, cfg);
    else if (key_is(key, "sources"))
      rc = parse_sources(ld, value, cfg);
    else if (key_is(key, "debounce_ms"))
      rc = get_unsigned(ld, ld->debounce = value, "debounce_ms", 0, 60000, &cfg->debounce_ms);
    else if (key_is(key, "max_wait_ms"))
      rc = get_unsigned(ld, ld->max_wait = value, "max_wait_ms", 0, 3600000, &cfg->max_wait_ms);
    else if (key_is(key, "resync_interval_s"))
      rc = get_unsigned(ld, value, "resync_interval_s", 0, 604800, &cfg->resync_interval_s);
    else if (key_is(key, "workers"))
      rc = get_unsigned(ld, value, "workers", 1, 256, &cfg->workers);
    else if (key_is(key, "backoff"))
      rc = parse_backoff(ld, value, cfg);
    else if (key_is(key, "limits"))
      rc = parse_limits(ld, value, cfg);
    else if (key_is(key, "audit_log"))
      rc = get_template(ld, value, "audit_log", names_global, true, false, "the path of the audit log",
                        &cfg->audit_log);
    else if (key_is(key, "metrics_file"))
      rc = get_template(ld, value, "metrics_file", names_global, true, true,
                        "the path of a Prometheus textfile, or null", &cfg->metrics_file);
    else if (key_is(key, "pipelock"))
      rc = parse_sidecar(ld, value, &cfg->pipelock, &cfg->mirror);
    else if (key_is(key, "egress"))
      rc = parse_sidecar(ld, value, &cfg->egress, NULL);
    else if (key_is(key, "policy"))
      rc = parse_policy(ld, value, cfg);
    else if (key_is(key, "follow_symlinks"))
      rc = parse_follow_symlinks(ld, value, cfg);
    else
      rc = fail_key(ld, key, "", "unknown key", top_keys);
    if (rc)
      return rc;
  }

  /* Settings that bound each other, checked once both are known. */
  if (cfg->backoff_initial_ms > cfg->backoff_max_ms) {
    if (ld->backoff_initial)
      return fail_value(ld, ld->backoff_initial, "backoff.initial_ms",
                        "is larger than backoff.max_ms (%u), expected at most %u", cfg->backoff_max_ms,
                        cfg->backoff_max_ms);
    return fail_value(ld, ld->backoff_max, "backoff.max_ms",
                      "is smaller than backoff.initial_ms (%u), expected at least %u", cfg->backoff_initial_ms,
                      cfg->backoff_initial_ms);
  }
  if (cfg->max_wait_ms < cfg->debounce_ms) {
    if (ld->max_wait)
      return fail_value(ld, ld->max_wait, "max_wait_ms", "is less than debounce_ms (%u), expected at least %u",
                        cfg->debounce_ms, cfg->debounce_ms);
    return fail_value(ld, ld->debounce, "debounce_ms", "is more than max_wait_ms (%u), expected at most %u",
                      cfg->max_wait_ms, cfg->max_wait_ms);
  }
  return 0;
}

/* Reads the whole file through fileio's bounded read and words its errors
 * for the person who named the file. */
static int read_config(const char *path, struct br_buf *text, struct br_buf *err) {
  int rc = br_file_read(path, CONFIG_MAX_BYTES, false, text);
  if (rc == -EFBIG)
    br_diag(err, path, 1, 1, "(file)", "more than %d bytes, expected at most %d", CONFIG_MAX_BYTES,
            CONFIG_MAX_BYTES);
  else if (rc == -EINVAL || rc == -EISDIR)
    br_buf_printf(err, "%s: not a regular file, expected a YAML file\n", path);
  else if (rc && rc != -ENOMEM)
    br_buf_printf(err, "%s: cannot read: %s\n", path, strerror(-rc));
  return rc;
}

int br_config_load(struct br_config *cfg, const char *path, struct br_buf *err) {
  int rc = br_config_defaults(cfg);
  if (rc || !path)
    return rc;
  struct br_buf text;
  br_buf_init(&text, CONFIG_MAX_BYTES);
  struct br_ynode *root = NULL;
  const struct br_yopts opts = {
      .max_bytes = CONFIG_MAX_BYTES, .max_depth = CONFIG_MAX_DEPTH, .max_nodes = CONFIG_MAX_NODES};
  rc = read_config(path, &text, err);
  if (!rc)
    rc = br_ydoc_parse(path, br_buf_str(&text), text.len, &opts, &root, err);
  /* No document, or a lone "---" or "~", means "all defaults". */
  bool empty = !root || (root->kind == BR_YNODE_SCALAR && br_yscalar_type(root) == BR_YNULL);
  if (!rc && !empty) {
    struct loader ld = {.name = path, .err = err};
    if (root->kind != BR_YNODE_MAP)
      rc = fail(&ld, root, "(document)", "got %s, expected a mapping of settings", br_ynode_describe(root));
    else
      rc = apply(&ld, root, cfg);
  }
  br_ynode_free(root);
  br_buf_free(&text);
  if (rc)
    br_config_free(cfg);
  return rc;
}

/* ---- formatting --------------------------------------------------------- */

static int add_list(struct br_buf *out, const struct br_strv *list) {
  int rc = br_buf_adds(out, "[");
  for (size_t i = 0; i < list->n && !rc; i++)
    if (!(rc = i ? br_buf_adds(out, ", ") : 0))
      rc = br_yaml_quote(out, list->v[i]);
  return rc ? rc : br_buf_adds(out, "]");
}

/* ", expect: {...}" with the keys that are set, in the order of expect_keys. */
static int add_expect(struct br_buf *out, const struct br_reload_config *rl) {
  const char *values[] = {rl->expect_exe, rl->expect_comm, rl->expect_cmdline};
  int rc = br_buf_adds(out, ", expect: {");
  const char *sep = "";
  for (size_t i = 0; i < sizeof values / sizeof *values && !rc; i++) {
    if (!values[i])
      continue;
    if (!(rc = br_buf_printf(out, "%s%s: ", sep, expect_keys[i])))
      rc = br_yaml_quote(out, values[i]);
    sep = ", ";
  }
  return rc ? rc : br_buf_adds(out, "}");
}

/* ", confirm: {...}": the file keys first, then the timeout. */
static int add_confirm(struct br_buf *out, const struct br_reload_config *rl) {
  const char *names[] = {"status_file", "log_file", "match"};
  const char *values[] = {rl->confirm_status_file, rl->confirm_log_file, rl->confirm_match};
  int rc = br_buf_adds(out, ", confirm: {");
  for (size_t i = 0; i < sizeof values / sizeof *values && !rc; i++)
    if (values[i] && !(rc = br_buf_printf(out, "%s: ", names[i])) && !(rc = br_yaml_quote(out, values[i])))
      rc = br_buf_adds(out, ", ");
  return rc ? rc : br_buf_printf(out, "timeout_ms: %u}", rl->confirm_timeout_ms);
}

static int add_sidecar(struct br_buf *out, const struct br_sidecar_config *sc, const enum br_mirror_mode *mirror) {
  const struct br_reload_config *rl = &sc->reload;
  int rc = br_buf_printf(out, "%s:\n  file: ", br_sidecar_name(sc->which));
  if (!rc)
    rc = br_yaml_quote(out, sc->file);
  if (!rc && mirror)
    rc = br_buf_printf(out, "\n  mirror: %s", *mirror == BR_MIRROR_PRUNE ? "prune" : "additive");
  if (!rc)
    rc = br_buf_printf(out, "\n  settle_ms: %u\n  validate: ", sc->settle_ms);
  if (!rc)
    rc = add_list(out, &sc->validate);
  if (!rc)
    rc = br_buf_printf(out, "\n  reload: {driver: %s", driver_names[rl->driver]);
  if (!rc && rl->driver == BR_DRIVER_DOCKER) {
    if (!(rc = br_buf_adds(out, ", container: ")))
      rc = br_yaml_quote(out, rl->container);
  }
  if (!rc && rl->driver == BR_DRIVER_SIGNAL) {
    if (!(rc = br_buf_adds(out, ", pidfile: ")))
      rc = br_yaml_quote(out, rl->pidfile);
  }
  if (!rc && (rl->driver == BR_DRIVER_DOCKER || rl->driver == BR_DRIVER_SIGNAL))
    rc = br_buf_printf(out, ", signal: %s, grace_ms: %u", br_signal_name(rl->signo), rl->grace_ms);
  /* The optional checks only when on, so the defaults read as DESIGN.md shows them. */
  if (!rc && rl->driver == BR_DRIVER_DOCKER && rl->verify)
    rc = br_buf_adds(out, ", verify: true");
  if (!rc && rl->driver == BR_DRIVER_SIGNAL && (rl->expect_exe || rl->expect_comm || rl->expect_cmdline))
    rc = add_expect(out, rl);
  if (!rc && rl->driver == BR_DRIVER_EXEC) {
    if (!(rc = br_buf_adds(out, ", argv: ")) && !(rc = add_list(out, &rl->argv)))
      rc = br_buf_printf(out, ", timeout_ms: %u", rl->timeout_ms);
  }
  if (!rc && rl->confirm_timeout_ms)
    rc = add_confirm(out, rl);
  return rc ? rc : br_buf_adds(out, "}\n");
}

/* A source with rules as the mapping that sets them; a plain one as its string. */
static int add_source(struct br_buf *out, const char *dir, const struct br_source_rules *rules) {
  bool plain = rules->may_bind_credentials && rules->may_allow_every_path && !rules->max_routes;
  int rc = plain ? 0 : br_buf_adds(out, "{path: ");
  if (!rc)
    rc = br_yaml_quote(out, dir);
  if (!rc && !rules->may_bind_credentials)
    rc = br_buf_adds(out, ", may_bind_credentials: false");
  if (!rc && !rules->may_allow_every_path)
    rc = br_buf_adds(out, ", may_allow_every_path: false");
  if (!rc && rules->max_routes)
    rc = br_buf_printf(out, ", max_routes: %zu", rules->max_routes);
  return rc || plain ? rc : br_buf_adds(out, "}");
}

static int add_sources(struct br_buf *out, const struct br_config *cfg) {
  int rc = br_buf_adds(out, "[");
  for (size_t i = 0; i < cfg->sources.n && !rc; i++)
    if (!(rc = i ? br_buf_adds(out, ", ") : 0))
      rc = add_source(out, cfg->sources.v[i], &cfg->source_rules[i]);
  return rc ? rc : br_buf_adds(out, "]");
}

/* The policy section, only the keys that are set: no policy, no section. */
static int add_policy(struct br_buf *out, const struct br_policy_config *p) {
  int rc = 0;
  if (!p->deny_hosts.n && !p->deny_ip_ranges.n && !p->max_routes_per_bottle && !p->n_shared)
    return 0;
  rc = br_buf_adds(out, "policy:\n");
  if (!rc && p->deny_hosts.n && !(rc = br_buf_adds(out, "  deny_hosts: ")) &&
      !(rc = add_list(out, &p->deny_hosts)))
    rc = br_buf_adds(out, "\n");
  if (!rc && p->deny_ip_ranges.n && !(rc = br_buf_adds(out, "  deny_ip_ranges: ")) &&
      !(rc = add_list(out, &p->deny_ip_ranges)))
    rc = br_buf_adds(out, "\n");
  if (!rc && p->max_routes_per_bottle)
    rc = br_buf_printf(out, "  max_routes_per_bottle: %zu\n", p->max_routes_per_bottle);
  if (!rc && p->n_shared)
    rc = br_buf_adds(out, "  shared_credentials:\n");
  for (size_t i = 0; i < p->n_shared && !rc; i++)
    if (!(rc = br_buf_printf(out, "    - {token_env: %s, hosts: ", p->shared[i].token_env)) &&
        !(rc = add_list(out, &p->shared[i].hosts)))
      rc = br_buf_adds(out, "}\n");
  return rc;
}

int br_config_format(const struct br_config *cfg, struct br_buf *out) {
  int rc = br_buf_adds(out, "state_dir: ");
  if (!rc)
    rc = br_yaml_quote(out, cfg->state_dir);
  if (!rc)
    rc = br_buf_adds(out, "\nsources: ");
  if (!rc)
    rc = add_sources(out, cfg);
  if (!rc)
    rc = br_buf_printf(out,
                       "\ndebounce_ms: %u\nmax_wait_ms: %u\nresync_interval_s: %u\nworkers: %u\n"
                       "backoff: {initial_ms: %u, max_ms: %u}\n"
                       "limits: {max_file_bytes: %zu, max_routes: %zu, max_paths: %zu}\n"
                       "audit_log: ",
                       cfg->debounce_ms, cfg->max_wait_ms, cfg->resync_interval_s, cfg->workers,
                       cfg->backoff_initial_ms, cfg->backoff_max_ms, cfg->max_file_bytes, cfg->max_routes,
                       cfg->max_paths);
  if (!rc)
    rc = br_yaml_quote(out, cfg->audit_log);
  if (!rc)
    rc = br_buf_adds(out, "\nmetrics_file: ");
  if (!rc)
    rc = cfg->metrics_file ? br_yaml_quote(out, cfg->metrics_file) : br_buf_adds(out, "null");
  if (!rc)
    rc = br_buf_adds(out, "\n");
  if (!rc)
    rc = add_sidecar(out, &cfg->pipelock, &cfg->mirror);
  if (!rc)
    rc = add_sidecar(out, &cfg->egress, NULL);
  if (!rc)
    rc = add_policy(out, &cfg->policy);
  /* Only when set, as the policy: the default reads as DESIGN.md shows it. */
  if (!rc && cfg->follow_symlinks.n && !(rc = br_buf_adds(out, "follow_symlinks: ")) &&
      !(rc = add_list(out, &cfg->follow_symlinks)))
    rc = br_buf_adds(out, "\n");
  return rc;
}

/* ---- expansion ---------------------------------------------------------- */

/* Slugs and project names end up inside paths and container names; one that
 * is not a single path component could point outside the bottle's directory. */
static bool is_component(const char *s) {
  return s && *s && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

const char *br_sidecar_name(enum br_sidecar sidecar) {
  static const char *const names[BR_SIDECAR_COUNT] = {
      [BR_SIDECAR_PIPELOCK] = "pipelock", [BR_SIDECAR_EGRESS] = "egress"};
  return (unsigned)sidecar < BR_SIDECAR_COUNT ? names[sidecar] : "?";
}

const struct br_sidecar_config *br_config_sidecar(const struct br_config *cfg, enum br_sidecar sidecar) {
  return sidecar == BR_SIDECAR_PIPELOCK ? &cfg->pipelock : &cfg->egress;
}

const char *br_config_sidecar_name(const struct br_config *cfg, const struct br_sidecar_config *sc) {
  return sc == &cfg->pipelock || sc == &cfg->egress ? br_sidecar_name(sc->which) : NULL;
}

static int expand(const struct br_config *cfg, const char *tmpl, const char *slug, const char *project,
                  const char *sidecar_name, const char *file, struct br_buf *out) {
  /* "" is never a slug or a project, so it means "not given", like NULL. */
  if (slug && !*slug)
    slug = NULL;
  if (!project || !*project)
    project = slug;
  if ((slug && !is_component(slug)) || (project && !is_component(project)))
    return -EINVAL;
  const char *values[] = {cfg->state_dir, slug, project, sidecar_name, file};
  return br_template_expand(tmpl, template_names, values, 5, out, NULL);
}

struct br_path_rule br_config_path_rule(const struct br_config *cfg) {
  return (struct br_path_rule){.root = cfg->state_dir, .follow = &cfg->follow_symlinks};
}

const struct br_path_rule *br_config_source_rule(const struct br_config *cfg, const char *dir,
                                                 const struct br_path_rule *rule) {
  size_t n = strlen(cfg->state_dir);
  return strncmp(dir, cfg->state_dir, n) == 0 && dir[n] == '/' ? rule : NULL;
}

int br_config_resolve_state_dir(struct br_config *cfg, struct br_buf *err) {
  char *real = realpath(cfg->state_dir, NULL);
  if (!real) {
    int rc = -errno;
    br_buf_printf(err, "state_dir %s: %s\n", cfg->state_dir, strerror(-rc));
    return rc;
  }
  free(cfg->state_dir);
  cfg->state_dir = real;
  br_open_under_reset(); /* the state directory may be another one now */
  return 0;
}

bool br_config_paths_use_project(const struct br_config *cfg) {
  for (size_t i = 0; i < cfg->sources.n; i++)
    if (strstr(cfg->sources.v[i], "{project}"))
      return true;
  return strstr(cfg->pipelock.file, "{project}") || strstr(cfg->egress.file, "{project}");
}

int br_config_expand(const struct br_config *cfg, const char *tmpl, const char *slug, const char *project,
                     struct br_buf *out) {
  return expand(cfg, tmpl, slug, project, NULL, NULL, out);
}

int br_config_expand_sidecar(const struct br_config *cfg, const struct br_sidecar_config *sc, const char *tmpl,
                             const char *slug, const char *project, const char *file, struct br_buf *out) {
  const char *name = br_config_sidecar_name(cfg, sc);
  if (!name)
    return -EINVAL;
  return expand(cfg, tmpl, slug, project, name, file, out);
}
