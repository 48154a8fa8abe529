/* Unit tests for common/cidr: address literals and ranges, and which
 * addresses a range holds. */
#include "common/cidr.h"

#include <errno.h>

#include "check.h"

static void expect_range(const char *text, bool ok, const char *why_part) {
  struct br_cidr range;
  const char *why = NULL;
  int rc = br_cidr_parse(text, &range, &why);
  if ((rc == 0) != ok || (!ok && (!why || !strstr(why, why_part)))) {
    fprintf(stderr, "range \"%s\": rc %d, why %s\n", text, rc, why ? why : "(none)");
    check_failures++;
  }
}

/* Whether address text lies in range text; both must parse. */
static bool in(const char *range_text, const char *address) {
  struct br_cidr range;
  unsigned char addr[16];
  const char *why;
  CHECK(br_cidr_parse(range_text, &range, &why) == 0);
  CHECK(br_ip_parse(address, addr));
  return br_cidr_contains(&range, addr);
}

int main(void) {
  static const struct {
    const char *text;
    bool ok;
    const char *why; /* a part of the reason when refused */
  } ranges[] = {
      {"169.254.0.0/16", true, NULL},
      {"0.0.0.0/0", true, NULL},
      {"127.0.0.1/32", true, NULL},
      {"fd00::/8", true, NULL},
      {"::1/128", true, NULL},
      {"::ffff:0:0/96", true, NULL},
      {"169.254.0.0", false, "no prefix length"},
      {"169.254.1.0/16", false, "bits set after the prefix"},
      {"fd00::1/8", false, "bits set after the prefix"},
      {"10.0.0.0/33", false, "/0 to /32"},
      {"::/129", false, "/0 to /128"},
      {"10.0.0.0/08", false, "prefix length"},
      {"10.0.0.0/", false, "prefix length"},
      {"010.0.0.0/8", false, "IP address"},
      {"10.0.0/8", false, "IP address"},
      {"0x0a.0.0.0/8", false, "IP address"},
      {"metadata.google.internal/32", false, "IP address"},
      {"fe80::1%eth0/64", false, "IP address"},
      {"/8", false, "IP address"},
  };
  for (size_t i = 0; i < sizeof ranges / sizeof *ranges; i++)
    expect_range(ranges[i].text, ranges[i].ok, ranges[i].why);

  unsigned char addr[16];
  CHECK(br_ip_parse("169.254.169.254", addr));
  CHECK(br_ip_parse("::1", addr));
  CHECK(!br_ip_parse("169.254.169.0254", addr));
  CHECK(!br_ip_parse("256.1.1.1", addr));
  CHECK(!br_ip_parse("1.2.3", addr));
  CHECK(!br_ip_parse("1.2.3.4.5", addr));
  CHECK(!br_ip_parse("api.github.com", addr));
  CHECK(!br_ip_parse("", addr));

  CHECK(in("169.254.0.0/16", "169.254.169.254"));
  CHECK(!in("169.254.0.0/16", "169.255.0.1"));
  CHECK(in("127.0.0.0/8", "127.1.2.3"));
  CHECK(!in("127.0.0.0/8", "128.0.0.1"));
  CHECK(in("10.0.0.0/12", "10.15.255.255"));
  CHECK(!in("10.0.0.0/12", "10.16.0.0"));
  CHECK(in("0.0.0.0/0", "8.8.8.8"));
  CHECK(!in("0.0.0.0/0", "::1"));          /* an IPv4 range holds no IPv6 address */
  CHECK(in("::ffff:0:0/96", "192.0.2.1")); /* IPv4-mapped: IPv4 addresses */
  CHECK(in("::ffff:169.254.0.0/112", "169.254.1.1"));
  CHECK(in("fd00::/8", "fd12::1"));
  CHECK(!in("fd00::/8", "fe80::1"));
  CHECK(!in("::1/128", "127.0.0.1"));
  CHECK_DONE();
}
