/* record_key: the key that signs the added-hosts records
 * (STATE/.reconciler/record.key: 32 random bytes, the daemon user's, mode
 * 0600, one link, in a directory no one else may write; made on first use)
 * and the MAC of a record, HMAC-SHA256 over the slug and its host list.
 * Whoever may write the state directory but not read root's files cannot
 * make a MAC that verifies. */
#ifndef BR_BOTTLE_RECORD_KEY_H
#define BR_BOTTLE_RECORD_KEY_H

#include <stdbool.h>
#include <stdint.h>

#include <nettle/sha2.h>

#include "common/buf.h"
#include "common/strv.h"

#define BR_RECORD_KEY_LEN 32
#define BR_RECORD_MAC_HEX_LEN (2 * SHA256_DIGEST_SIZE)

/* The record key of state_dir into key; with create, made when missing.
 * Checked on every use (a per-thread copy is reused while the directory
 * and the file are the same inodes, still trusted). Returns 0, or -errno
 * with the reason in why (never the key). */
int br_record_key_load(const char *state_dir, bool create, uint8_t key[BR_RECORD_KEY_LEN], struct br_buf *why);

/* The MAC of a slug's host list, as listed, in lowercase hex: every field
 * length-prefixed, so that no two (slug, list) pairs give the same bytes. */
void br_record_mac(const uint8_t key[BR_RECORD_KEY_LEN], const char *slug, const struct br_strv *hosts,
                   char hex[BR_RECORD_MAC_HEX_LEN + 1]);

/* Compares two MACs in hex in time independent of where they differ. */
bool br_record_mac_equal(const char *a, const char *b);

#endif
