/* trust: `trust-record SLUG`, the operator vouching for a bottle's
 * added-hosts record (records.h says what the signature protects). */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <unistd.h>

#include "reconciler/bottle/audit.h"
#include "reconciler/bottle/records.h"
#include "reconciler/bottle/slug.h"
#include "reconciler/cli/cli.h"

/* The audit record: who vouched for which hosts. */
static void audit_trust(struct cli *cli, const char *slug, const struct br_strv *hosts) {
  json_t *list = json_array(), *names = json_array();
  json_t *rec = br_audit_record(list, slug, BR_SIDECAR_PIPELOCK, "");
  json_object_del(rec, "file");
  json_object_set_new(rec, "event", json_string("trust-record"));
  json_object_set_new(rec, "actor", json_string(cli_actor(cli)));
  for (size_t i = 0; i < hosts->n; i++)
    json_array_append_new(names, json_string(hosts->v[i]));
  json_object_set_new(rec, "hosts_trusted", names);
  write_audit(cli, list);
  json_decref(list);
}

/* --json: one document, signed or not, for a dashboard to show. */
static void print_json(const char *slug, int rc, const struct br_strv *hosts, const struct br_buf *err) {
  json_t *list = json_array();
  for (size_t i = 0; i < hosts->n; i++)
    json_array_append_new(list, json_string(hosts->v[i]));
  json_t *doc = json_pack("{s:s, s:s, s:s, s:o}", "command", "trust-record", "slug", slug, "outcome",
                          rc ? "not signed" : "signed", "hosts", list);
  if (doc)
    json_object_set_new(doc, "error", rc ? json_string(br_buf_str(err)) : json_null());
  char *text = doc ? json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
  if (text)
    printf("%s\n", text);
  free(text);
  json_decref(doc);
}

static void print_text(const char *slug, int rc, const struct br_strv *hosts, const struct br_buf *err) {
  if (rc) {
    fputs(br_buf_str(err), stderr);
    return;
  }
  printf("%s: added-hosts record signed; prune mode may remove %zu host%s no route needs:\n", slug, hosts->n,
         hosts->n == 1 ? "" : "s");
  for (size_t i = 0; i < hosts->n; i++)
    printf("  %s\n", hosts->v[i]);
}

/* Under the bottle's lock, as a converge rewrites the record under it. */
int cmd_trust_record(struct cli *cli, int argc, char **argv) {
  if (argc != 1)
    return usage_error("%s", "trust-record takes one SLUG");
  const char *slug = argv[0];
  if (!br_slug_valid(slug)) {
    fprintf(stderr, "bottle-reconciler: \"%s\" is not a valid slug, expected [A-Za-z0-9][A-Za-z0-9_.-]*\n", slug);
    return 1;
  }
  if (load_config(cli, true))
    return 1;
  struct br_buf dir, err;
  br_buf_init(&dir, PATH_MAX);
  br_buf_init(&err, 64 * 1024);
  br_buf_printf(&dir, "%s/%s", cli->cfg.state_dir, slug);
  int lockfd = open(dir.data, O_RDONLY | O_DIRECTORY | O_CLOEXEC); /* a bottle gone: no converge to wait for */
  if (lockfd >= 0)
    flock(lockfd, LOCK_EX);
  struct br_strv hosts;
  br_strv_init(&hosts);
  int rc = br_record_added_trust(cli->cfg.state_dir, slug, &hosts, &err);
  if (lockfd >= 0)
    close(lockfd);
  if (!rc)
    audit_trust(cli, slug, &hosts);
  if (cli->json)
    print_json(slug, rc, &hosts, &err);
  else
    print_text(slug, rc, &hosts, &err);
  br_strv_free(&hosts);
  br_buf_free(&dir);
  br_buf_free(&err);
  return rc ? 1 : 0;
}
