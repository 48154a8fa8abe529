/* diag: formats "FILE:LINE:COLUMN: FIELD: message" lines, the shape every
 * reader's errors take. Formatting only: it must not decide what is wrong. */
#include "common/diag.h"

int br_diag_start(struct br_buf *out, const char *file, size_t line, size_t column, const char *field) {
  return br_buf_printf(out, "%s:%zu:%zu: %s: ", file, line, column, field);
}

int br_vdiag(struct br_buf *out, const char *file, size_t line, size_t column, const char *field, const char *fmt,
             va_list ap) {
  size_t mark = out->len;
  int rc = br_diag_start(out, file, line, column, field);
  if (!rc)
    rc = br_buf_vprintf(out, fmt, ap);
  if (!rc)
    rc = br_buf_adds(out, "\n");
  if (rc && out->data) {
    /* Take back the part that fitted: the line goes in whole or not at all. */
    out->len = mark;
    out->data[mark] = '\0';
  }
  return rc;
}

int br_diag(struct br_buf *out, const char *file, size_t line, size_t column, const char *field, const char *fmt,
            ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = br_vdiag(out, file, line, column, field, fmt, ap);
  va_end(ap);
  return rc;
}
