/* edit: `bottle-reconciler edit SLUG [NAME]`, like visudo or crontab -e: an
 * editor on a temp copy of an operator's fragment, the whole bottle checked
 * on save, the errors written back as comments until it is valid. */
#ifndef BR_RECONCILER_CLI_EDIT_H
#define BR_RECONCILER_CLI_EDIT_H

#include "reconciler/bottle/approval.h"
#include "reconciler/bottle/bottle.h"
#include "reconciler/cli/cli.h"

/* The operator's fragment when no NAME is given. */
#define BR_EDIT_DEFAULT_NAME "50-operator.yaml"

/* Runs $VISUAL, else $EDITOR, else vi, through /bin/sh, until the file is
 * valid, unchanged (nothing done), emptied (the fragment is removed), or
 * saved invalid twice alike (refused). Returns 0 or -EINVAL/-errno with o
 * filled as the other changes do. */
int br_edit_fragment(struct cli *cli, struct br_bottle *b, const char *name, struct br_change_outcome *o);

#endif
