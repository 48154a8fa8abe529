/* Unit tests for common/strmap: puts, gets and deletions at scale, checked
 * against a plain array. */
#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "common/strmap.h"

int main(void) {
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
