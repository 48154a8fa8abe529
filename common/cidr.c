/* cidr: address literals and ranges (see cidr.h). The IPv6 text form is
 * inet_pton's; the IPv4 one is checked here, since only the canonical dotted
 * quad means one address to every reader (inet_aton also takes "0x7f.1"). */
#include "common/cidr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* A decimal number of len characters without leading zeros, at most max. */
static bool decimal(const char *s, size_t len, unsigned max, unsigned *out) {
  if (len == 0 || len > 3 || (len > 1 && s[0] == '0'))
    return false;
  unsigned v = 0;
  for (size_t i = 0; i < len; i++) {
    if (!is_digit(s[i]))
      return false;
    v = v * 10 + (unsigned)(s[i] - '0');
  }
  if (v > max)
    return false;
  *out = v;
  return true;
}

static bool dotted_quad(const char *s, size_t len, unsigned char addr[16]) {
  unsigned char quad[4];
  size_t parts = 0, start = 0;
  for (size_t i = 0; i <= len; i++) {
    if (i < len && s[i] != '.')
      continue;
    unsigned v;
    if (parts == 4 || !decimal(s + start, i - start, 255, &v))
      return false;
    quad[parts++] = (unsigned char)v;
    start = i + 1;
  }
  if (parts != 4)
    return false;
  /* ::ffff:a.b.c.d */
  memset(addr, 0, 10);
  addr[10] = addr[11] = 0xff;
  memcpy(addr + 12, quad, 4);
  return true;
}

static bool ipv6(const char *s, size_t len, unsigned char addr[16]) {
  char text[64];
  if (len == 0 || len >= sizeof text || !memchr(s, ':', len))
    return false;
  memcpy(text, s, len);
  text[len] = '\0';
  return inet_pton(AF_INET6, text, addr) == 1;
}

bool br_ip_parse(const char *text, unsigned char addr[16]) {
  size_t len = strlen(text);
  return dotted_quad(text, len, addr) || ipv6(text, len, addr);
}

static int bad(const char **why, const char *text) {
  *why = text;
  return -EINVAL;
}

int br_cidr_parse(const char *text, struct br_cidr *out, const char **why) {
  const char *slash = strchr(text, '/');
  if (!slash)
    return bad(why, "has no prefix length, expected a range such as 169.254.0.0/16 or fd00::/8");
  size_t addr_len = (size_t)(slash - text), prefix_len = strlen(slash + 1);
  memset(out, 0, sizeof *out);
  out->v4 = dotted_quad(text, addr_len, out->addr);
  if (!out->v4 && !ipv6(text, addr_len, out->addr))
    return bad(why, "does not start with an IP address, expected a range such as 169.254.0.0/16 or fd00::/8 "
                    "(IPv4 as four numbers 0-255 without leading zeros)");
  unsigned prefix;
  if (!decimal(slash + 1, prefix_len, out->v4 ? 32 : 128, &prefix))
    return bad(why, out->v4 ? "has a bad prefix length, expected /0 to /32 for IPv4"
                            : "has a bad prefix length, expected /0 to /128 for IPv6");
  out->prefix = out->v4 ? prefix + 96 : prefix;
  for (unsigned bit = out->prefix; bit < 128; bit++)
    if (out->addr[bit / 8] & (0x80u >> (bit % 8)))
      return bad(why, "has bits set after the prefix length, expected the first address of the range "
                      "(such as 169.254.0.0/16)");
  return 0;
}

bool br_cidr_contains(const struct br_cidr *range, const unsigned char addr[16]) {
  unsigned full = range->prefix / 8, rest = range->prefix % 8;
  if (memcmp(range->addr, addr, full) != 0)
    return false;
  if (!rest)
    return true;
  unsigned char mask = (unsigned char)(0xffu << (8 - rest));
  return (range->addr[full] & mask) == (addr[full] & mask);
}
