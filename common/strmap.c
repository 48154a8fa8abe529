/* strmap: open-addressing string map (FNV-1a, linear probing). Deletion
 * shifts entries back instead of leaving tombstones, so lookups stay short
 * however many slugs come and go. */
#include "common/strmap.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

uint64_t br_str_hash(const char *s) {
  uint64_t h = 14695981039346656037ULL; /* FNV-1a's offset basis */
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return h;
}

void br_strmap_init(struct br_strmap *m) {
  m->slots = NULL;
  m->cap = 0;
  m->n = 0;
  m->borrowed = false;
}

void br_strmap_init_borrowed(struct br_strmap *m) {
  br_strmap_init(m);
  m->borrowed = true;
}

void br_strmap_free(struct br_strmap *m) {
  /* A borrowed key may already be freed with its value: not even read. */
  if (!m->borrowed)
    for (size_t i = 0; i < m->cap; i++)
      free(m->slots[i].key);
  free(m->slots);
  m->slots = NULL;
  m->cap = 0;
  m->n = 0;
}

static size_t find(const struct br_strmap *m, const char *key) {
  size_t mask = m->cap - 1, i = (size_t)br_str_hash(key) & mask;
  while (m->slots[i].key && strcmp(m->slots[i].key, key) != 0)
    i = (i + 1) & mask;
  return i;
}

void *br_strmap_get(const struct br_strmap *m, const char *key) {
  if (!m->cap)
    return NULL;
  size_t i = find(m, key);
  return m->slots[i].key ? m->slots[i].value : NULL;
}

struct br_strmap_entry *br_strmap_entry(const struct br_strmap *m, const char *key) {
  if (!m->cap)
    return NULL;
  size_t i = find(m, key);
  return m->slots[i].key ? &m->slots[i] : NULL;
}

static int grow(struct br_strmap *m) {
  size_t cap = m->cap ? m->cap * 2 : 16;
  struct br_strmap_entry *old = m->slots;
  size_t old_cap = m->cap;
  m->slots = calloc(cap, sizeof *m->slots);
  if (!m->slots) {
    m->slots = old;
    return -ENOMEM;
  }
  m->cap = cap;
  for (size_t i = 0; i < old_cap; i++)
    if (old[i].key)
      m->slots[find(m, old[i].key)] = old[i];
  free(old);
  return 0;
}

int br_strmap_put(struct br_strmap *m, const char *key, void *value) {
  if ((m->n + 1) * 4 > m->cap * 3) { /* keep the load under 3/4 */
    int rc = grow(m);
    if (rc)
      return rc;
  }
  size_t i = find(m, key);
  if (m->borrowed) {
    /* The latest pointer, even for a key already there (see strmap.h);
     * the map never writes through it. */
    m->n += !m->slots[i].key;
    m->slots[i].key = (char *)key;
  } else if (!m->slots[i].key) {
    if (!(m->slots[i].key = strdup(key)))
      return -ENOMEM;
    m->n++;
  }
  m->slots[i].value = value;
  return 0;
}

void *br_strmap_del(struct br_strmap *m, const char *key) {
  if (!m->cap)
    return NULL;
  size_t mask = m->cap - 1, i = find(m, key);
  if (!m->slots[i].key)
    return NULL;
  void *value = m->slots[i].value;
  if (!m->borrowed)
    free(m->slots[i].key); /* key may be this very string: not read from here on */
  m->slots[i].key = NULL;
  m->n--;
  /* Shift later members of the probe run back so no lookup stops early. */
  for (size_t j = (i + 1) & mask; m->slots[j].key; j = (j + 1) & mask) {
    size_t home = (size_t)br_str_hash(m->slots[j].key) & mask;
    /* j may move to the hole at i unless its home lies cyclically in (i, j]. */
    bool home_after_hole = i <= j ? (i < home && home <= j) : (i < home || home <= j);
    if (!home_after_hole) {
      m->slots[i] = m->slots[j];
      m->slots[j].key = NULL;
      i = j;
    }
  }
  return value;
}
