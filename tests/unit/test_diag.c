/* Unit tests for common/diag: the FILE:LINE:COLUMN: FIELD: message line, and
 * that a buffer without room for a whole line gets none of it. */
#include <errno.h>

#include "check.h"
#include "common/diag.h"

int main(void) {
  struct br_buf out;
  br_buf_init(&out, 4096);

  CHECK(br_diag(&out, "routes.d/a.yaml", 3, 9, "routes[0].host", "is %s, expected %s", "a number", "a string") ==
        0);
  CHECK_STR(br_buf_str(&out), "routes.d/a.yaml:3:9: routes[0].host: is a number, expected a string\n");

  /* Lines accumulate; the start alone leaves the ending to the caller. */
  CHECK(br_diag_start(&out, "egress_routes.yaml", 1, 1, "invalid JSON") == 0);
  CHECK(br_buf_adds(&out, "'[' or '{' expected near end of file") == 0);
  CHECK_STR(br_buf_str(&out), "routes.d/a.yaml:3:9: routes[0].host: is a number, expected a string\n"
                              "egress_routes.yaml:1:1: invalid JSON: '[' or '{' expected near end of file");

  /* All or nothing: the prefix fits, the message does not. */
  struct br_buf small;
  br_buf_init(&small, 60); /* room for the second prefix, not its message */
  CHECK(br_diag(&small, "f.yaml", 1, 2, "(file)", "%s", "short") == 0);
  size_t before = small.len;
  CHECK(br_diag(&small, "f.yaml", 7, 1, "key", "%s", "a message far too long to fit what is left") == -EFBIG);
  CHECK(small.len == before);
  CHECK_STR(br_buf_str(&small), "f.yaml:1:2: (file): short\n");
  /* Also when nothing at all was there before. */
  struct br_buf tiny;
  br_buf_init(&tiny, 16);
  CHECK(br_diag(&tiny, "f.yaml", 1, 1, "x", "%s", "longer than sixteen bytes") == -EFBIG);
  CHECK(tiny.len == 0);
  CHECK_STR(br_buf_str(&tiny), "");

  br_buf_free(&out);
  br_buf_free(&small);
  br_buf_free(&tiny);
  CHECK_DONE();
}
