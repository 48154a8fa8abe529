/* strv: an owned, ordered list of strings (host names, paths, argv). Keeps
 * insertion order; lookups are linear, which suits lists of a few thousand. */
#ifndef BR_COMMON_STRV_H
#define BR_COMMON_STRV_H

#include <stdbool.h>
#include <stddef.h>

struct br_strv {
  char **v; /* v[n] is NULL, so v can be passed as an argv; owns each string */
  size_t n;
  size_t cap;
};

void br_strv_init(struct br_strv *s);
/* Frees every string and the array; the list is empty and reusable. */
void br_strv_free(struct br_strv *s);
/* Appends a copy of str. Returns 0 or -ENOMEM. */
int br_strv_add(struct br_strv *s, const char *str);
/* Appends a copy of the first n bytes of str. */
int br_strv_addn(struct br_strv *s, const char *str, size_t n);
/* Appends a copy unless an equal string is already present. */
int br_strv_add_unique(struct br_strv *s, const char *str);
/* Index of str, or -1. */
long br_strv_find(const struct br_strv *s, const char *str);
static inline bool br_strv_contains(const struct br_strv *s, const char *str) { return br_strv_find(s, str) >= 0; }
/* Drops (and frees) the entries from index n on; nothing when n >= s->n. */
void br_strv_truncate(struct br_strv *s, size_t n);
/* Appends copies of src's entries to dst, all or none: on -ENOMEM dst is
 * left as it was. */
int br_strv_append_all(struct br_strv *dst, const struct br_strv *src);
/* Deep copy into dst (initialised by this call). */
int br_strv_copy(struct br_strv *dst, const struct br_strv *src);
/* Same strings regardless of order (both lists free of duplicates). */
bool br_strv_same_set(const struct br_strv *a, const struct br_strv *b);
/* Sorts in byte order. */
void br_strv_sort(struct br_strv *s);

#endif
