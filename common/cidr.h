/* cidr: IP address literals and CIDR ranges, IPv4 and IPv6, parsed from text
 * and compared. Pure arithmetic on bytes; it resolves no names. */
#ifndef BR_COMMON_CIDR_H
#define BR_COMMON_CIDR_H

#include <stdbool.h>

/* An address range: the first prefix bits of addr. IPv4 is held in its
 * IPv4-mapped IPv6 form (::ffff:a.b.c.d, prefix + 96), so one comparison
 * serves both families and an IPv6 range such as ::ffff:0:0/96 covers the
 * IPv4 addresses it maps. */
struct br_cidr {
  unsigned char addr[16];
  unsigned prefix; /* 0..128, counted on the 16-byte form */
  bool v4;         /* written as IPv4: "a.b.c.d/N" */
};

/* Parses "ADDRESS/PREFIX": a dotted quad with PREFIX 0..32 or an IPv6
 * address (RFC 4291 text, no zone) with PREFIX 0..128, in decimal without
 * leading zeros. Bits after the prefix must be zero (169.254.1.0/16 is more
 * likely a typo than a range). Returns 0, or -EINVAL and sets *why to a
 * static "what is wrong, what was expected" text. */
int br_cidr_parse(const char *text, struct br_cidr *out, const char **why);

/* Parses an IP address literal: the canonical dotted quad (four numbers
 * 0-255 without leading zeros) or an IPv6 address. Returns false for
 * anything else, host names included. */
bool br_ip_parse(const char *text, unsigned char addr[16]);

/* Whether addr (as br_ip_parse gives it) lies in range. */
bool br_cidr_contains(const struct br_cidr *range, const unsigned char addr[16]);

#endif
