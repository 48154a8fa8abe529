/* Unit tests for common/strmap: puts, gets and deletions at scale, checked
 * against a plain array, in both modes: owning its keys and borrowing them. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "common/strmap.h"

/* Where the map puts s first, to pick keys that collide on purpose. */
static size_t home_of(const char *s, size_t cap) { return (size_t)br_str_hash(s) & (cap - 1); }

/* A borrowing map keeps the caller's pointers: through growth (16 up to
 * 32,768 slots) and deletions that shift probe runs back, every entry's key
 * is still the very string it was put with, and a deleted key's memory may
 * be reused at once without a lookup noticing. */
static void test_borrowed_at_scale(void) {
  enum { N = 20000 };
  static char keys[N][16];
  static int values[N];
  struct br_strmap m;
  br_strmap_init_borrowed(&m);
  for (int i = 0; i < N; i++) {
    values[i] = i;
    snprintf(keys[i], sizeof keys[i], "slug-%d", i);
    CHECK(br_strmap_put(&m, keys[i], &values[i]) == 0);
  }
  CHECK(m.n == N && m.cap >= N);
  int wrong = 0;
  for (int i = 0; i < N; i++) {
    struct br_strmap_entry *e = br_strmap_entry(&m, keys[i]);
    wrong += !e || e->key != keys[i] || e->value != &values[i];
  }
  CHECK(wrong == 0);
  /* Delete every third by its own key, then scribble over that key (its
   * holder freed and the memory reused): the rest must not depend on it. */
  for (int i = 0; i < N; i += 3) {
    CHECK(br_strmap_del(&m, keys[i]) == &values[i]);
    memset(keys[i], 'X', sizeof keys[i] - 1);
  }
  char key[16];
  wrong = 0;
  for (int i = 0; i < N; i++) {
    snprintf(key, sizeof key, "slug-%d", i);
    struct br_strmap_entry *e = br_strmap_entry(&m, key);
    if (i % 3 == 0)
      wrong += e != NULL;
    else
      wrong += !e || e->key != keys[i] || e->value != &values[i];
  }
  CHECK(wrong == 0);
  CHECK(m.n == N - (N + 2) / 3);
  br_strmap_free(&m);
  /* Free left the keys alone (they are static here: a free() of one would
   * abort) and the map empty, still borrowing. */
  CHECK(m.n == 0 && m.cap == 0 && m.borrowed);
  CHECK(br_strmap_put(&m, keys[1], &values[1]) == 0);
  CHECK(br_strmap_entry(&m, "slug-1")->key == keys[1]);
  br_strmap_free(&m);
}

/* The first n keys "k<i>" whose home slot in a table of 16 is home. */
static void keys_at(size_t home, char (*keys)[16], int n) {
  int found = 0;
  for (int i = 0; found < n && i < 100000; i++) {
    snprintf(keys[found], sizeof keys[found], "k%d", i);
    found += home_of(keys[found], 16) == home;
  }
  CHECK(found == n);
}

/* Backward shift in a probe run, by hand, also where the run wraps past
 * the table's end: of three keys with one home, deleting the first moves
 * the others back, and each is still found, by its own pointer, once the
 * deleted key's memory is scribbled over; a key at its own home after the
 * hole stays where it is. */
static void test_borrowed_backward_shift(void) {
  static const size_t homes[] = {5, 15};
  for (size_t h = 0; h < sizeof homes / sizeof *homes; h++) {
    size_t home = homes[h], next = (home + 1) & 15;
    struct br_strmap m;
    br_strmap_init_borrowed(&m);
    CHECK(br_strmap_put(&m, "seed", NULL) == 0 && m.cap == 16); /* the table's first size */
    CHECK(br_strmap_del(&m, "seed") == NULL && m.n == 0);
    char run[3][16], after[1][16];
    int values[4];
    keys_at(home, run, 3);
    keys_at(next, after, 1);
    for (int i = 0; i < 3; i++)
      CHECK(br_strmap_put(&m, run[i], &values[i]) == 0);
    for (int i = 0; i < 3; i++)
      CHECK(m.slots[(home + (size_t)i) & 15].key == run[i]);
    CHECK(br_strmap_del(&m, run[0]) == &values[0]);
    memset(run[0], 'X', sizeof run[0] - 1);
    CHECK(m.slots[home].key == run[1] && m.slots[next].key == run[2]);
    CHECK(m.slots[(home + 2) & 15].key == NULL);
    CHECK(br_strmap_get(&m, run[1]) == &values[1] && br_strmap_get(&m, run[2]) == &values[2]);
    CHECK(br_strmap_del(&m, run[1]) == &values[1]);
    memset(run[1], 'X', sizeof run[1] - 1);
    CHECK(m.slots[home].key == run[2] && m.slots[next].key == NULL);
    /* after's home is next: deleting run[2] before it leaves it there. */
    CHECK(br_strmap_put(&m, after[0], &values[3]) == 0 && m.slots[next].key == after[0]);
    CHECK(br_strmap_del(&m, run[2]) == &values[2]);
    CHECK(m.slots[home].key == NULL && m.slots[next].key == after[0]);
    CHECK(br_strmap_get(&m, after[0]) == &values[3] && m.n == 1);
    br_strmap_free(&m);
  }
}

/* A put of a key already there replaces the value and borrows the new
 * pointer, so that the old holder may go; the count does not change. */
static void test_borrowed_put_again(void) {
  struct br_strmap m;
  br_strmap_init_borrowed(&m);
  char *old = strdup("alpha"), *new = strdup("alpha");
  int a, b;
  CHECK(old && new);
  CHECK(br_strmap_put(&m, old, &a) == 0);
  CHECK(br_strmap_put(&m, new, &b) == 0);
  CHECK(m.n == 1);
  free(old); /* the old holder goes: the map must not read it again */
  struct br_strmap_entry *e = br_strmap_entry(&m, "alpha");
  CHECK(e && e->key == new && e->value == &b);
  /* The holder freed before the map, as a table's free does. */
  free(new);
  br_strmap_free(&m);
}

/* The owning default copies: a caller's buffer may change after the put. */
static void test_owned_copies(void) {
  struct br_strmap m;
  br_strmap_init(&m);
  char key[] = "alpha";
  int a;
  CHECK(br_strmap_put(&m, key, &a) == 0);
  struct br_strmap_entry *e = br_strmap_entry(&m, "alpha");
  CHECK(e && e->key != key && !m.borrowed);
  key[0] = 'X';
  CHECK(br_strmap_get(&m, "alpha") == &a);
  br_strmap_free(&m);
}

int main(void) {
  test_borrowed_at_scale();
  test_borrowed_backward_shift();
  test_borrowed_put_again();
  test_owned_copies();
  struct br_strmap m;
  br_strmap_init(&m);
  enum { N = 20000 };
  static int values[N];
  char key[32];
  for (int i = 0; i < N; i++) {
    values[i] = i;
    snprintf(key, sizeof key, "slug-%d", i);
    CHECK(br_strmap_put(&m, key, &values[i]) == 0);
  }
  CHECK(m.n == N);
  /* delete every third, then check membership of all */
  for (int i = 0; i < N; i += 3) {
    snprintf(key, sizeof key, "slug-%d", i);
    CHECK(br_strmap_del(&m, key) == &values[i]);
  }
  int wrong = 0;
  for (int i = 0; i < N; i++) {
    snprintf(key, sizeof key, "slug-%d", i);
    int *v = br_strmap_get(&m, key);
    if ((i % 3 == 0) ? v != NULL : (v != &values[i]))
      wrong++;
  }
  CHECK(wrong == 0);
  CHECK(br_strmap_get(&m, "absent") == NULL);
  CHECK(br_strmap_del(&m, "absent") == NULL);
  CHECK(br_strmap_put(&m, "slug-1", NULL) == 0 && br_strmap_get(&m, "slug-1") == NULL);
  br_strmap_free(&m);
  CHECK_DONE();
}
