/* sha256: hex SHA-256 of a byte string via libcrypto's SHA256 functions,
 * which keep their state on the caller's stack and so are thread-safe. */
/* The SHA256_* functions are deprecated in OpenSSL 3 in favour of EVP, but
 * EVP fetches the digest from a provider, and loading the default provider
 * made 2 MB of libcrypto resident in a daemon that needs one hash function
 * (VmRSS 11.4 -> 9.4 MB with one bottle); every call also paid for a fetch. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "common/sha256.h"

#include <openssl/sha.h>
#include <stdlib.h>

void br_sha256_hex(const void *bytes, size_t len, char hex[BR_SHA256_HEX_LEN + 1]) {
  static const char digits[] = "0123456789abcdef";
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256_CTX ctx;
  if (!SHA256_Init(&ctx) || !SHA256_Update(&ctx, bytes, len) || !SHA256_Final(md, &ctx))
    abort(); /* a broken libcrypto is an invariant violation, not bad input */
  for (size_t i = 0; i < sizeof md; i++) {
    hex[2 * i] = digits[md[i] >> 4];
    hex[2 * i + 1] = digits[md[i] & 15];
  }
  hex[BR_SHA256_HEX_LEN] = '\0';
}
