/* bottle: one bottle's record: the facts that the config and the bottle's
 * state directory decide (its directory, compose project, source
 * directories, live files). br_bottle_derive is the one place that expands
 * those templates and br_bottle_project the one that reads metadata.json;
 * every other file asks the record. */
#ifndef BR_RECONCILER_BOTTLE_BOTTLE_H
#define BR_RECONCILER_BOTTLE_BOTTLE_H

#include <stdbool.h>

#include "common/buf.h"
#include "common/strv.h"
#include "config/config.h"
#include "reconciler/bottle/slug.h"

struct br_bottle {
  const struct br_config *cfg;  /* borrowed: the config it was derived under */
  const char *slug;             /* the tail of dir ("" until derived): the daemon keeps a
                                   record per bottle, 10,000 of them, so no copy of its own */
  char *dir;                    /* STATE/<slug>: the bottle exists iff this directory does */
  struct br_strv sources;       /* source directories, in merge order: sources.v[i] is
                                   cfg->sources.v[i] expanded, so its rules (what its
                                   fragments may say) are cfg->source_rules[i] */
  char *live[BR_SIDECAR_COUNT]; /* each sidecar's live file */
  /* compose_project of metadata.json, else the slug. Read when first asked
   * (br_bottle_project): most converges find nothing to do and never need
   * it; read by br_bottle_derive when a path names {project}. */
  char *project;
  bool project_read;
  /* Why the bottle's compose project may not be used, a line for the
   * operator, or NULL: a metadata.json that is a symlink, or a project that
   * belongs to another bottle (br_bottle_project_owned). Owned. */
  char *refusal;
};

/* Derives slug's record under cfg. Returns 0, -EINVAL for a slug that is not
 * valid (or a path template that cannot name it), or -ENOMEM/-EFBIG.
 * Problems with metadata.json are lines in warnings (the slug is used). Call
 * br_bottle_free() in either case. */
int br_bottle_derive(struct br_bottle *b, const struct br_config *cfg, const char *slug, struct br_buf *warnings);
void br_bottle_free(struct br_bottle *b);

/* The bottle's compose project, read from STATE/<slug>/metadata.json the
 * first time it is asked for, opened under the config's path rule (no
 * symlink in any component, the file itself neither). NULL when memory ran
 * out, or when the project is refused: b->refusal then says why (a
 * metadata.json that is a symlink: its content is never read or quoted). */
const char *br_bottle_project(struct br_bottle *b, struct br_buf *warnings);

/* Whether the bottle's compose project is its own: a project names the
 * containers its reloads signal, so it belongs to one bottle only.
 *   - the slug itself always is the bottle's own (the default project);
 *   - another bottle's slug is not (that bottle's default project), while
 *     STATE/<project> exists;
 *   - any other name belongs to the first bottle that used it, recorded in
 *     STATE/.reconciler/projects/<project>; that record is taken over only
 *     when its bottle is gone or names another project now.
 * claim: record the project for this bottle when nobody holds it (a plan
 * only looks). Returns 0, -EPERM with b->refusal set (naming both
 * bottles), or another -errno with a line in err. */
int br_bottle_project_owned(struct br_bottle *b, bool claim, struct br_buf *warnings, struct br_buf *err);

/* Expands a template of the sidecar's config (reload targets, validate
 * argv; file = the staged path for {file}, or NULL) for this bottle, reading
 * the project if the template needs it. */
int br_bottle_expand(struct br_bottle *b, enum br_sidecar sidecar, const char *tmpl, const char *file,
                     struct br_buf *out, struct br_buf *warnings);

#endif
