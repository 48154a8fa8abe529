/* repo: the layout of a GitOps repository of bottles, shared by check --tree
 * and plan --tree: bottles/<slug>/ holds a bottle's fragments on every host
 * that runs it, hosts/<host>/bottles/<slug>/ more of them on one host only,
 * merged after. Lists directories; never reads a fragment. */
#ifndef BR_RECONCILER_CLI_REPO_H
#define BR_RECONCILER_CLI_REPO_H

#include <stddef.h>

#include "common/buf.h"
#include "common/strv.h"
#include "reconciler/bottle/bottle.h"
#include "reconciler/bottle/slug.h"

/* One bottle as a host whose sources follow the layout merges it. */
struct br_repo_bottle {
  char slug[BR_SLUG_MAX + 1];
  char *host;             /* NULL: bottles/<slug> alone, as every host sees it; owned */
  struct br_strv sources; /* its folders in the tree, in merge order */
};

struct br_repo {
  struct br_repo_bottle *v; /* bottles/ first, then each host's, each sorted by name */
  size_t n, cap;
  size_t hosts; /* folders under hosts/ */
};

void br_repo_init(struct br_repo *repo);
void br_repo_free(struct br_repo *repo);

/* Lists the bottles of the tree at dir (paths are dir joined with the
 * layout's, without a leading "./"). What no host would ever read, or
 * should not, is a "PATH:1:1: (file|folder): ..." line in findings: a
 * fragment outside a bottle folder, a folder that is not a valid slug, a
 * folder inside a bottle folder, a host folder without bottles/, a bottle
 * folder that leads outside the tree (such a bottle is left out: a
 * repository must not make a host, or CI, read its files). Returns 0 or
 * -errno when dir cannot be read. */
int br_repo_scan(const char *dir, struct br_repo *repo, struct br_buf *findings);

/* Where in the tree at dir a bottle's source directory lies, had the tree
 * been published: source is one of the bottle's expanded sources and tmpl
 * the template it came from. With root (the checkout's path, --source-root),
 * a source inside root moves to dir. Without root, a template ending in the
 * layout's "/bottles/{slug}" (after "/hosts/<host>" or not) names the same
 * folder of dir. Returns 0 with the path in out, -ENOENT when the source is
 * not a folder of the checkout, or -ENOMEM/-EFBIG. */
int br_repo_source_in_tree(const char *dir, const char *root, const char *tmpl, const char *source,
                           const char *slug, struct br_buf *out);

/* Moves each of the bottle's sources that lies in the checkout to its folder
 * in the tree at dir (as br_repo_source_in_tree says), leaving the others,
 * such as STATE/<slug>/routes.d, where they are. Returns 0, -ENOENT when
 * none lies in the checkout, or -ENOMEM/-EFBIG. */
int br_repo_substitute(struct br_bottle *b, const char *dir, const char *root);

#endif
