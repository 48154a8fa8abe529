/* strmap: a hash map from strings to pointers, for tables keyed by slug or
 * path that must stay fast at tens of thousands of entries. Owns its keys
 * (a copy of each) unless made to borrow them, never its values. */
#ifndef BR_COMMON_STRMAP_H
#define BR_COMMON_STRMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The map's string hash (FNV-1a), also for tables of their own (the
 * watcher's slug table). */
uint64_t br_str_hash(const char *s);

struct br_strmap_entry {
  char *key;   /* owned, or the caller's when borrowed (never written through); NULL = empty slot */
  void *value; /* not owned */
};

struct br_strmap {
  struct br_strmap_entry *slots; /* open addressing, linear probing, backward-shift deletion */
  size_t cap;                    /* a power of two, or 0 */
  size_t n;
  bool borrowed; /* keys are the caller's (br_strmap_init_borrowed) */
};

/* A map that copies each key it is given. */
void br_strmap_init(struct br_strmap *m);
/* A map that keeps the caller's key pointers instead of copies, for a table
 * whose values already hold their key (a slot's or a bottle's slug): each
 * copy is a small allocation, at least 32 bytes in glibc, and at 10,000
 * bottles that adds up. The caller promises each key stays valid and
 * unchanged until its entry is deleted or the map freed: delete the entry
 * before freeing what holds its key. A put of a key already there borrows
 * the new pointer, so that a value replaced by one holding its own copy of
 * the key may free the old one. */
void br_strmap_init_borrowed(struct br_strmap *m);
/* Frees owned keys and the table, and leaves the map empty, borrowing or
 * not as before; values are the caller's. Reads no key of a borrowing map,
 * so the values holding them may be freed first (iterate, then free). */
void br_strmap_free(struct br_strmap *m);
void *br_strmap_get(const struct br_strmap *m, const char *key);
/* The entry of key, or NULL: its key is the map's own copy (or, borrowed,
 * the pointer last put), which stays put until the key is deleted (for
 * interning strings); the entry itself moves on the next put or delete. */
struct br_strmap_entry *br_strmap_entry(const struct br_strmap *m, const char *key);
/* Sets key to value (replacing any value). Returns 0 or -ENOMEM. */
int br_strmap_put(struct br_strmap *m, const char *key, void *value);
/* Removes key; returns its value or NULL. key may be the entry's own
 * (borrowed or not): it is not read after the entry is gone. */
void *br_strmap_del(struct br_strmap *m, const char *key);
/* Iteration: for (size_t i = 0; i < m->cap; i++) if (m->slots[i].key) ...
 * Do not put or delete while iterating. */

#endif
