/* Unit tests for config/config: defaults, every validation rule (as data
 * files in tests/data/config), the example config and template expansion. */
#include "config/config.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

/* The whole of a small file, or NULL when it does not exist. */
static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  struct br_buf b;
  br_buf_init(&b, 1 << 20);
  char chunk[4096];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
    br_buf_add(&b, chunk, n);
  fclose(f);
  return br_buf_steal(&b);
}

static char *format(const struct br_config *cfg) {
  struct br_buf out;
  br_buf_init(&out, 1 << 20);
  CHECK(br_config_format(cfg, &out) == 0);
  return br_buf_steal(&out);
}

/* Loads the formatted config back; it must format to the same text. */
static void check_round_trip(const char *name, const char *text) {
  char path[] = "/tmp/br-test-config-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  if (fd < 0)
    return;
  CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
  close(fd);
  struct br_config cfg;
  struct br_buf err;
  br_buf_init(&err, 4096);
  int rc = br_config_load(&cfg, path, &err);
  if (rc) {
    fprintf(stderr, "%s: formatted config does not load: %s", name, err.data);
    check_failures++;
  } else {
    char *again = format(&cfg);
    if (strcmp(again, text) != 0) {
      fprintf(stderr, "%s: round trip differs:\n%s---\n%s", name, text, again);
      check_failures++;
    }
    free(again);
  }
  br_config_free(&cfg);
  br_buf_free(&err);
  unlink(path);
}

/* The values DESIGN.md's "Configuration" section gives, field by field. */
static void test_defaults(void) {
  struct br_config cfg;
  CHECK(br_config_defaults(&cfg) == 0);
  CHECK_STR(cfg.state_dir, "/var/lib/bot-bottle/state");
  CHECK(cfg.sources.n == 1);
  CHECK_STR(cfg.sources.v[0], "{state_dir}/{slug}/routes.d");
  CHECK(cfg.debounce_ms == 20);
  CHECK(cfg.max_wait_ms == 1000);
  CHECK(cfg.resync_interval_s == 300);
  CHECK(cfg.backoff_initial_ms == 100);
  CHECK(cfg.backoff_max_ms == 30000);
  CHECK(cfg.workers == 4);
  CHECK(cfg.max_file_bytes == 1048576);
  CHECK(cfg.max_routes == 4096);
  CHECK(cfg.max_paths == 1024);
  CHECK(cfg.mirror == BR_MIRROR_ADDITIVE);
  CHECK_STR(cfg.audit_log, "{state_dir}/.reconciler/audit.jsonl");
  CHECK(cfg.metrics_file == NULL);

  CHECK_STR(cfg.pipelock.file, "{state_dir}/{slug}/pipelock/pipelock.yaml");
  CHECK(cfg.pipelock.settle_ms == 150);
  CHECK(cfg.pipelock.validate.n == 0);
  CHECK(cfg.pipelock.reload.driver == BR_DRIVER_DOCKER);
  CHECK_STR(cfg.pipelock.reload.container, "{project}-pipelock-1");
  CHECK(cfg.pipelock.reload.signo == SIGHUP);
  CHECK(cfg.pipelock.reload.grace_ms == 2000);
  CHECK(cfg.pipelock.reload.pidfile == NULL);
  CHECK(cfg.pipelock.reload.argv.n == 0);

  CHECK_STR(cfg.egress.file, "{state_dir}/{slug}/egress/egress_routes.yaml");
  CHECK(cfg.egress.settle_ms == 0);
  CHECK(cfg.egress.validate.n == 0);
  CHECK(cfg.egress.reload.driver == BR_DRIVER_DOCKER);
  CHECK_STR(cfg.egress.reload.container, "{project}-egress-1");
  CHECK(cfg.egress.reload.signo == SIGHUP);
  CHECK(cfg.egress.reload.grace_ms == 2000);
  CHECK(!cfg.egress.reload.verify && !cfg.pipelock.reload.verify);
  CHECK(cfg.egress.reload.confirm_timeout_ms == 0 && cfg.pipelock.reload.confirm_timeout_ms == 0);
  /* No expect and no confirm file unless the file asks for them. */
  for (int s = 0; s < BR_SIDECAR_COUNT; s++) {
    const struct br_reload_config *rl = &br_config_sidecar(&cfg, (enum br_sidecar)s)->reload;
    CHECK(!rl->expect_exe && !rl->expect_comm && !rl->expect_cmdline);
    CHECK(!rl->confirm_status_file && !rl->confirm_log_file && !rl->confirm_match);
  }

  /* The defaults, written out, are the shape DESIGN.md shows. */
  char *text = format(&cfg);
  char *want = slurp("config/ok_empty.ok");
  CHECK(want != NULL);
  CHECK_STR(text, want);
  check_round_trip("defaults", text);
  free(want);
  free(text);
  br_config_free(&cfg);
  br_config_free(&cfg); /* a second free is harmless */
}

/* contrib/examples/bottle-reconciler.yaml documents every key at its default;
 * it must load and say exactly what the defaults say. */
static void test_example(void) {
  struct br_config cfg, defaults;
  struct br_buf err;
  br_buf_init(&err, 4096);
  int rc = br_config_load(&cfg, "../../contrib/examples/bottle-reconciler.yaml", &err);
  if (rc)
    fprintf(stderr, "example: %s", err.data ? err.data : "(no message)\n");
  CHECK(rc == 0);
  CHECK(br_config_defaults(&defaults) == 0);
  if (!rc) {
    char *got = format(&cfg), *want = format(&defaults);
    CHECK_STR(got, want);
    free(got);
    free(want);
  }
  br_config_free(&cfg);
  br_config_free(&defaults);
  br_buf_free(&err);
}

static void test_files(void) {
  struct br_config cfg;
  struct br_buf err;
  br_buf_init(&err, 4096);

  /* No path: the defaults, no message. */
  CHECK(br_config_load(&cfg, NULL, &err) == 0);
  CHECK(cfg.workers == 4 && err.len == 0);
  br_config_free(&cfg);

  CHECK(br_config_load(&cfg, "config/does-not-exist.yaml", &err) == -ENOENT);
  CHECK_STR(err.data, "config/does-not-exist.yaml: cannot read: No such file or directory\n");
  CHECK(cfg.state_dir == NULL); /* freed on error */
  br_config_free(&cfg);

  br_buf_reset(&err);
  CHECK(br_config_load(&cfg, "config", &err) == -EISDIR);
  CHECK_STR(err.data, "config: not a regular file, expected a YAML file\n");

  /* 64 KiB of comments is still refused: the bound is on bytes read. */
  char path[] = "/tmp/br-test-config-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  if (fd >= 0) {
    char line[64];
    memset(line, ' ', sizeof line);
    line[0] = '#';
    line[sizeof line - 1] = '\n';
    for (int i = 0; i < 1025; i++)
      CHECK(write(fd, line, sizeof line) == (ssize_t)sizeof line);
    close(fd);
    br_buf_reset(&err);
    CHECK(br_config_load(&cfg, path, &err) == -EFBIG);
    CHECK(err.data && strstr(err.data, ":1:1: (file): more than 65536 bytes, expected at most 65536\n"));
    /* One byte under the bound loads. */
    CHECK(truncate(path, 65536) == 0);
    br_buf_reset(&err);
    CHECK(br_config_load(&cfg, path, &err) == 0);
    br_config_free(&cfg);
    unlink(path);
  }
  br_buf_free(&err);
}

static void test_signals(void) {
  CHECK(br_signal_parse("HUP") == SIGHUP);
  CHECK(br_signal_parse("SIGHUP") == SIGHUP);
  CHECK(br_signal_parse("sigterm") == SIGTERM);
  CHECK(br_signal_parse("USR2") == SIGUSR2);
  CHECK(br_signal_parse("WINCH") == SIGWINCH);
  CHECK(br_signal_parse("USR1") == -EINVAL);
  CHECK(br_signal_parse("SIGUSR1") == -EINVAL);
  CHECK(br_signal_parse("KILL") == -EINVAL);
  CHECK(br_signal_parse("") == -EINVAL);
  CHECK(br_signal_parse("SIG") == -EINVAL);
  CHECK(br_signal_parse(NULL) == -EINVAL);
  CHECK_STR(br_signal_name(SIGHUP), "HUP");
  CHECK_STR(br_signal_name(SIGUSR2), "USR2");
  CHECK(br_signal_name(SIGKILL) == NULL);
  CHECK_STR(br_driver_name(BR_DRIVER_EXEC), "exec");
}

static void expect_expand(const struct br_config *cfg, const struct br_sidecar_config *sc, const char *tmpl,
                          const char *slug, const char *project, const char *file, int want_rc, const char *want) {
  struct br_buf out;
  br_buf_init(&out, 4096);
  int rc = sc ? br_config_expand_sidecar(cfg, sc, tmpl, slug, project, file, &out)
              : br_config_expand(cfg, tmpl, slug, project, &out);
  CHECK(rc == want_rc);
  if (!rc && want)
    CHECK_STR(br_buf_str(&out), want);
  br_buf_free(&out);
}

static void test_expand(void) {
  struct br_config cfg;
  CHECK(br_config_defaults(&cfg) == 0);
  expect_expand(&cfg, NULL, cfg.sources.v[0], "alpha", NULL, NULL, 0, "/var/lib/bot-bottle/state/alpha/routes.d");
  /* project falls back to the slug, as DESIGN.md says */
  expect_expand(&cfg, &cfg.egress, cfg.egress.reload.container, "alpha", NULL, NULL, 0, "alpha-egress-1");
  expect_expand(&cfg, &cfg.pipelock, cfg.pipelock.reload.container, "alpha", "compose7", NULL, 0,
                "compose7-pipelock-1");
  expect_expand(&cfg, &cfg.pipelock, "{sidecar}:{file}", "a", NULL, "/tmp/.x", 0, "pipelock:/tmp/.x");
  expect_expand(&cfg, NULL, cfg.audit_log, NULL, NULL, NULL, 0,
                "/var/lib/bot-bottle/state/.reconciler/audit.jsonl");
  /* values that are not given make their names unknown */
  expect_expand(&cfg, NULL, "{state_dir}/{slug}", NULL, NULL, NULL, -EINVAL, NULL);
  expect_expand(&cfg, NULL, "{sidecar}", "a", NULL, NULL, -EINVAL, NULL);
  expect_expand(&cfg, &cfg.egress, "{file}", "a", NULL, NULL, -EINVAL, NULL);
  /* a slug or project that is not one path component never reaches a path */
  expect_expand(&cfg, NULL, "{slug}", "..", NULL, NULL, -EINVAL, NULL);
  /* "" is "not given", as NULL is */
  expect_expand(&cfg, NULL, "{slug}", "", NULL, NULL, -EINVAL, NULL);
  expect_expand(&cfg, NULL, cfg.audit_log, "", "", NULL, 0, "/var/lib/bot-bottle/state/.reconciler/audit.jsonl");
  expect_expand(&cfg, NULL, "{project}", "alpha", "", NULL, 0, "alpha");
  expect_expand(&cfg, NULL, "{project}", "alpha", ".", NULL, -EINVAL, NULL);
  expect_expand(&cfg, NULL, "{slug}", "a", "../etc", NULL, -EINVAL, NULL);
  struct br_sidecar_config other = {0};
  expect_expand(&cfg, &other, "x", "a", NULL, NULL, -EINVAL, NULL);
  CHECK(br_config_sidecar_name(&cfg, &cfg.egress) != NULL);
  CHECK(br_config_sidecar_name(&cfg, &other) == NULL);
  br_config_free(&cfg);
}

static bool has_suffix(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Each NAME.yaml in tests/data/config comes with NAME.error, the exact
 * message br_config_load must give, or NAME.ok, the config it must load as
 * br_config_format writes it. Run from inside the directory so messages name
 * the file as a user who typed its name would see it. */
static void test_table(void) {
  if (chdir("config") != 0) {
    fprintf(stderr, "cannot enter tests/data/config: %s\n", strerror(errno));
    check_failures++;
    return;
  }
  DIR *dir = opendir(".");
  struct br_strv names;
  br_strv_init(&names);
  struct dirent *e;
  while (dir && (e = readdir(dir)))
    if (e->d_name[0] != '.')
      br_strv_add(&names, e->d_name);
  if (dir)
    closedir(dir);
  br_strv_sort(&names);
  size_t cases = 0;
  for (size_t i = 0; i < names.n; i++) {
    const char *name = names.v[i];
    size_t stem = strlen(name) - (has_suffix(name, ".yaml")    ? 5
                                  : has_suffix(name, ".error") ? 6
                                  : has_suffix(name, ".ok")    ? 3
                                                               : 0);
    char yaml[256], error[256], ok[256];
    snprintf(yaml, sizeof yaml, "%.*s.yaml", (int)stem, name);
    snprintf(error, sizeof error, "%.*s.error", (int)stem, name);
    snprintf(ok, sizeof ok, "%.*s.ok", (int)stem, name);
    if (stem == strlen(name) || !br_strv_contains(&names, yaml)) {
      fprintf(stderr, "config/%s: no matching .yaml case\n", name);
      check_failures++;
      continue;
    }
    if (strcmp(name, yaml) != 0)
      continue;
    char *want_error = slurp(error), *want_ok = slurp(ok);
    if (!want_error == !want_ok) {
      fprintf(stderr, "config/%s: needs exactly one of %s and %s\n", yaml, error, ok);
      check_failures++;
    }
    struct br_config cfg;
    struct br_buf err;
    br_buf_init(&err, 4096);
    int rc = br_config_load(&cfg, yaml, &err);
    cases++;
    if (want_error) {
      if (rc != -EINVAL || !err.data || strcmp(err.data, want_error) != 0) {
        fprintf(stderr, "config/%s: rc %d\n  got  %s  want %s", yaml, rc, err.data ? err.data : "(no message)\n",
                want_error);
        check_failures++;
      }
    } else if (want_ok) {
      if (rc) {
        fprintf(stderr, "config/%s: unexpected error: %s", yaml, err.data ? err.data : "?\n");
        check_failures++;
      } else {
        char *got = format(&cfg);
        if (strcmp(got, want_ok) != 0) {
          fprintf(stderr, "config/%s: loaded as\n%s--- want\n%s", yaml, got, want_ok);
          check_failures++;
        }
        check_round_trip(yaml, got);
        free(got);
      }
    }
    br_config_free(&cfg);
    br_buf_free(&err);
    free(want_error);
    free(want_ok);
  }
  CHECK(cases >= 60);
  br_strv_free(&names);
  CHECK(chdir("..") == 0);
}

/* Where the config file sets each policy and source rule: the messages of a
 * fragment that breaks one name the place. */
static void test_rule_positions(void) {
  struct br_config cfg;
  struct br_buf err;
  br_buf_init(&err, 4096);
  CHECK(br_config_load(&cfg, "config/ok_policy.yaml", &err) == 0);
  const struct br_policy_config *p = &cfg.policy;
  CHECK(p->deny_hosts.n == 3 && p->deny_hosts_at.n == 3);
  CHECK_STR(p->deny_hosts.v[1], "*.internal");
  CHECK_STR(p->deny_hosts_at.v[1], "config/ok_policy.yaml:8:42");
  CHECK(p->deny_ip_ranges_at.n == 4);
  CHECK_STR(p->deny_ip_ranges_at.v[0], "config/ok_policy.yaml:9:20");
  CHECK_STR(p->max_routes_per_bottle_at, "config/ok_policy.yaml:10:26");
  CHECK(p->n_shared == 2);
  CHECK_STR(p->shared[0].at, "config/ok_policy.yaml:12:7");
  CHECK_STR(p->shared[1].token_env, "SHARED");
  CHECK(cfg.sources.n == 3);
  const struct br_source_rules *plain = &cfg.source_rules[0], *git = &cfg.source_rules[1];
  CHECK(plain->may_bind_credentials && plain->may_allow_every_path && !plain->max_routes && !plain->bind_at);
  CHECK(!git->may_bind_credentials && !git->may_allow_every_path && git->max_routes == 50);
  CHECK_STR(git->bind_at, "config/ok_policy.yaml:4:56");
  CHECK_STR(git->every_path_at, "config/ok_policy.yaml:4:85");
  CHECK_STR(cfg.source_rules[2].max_routes_at, "config/ok_policy.yaml:6:17");
  CHECK(cfg.source_rules[2].may_bind_credentials);
  br_config_free(&cfg);
  br_buf_free(&err);
}

int main(void) {
  test_defaults();
  test_example();
  test_files();
  test_signals();
  test_expand();
  test_table();
  test_rule_positions();
  CHECK_DONE();
}
