/* main: entry point; the command-line interface lives in cli.c. */
#include <stdio.h>
int main(void) {
  fputs("bottle-reconciler: not built yet\n", stderr);
  return 1;
}
