/* strmap: a hash map from strings to pointers, for tables keyed by slug or
 * path that must stay fast at tens of thousands of entries. Owns its keys,
 * not its values. */
#ifndef BR_COMMON_STRMAP_H
#define BR_COMMON_STRMAP_H

#include <stddef.h>

struct br_strmap_entry {
  char *key;   /* owned; NULL = empty slot */
  void *value; /* not owned */
};

struct br_strmap {
  struct br_strmap_entry *slots; /* open addressing, linear probing, backward-shift deletion */
  size_t cap;                    /* a power of two, or 0 */
  size_t n;
};

void br_strmap_init(struct br_strmap *m);
/* Frees keys and the table; values are the caller's. */
void br_strmap_free(struct br_strmap *m);
void *br_strmap_get(const struct br_strmap *m, const char *key);
/* The entry of key, or NULL: its key is the map's own copy, which stays put
 * until the key is deleted (for interning strings); the entry itself moves
 * on the next put or delete. */
struct br_strmap_entry *br_strmap_entry(const struct br_strmap *m, const char *key);
/* Sets key to value (replacing any value). Returns 0 or -ENOMEM. */
int br_strmap_put(struct br_strmap *m, const char *key, void *value);
/* Removes key; returns its value or NULL. */
void *br_strmap_del(struct br_strmap *m, const char *key);
/* Iteration: for (size_t i = 0; i < m->cap; i++) if (m->slots[i].key) ...
 * Do not put or delete while iterating. */

#endif
