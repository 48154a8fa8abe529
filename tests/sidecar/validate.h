/* validate: whether a sidecar would accept a config file's bytes, judged the way
 * the real egress addon and pipelock judge them. Bytes in, verdict out: no files. */
#ifndef SIDECAR_VALIDATE_H
#define SIDECAR_VALIDATE_H

#include <stddef.h>

/* Which sidecar is being played. */
enum sidecar_mode {
  SIDECAR_EGRESS,   /* JSON routes file, reloaded on SIGHUP only */
  SIDECAR_PIPELOCK, /* YAML config, reloaded on SIGHUP and by its own watcher */
};

/* Returns 0 when the bytes are a config the sidecar would load, or -EINVAL and
 * a one-line reason (no newline; truncated to fit) in reason. */
int sidecar_validate(enum sidecar_mode mode, const char *bytes, size_t len, char *reason, size_t reason_size);

#endif
