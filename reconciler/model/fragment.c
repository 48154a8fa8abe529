/* fragment: the strict reader of desired-route fragments, bytes to routes or
 * to one message that names file, line and field. No I/O, no merging. */
#include "reconciler/model/fragment.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/diag.h"
#include "common/jsoncheck.h"
#include "common/strmap.h"
#include "common/yamldoc.h"
#include "reconciler/model/expiry.h"

/* How much of a value a message may quote. */
#define EXCERPT_MAX 40

struct parser {
  const char *name;
  const struct br_limits *limits;
  struct br_buf *err;
  struct br_buf field;  /* the FIELD part of the next message */
  struct br_buf quoted; /* scratch for one quoted excerpt */
};

static int bad(const char **why, const char *text) {
  *why = text;
  return -EINVAL;
}

static bool is_ctl_or_space(unsigned char c) { return c <= 0x20 || c == 0x7f; }

static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static bool is_lower_alnum(unsigned char c) { return is_digit(c) || (c >= 'a' && c <= 'z'); }

/* Whether a label is a number to URL parsers (WHATWG "ends in a number")
 * and inet_aton: decimal digits, or "0x"/"0X" and hex digits (also none). A
 * name whose last label is one is read as an IPv4 address: "0x7f000001",
 * "127.0x1" and "0xa9fea9fe" (the metadata address) are addresses, not names. */
static bool numeric_label(const char *s, size_t len) {
  if (len >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
    return strspn(s + 2, "0123456789abcdefABCDEF") >= len - 2;
  return strspn(s, "0123456789") >= len;
}

/* Of the numeric forms (inet_aton also takes "1.2.3", octal "010" and
 * "4294967295"), only the dotted quad means the same thing to everyone. */
static bool dotted_quad(const char *s, size_t len) {
  size_t parts = 0, i = 0;
  while (i <= len) {
    size_t start = i;
    unsigned value = 0;
    while (i < len && is_digit((unsigned char)s[i])) {
      value = value * 10 + (unsigned)(s[i] - '0');
      if (value > 255)
        return false;
      i++;
    }
    size_t digits = i - start;
    if (digits == 0 || (digits > 1 && s[start] == '0') || (i < len && s[i] != '.'))
      return false;
    parts++;
    i++; /* past the dot, or past the end */
  }
  return parts == 4;
}

int br_host_check(const char *s, size_t len, char *normalised, const char **why) {
  if (len == 0)
    return bad(why, "is empty, expected an exact host name");
  /* The most specific mistake first: a URL pasted whole would otherwise be
   * reported as a port or a path. */
  if (memmem(s, len, "://", 3))
    return bad(why, "contains a URL scheme, expected the host name alone, without \"https://\"");
  bool ctl = false, non_ascii = false;
  size_t colons = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    ctl |= is_ctl_or_space(c);
    non_ascii |= c >= 0x80;
    colons += c == ':';
  }
  if (ctl)
    return bad(why, "contains whitespace or control characters, expected an exact host name");
  if (non_ascii)
    return bad(why, "contains non-ASCII characters, expected an ASCII host name "
                    "(the xn-- form for international names)");
  if (memchr(s, '*', len))
    return bad(why, "is a wildcard, expected an exact host name");
  if (memchr(s, '[', len) || memchr(s, ']', len) || colons > 1)
    return bad(why, "is an IPv6 literal, expected a host name or an IPv4 address");
  if (colons)
    return bad(why, "has a port, expected the host name alone, without \":PORT\"");
  if (memchr(s, '@', len))
    return bad(why, "contains user info (\"@\"), expected the host name alone");
  if (memchr(s, '/', len) || memchr(s, '?', len) || memchr(s, '#', len))
    return bad(why, "contains a path or query, expected the host name alone "
                    "(paths belong in path_allowlist)");
  if (len > BR_HOST_MAX)
    return bad(why, "is longer than 253 characters, expected at most 253");
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 'A' && c <= 'Z')
      c = (unsigned char)(c - 'A' + 'a');
    if (!is_lower_alnum(c) && c != '-' && c != '.')
      return bad(why, "contains a character other than letters, digits, \"-\" and \".\", "
                      "expected an exact host name");
    normalised[i] = (char)c;
  }
  normalised[len] = '\0';
  if (normalised[len - 1] == '.')
    return bad(why, "ends with a dot, expected the name without the trailing dot");
  size_t last_label = 0;
  for (size_t start = 0; start < len;) {
    const char *dot = memchr(normalised + start, '.', len - start);
    size_t end = dot ? (size_t)(dot - normalised) : len;
    if (end == start)
      return bad(why, "has an empty label, expected labels separated by single dots");
    if (end - start > BR_HOST_LABEL_MAX)
      return bad(why, "has a label longer than 63 characters, expected at most 63 per label");
    if (normalised[start] == '-' || normalised[end - 1] == '-')
      return bad(why, "has a label that starts or ends with \"-\", "
                      "expected labels that start and end with a letter or digit");
    last_label = start;
    start = end + 1;
  }
  if (numeric_label(normalised + last_label, len - last_label) && !dotted_quad(normalised, len))
    return bad(why, "is numeric but not an IPv4 address, "
                    "expected four numbers 0-255 without leading zeros");
  return 0;
}

int br_path_check(const char *s, size_t len, const char **why) {
  if (len == 0)
    return bad(why, "is empty, expected a path starting with \"/\"");
  if (s[0] != '/')
    return bad(why, "does not start with \"/\", expected an absolute path such as \"/repos/\"");
  bool ctl = false, non_ascii = false;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    ctl |= is_ctl_or_space(c);
    non_ascii |= c >= 0x80;
  }
  /* The sidecar compares against the request line, where these can only
   * appear percent-encoded: a raw one would never match anything. */
  if (ctl)
    return bad(why, "contains whitespace or control characters, expected them percent-encoded (%XX)");
  if (non_ascii)
    return bad(why, "contains non-ASCII characters, expected them percent-encoded (%XX)");
  if (len > BR_PATH_MAX)
    return bad(why, "is longer than 2048 characters, expected at most 2048");
  return 0;
}

bool br_token_env_valid(const char *s) {
  size_t len = strlen(s);
  if (len == 0 || len > BR_TOKEN_ENV_MAX || is_digit((unsigned char)s[0]))
    return false;
  return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == len;
}

bool br_auth_scheme_valid(const char *s, size_t len) {
  static const char tchar[] = "!#$%&'*+-.^_`|~0123456789"
                              "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  if (len == 0)
    return false;
  for (size_t i = 0; i < len; i++)
    if (s[i] == '\0' || !strchr(tchar, s[i]))
      return false;
  return true;
}

/* Appends the one message line, whole or not at all (br_vdiag), so a full
 * err buffer never ends up holding half a line. */
static int fail(struct parser *p, int rc, size_t line, size_t column, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int fail(struct parser *p, int rc, size_t line, size_t column, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  br_vdiag(p->err, p->name, line, column, p->field.len ? p->field.data : "(document)", fmt, ap);
  va_end(ap);
  return rc;
}

static const char *quoted(struct parser *p, const char *s, size_t len) {
  br_buf_reset(&p->quoted);
  if (br_quote_excerpt(&p->quoted, s, len, EXCERPT_MAX) || !p->quoted.data)
    return "\"...\"";
  return p->quoted.data;
}

static void set_field(struct parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_field(struct parser *p, const char *fmt, ...) {
  br_buf_reset(&p->field);
  va_list ap;
  va_start(ap, fmt);
  br_buf_vprintf(&p->field, fmt, ap);
  va_end(ap);
}

/* Names a key in the field path the way yamldoc does, so both kinds of
 * message read alike: identifiers bare, anything else as a quoted excerpt. */
static void field_add_key(struct parser *p, const struct br_ynode *key) {
  static const char ident[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";
  if (p->field.len)
    br_buf_adds(&p->field, ".");
  if (key->kind != BR_YNODE_SCALAR)
    br_buf_adds(&p->field, "<complex key>");
  else if (key->len && strspn(key->value, ident) == key->len)
    br_buf_add(&p->field, key->value, key->len);
  else
    br_quote_excerpt(&p->field, key->value, key->len, EXCERPT_MAX);
}

static bool key_is(const struct br_ynode *key, const char *name) {
  size_t n = strlen(name);
  return key->kind == BR_YNODE_SCALAR && key->len == n && memcmp(key->value, name, n) == 0;
}

/* A field that must be a string. A plain scalar that YAML resolves to a
 * number, boolean or null is not one, even where the text would pass: other
 * readers of the same file (PyYAML, the sidecars) see 123 or true there.
 * secret: the value may be a token pasted in the wrong place, so it is not
 * quoted back. */
static int want_string(struct parser *p, const struct br_ynode *v, const char *expected, bool secret) {
  if (v->kind == BR_YNODE_SCALAR && br_yscalar_type(v) == BR_YSTR)
    return 0;
  if (v->kind == BR_YNODE_SCALAR && v->len == 0)
    return fail(p, -EINVAL, v->line, v->column, "no value, expected %s", expected);
  if (v->kind == BR_YNODE_SCALAR && !secret)
    return fail(p, -EINVAL, v->line, v->column, "%s, expected %s; quote it (%s) if it is meant as text",
                br_ynode_describe(v), expected, quoted(p, v->value, v->len));
  if (v->kind == BR_YNODE_SCALAR)
    return fail(p, -EINVAL, v->line, v->column, "%s, expected %s; quote it if it is meant as text",
                br_ynode_describe(v), expected);
  return fail(p, -EINVAL, v->line, v->column, "%s, expected %s", br_ynode_describe(v), expected);
}

static int parse_host(struct parser *p, const struct br_ynode *v, char *host) {
  const char *why;
  int rc = want_string(p, v, "an exact host name", false);
  if (rc)
    return rc;
  if (br_host_check(v->value, v->len, host, &why))
    return fail(p, -EINVAL, v->line, v->column, "%s %s", quoted(p, v->value, v->len), why);
  return 0;
}

static int parse_paths(struct parser *p, size_t route, const struct br_ynode *v, struct br_strv *paths) {
  if (v->kind == BR_YNODE_SCALAR && br_yscalar_type(v) == BR_YSTR)
    return fail(p, -EINVAL, v->line, v->column, "a string, expected a list of paths such as [%s]",
                quoted(p, v->value, v->len));
  if (v->kind != BR_YNODE_SEQ)
    return want_string(p, v, "a list of paths such as [\"/\"]", false);
  if (v->n == 0)
    return fail(p, -EINVAL, v->line, v->column,
                "an empty list, expected at least one path (\"/\" allows everything)");
  if (v->n > p->limits->max_paths)
    return fail(p, -E2BIG, v->line, v->column, "%zu paths, expected at most %zu per route", v->n,
                p->limits->max_paths);
  /* Repeats are dropped through a set: scanning the list for each path made
   * a route of 1,024 paths cost half a million comparisons. */
  struct br_strmap seen;
  br_strmap_init(&seen);
  int rc = 0;
  for (size_t i = 0; i < v->n && !rc; i++) {
    const struct br_ynode *item = v->items[i];
    const char *why;
    set_field(p, "routes[%zu].path_allowlist[%zu]", route, i);
    if ((rc = want_string(p, item, "a path starting with \"/\"", false)))
      break;
    if (br_path_check(item->value, item->len, &why)) {
      rc = fail(p, -EINVAL, item->line, item->column, "%s %s", quoted(p, item->value, item->len), why);
      break;
    }
    /* Checked above: no NUL inside, so value is the whole path. */
    if (!br_strmap_get(&seen, item->value) && !(rc = br_strmap_put(&seen, item->value, paths)))
      rc = br_strv_add(paths, item->value);
  }
  br_strmap_free(&seen);
  return rc;
}

static int parse_auth_scheme(struct parser *p, const struct br_ynode *v) {
  int rc = want_string(p, v, "an HTTP auth scheme such as Bearer", true);
  if (rc)
    return rc;
  if (v->len == 0)
    return fail(p, -EINVAL, v->line, v->column, "empty, expected a scheme name such as Bearer, token or Basic");
  if (!br_auth_scheme_valid(v->value, v->len))
    return fail(p, -EINVAL, v->line, v->column,
                "not a single HTTP token (not quoted here: it may hold a secret), "
                "expected a scheme name such as Bearer, token or Basic");
  return 0;
}

static int parse_token_env(struct parser *p, const struct br_ynode *v) {
  int rc = want_string(p, v, "the name of an environment variable such as EGRESS_TOKEN_0", true);
  if (rc)
    return rc;
  if (v->len == 0)
    return fail(p, -EINVAL, v->line, v->column,
                "empty, expected the name of an environment variable such as EGRESS_TOKEN_0");
  if (v->len > BR_TOKEN_ENV_MAX)
    return fail(p, -EINVAL, v->line, v->column, "longer than %d characters, expected a shorter name",
                BR_TOKEN_ENV_MAX);
  if (strlen(v->value) != v->len || !br_token_env_valid(v->value))
    return fail(p, -EINVAL, v->line, v->column,
                "not an environment variable name (not quoted here: it may hold a secret), "
                "expected [A-Z_][A-Z0-9_]* such as EGRESS_TOKEN_0; the token itself "
                "never goes in a fragment");
  return 0;
}

/* expires: an RFC 3339 time. One already past is an error only where the
 * caller asks (limits->expires_after: a file being installed or checked);
 * the daemon reads such a route as expired, not as wrong. */
static int parse_expires(struct parser *p, const struct br_ynode *v, int64_t *out) {
  const char *why;
  int rc = want_string(p, v, "a time such as 2026-07-01T12:00:00Z", false);
  if (rc)
    return rc;
  if (br_expiry_parse(v->value, v->len, out, &why))
    return fail(p, -EINVAL, v->line, v->column, "%s %s", quoted(p, v->value, v->len), why);
  if (p->limits->expires_after && *out <= p->limits->expires_after) {
    char now[BR_EXPIRY_TEXT_MAX];
    br_expiry_format(p->limits->expires_after, now, sizeof now);
    return fail(p, -EINVAL, v->line, v->column, "%s is in the past (it is %s now), expected a time to come",
                quoted(p, v->value, v->len), now);
  }
  return 0;
}

static int set_origin(struct parser *p, struct br_route *route, const struct br_ynode *map, size_t index) {
  size_t line = map->line;
  route->column = map->column;
  route->index = index;
  struct br_buf origin;
  br_buf_init(&origin, SIZE_MAX);
  if (br_buf_printf(&origin, "%s:%zu", p->name, line) || !(route->origin = br_buf_steal(&origin))) {
    br_buf_free(&origin);
    return -ENOMEM;
  }
  return 0;
}

static int parse_route(struct parser *p, size_t index, const struct br_ynode *map, struct br_routes *out) {
  set_field(p, "routes[%zu]", index);
  if (map->kind != BR_YNODE_MAP) {
    if (map->kind == BR_YNODE_SCALAR && map->len == 0)
      return fail(p, -EINVAL, map->line, map->column,
                  "an empty entry, expected a mapping with host and path_allowlist");
    return fail(p, -EINVAL, map->line, map->column, "%s, expected a mapping with host and path_allowlist",
                br_ynode_describe(map));
  }
  const struct br_ynode *host = NULL, *paths = NULL, *scheme = NULL, *env = NULL;
  int64_t expires = 0;
  char normalised[BR_HOST_MAX + 1];
  struct br_strv allowlist;
  br_strv_init(&allowlist);
  int rc = 0;
  /* Keys in document order, so the message is about the first problem a
   * reader meets. yamldoc has already refused repeated keys. */
  for (size_t i = 0; i + 1 < map->n && !rc; i += 2) {
    const struct br_ynode *key = map->items[i], *value = map->items[i + 1];
    set_field(p, "routes[%zu]", index);
    field_add_key(p, key);
    if (key_is(key, "host"))
      rc = parse_host(p, host = value, normalised);
    else if (key_is(key, "path_allowlist"))
      rc = parse_paths(p, index, paths = value, &allowlist);
    else if (key_is(key, "auth_scheme"))
      rc = parse_auth_scheme(p, scheme = value);
    else if (key_is(key, "token_env"))
      rc = parse_token_env(p, env = value);
    else if (key_is(key, "expires"))
      rc = parse_expires(p, value, &expires);
    else
      rc = fail(p, -EINVAL, key->line, key->column,
                "unknown key, expected host, path_allowlist, auth_scheme, token_env or expires");
  }
  if (rc)
    goto done;
  if (!host) {
    set_field(p, "routes[%zu].host", index);
    rc = fail(p, -EINVAL, map->line, map->column, "missing, expected an exact host name");
    goto done;
  }
  if (!scheme != !env) {
    set_field(p, "routes[%zu].%s", index, scheme ? "token_env" : "auth_scheme");
    rc = fail(p, -EINVAL, map->line, map->column,
              "missing, expected auth_scheme and token_env together or neither");
    goto done;
  }
  struct br_route *route = br_routes_append(out, normalised);
  if (!route) {
    rc = -ENOMEM;
    goto done;
  }
  /* From here a failure leaves a partial route in out; the caller's rollback
   * frees it with the rest. */
  route->paths = allowlist;
  br_strv_init(&allowlist);
  /* No path_allowlist: every path of the host, as the egress format and the
   * old tooling have it (an empty list allows none). */
  route->all_paths = !paths;
  route->expires = expires;
  if (scheme && (!(route->auth_scheme = strdup(scheme->value)) || !(route->token_env = strdup(env->value))))
    rc = -ENOMEM;
  if (!rc)
    rc = set_origin(p, route, map, index);
done:
  br_strv_free(&allowlist);
  return rc;
}

static int parse_routes(struct parser *p, const struct br_ynode *seq, struct br_routes *out) {
  set_field(p, "routes");
  if (seq->kind != BR_YNODE_SEQ) {
    if (seq->kind == BR_YNODE_SCALAR && seq->len == 0)
      return fail(p, -EINVAL, seq->line, seq->column,
                  "no value, expected a list of routes (\"routes: []\" for none)");
    return fail(p, -EINVAL, seq->line, seq->column, "%s, expected a list of routes", br_ynode_describe(seq));
  }
  if (seq->n > p->limits->max_routes)
    return fail(p, -E2BIG, seq->line, seq->column, "%zu routes, expected at most %zu per fragment", seq->n,
                p->limits->max_routes);
  for (size_t i = 0; i < seq->n; i++) {
    int rc = parse_route(p, i, seq->items[i], out);
    if (rc)
      return rc;
  }
  return 0;
}

static int parse_document(struct parser *p, const struct br_ynode *root, struct br_routes *out) {
  static const char expected[] = "expected a mapping with the single key \"routes\"";
  if (!root)
    return fail(p, -EINVAL, 1, 1, "empty fragment, %s (\"routes: []\" declares no routes)", expected);
  if (root->kind != BR_YNODE_MAP)
    return fail(p, -EINVAL, root->line, root->column, "%s, %s", br_ynode_describe(root), expected);
  const struct br_ynode *routes = NULL;
  int64_t expires = 0;
  for (size_t i = 0; i + 1 < root->n; i += 2) {
    const struct br_ynode *key = root->items[i];
    if (key_is(key, "routes")) {
      routes = root->items[i + 1];
      continue;
    }
    br_buf_reset(&p->field);
    field_add_key(p, key);
    if (key_is(key, "expires")) {
      int rc = parse_expires(p, root->items[i + 1], &expires);
      if (rc)
        return rc;
      continue;
    }
    return fail(p, -EINVAL, key->line, key->column, "unknown key, expected routes or expires");
  }
  if (!routes) {
    set_field(p, "routes");
    return fail(p, -EINVAL, root->line, root->column, "missing, expected a list of routes");
  }
  size_t first = out->n;
  int rc = parse_routes(p, routes, out);
  /* The fragment's expires covers each of its routes; a route's own may
   * end it sooner, never later. */
  for (size_t i = first; !rc && expires && i < out->n; i++)
    if (!out->v[i].expires || out->v[i].expires > expires)
      out->v[i].expires = expires;
  return rc;
}

/* Enough nodes for the largest file the limits allow (per route: mapping,
 * four keys, three scalars, the path list and its paths), but never more
 * than a quarter of the byte limit. yamldoc spends some 140 bytes of memory
 * per node, and "[a,a,a,...]" makes one of every two bytes: a hostile 1 MiB
 * file would cost 70 MiB. A real fragment spends more than four bytes per
 * node ("/x", or "- /x" and a newline, and keys are longer still). */
static size_t node_budget(const struct br_limits *l) {
  size_t per_route = l->max_paths > SIZE_MAX / 2 ? SIZE_MAX / 2 : l->max_paths + 9;
  size_t nodes =
      l->max_routes && per_route > (SIZE_MAX - 64) / l->max_routes ? SIZE_MAX : l->max_routes * per_route + 64;
  size_t by_size = l->max_file_bytes / 4 + 64;
  return nodes < by_size ? nodes : by_size;
}

int br_fragment_parse(const char *name, const char *bytes, size_t len, const struct br_limits *limits,
                      struct br_routes *out, struct br_buf *err) {
  struct br_limits defaults;
  if (!limits) {
    br_limits_default(&defaults);
    limits = &defaults;
  }
  struct br_yopts yopts = {
      .max_bytes = limits->max_file_bytes,
      .max_depth = limits->max_depth,
      .max_nodes = node_budget(limits),
      .allow_aliases = false,
      .allow_dup_keys = false,
  };
  struct br_ynode *root = NULL;
  /* A .json fragment is JSON to its producers' tools (jq, json.load), which
   * refuse what YAML forgives: trailing commas, NaN, comments, bare words.
   * Checked as JSON first, then read by the same YAML loader as any
   * fragment (JSON is YAML), which refuses duplicate keys. */
  size_t name_len = strlen(name);
  int rc = 0;
  if (len <= limits->max_file_bytes && name_len >= 5 && strcmp(name + name_len - 5, ".json") == 0)
    rc = br_json_check(name, bytes, len, limits->max_depth, err);
  if (!rc)
    rc = br_ydoc_parse(name, bytes, len, &yopts, &root, err);
  if (rc)
    return rc;
  struct parser p = {.name = name, .limits = limits, .err = err};
  br_buf_init(&p.field, 4096);
  br_buf_init(&p.quoted, 4 * EXCERPT_MAX + 16);
  size_t before = out->n;
  rc = parse_document(&p, root, out);
  if (rc)
    while (out->n > before)
      br_route_free(&out->v[--out->n]);
  br_buf_free(&p.quoted);
  br_buf_free(&p.field);
  br_ynode_free(root);
  return rc;
}

bool br_fragment_name_counts(const char *name) {
  if (name[0] == '.')
    return false;
  size_t len = strlen(name);
  static const char *const exts[] = {".yaml", ".yml", ".json"};
  for (size_t i = 0; i < sizeof exts / sizeof *exts; i++) {
    size_t n = strlen(exts[i]);
    if (len > n && strcmp(name + len - n, exts[i]) == 0)
      return true;
  }
  return false;
}
