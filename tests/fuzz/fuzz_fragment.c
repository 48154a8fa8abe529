/* fuzz_fragment: libFuzzer target for br_fragment_parse, as YAML and as
 * strict JSON, checking what every caller relies on. It must stay a pure
 * in-memory harness: no files, no state.
 *
 * Build and run (from the repository root, with clang):
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -I. \
 *     tests/fuzz/fuzz_fragment.c reconciler/model/fragment.c reconciler/model/routes.c \
 *     common/buf.c common/strv.c common/yamldoc.c common/jsoncheck.c common/diag.c $(pkg-config --cflags --libs
 * yaml-0.1) \ -o fuzz_fragment mkdir -p corpus && cp tests/data/fragments/[a-z]*.[jy]* corpus
 *   ./fuzz_fragment -max_total_time=60 -max_len=4096 -dict=tests/fuzz/fragment.dict corpus
 * or configure CMake with CC=clang -DBR_FUZZ=ON (see tests/fuzz/CMakeLists.txt). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reconciler/model/fragment.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void invariant(int ok, const char *what, const char *err) {
  if (ok)
    return;
  fprintf(stderr, "invariant broken: %s\nerr: %s\n", what, err ? err : "(none)");
  abort();
}

/* Parses data as the fragment name (its extension decides YAML or strict
 * JSON) and checks the invariants. */
static void one(const char *name, const uint8_t *data, size_t size) {
  size_t name_len = strlen(name);
  /* Small limits, so the limit paths are reached by small inputs too. */
  struct br_limits limits = {.max_file_bytes = 64 * 1024, .max_routes = 16, .max_paths = 16, .max_depth = 8};
  struct br_routes routes;
  br_routes_init(&routes);
  struct br_buf err;
  br_buf_init(&err, 1 << 16);
  int rc = br_fragment_parse(name, (const char *)data, size, &limits, &routes, &err);
  const char *msg = err.data;
  if (rc == 0) {
    invariant(msg == NULL || msg[0] == '\0', "success with a message", msg);
    invariant(routes.n <= limits.max_routes, "more routes than the limit", msg);
    for (size_t i = 0; i < routes.n; i++) {
      const struct br_route *r = &routes.v[i];
      char host[BR_HOST_MAX + 1];
      const char *why;
      invariant(br_host_check(r->host, strlen(r->host), host, &why) == 0, "invalid host kept", r->host);
      invariant(strcmp(host, r->host) == 0, "host not normalised", r->host);
      invariant(r->all_paths ? r->paths.n == 0 : r->paths.n >= 1 && r->paths.n <= limits.max_paths, "path count",
                r->host);
      for (size_t j = 0; j < r->paths.n; j++) {
        invariant(br_path_check(r->paths.v[j], strlen(r->paths.v[j]), &why) == 0, "invalid path kept",
                  r->paths.v[j]);
        for (size_t k = 0; k < j; k++)
          invariant(strcmp(r->paths.v[j], r->paths.v[k]) != 0, "duplicate path kept", r->paths.v[j]);
      }
      invariant(!r->auth_scheme == !r->token_env, "half an auth pair", r->host);
      invariant(!r->token_env || br_token_env_valid(r->token_env), "invalid token_env", r->token_env);
      invariant(!r->auth_scheme || br_auth_scheme_valid(r->auth_scheme, strlen(r->auth_scheme)),
                "invalid auth_scheme", r->auth_scheme);
      invariant(r->origin && strncmp(r->origin, name, name_len) == 0 && r->origin[name_len] == ':', "origin",
                r->origin);
    }
  } else {
    invariant(rc == -EINVAL || rc == -EFBIG || rc == -E2BIG || rc == -ENOMEM, "unexpected return code", msg);
    invariant(routes.n == 0, "routes left behind on error", msg);
    if (rc != -ENOMEM) {
      /* Exactly one line, "NAME:LINE:COLUMN: FIELD: ...". */
      invariant(msg && strncmp(msg, name, name_len) == 0 && msg[name_len] == ':', "message names the file", msg);
      size_t len = strlen(msg);
      invariant(len > 0 && msg[len - 1] == '\n' && strchr(msg, '\n') == msg + len - 1, "one line", msg);
      const char *p = msg + name_len + 1;
      size_t line = strspn(p, "0123456789");
      invariant(line > 0 && p[line] == ':', "message names the line", msg);
      p += line + 1;
      size_t column = strspn(p, "0123456789");
      invariant(column > 0 && p[column] == ':' && p[column + 1] == ' ', "message names the column", msg);
    }
  }
  br_routes_free(&routes);
  br_buf_free(&err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  one("fuzz.yaml", data, size);
  one("fuzz.json", data, size);
  return 0;
}
