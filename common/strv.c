/* strv: owned string list. Knows nothing of what the strings mean. */
#include "common/strv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void br_strv_init(struct br_strv *s) {
  s->v = NULL;
  s->n = 0;
  s->cap = 0;
}

void br_strv_free(struct br_strv *s) {
  for (size_t i = 0; i < s->n; i++)
    free(s->v[i]);
  free(s->v);
  br_strv_init(s);
}

int br_strv_addn(struct br_strv *s, const char *str, size_t n) {
  if (s->n + 2 > s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 8;
    char **v = realloc(s->v, cap * sizeof *v);
    if (!v)
      return -ENOMEM;
    s->v = v;
    s->cap = cap;
  }
  char *copy = strndup(str, n);
  if (!copy)
    return -ENOMEM;
  s->v[s->n++] = copy;
  s->v[s->n] = NULL;
  return 0;
}

int br_strv_add(struct br_strv *s, const char *str) { return br_strv_addn(s, str, strlen(str)); }

int br_strv_add_unique(struct br_strv *s, const char *str) {
  return br_strv_contains(s, str) ? 0 : br_strv_add(s, str);
}

long br_strv_find(const struct br_strv *s, const char *str) {
  for (size_t i = 0; i < s->n; i++)
    if (strcmp(s->v[i], str) == 0)
      return (long)i;
  return -1;
}

void br_strv_truncate(struct br_strv *s, size_t n) {
  while (s->n > n)
    free(s->v[--s->n]);
  if (s->v)
    s->v[s->n] = NULL;
}

int br_strv_append_all(struct br_strv *dst, const struct br_strv *src) {
  size_t n = dst->n;
  for (size_t i = 0; i < src->n; i++) {
    int rc = br_strv_add(dst, src->v[i]);
    if (rc) {
      br_strv_truncate(dst, n);
      return rc;
    }
  }
  return 0;
}

int br_strv_copy(struct br_strv *dst, const struct br_strv *src) {
  br_strv_init(dst);
  for (size_t i = 0; i < src->n; i++) {
    int rc = br_strv_add(dst, src->v[i]);
    if (rc) {
      br_strv_free(dst);
      return rc;
    }
  }
  return 0;
}

bool br_strv_same_set(const struct br_strv *a, const struct br_strv *b) {
  if (a->n != b->n)
    return false;
  for (size_t i = 0; i < a->n; i++)
    if (!br_strv_contains(b, a->v[i]))
      return false;
  return true;
}

static int cmp(const void *x, const void *y) { return strcmp(*(char *const *)x, *(char *const *)y); }

void br_strv_sort(struct br_strv *s) {
  if (s->n > 1)
    qsort(s->v, s->n, sizeof *s->v, cmp);
}
