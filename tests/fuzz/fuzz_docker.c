/* fuzz_docker: libFuzzer target for what the docker driver parses from the
 * engine and the kernel: inspect answers, RFC 3339 times, mountinfo. Every
 * input goes to all three; it must stay a pure in-memory harness.
 *
 * Build and run (from the repository root, with clang):
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -I. \
 *     tests/fuzz/fuzz_docker.c reconciler/drivers/docker_container.c config/config.c common/buf.c \
 *     common/strv.c common/template.c common/yamldoc.c common/fileio.c common/diag.c \
 *     $(pkg-config --cflags --libs jansson yaml-0.1) -o fuzz_docker
 *   cp -r tests/data/docker corpus
 *   ./fuzz_docker -max_total_time=60 -max_len=8192 corpus
 * or configure CMake with CC=clang -DBR_FUZZ=ON (see tests/fuzz/CMakeLists.txt). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reconciler/drivers/docker_container.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void invariant(int ok, const char *what) {
  if (ok)
    return;
  fprintf(stderr, "invariant broken: %s\n", what);
  abort();
}

static void inspect(const char *text, size_t size) {
  struct br_docker_container c;
  struct br_buf err, inside;
  br_buf_init(&err, 4096);
  br_buf_init(&inside, 8192);
  int rc = br_docker_container_parse(text, size, &c, &err);
  invariant(rc == 0 || rc == -EINVAL || rc == -ENOMEM, "parse returns 0, -EINVAL or -ENOMEM");
  invariant(rc != -EINVAL || err.len > 0, "-EINVAL comes with a message");
  if (rc == 0) {
    invariant(strlen(c.id) == BR_DOCKER_ID_LEN && strspn(c.id, "0123456789abcdef") == BR_DOCKER_ID_LEN,
              "the id is 64 hex digits");
    invariant(c.started_at_ns >= 0, "StartedAt is never before the epoch");
    /* Every mount holds its own source, and maps it onto its destination. */
    for (size_t i = 0; i < c.n_mounts; i++) {
      const struct br_docker_mount *m = &c.mounts[i];
      if (strcmp(m->type, "bind") != 0 || m->source[0] != '/')
        continue;
      bool exact = false;
      const struct br_docker_mount *found = br_docker_mount_for(&c, m->source, &exact, &inside);
      invariant(found != NULL, "a bind mount's source is held by some mount");
      invariant(inside.data && inside.data[0] != '\0', "the container path is not empty");
    }
  }
  br_docker_container_free(&c);
  br_buf_free(&err);
  br_buf_free(&inside);
}

static void timestamp(const char *text) {
  int64_t ns = -1;
  int rc = br_rfc3339_parse(text, &ns);
  invariant(rc == 0 || rc == -EINVAL, "rfc3339 returns 0 or -EINVAL");
  invariant(rc != 0 || ns >= 0, "a parsed time is not negative");
}

static void mountinfo(const char *text, size_t size) {
  struct br_buf root;
  br_buf_init(&root, 8192);
  static const char *const points[] = {"/", "/etc/egress", "/etc/pipelock/pipelock.yaml"};
  for (size_t i = 0; i < sizeof points / sizeof *points; i++) {
    int rc = br_mountinfo_root(text, size, points[i], &root);
    invariant(rc == 0 || rc == -ENOENT || rc == -EINVAL || rc == -EFBIG || rc == -ENOMEM,
              "mountinfo returns a known error");
    if (rc == 0)
      br_mount_root_deleted(br_buf_str(&root));
  }
  br_buf_free(&root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  if (!text)
    return 0;
  memcpy(text, data, size);
  text[size] = '\0';
  inspect(text, size);
  timestamp(text);
  mountinfo(text, size);
  br_docker_name_valid(text);
  free(text);
  return 0;
}
