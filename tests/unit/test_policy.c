/* test_policy: the operator's policy on a bottle's routes, rule by rule, as
 * data under policy/ (run from tests/data). Each case directory is a bottle:
 *
 *   policy/CASE/config.yaml          the daemon config: its policy section and
 *                                    its sources (their rules)
 *   policy/CASE/S/NAME.yaml          the fragments of sources[S], merged source
 *                                    by source, names in byte order
 *   policy/CASE/expected-errors.txt  the messages, byte for byte (absent: the
 *                                    bottle is valid)
 *
 * Messages name files relative to the case directory, as "0/a.yaml" and
 * "config.yaml". The checks are br_policy_check_fragment on each fragment
 * and br_policy_check_bottle on the whole, as desired.c runs them. */
#include "reconciler/model/policy.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "common/fileio.h"
#include "config/config.h"
#include "reconciler/bottle/desired.h"
#include "reconciler/model/fragment.h"
#include "reconciler/model/merge.h"
#include <dirent.h>

#define MAX_FILE (1u << 20)

static int add_name(const char *name, unsigned char type, void *arg) {
  (void)type;
  return br_fragment_name_counts(name) ? br_strv_add(arg, name) : 0;
}

/* The fragments of source s: parsed, checked, remembered and merged. */
static void run_source(const struct br_config *cfg, const struct br_policy *p, size_t s,
                       struct br_routes *declared, struct br_routes *merged, struct br_buf *errors) {
  char dir[32];
  snprintf(dir, sizeof dir, "%zu", s);
  struct br_strv names;
  br_strv_init(&names);
  int rc = br_dir_each(dir, add_name, &names);
  CHECK(rc == 0 || rc == -ENOENT); /* a source with no fragments need not exist */
  br_strv_sort(&names);
  struct br_policy_source src;
  br_desired_source_policy(cfg, s, &src);
  size_t counted = 0;
  for (size_t i = 0; i < names.n; i++) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, names.v[i]);
    struct br_buf bytes;
    br_buf_init(&bytes, MAX_FILE);
    struct br_routes routes;
    br_routes_init(&routes);
    CHECK(br_file_read(path, MAX_FILE, false, &bytes) == 0);
    CHECK(br_fragment_parse(path, br_buf_str(&bytes), bytes.len, NULL, &routes, errors) == 0);
    rc = br_policy_check_fragment(p, &src, path, &routes, &counted, errors);
    CHECK(rc == 0 || rc == -EINVAL);
    for (size_t r = 0; r < routes.n; r++)
      CHECK(br_routes_append_copy(declared, &routes.v[r]) == 0);
    CHECK(br_merge_add(merged, &routes, path, 0, NULL) == 0);
    br_routes_free(&routes);
    br_buf_free(&bytes);
  }
  br_strv_free(&names);
}

static void run_case(const char *name) {
  char dir[256];
  snprintf(dir, sizeof dir, "policy/%s", name);
  if (chdir(dir) != 0) {
    fprintf(stderr, "%s: cannot enter\n", dir);
    check_failures++;
    return;
  }
  struct br_config cfg;
  struct br_buf errors, want;
  br_buf_init(&errors, MAX_FILE);
  br_buf_init(&want, MAX_FILE);
  int rc = br_config_load(&cfg, "config.yaml", &errors);
  if (rc) {
    fprintf(stderr, "%s: %s", dir, br_buf_str(&errors));
    check_failures++;
  }
  struct br_policy p;
  struct br_routes declared, merged;
  br_routes_init(&declared);
  br_routes_init(&merged);
  if (!rc && !(rc = br_desired_policy(&cfg, &p))) {
    for (size_t s = 0; s < cfg.sources.n; s++)
      run_source(&cfg, &p, s, &declared, &merged, &errors);
    int brc = br_policy_check_bottle(&p, &declared, &merged, &errors);
    CHECK(brc == 0 || brc == -EINVAL);
    br_desired_policy_free(&p);
  }
  int wrc = br_file_read("expected-errors.txt", MAX_FILE, false, &want);
  CHECK(wrc == 0 || wrc == -ENOENT);
  if (strcmp(br_buf_str(&errors), br_buf_str(&want)) != 0) {
    fprintf(stderr, "%s: messages differ; got:\n%s-- want:\n%s--\n", dir, br_buf_str(&errors), br_buf_str(&want));
    check_failures++;
  }
  br_routes_free(&declared);
  br_routes_free(&merged);
  br_buf_free(&errors);
  br_buf_free(&want);
  br_config_free(&cfg);
  CHECK(chdir("../..") == 0);
}

/* A bottle-wide check reports every broken binding, and the first binding
 * of a credential decides its host, whatever the order of hosts. */
static void test_order(void) {
  struct br_policy p = {0};
  struct br_routes declared;
  br_routes_init(&declared);
  const char *hosts[] = {"b.example", "a.example", "c.example"};
  for (size_t i = 0; i < 3; i++) {
    struct br_route *r = br_routes_append(&declared, hosts[i]);
    r->auth_scheme = strdup("Bearer");
    r->token_env = strdup("T");
    r->origin = strdup(i == 0 ? "x.yaml:2" : "y.yaml:5");
    r->column = 3;
    r->index = i;
  }
  struct br_buf errors;
  br_buf_init(&errors, 4096);
  CHECK(br_policy_check_bottle(&p, &declared, &declared, &errors) == -EINVAL);
  CHECK(strstr(br_buf_str(&errors),
               "y.yaml:5:3: routes[1].token_env: T is bound to b.example already (x.yaml:2:3)"));
  CHECK(strstr(br_buf_str(&errors), "y.yaml:5:3: routes[2].token_env: T is bound to b.example already"));
  /* A full buffer still refuses: the bottle is invalid, said or not. */
  struct br_buf tiny;
  br_buf_init(&tiny, 8);
  CHECK(br_policy_check_bottle(&p, &declared, &declared, &tiny) == -EINVAL);
  CHECK(tiny.len == 0);
  br_buf_free(&tiny);
  br_buf_free(&errors);
  br_routes_free(&declared);
}

int main(void) {
  struct br_strv cases;
  br_strv_init(&cases);
  DIR *d = opendir("policy");
  CHECK(d != NULL);
  struct dirent *e;
  while (d && (e = readdir(d)))
    if (e->d_name[0] != '.')
      br_strv_add(&cases, e->d_name);
  if (d)
    closedir(d);
  br_strv_sort(&cases);
  for (size_t i = 0; i < cases.n; i++)
    run_case(cases.v[i]);
  CHECK(cases.n >= 15);
  br_strv_free(&cases);
  test_order();
  CHECK_DONE();
}
