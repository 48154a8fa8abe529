/* replay: a main() for the libFuzzer targets, so an ordinary build runs each
 * target over its seed corpus (the table-driven test data) in CI, where
 * clang's fuzzer runtime is not needed. Every file under the directories
 * given is fed once. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int feed(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return 0;
  static uint8_t buf[4 * 1024 * 1024];
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  LLVMFuzzerTestOneInput(buf, n);
  return 1;
}

int main(int argc, char **argv) {
  int fed = 0;
  for (int i = 1; i < argc; i++) {
    DIR *d = opendir(argv[i]);
    if (!d) {
      fed += feed(argv[i]);
      continue;
    }
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d)))
      if (e->d_name[0] != '.') {
        snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name);
        fed += feed(path);
      }
    closedir(d);
  }
  printf("replayed %d input(s)\n", fed);
  return fed ? 0 : 1; /* an empty corpus means the test checked nothing */
}
