/* sha256: the content hash the tool and pipelock both use to name a file's
 * bytes. A thin wrapper over nettle; no I/O. */
#ifndef BR_COMMON_SHA256_H
#define BR_COMMON_SHA256_H

#include <stddef.h>

#define BR_SHA256_HEX_LEN 64

/* Writes 64 lowercase hex digits and a NUL into hex. */
void br_sha256_hex(const void *bytes, size_t len, char hex[BR_SHA256_HEX_LEN + 1]);

#endif
