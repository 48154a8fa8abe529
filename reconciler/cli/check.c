/* check: the `check` command: validates fragment files and their merge, as
 * a CI job or a person runs it before publishing. Reads only; it never
 * converges, writes or asks the daemon. */
#include <errno.h>
#include <stdio.h>

#include "reconciler/bottle/desired.h"
#include "reconciler/cli/cli.h"
#include "reconciler/model/merge.h"

int cmd_check(struct cli *cli, int argc, char **argv) {
  if (argc == 0)
    return usage_error("%s", "check needs at least one FILE");
  if (load_config(cli, false))
    return 1;
  struct br_buf errors, warnings;
  br_buf_init(&errors, 1024 * 1024);
  br_buf_init(&warnings, 1024 * 1024);
  struct br_routes merged;
  br_routes_init(&merged);
  int bad = 0;
  size_t routes = 0;
  for (int i = 0; i < argc; i++) {
    struct br_routes r;
    br_routes_init(&r);
    if (br_desired_check_file(&cli->cfg, argv[i], &r, &errors)) {
      bad++;
    } else {
      routes += r.n;
      /* The files given are one bottle's fragments in merge order, so the
       * daemon's bound on the merged bottle applies to them too: each file
       * alone under limits.max_routes says nothing about the bottle. */
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
  fputs(br_buf_str(&errors), stderr);
  print_indented(stderr, "warning: ", &warnings);
  if (!bad)
    printf("%d fragment%s valid, %zu route%s, %zu host%s\n", argc, argc == 1 ? "" : "s", routes,
           routes == 1 ? "" : "s", merged.n, merged.n == 1 ? "" : "s");
  br_routes_free(&merged);
  br_buf_free(&errors);
  br_buf_free(&warnings);
  return bad ? 1 : 0;
}
