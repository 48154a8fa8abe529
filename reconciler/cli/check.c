/* check: the `check` command: validates fragment files and their merge, or
 * every bottle of a GitOps repository tree, as a CI job or a person runs it
 * before publishing, and prints each finding for a person or for a CI
 * system. Reads only; it never converges, writes or asks the daemon. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/strmap.h"
#include "reconciler/bottle/desired.h"
#include "reconciler/cli/cli.h"
#include "reconciler/cli/repo.h"
#include "reconciler/model/merge.h"

/* One finding, located: FILE:LINE:COLUMN and what follows ("FIELD: message"). */
struct finding {
  const char *file;
  size_t file_len;
  unsigned long line, column;
  bool numbered; /* the line said where in the file: else it is about the whole file */
  const char *rest;
  size_t rest_len;
};

/* Reads "N:" at *p: 0 and *p past it, or -1. */
static int number(const char **p, unsigned long *out) {
  const char *s = *p;
  if (*s < '0' || *s > '9')
    return -1;
  char *end;
  errno = 0;
  unsigned long n = strtoul(s, &end, 10);
  if (errno || *end != ':')
    return -1;
  *out = n;
  *p = end + 1;
  return 0;
}

/* Splits one message line of the core into a finding. The file is the
 * longest of paths that starts the line and is followed by ':' (file names
 * may hold ':' themselves); the core writes "FILE:LINE:COLUMN: FIELD: msg"
 * for what it finds inside a file, "FILE:LINE: ..." for a merge conflict
 * (a route's origin) and "FILE: msg" for the file as a whole. */
static void locate(const char *text, size_t len, const struct br_strv *paths, struct finding *f) {
  *f = (struct finding){.file = text, .line = 1, .column = 1, .rest = text, .rest_len = len};
  for (size_t i = 0; paths && i < paths->n; i++) {
    size_t n = strlen(paths->v[i]);
    if (n > f->file_len && n < len && strncmp(text, paths->v[i], n) == 0 && text[n] == ':')
      f->file_len = n;
  }
  if (!f->file_len) {
    const char *colon = memchr(text, ':', len);
    f->file_len = colon ? (size_t)(colon - text) : 0;
  }
  if (!f->file_len)
    return; /* no location: the whole line is the message */
  const char *p = text + f->file_len + 1;
  unsigned long line, column;
  const char *q = p;
  if (number(&q, &line) == 0) {
    f->line = line;
    f->numbered = true;
    p = q;
    if (number(&q, &column) == 0) {
      f->column = column;
      p = q;
    }
  }
  while (*p == ' ')
    p++;
  f->rest = p;
  f->rest_len = len - (size_t)(p - text);
}

/* GitHub's workflow command escaping: the message loses its line breaks and
 * percent signs to %XX; a property value also its ':' and ','. */
static void github_escape(FILE *out, const char *s, size_t len, bool property) {
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    if (c == '%')
      fputs("%25", out);
    else if (c == '\r')
      fputs("%0D", out);
    else if (c == '\n')
      fputs("%0A", out);
    else if (property && c == ':')
      fputs("%3A", out);
    else if (property && c == ',')
      fputs("%2C", out);
    else
      fputc(c, out);
  }
}

/* Prints one finding: "FILE:LINE:COLUMN: FIELD: message" on stderr, or a
 * GitHub workflow annotation on stdout, where the runner reads them. A line
 * with no location in it keeps its words as they are. */
static void print_finding(const struct cli *cli, bool error, const char *text, size_t len,
                          const struct br_strv *paths) {
  struct finding f;
  locate(text, len, paths, &f);
  bool located = f.file_len > 0;
  /* A message about a whole file ("FILE: not a regular file", "FILE:
   * cannot read: ...") names no field: (file) stands for it, as in the
   * core's own size message. */
  bool fieldless = located && !f.numbered;
  if (!cli->github) {
    if (located)
      fprintf(stderr, "%.*s:%lu:%lu: %s%.*s\n", (int)f.file_len, f.file, f.line, f.column,
              fieldless ? "(file): " : "", (int)f.rest_len, f.rest);
    else
      fprintf(stderr, "%.*s\n", (int)len, text);
    return;
  }
  fputs(error ? "::error " : "::warning ", stdout);
  if (located) {
    fputs("file=", stdout);
    github_escape(stdout, f.file, f.file_len, true);
    printf(",line=%lu,col=%lu", f.line, f.column);
  }
  fputs("::", stdout);
  if (fieldless)
    fputs("(file): ", stdout);
  github_escape(stdout, f.rest, f.rest_len, false);
  fputc('\n', stdout);
}

/* Prints every line of text as a finding; seen (may be NULL) drops a line
 * printed before, as the same fragment seen in a fleet bottle and in a
 * host's merge of it. Returns how many were printed. */
static size_t print_findings(const struct cli *cli, bool error, const struct br_buf *text,
                             const struct br_strv *paths, struct br_strmap *seen) {
  size_t printed = 0;
  const char *p = br_buf_str(text);
  while (*p) {
    size_t n = strcspn(p, "\n");
    char *line = strndup(p, n);
    if (line && (!seen || !br_strmap_get(seen, line))) {
      if (seen)
        br_strmap_put(seen, line, seen);
      print_finding(cli, error, p, n, paths);
      printed++;
    }
    free(line);
    p += n + (p[n] == '\n');
  }
  return printed;
}

/* check FILE...: the files are one bottle's fragments in merge order. */
static int check_files(struct cli *cli, int argc, char **argv) {
  struct br_buf errors, warnings;
  br_buf_init(&errors, 1024 * 1024);
  br_buf_init(&warnings, 1024 * 1024);
  struct br_routes merged, declared;
  br_routes_init(&merged);
  br_routes_init(&declared);
  int bad = 0;
  size_t routes = 0;
  for (int i = 0; i < argc; i++) {
    struct br_routes r;
    br_routes_init(&r);
    /* Under the policy's rules, and each route kept as declared for the
     * credential rule across the files. */
    if (br_desired_check_new(&cli->cfg, argv[i], &r, &declared, &errors)) {
      bad++;
    } else {
      routes += r.n;
      /* The daemon's bound on the merged bottle applies to the files
       * together: each file alone under limits.max_routes says nothing
       * about the bottle they make. */
      int rc = br_merge_add(&merged, &r, argv[i], cli->cfg.max_routes, &warnings);
      if (rc == -E2BIG)
        br_buf_printf(&errors,
                      "%s:1:1: routes: takes the slug past %zu distinct hosts, "
                      "expected fewer routes across its fragments\n",
                      argv[i], cli->cfg.max_routes);
      if (rc)
        bad++;
    }
    br_routes_free(&r);
  }
  bad += br_desired_check_credentials(&cli->cfg, &declared, &errors) != 0; /* across the files */
  br_routes_free(&declared);
  struct br_strv paths = {.v = argv, .n = (size_t)argc};
  if (cli->github) {
    print_findings(cli, true, &errors, &paths, NULL);
    print_findings(cli, false, &warnings, &paths, NULL);
  } else {
    /* The plain form is as it always was: errors as the core wrote them,
     * each merge warning prefixed. */
    fputs(br_buf_str(&errors), stderr);
    print_indented(stderr, "warning: ", &warnings);
  }
  if (!bad)
    printf("%d fragment%s valid, %zu route%s, %zu host%s\n", argc, argc == 1 ? "" : "s", routes,
           routes == 1 ? "" : "s", merged.n, merged.n == 1 ? "" : "s");
  br_routes_free(&merged);
  br_buf_free(&errors);
  br_buf_free(&warnings);
  return bad ? 1 : 0;
}

/* check --tree DIR: every bottle the repository declares, loaded as the
 * daemon loads it (br_desired_load: discovery, the symlink rule, parsing,
 * the merge and its limits), fleet folders alone and each host's merge.
 * Within one repository a merge conflict is a finding too: the daemon
 * would silently keep the first auth, which is never what the second
 * fragment's author meant. */
static int check_tree(struct cli *cli) {
  struct br_repo repo;
  br_repo_init(&repo);
  struct br_buf layout;
  br_buf_init(&layout, 1024 * 1024);
  int rc = br_repo_scan(cli->tree, &repo, &layout);
  if (rc) {
    fprintf(stderr, "bottle-reconciler: --tree %s: %s\n", cli->tree, strerror(-rc));
    br_buf_free(&layout);
    br_repo_free(&repo);
    return 1;
  }
  struct br_strmap seen, fragments;
  br_strmap_init(&seen);
  br_strmap_init(&fragments);
  size_t findings = print_findings(cli, true, &layout, NULL, &seen);
  size_t bad_bottles = 0;
  for (size_t i = 0; i < repo.n; i++) {
    struct br_desired d;
    br_desired_init(&d);
    rc = br_desired_load(&cli->cfg, &repo.v[i].sources, &d);
    size_t before = findings;
    findings += print_findings(cli, true, &d.errors, &d.fragments, &seen);
    findings += print_findings(cli, true, &d.warnings, &d.fragments, &seen);
    if (rc && rc != -EINVAL && !d.errors.len) {
      /* An I/O failure with nothing said about it yet: a finding too, in
       * the same form, so that CI shows it where it shows the others. */
      struct br_buf line;
      br_buf_init(&line, 64 * 1024);
      br_buf_printf(&line, "%s:1:1: (folder): cannot read: %s\n", repo.v[i].sources.v[repo.v[i].sources.n - 1],
                    strerror(-rc));
      findings += print_findings(cli, true, &line, NULL, &seen);
      br_buf_free(&line);
    }
    bad_bottles += findings > before || (rc && rc != -EINVAL);
    for (size_t j = 0; j < d.fragments.n; j++)
      br_strmap_put(&fragments, d.fragments.v[j], &fragments);
    br_desired_free(&d);
  }
  size_t fleet = 0;
  for (size_t i = 0; i < repo.n; i++)
    fleet += !repo.v[i].host;
  if (findings)
    printf("%s: %zu finding%s, %zu of %zu bottle merge%s invalid\n", cli->tree, findings, findings == 1 ? "" : "s",
           bad_bottles, repo.n, repo.n == 1 ? "" : "s");
  else
    printf("%s: %zu bottle%s, %zu host folder%s (%zu host merge%s), %zu fragment%s, all valid\n", cli->tree, fleet,
           fleet == 1 ? "" : "s", repo.hosts, repo.hosts == 1 ? "" : "s", repo.n - fleet,
           repo.n - fleet == 1 ? "" : "s", fragments.n, fragments.n == 1 ? "" : "s");
  br_strmap_free(&seen);
  br_strmap_free(&fragments);
  br_buf_free(&layout);
  br_repo_free(&repo);
  return findings ? 1 : 0;
}

int cmd_check(struct cli *cli, int argc, char **argv) {
  if (cli->tree && argc)
    return usage_error("%s", "check takes FILE... or --tree DIR, not both");
  if (!cli->tree && argc == 0)
    return usage_error("%s", "check needs at least one FILE, or --tree DIR");
  if (load_config(cli, false))
    return 1;
  return cli->tree ? check_tree(cli) : check_files(cli, argc, argv);
}
