/* sha256: hex SHA-256 of a byte string via nettle, whose state lives on the
 * caller's stack and so is thread-safe. */
/* Nettle rather than libcrypto: the daemon needs one hash function, and
 * libcrypto's relocations alone kept 1.5 MB resident (VmRSS, one bottle);
 * nettle's are a tenth of that. */
#include "common/sha256.h"

#include <nettle/sha2.h>

void br_sha256_hex(const void *bytes, size_t len, char hex[BR_SHA256_HEX_LEN + 1]) {
  static const char digits[] = "0123456789abcdef";
  uint8_t md[SHA256_DIGEST_SIZE];
  struct sha256_ctx ctx;
  sha256_init(&ctx);
  sha256_update(&ctx, len, bytes);
  sha256_digest(&ctx, sizeof md, md);
  for (size_t i = 0; i < sizeof md; i++) {
    hex[2 * i] = digits[md[i] >> 4];
    hex[2 * i + 1] = digits[md[i] & 15];
  }
  hex[BR_SHA256_HEX_LEN] = '\0';
}
