/* sha256: hex SHA-256 of a byte string via libcrypto's one-shot EVP digest,
 * which is thread-safe and needs no context kept between calls. */
#include "common/sha256.h"

#include <openssl/evp.h>
#include <stdlib.h>

void br_sha256_hex(const void *bytes, size_t len, char hex[BR_SHA256_HEX_LEN + 1]) {
  static const char digits[] = "0123456789abcdef";
  unsigned char md[32];
  unsigned int md_len = 0;
  if (!EVP_Digest(bytes, len, md, &md_len, EVP_sha256(), NULL) || md_len != sizeof md)
    abort(); /* a broken libcrypto is an invariant violation, not bad input */
  for (size_t i = 0; i < sizeof md; i++) {
    hex[2 * i] = digits[md[i] >> 4];
    hex[2 * i + 1] = digits[md[i] & 15];
  }
  hex[BR_SHA256_HEX_LEN] = '\0';
}
