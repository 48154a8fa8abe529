/* diag: the one shape of a message about a place in an input file,
 * "FILE:LINE:COLUMN: FIELD: message". It knows the shape, not the files. */
#ifndef BR_COMMON_DIAG_H
#define BR_COMMON_DIAG_H

#include <stdarg.h>
#include <stddef.h>

#include "common/buf.h"

/* Appends the line "FILE:LINE:COLUMN: FIELD: message\n" to out, message
 * formatted from fmt. LINE and COLUMN are 1-based (columns count characters);
 * FIELD names what is wrong in the reader's words, e.g. routes[2].host, or a
 * stand-in such as "(document)" or "(file)". All or nothing: when out has no
 * room for the whole line it is left as it was, so a full buffer never holds
 * half a message. Returns 0, -ENOMEM or -EFBIG (out's maximum). */
int br_diag(struct br_buf *out, const char *file, size_t line, size_t column, const char *field, const char *fmt,
            ...) __attribute__((format(printf, 6, 7)));
int br_vdiag(struct br_buf *out, const char *file, size_t line, size_t column, const char *field, const char *fmt,
             va_list ap) __attribute__((format(printf, 6, 0)));

/* Appends only "FILE:LINE:COLUMN: FIELD: ", for a message that the caller
 * assembles from parts (a quoted excerpt, say) and ends itself: with "\n",
 * or with nothing where the reader's contract is one line without a break.
 * Returns 0, -ENOMEM or -EFBIG. */
int br_diag_start(struct br_buf *out, const char *file, size_t line, size_t column, const char *field);

#endif
