/* buf: growable byte buffer with a maximum. Knows nothing of what it holds. */
#include "common/buf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void br_buf_init(struct br_buf *b, size_t max) {
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
  b->max = max;
}

void br_buf_free(struct br_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
}

void br_buf_reset(struct br_buf *b) {
  b->len = 0;
  if (b->data)
    b->data[0] = '\0';
}

static int reserve(struct br_buf *b, size_t extra) {
  if (extra > b->max || b->len > b->max - extra)
    return -EFBIG;
  size_t need = b->len + extra + 1;
  if (need <= b->cap)
    return 0;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < need)
    cap *= 2;
  char *p = realloc(b->data, cap);
  if (!p)
    return -ENOMEM;
  b->data = p;
  b->cap = cap;
  return 0;
}

int br_buf_add(struct br_buf *b, const void *bytes, size_t n) {
  int rc = reserve(b, n);
  if (rc)
    return rc;
  if (n)
    memcpy(b->data + b->len, bytes, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

int br_buf_adds(struct br_buf *b, const char *s) { return br_buf_add(b, s, strlen(s)); }

int br_buf_vprintf(struct br_buf *b, const char *fmt, va_list ap) {
  va_list copy;
  va_copy(copy, ap);
  int n = vsnprintf(NULL, 0, fmt, copy);
  va_end(copy);
  if (n < 0)
    return -EINVAL;
  int rc = reserve(b, (size_t)n);
  if (rc)
    return rc;
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  b->len += (size_t)n;
  return 0;
}

int br_buf_printf(struct br_buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = br_buf_vprintf(b, fmt, ap);
  va_end(ap);
  return rc;
}

char *br_buf_steal(struct br_buf *b) {
  if (!b->data) {
    /* reserve() allocates but writes nothing: the promised "" needs its NUL. */
    if (reserve(b, 0))
      return NULL;
    b->data[0] = '\0';
  }
  char *p = b->data;
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
  return p;
}
