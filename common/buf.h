/* buf: a growable byte buffer with a hard maximum, for every input and output
 * the tool builds in memory. It never grows past its maximum (curl's dynbuf). */
#ifndef BR_COMMON_BUF_H
#define BR_COMMON_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct br_buf {
  char *data; /* always NUL-terminated when non-NULL; owned by the buffer */
  size_t len; /* bytes used, excluding the NUL */
  size_t cap; /* bytes allocated */
  size_t max; /* largest len allowed */
};

/* Initialises an empty buffer that may grow to max bytes. Allocates nothing. */
void br_buf_init(struct br_buf *b, size_t max);
/* Frees the data; the buffer is empty and reusable afterwards. */
void br_buf_free(struct br_buf *b);
/* Drops the contents, keeps the allocation. */
void br_buf_reset(struct br_buf *b);
/* Appends bytes. Returns 0, -ENOMEM, or -EFBIG when max would be exceeded
 * (the buffer is then unchanged). */
int br_buf_add(struct br_buf *b, const void *bytes, size_t n);
int br_buf_adds(struct br_buf *b, const char *s);
int br_buf_printf(struct br_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int br_buf_vprintf(struct br_buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* The contents as a string: "" while nothing was added (data is NULL then). */
static inline const char *br_buf_str(const struct br_buf *b) { return b->data ? b->data : ""; }
/* Takes the data out of the buffer; the caller frees it. Never NULL on
 * success (an empty buffer yields ""), NULL on allocation failure. */
char *br_buf_steal(struct br_buf *b);

#endif
