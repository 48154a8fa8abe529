/* sha256: FIPS 180-4 SHA-256 over a byte stream, so the sidecar can name the
 * bytes it loaded. Hashing only; it must not grow into a crypto library. */
#ifndef SIDECAR_SHA256_H
#define SIDECAR_SHA256_H

#include <stddef.h>
#include <stdint.h>

/* Hashing state; lives wherever the caller puts it, owns no memory. */
struct sidecar_sha256 {
  uint32_t h[8];           /* chaining value */
  uint64_t len;            /* bytes hashed so far */
  unsigned char block[64]; /* partial block not yet compressed */
  size_t fill;             /* bytes used in block */
};

void sidecar_sha256_init(struct sidecar_sha256 *s);
void sidecar_sha256_update(struct sidecar_sha256 *s, const void *bytes, size_t n);
/* Finishes the hash into digest; the state must be re-initialised to reuse. */
void sidecar_sha256_final(struct sidecar_sha256 *s, unsigned char digest[32]);
/* Lowercase hex of a digest, NUL-terminated (65 bytes). */
void sidecar_sha256_hex(const unsigned char digest[32], char hex[65]);

#endif
