/* template: "{name}" placeholders in path and argv templates, checked and
 * expanded against a caller's table. It knows no names of its own. */
#ifndef BR_COMMON_TEMPLATE_H
#define BR_COMMON_TEMPLATE_H

#include <stddef.h>

#include "common/buf.h"

/* Syntax: every "{" must open "{name}" where name is one of the n names;
 * there is no escape ("{{" is not literal), since none of the paths, container
 * names or argv words the templates produce needs a brace. A "}" outside a
 * placeholder is literal text. */

/* Appends tmpl to out with each {names[i]} replaced by values[i] (verbatim:
 * the caller vets values that must not contain "/" or ".."). A NULL values[i]
 * makes names[i] unknown, for values a caller does not have. Returns 0,
 * -EINVAL when a "{" does not open a known name (then *unknown_name_out, if
 * not NULL, points at that "{" inside tmpl), or -EFBIG/-ENOMEM from out.
 * On error out holds a partial expansion the caller should discard. */
int br_template_expand(const char *tmpl, const char *const *names, const char *const *values, size_t n,
                       struct br_buf *out, const char **unknown_name_out);

/* Checks tmpl against the n names without expanding it. Returns 0, or
 * -EINVAL after appending to why a message such as
 * "unknown placeholder {foo}, expected {state_dir}, {slug} or {project}"
 * (no position, no trailing newline: the caller adds where it was found). */
int br_template_check(const char *tmpl, const char *const *names, size_t n, struct br_buf *why);

#endif
