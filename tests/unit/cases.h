/* cases: the table-driven tests' one way to find their cases: the names in
 * a data directory that end in a suffix, without it, sorted. */
#ifndef BR_TESTS_CASES_H
#define BR_TESTS_CASES_H

#include <dirent.h>
#include <string.h>

#include "check.h"
#include "common/strv.h"

/* Fills stems (initialised here) with NAME for every dir/NAME<suffix>. A
 * directory that cannot be read is a failed check and no cases. */
static void case_stems(const char *dir, const char *suffix, struct br_strv *stems) {
  br_strv_init(stems);
  DIR *d = opendir(dir);
  CHECK(d != NULL);
  if (!d)
    return;
  size_t len = strlen(suffix);
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t n = strlen(e->d_name);
    if (n > len && strcmp(e->d_name + n - len, suffix) == 0)
      br_strv_addn(stems, e->d_name, n - len);
  }
  closedir(d);
  br_strv_sort(stems);
}

#endif
