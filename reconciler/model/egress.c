/* egress: parses the live egress routes file and renders the routes into it
 * byte-for-byte as Python's json.dumps(indent=2) would (common/pyjson). Must
 * not touch the filesystem. */
#include "reconciler/model/egress.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/diag.h"
#include "common/jsoncheck.h"
#include "common/pyjson.h"
#include "common/yamldoc.h"

void br_egress_live_init(struct br_egress_live *live) {
  live->members = NULL;
  live->n_members = 0;
  live->routes_at = 0;
  br_routes_init(&live->routes);
  br_strv_init(&live->drift);
}

static void members_free(struct br_egress_live *live) {
  for (size_t i = 0; i < live->n_members; i++) {
    free(live->members[i].key);
    json_decref(live->members[i].value);
    free(live->members[i].raw);
  }
  free(live->members);
  live->members = NULL;
  live->n_members = 0;
  live->routes_at = 0;
}

void br_egress_live_free(struct br_egress_live *live) {
  members_free(live);
  br_routes_free(&live->routes);
  br_strv_free(&live->drift);
}

/* ---- Where a value sits in the text ----
 *
 * jansson reports positions for syntax errors only; a value it has parsed
 * carries none. Shape errors are found after parsing, so to tell the person
 * which line to fix we walk the (already valid) text again along the path of
 * the offending field. This runs once, on the error path, so its cost is
 * irrelevant. */

struct step {
  const char *key; /* object member, or NULL for an array index */
  size_t index;
};

static size_t skip_ws(const char *s, size_t len, size_t i) {
  while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
    i++;
  return i;
}

/* i is at the opening quote; returns the index after the closing one. */
static size_t skip_string(const char *s, size_t len, size_t i) {
  for (i++; i < len; i++) {
    if (s[i] == '\\')
      i++;
    else if (s[i] == '"')
      return i + 1;
  }
  return len;
}

static size_t skip_value(const char *s, size_t len, size_t i) {
  if (i >= len)
    return len;
  if (s[i] == '"')
    return skip_string(s, len, i);
  if (s[i] == '{' || s[i] == '[') {
    size_t depth = 0;
    while (i < len) {
      char c = s[i];
      if (c == '"') {
        i = skip_string(s, len, i);
        continue;
      }
      i++;
      if (c == '{' || c == '[')
        depth++;
      else if ((c == '}' || c == ']') && --depth == 0)
        break;
    }
    return i;
  }
  while (i < len && !strchr(",]} \t\n\r", s[i]))
    i++;
  return i;
}

/* Offset of the value at path, or of the deepest enclosing value that exists
 * (a missing key points at its object). jansson keeps the last of duplicate
 * keys, so the last matching member is the one that was parsed. */
static size_t locate(const char *s, size_t len, const struct step *path, size_t depth) {
  size_t i = skip_ws(s, len, len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0);
  for (size_t d = 0; d < depth && i < len; d++) {
    size_t container = i;
    size_t found = SIZE_MAX;
    if (path[d].key) {
      if (s[i] != '{')
        return container;
      size_t keylen = strlen(path[d].key);
      i = skip_ws(s, len, i + 1);
      while (i < len && s[i] == '"') {
        size_t key = i + 1;
        i = skip_string(s, len, i);
        /* Keys spelled with escapes do not match; the error then points at
         * the object, which is still the right neighbourhood. */
        bool match = i - 1 - key == keylen && memcmp(s + key, path[d].key, keylen) == 0;
        i = skip_ws(s, len, i);
        if (i < len && s[i] == ':')
          i = skip_ws(s, len, i + 1);
        if (match)
          found = i;
        i = skip_ws(s, len, skip_value(s, len, i));
        if (i < len && s[i] == ',')
          i = skip_ws(s, len, i + 1);
        else
          break;
      }
    } else {
      if (s[i] != '[')
        return container;
      i = skip_ws(s, len, i + 1);
      size_t k = 0;
      while (i < len && s[i] != ']') {
        if (k++ == path[d].index) {
          found = i;
          break;
        }
        i = skip_ws(s, len, skip_value(s, len, i));
        if (i < len && s[i] == ',')
          i = skip_ws(s, len, i + 1);
      }
    }
    if (found == SIZE_MAX)
      return container;
    i = found;
  }
  return i < len ? i : len;
}

/* 1-based line and column of offset pos, columns counting UTF-8 characters
 * the way jansson's own syntax errors do. */
static void line_column(const char *s, size_t pos, size_t *line, size_t *column) {
  *line = 1;
  *column = 1;
  /* A byte order mark is no character of the text (br_json_check agrees). */
  size_t from = pos >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
  for (size_t i = from; i < pos; i++) {
    if (s[i] == '\n') {
      (*line)++;
      *column = 1;
    } else if (((unsigned char)s[i] & 0xC0) != 0x80) {
      (*column)++;
    }
  }
}

/* ---- Parsing ---- */

/* jansson's own nesting limit: deeper text it refuses anyway. */
#define JSON_MAX_DEPTH 2048
/* Lines of drift kept; the rest are counted. A tampered file may repeat one
 * mistake thousands of times, and `plan` must stay readable. */
#define DRIFT_MAX 16

struct parse {
  const char *name;
  const char *bytes;
  size_t len;
  struct br_buf *err;
  struct br_egress_live *out;
  size_t drift_more; /* drift past DRIFT_MAX */
  size_t *first_at;  /* for each model route, the routes[] index that named it first */
};

static const char *type_name(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT:
    return "an object";
  case JSON_ARRAY:
    return "an array";
  case JSON_STRING:
    return "a string";
  case JSON_INTEGER:
    return "an integer";
  case JSON_REAL:
    return "a number";
  case JSON_TRUE:
    return "true";
  case JSON_FALSE:
    return "false";
  case JSON_NULL:
    return "null";
  }
  return "a value";
}

/* Appends "NAME:LINE:COLUMN: FIELD: <problem>" for the field at path, with
 * no line break (br_egress_parse's contract), and returns -EINVAL, so callers
 * can `return shape_error(...)`. */
__attribute__((format(printf, 4, 5))) static int shape_error(const struct parse *p, const struct step *path,
                                                             size_t depth, const char *fmt, ...) {
  if (!p->err)
    return -EINVAL;
  size_t line, column;
  line_column(p->bytes, locate(p->bytes, p->len, path, depth), &line, &column);
  struct br_buf field;
  br_buf_init(&field, 256); /* the paths are the few fixed ones of the format */
  if (depth == 0)
    br_buf_adds(&field, "top level");
  for (size_t d = 0; d < depth; d++) {
    if (path[d].key)
      br_buf_printf(&field, "%s%s", d ? "." : "", path[d].key);
    else
      br_buf_printf(&field, "[%zu]", path[d].index);
  }
  br_diag_start(p->err, p->name, line, column, br_buf_str(&field));
  br_buf_free(&field);
  va_list ap;
  va_start(ap, fmt);
  br_buf_vprintf(p->err, fmt, ap);
  va_end(ap);
  return -EINVAL;
}

/* The same at byte offset at, for what jansson reports with a position. */
static int text_error(const struct parse *p, size_t at, const char *field, const char *what) {
  size_t line, column;
  line_column(p->bytes, at, &line, &column);
  if (p->err && !br_diag_start(p->err, p->name, line, column, field))
    br_buf_adds(p->err, what);
  return -EINVAL;
}

/* Records one reason why the file is not in canonical form (see drift in
 * egress.h). Returns 0 or -ENOMEM. */
__attribute__((format(printf, 2, 3))) static int drift(struct parse *p, const char *fmt, ...) {
  if (p->out->drift.n >= DRIFT_MAX) {
    p->drift_more++;
    return 0;
  }
  struct br_buf line;
  br_buf_init(&line, 4096);
  va_list ap;
  va_start(ap, fmt);
  int rc = br_buf_vprintf(&line, fmt, ap);
  va_end(ap);
  if (rc == 0 || rc == -EFBIG) /* a cut line still says why */
    rc = br_strv_add(&p->out->drift, br_buf_str(&line));
  br_buf_free(&line);
  return rc;
}

/* s quoted for a message, at most 60 characters, in q (reset first). */
static const char *quoted(struct br_buf *q, const char *s, size_t n) {
  br_buf_reset(q);
  br_quote_excerpt(q, s, n, 60);
  return br_buf_str(q);
}

/* jansson refused a duplicate key and reports the offset just after it: the
 * reason names the key as the text spells it and where it stands. Readers
 * disagree on which of two equal keys counts (jansson and Python keep the
 * last, others the first), which is how a check gets bypassed. */
static int duplicate_key(struct parse *p, const char *field, size_t base, const json_error_t *jerr,
                         const char *then) {
  size_t end = base + (size_t)jerr->position, start = end >= 2 ? end - 2 : 0;
  /* Back to the opening quote: the first '"' not escaped, that is, with an
   * even number of backslashes before it. */
  for (; start > base; start--) {
    size_t slashes = 0;
    while (start - slashes > 0 && p->bytes[start - slashes - 1] == '\\')
      slashes++;
    if (p->bytes[start] == '"' && slashes % 2 == 0)
      break;
  }
  size_t line, column;
  line_column(p->bytes, start, &line, &column);
  struct br_buf q;
  br_buf_init(&q, 512);
  int rc = drift(p, "%s: the key %s twice in one object (line %zu, column %zu); %s", field,
                 end > start + 1 ? quoted(&q, p->bytes + start + 1, end - start - 2) : "?", line, column, then);
  br_buf_free(&q);
  return rc;
}

/* Parses the value at bytes[at, end) with jansson, noting a duplicate key
 * (then: what a rewrite does about it). *out is NULL when jansson cannot
 * hold it; jerr then says why. */
static int load_value(struct parse *p, const char *field, const char *then, size_t at, size_t end, json_t **out,
                      json_error_t *jerr) {
  const size_t flags = JSON_DECODE_ANY | JSON_ALLOW_NUL;
  *out = json_loadb(p->bytes + at, end - at, flags | JSON_REJECT_DUPLICATES, jerr);
  if (!*out && json_error_code(jerr) == json_error_duplicate_key) {
    json_error_t dup = *jerr;
    if ((*out = json_loadb(p->bytes + at, end - at, flags, jerr))) {
      int rc = duplicate_key(p, field, at, &dup, then);
      if (rc) {
        json_decref(*out);
        *out = NULL;
        return rc;
      }
    }
  }
  return !*out && json_error_code(jerr) == json_error_out_of_memory ? -ENOMEM : 0;
}

/* One string of a route: the model keeps C strings, so a \u0000 inside
 * would cut it short, a host "a\u0000.evil" becoming "a". */
static bool whole_string(const json_t *v) { return strlen(json_string_value(v)) == json_string_length(v); }

/* An optional string member: absent and null both give *out = NULL. */
static int opt_string(struct parse *p, json_t *route, struct step *path, const char *key, const char **out) {
  json_t *v = json_object_get(route, key);
  *out = NULL;
  if (!v)
    return 0;
  path[2] = (struct step){.key = key};
  if (json_is_null(v))
    return drift(p, "routes[%zu].%s: null; a rewrite leaves the key out", path[1].index, key);
  if (!json_is_string(v))
    return shape_error(p, path, 3, "is %s, expected a string", type_name(v));
  if (!whole_string(v))
    return shape_error(p, path, 3, "contains \\u0000, expected none");
  *out = json_string_value(v);
  return 0;
}

static int set_opt(char **dst, const char *src) {
  if (src && !(*dst = strdup(src)))
    return -ENOMEM;
  return 0;
}

/* Keys of a route the format has no place for: the reference addon refuses
 * the whole file for one (it might be a restriction it cannot apply), and a
 * rewrite drops them. */
static int unknown_keys(struct parse *p, json_t *route, size_t i) {
  static const char *const known[] = {"host", "path_allowlist", "auth_scheme", "token_env"};
  const char *key;
  size_t keylen;
  json_t *v;
  int rc = 0;
  struct br_buf q;
  br_buf_init(&q, 512);
  json_object_keylen_foreach(route, key, keylen, v) {
    bool ours = false;
    for (size_t k = 0; k < 4 && !ours; k++)
      ours = strlen(known[k]) == keylen && memcmp(known[k], key, keylen) == 0;
    if (!ours && !rc)
      rc = drift(p, "routes[%zu]: unknown key %s; a rewrite drops it", i, quoted(&q, key, keylen));
  }
  br_buf_free(&q);
  return rc;
}

/* A name from the file, unquoted but with control characters and bytes
 * past ASCII as \xNN, so that one line of drift stays one line. */
static int put_plain(struct br_buf *b, const char *s) {
  int rc = 0;
  for (size_t i = 0; s[i] && rc == 0; i++) {
    unsigned char c = (unsigned char)s[i];
    rc = i == 60                 ? br_buf_adds(b, "...")
         : c < 0x20 || c >= 0x7f ? br_buf_printf(b, "\\x%02x", c)
                                 : br_buf_add(b, &s[i], 1);
    if (i == 60)
      break;
  }
  return rc;
}

static int auth_words(struct br_buf *b, const char *scheme, const char *token_env) {
  br_buf_reset(b);
  if (!scheme)
    return br_buf_adds(b, "no auth");
  int rc = br_buf_adds(b, "auth ");
  if (rc == 0)
    rc = put_plain(b, scheme);
  if (rc == 0)
    rc = br_buf_adds(b, " $");
  return rc ? rc : put_plain(b, token_env);
}

/* A second route for a host: which one a reader acts on is up to the
 * reader (the first, the last, or none: the reference addon refuses the
 * file), so the model's folding must not make it look converged. */
static int second_route(struct parse *p, size_t i, size_t first, const json_t *host, const char *scheme,
                        const char *token_env) {
  struct br_buf q, auth;
  br_buf_init(&q, 512);
  br_buf_init(&auth, 512);
  auth_words(&auth, scheme, token_env);
  int rc = drift(p, "routes[%zu]: a second route for %s (the first is routes[%zu]), %s; a rewrite drops it", i,
                 quoted(&q, json_string_value(host), json_string_length(host)), first, br_buf_str(&auth));
  br_buf_free(&q);
  br_buf_free(&auth);
  return rc;
}

/* Folds a repeated host's paths into the route that first named it: what
 * it allows is shown against the desired routes, while the drift line says
 * that the entry is there at all. */
static int fold_paths(struct br_route *first, json_t *paths) {
  if (!paths) {
    first->all_paths = true;
    br_strv_free(&first->paths);
    br_strv_init(&first->paths);
  }
  if (first->all_paths)
    return 0;
  size_t j;
  json_t *v;
  int rc = 0;
  json_array_foreach(paths, j, v) {
    if (rc == 0)
      rc = br_strv_add_unique(&first->paths, json_string_value(v));
  }
  return rc;
}

/* A route's paths, each once; a repeated one is drift. A set of the paths
 * so far keeps this linear even for a route with many thousands of paths. */
static int add_paths(struct parse *p, size_t i, struct br_route *r, json_t *paths) {
  json_t *seen = json_object();
  if (!seen)
    return -ENOMEM;
  struct br_buf q;
  br_buf_init(&q, 512);
  size_t j;
  json_t *v;
  int rc = 0;
  json_array_foreach(paths, j, v) {
    const char *path_str = json_string_value(v);
    if (rc)
      break;
    if (json_object_get(seen, path_str))
      rc = drift(p, "routes[%zu].path_allowlist: %s twice; a rewrite lists it once", i,
                 quoted(&q, path_str, strlen(path_str)));
    else if (json_object_set_new(seen, path_str, json_true()))
      rc = -ENOMEM;
    else
      rc = br_strv_add(&r->paths, path_str);
  }
  br_buf_free(&q);
  json_decref(seen);
  return rc;
}

/* routes[i].path_allowlist, checked: NULL for none (or null) = every path. */
static int route_paths(struct parse *p, json_t *route, struct step *path, json_t **out) {
  path[2] = (struct step){.key = "path_allowlist"};
  json_t *paths = json_object_get(route, "path_allowlist");
  *out = NULL;
  if (paths && json_is_null(paths))
    return drift(p, "routes[%zu].path_allowlist: null; a rewrite leaves the key out", path[1].index);
  if (paths && !json_is_array(paths))
    return shape_error(p, path, 3, "is %s, expected an array of path strings", type_name(paths));
  size_t j;
  json_t *v;
  json_array_foreach(paths, j, v) {
    if (!json_is_string(v) || !whole_string(v)) {
      path[3] = (struct step){.index = j};
      return json_is_string(v) ? shape_error(p, path, 4, "contains \\u0000, expected none")
                               : shape_error(p, path, 4, "is %s, expected a path string", type_name(v));
    }
  }
  *out = paths;
  return 0;
}

/* routes[i].host, checked. */
static int route_host(struct parse *p, json_t *route, struct step *path, json_t **out) {
  path[2] = (struct step){.key = "host"};
  json_t *host = json_object_get(route, "host");
  *out = host;
  if (!host)
    return shape_error(p, path, 3, "missing, expected a host name");
  if (!json_is_string(host))
    return shape_error(p, path, 3, "is %s, expected a string", type_name(host));
  if (json_string_length(host) == 0)
    return shape_error(p, path, 3, "is empty, expected a host name");
  if (!whole_string(host))
    return shape_error(p, path, 3, "contains \\u0000, expected none");
  return 0;
}

/* Lowercase copy of a host, or NULL (-ENOMEM). Old tooling did not
 * normalise case; the sidecar compares hosts case-insensitively, and the
 * model keeps them lowercase. */
static char *lower_host(const json_t *host) {
  char *lower = strdup(json_string_value(host));
  for (char *c = lower; c && *c; c++)
    if (*c >= 'A' && *c <= 'Z')
      *c = (char)(*c - 'A' + 'a');
  return lower;
}

/* Reads routes[i] into the model; a repeated host is folded into the route
 * that first named it. hosts maps each host to its index in out. */
static int parse_route(struct parse *p, json_t *route, size_t i, json_t *hosts, struct br_routes *out) {
  struct step path[4] = {{.key = "routes"}, {.index = i}};
  if (!json_is_object(route))
    return shape_error(p, path, 2, "is %s, expected an object with a \"host\"", type_name(route));
  json_t *host, *paths;
  const char *scheme, *token_env;
  int rc = route_host(p, route, path, &host);
  if (rc == 0)
    rc = route_paths(p, route, path, &paths);
  if (rc == 0)
    rc = opt_string(p, route, path, "auth_scheme", &scheme);
  if (rc == 0)
    rc = opt_string(p, route, path, "token_env", &token_env);
  if (rc)
    return rc;
  if (!scheme != !token_env) {
    path[2] = (struct step){.key = scheme ? "token_env" : "auth_scheme"};
    return shape_error(p, path, 3, "missing, expected auth_scheme and token_env both or neither");
  }
  if ((rc = unknown_keys(p, route, i)))
    return rc;

  char *lower = lower_host(host);
  if (!lower)
    return -ENOMEM;
  struct br_buf q;
  br_buf_init(&q, 512);
  if (strcmp(lower, json_string_value(host)) != 0)
    rc = drift(p, "routes[%zu].host: %s is not lower case; a rewrite lowers it", i,
               quoted(&q, json_string_value(host), json_string_length(host)));
  br_buf_free(&q);
  json_t *index = json_object_get(hosts, lower);
  if (rc == 0 && index) {
    size_t first = (size_t)json_integer_value(index);
    rc = second_route(p, i, p->first_at[first], host, scheme, token_env);
    if (rc == 0)
      rc = fold_paths(&out->v[first], paths);
    free(lower);
    return rc;
  }
  if (rc == 0 && json_object_set_new(hosts, lower, json_integer((json_int_t)out->n)))
    rc = -ENOMEM;
  struct br_route *r = rc ? NULL : br_routes_append(out, lower);
  free(lower);
  if (!r)
    return rc ? rc : -ENOMEM;
  p->first_at[out->n - 1] = i;
  r->all_paths = !paths; /* no path_allowlist (or null): every path */
  if ((rc = add_paths(p, i, r, paths)))
    return rc;
  if (set_opt(&r->auth_scheme, scheme) || set_opt(&r->token_env, token_env))
    return -ENOMEM;
  return 0;
}

/* The "routes" value into the model. */
static int routes_model(struct parse *p, json_t *routes) {
  struct step path[1] = {{.key = "routes"}};
  if (!json_is_array(routes))
    return shape_error(p, path, 1, "is %s, expected an array of route objects", type_name(routes));
  size_t n = json_array_size(routes);
  json_t *hosts = json_object();
  p->first_at = malloc((n ? n : 1) * sizeof *p->first_at);
  int rc = hosts && p->first_at ? 0 : -ENOMEM;
  for (size_t i = 0; i < n && rc == 0; i++)
    rc = parse_route(p, json_array_get(routes, i), i, hosts, &p->out->routes);
  free(p->first_at);
  p->first_at = NULL;
  json_decref(hosts);
  return rc;
}

/* The "routes" value at bytes[at, end) into the model. */
static int parse_routes(struct parse *p, size_t at, size_t end) {
  json_t *routes;
  json_error_t jerr;
  int rc = load_value(p, "routes", "readers differ on which one counts", at, end, &routes, &jerr);
  if (rc)
    return rc;
  if (!routes) /* a big number or a lone surrogate: no route holds one */
    return text_error(p, at + (size_t)jerr.position, "routes", jerr.text);
  rc = routes_model(p, routes);
  json_decref(routes);
  return rc;
}

/* ---- The top level as jansson reads it ----
 *
 * The common case, in one pass: a text that jansson reads whole, with no key
 * given twice anywhere, is valid JSON whose every value jansson holds
 * exactly, so its members can be taken as they are. Anything else takes the
 * walk below, which says what is wrong or keeps what jansson cannot hold. */

static int whole_members(struct parse *p, json_t *doc) {
  struct br_egress_live *out = p->out;
  if (!(out->members = calloc(json_object_size(doc) + 1, sizeof *out->members)))
    return -ENOMEM;
  const char *key;
  size_t keylen;
  json_t *value, *routes = NULL;
  json_object_keylen_foreach(doc, key, keylen, value) {
    if (keylen == 6 && memcmp(key, "routes", 6) == 0) {
      out->routes_at = out->n_members;
      routes = value;
      continue;
    }
    struct br_egress_member *mb = &out->members[out->n_members];
    if (!(mb->key = malloc(keylen + 1)))
      return -ENOMEM;
    memcpy(mb->key, key, keylen + 1);
    mb->keylen = keylen;
    mb->value = json_incref(value);
    out->n_members++;
  }
  if (!routes) {
    out->routes_at = out->n_members;
    struct step path[1] = {{.key = "routes"}};
    return shape_error(p, path, 1, "missing, expected an array of route objects");
  }
  return routes_model(p, routes);
}

/* ---- The top level, member by member ----
 *
 * Where jansson cannot read the text whole, the top-level object is split
 * here, so that a member jansson cannot hold (a big integer, say) is kept as
 * its bytes instead of making the whole file unreadable, and so that a key
 * given twice is seen. The text has passed br_json_check first: the walk below
 * need not check syntax. */

struct span {
  size_t key, key_end; /* the key with its quotes */
  size_t value, value_end;
  size_t order; /* its place in the file, for sorting back */
};

static int add_span(struct span **v, size_t *n, size_t *cap, struct span sp) {
  if (*n == *cap) {
    size_t ncap = *cap ? *cap * 2 : 8;
    struct span *nv = realloc(*v, ncap * sizeof *nv);
    if (!nv)
      return -ENOMEM;
    *v = nv;
    *cap = ncap;
  }
  sp.order = *n;
  (*v)[(*n)++] = sp;
  return 0;
}

/* The members of the object whose '{' is at s[i]. */
static int split_members(const char *s, size_t len, size_t i, struct span **v, size_t *n) {
  size_t cap = 0;
  *v = NULL;
  *n = 0;
  i = skip_ws(s, len, i + 1);
  while (i < len && s[i] == '"') {
    struct span sp = {.key = i};
    sp.key_end = skip_string(s, len, i);
    sp.value = skip_ws(s, len, skip_ws(s, len, sp.key_end) + 1); /* past ':' */
    sp.value_end = skip_value(s, len, sp.value);
    if (add_span(v, n, &cap, sp))
      return -ENOMEM;
    i = skip_ws(s, len, sp.value_end);
    i = i < len && s[i] == ',' ? skip_ws(s, len, i + 1) : len;
  }
  return 0;
}

/* A key as a reader sees it: escapes decoded. */
static int decode_key(const struct parse *p, const struct span *sp, char **key, size_t *keylen) {
  const char *k = p->bytes + sp->key;
  size_t n = sp->key_end - sp->key;
  json_t *v = NULL;
  if (memchr(k, '\\', n)) {
    json_error_t jerr;
    if (!(v = json_loadb(k, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr)))
      return json_error_code(&jerr) == json_error_out_of_memory ? -ENOMEM
                                                                : text_error(p, sp->key, "top level", jerr.text);
    k = json_string_value(v);
    n = json_string_length(v);
  } else {
    k++;
    n -= 2;
  }
  *keylen = n;
  *key = malloc(n + 1);
  if (*key) {
    memcpy(*key, k, n);
    (*key)[n] = '\0';
  }
  json_decref(v);
  return *key ? 0 : -ENOMEM;
}

struct keyed {
  char *key;
  size_t keylen;
  struct span span;
};

static int cmp_keyed(const void *a, const void *b) {
  const struct keyed *x = a, *y = b;
  if (x->keylen != y->keylen)
    return x->keylen < y->keylen ? -1 : 1;
  int c = memcmp(x->key, y->key, x->keylen);
  if (c)
    return c;
  return x->span.order < y->span.order ? -1 : x->span.order > y->span.order;
}

static int cmp_order(const void *a, const void *b) {
  const struct keyed *x = a, *y = b;
  return x->span.order < y->span.order ? -1 : x->span.order > y->span.order;
}

/* A key given more than once keeps its first place and its last value, as
 * Python's json and jansson read it. Sorting makes this O(n log n): a file
 * may hold a great many keys. Leaves m in file order, *n the members left. */
static int merge_repeated(struct parse *p, struct keyed *m, size_t *n) {
  qsort(m, *n, sizeof *m, cmp_keyed);
  size_t kept = 0;
  int rc = 0;
  struct br_buf q;
  br_buf_init(&q, 512);
  for (size_t i = 0; i < *n;) {
    size_t j = i + 1;
    while (j < *n && m[j].keylen == m[i].keylen && memcmp(m[j].key, m[i].key, m[i].keylen) == 0)
      j++;
    bool routes = m[i].keylen == 6 && memcmp(m[i].key, "routes", 6) == 0;
    if (j - i > 1 && rc == 0)
      rc = drift(p, "top level: the key %s %zu times; %s", quoted(&q, m[i].key, m[i].keylen), j - i,
                 routes ? "readers differ on which one counts" : "a rewrite keeps the last");
    struct keyed first = m[i];
    first.span.value = m[j - 1].span.value;
    first.span.value_end = m[j - 1].span.value_end;
    for (size_t k = i + 1; k < j; k++)
      free(m[k].key);
    m[kept++] = first;
    i = j;
  }
  br_buf_free(&q);
  *n = kept;
  qsort(m, kept, sizeof *m, cmp_order);
  return rc;
}

/* Takes one member other than "routes" into out; its key passes too. */
static int keep_member(struct parse *p, struct keyed *k) {
  struct br_egress_live *out = p->out;
  struct br_egress_member *mb = &out->members[out->n_members];
  *mb = (struct br_egress_member){.key = k->key, .keylen = k->keylen};
  k->key = NULL;
  out->n_members++;
  json_error_t jerr;
  struct br_buf field;
  br_buf_init(&field, 512);
  br_quote_excerpt(&field, mb->key, mb->keylen, 60);
  int rc = load_value(p, br_buf_str(&field), "a rewrite keeps the last", k->span.value, k->span.value_end,
                      &mb->value, &jerr);
  br_buf_free(&field);
  if (rc || mb->value)
    return rc;
  /* Not ours and beyond what jansson holds: kept as the file has it. */
  mb->rawlen = k->span.value_end - k->span.value;
  if (!(mb->raw = malloc(mb->rawlen ? mb->rawlen : 1)))
    return -ENOMEM;
  memcpy(mb->raw, p->bytes + k->span.value, mb->rawlen);
  return 0;
}

/* The members of the top-level object at bytes[at]: the others kept, routes
 * into the model. */
static int parse_object(struct parse *p, size_t at) {
  struct span *spans;
  size_t n;
  int rc = split_members(p->bytes, p->len, at, &spans, &n);
  struct keyed *m = rc ? NULL : calloc(n ? n : 1, sizeof *m);
  if (!rc && !m)
    rc = -ENOMEM;
  for (size_t i = 0; i < n && !rc; i++) {
    m[i].span = spans[i];
    rc = decode_key(p, &spans[i], &m[i].key, &m[i].keylen);
  }
  free(spans);
  if (!rc)
    rc = merge_repeated(p, m, &n);
  if (!rc && !(p->out->members = calloc(n ? n : 1, sizeof *p->out->members)))
    rc = -ENOMEM;
  const struct span *routes = NULL;
  p->out->routes_at = SIZE_MAX;
  for (size_t i = 0; i < n && !rc; i++) {
    if (m[i].keylen == 6 && memcmp(m[i].key, "routes", 6) == 0) {
      p->out->routes_at = p->out->n_members;
      routes = &m[i].span;
    } else {
      rc = keep_member(p, &m[i]);
    }
  }
  if (p->out->routes_at == SIZE_MAX)
    p->out->routes_at = p->out->n_members;
  struct step path[1] = {{.key = "routes"}};
  if (!rc && !routes)
    rc = shape_error(p, path, 1, "missing, expected an array of route objects");
  else if (!rc)
    rc = parse_routes(p, routes->value, routes->value_end);
  for (size_t i = 0; m && i < n; i++)
    free(m[i].key);
  free(m);
  return rc;
}

/* What the top-level value is, for the message that it is not an object. */
static const char *top_type(const char *s, size_t len, size_t at) {
  json_t *v = json_loadb(s + at, len - at, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
  const char *what = v ? type_name(v) : "a number";
  json_decref(v);
  return what;
}

/* Checks the text as a whole: UTF-8, JSON, a top-level object. Returns the
 * offset of its '{', or SIZE_MAX with err written. */
static size_t top_object(struct parse *p) {
  const char *s = p->bytes;
  size_t len = p->len;
  size_t valid = br_pyjson_utf8_prefix(s, len);
  if (valid < len) {
    text_error(p, valid, "(file)", "not UTF-8, expected UTF-8 text");
    return SIZE_MAX;
  }
  struct br_buf jerr;
  br_buf_init(&jerr, 4096);
  int rc = br_json_check(p->name, s, len, JSON_MAX_DEPTH, p->err ? &jerr : NULL);
  if (rc && p->err) {
    while (jerr.len && jerr.data[jerr.len - 1] == '\n')
      jerr.data[--jerr.len] = '\0';
    br_buf_add(p->err, br_buf_str(&jerr), jerr.len);
  }
  br_buf_free(&jerr);
  if (rc)
    return SIZE_MAX;
  size_t at = 0;
  if (len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
    /* json.loads refuses a str that starts with one: the egress addon would
     * not load the file. */
    if (drift(p, "a byte order mark before the JSON text; a rewrite drops it"))
      return SIZE_MAX;
    at = 3;
  }
  at = skip_ws(s, len, at);
  struct step none[1] = {{.key = NULL}};
  if (at == len)
    shape_error(p, none, 0, "the file is empty, expected an object with a \"routes\" array");
  else if (s[at] != '{')
    shape_error(p, none, 0, "is %s, expected an object with a \"routes\" array", top_type(s, len, at));
  return at < len && s[at] == '{' ? at : SIZE_MAX;
}

int br_egress_parse(const char *name, const char *bytes, size_t len, struct br_egress_live *out,
                    struct br_buf *err) {
  br_egress_live_init(out);
  struct parse p = {.name = name, .bytes = bytes ? bytes : "", .len = bytes ? len : 0, .err = err, .out = out};
  json_error_t jerr;
  json_t *doc = json_loadb(p.bytes, p.len, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &jerr);
  int rc;
  if (json_is_object(doc)) {
    rc = whole_members(&p, doc);
  } else if (!doc && json_error_code(&jerr) == json_error_out_of_memory) {
    rc = -ENOMEM;
  } else {
    size_t at = top_object(&p);
    rc = at == SIZE_MAX ? -EINVAL : parse_object(&p, at);
  }
  json_decref(doc);
  if (rc == 0 && p.drift_more) {
    struct br_buf more;
    br_buf_init(&more, 256);
    br_buf_printf(&more, "and %zu more like these", p.drift_more);
    rc = br_strv_add(&out->drift, br_buf_str(&more));
    br_buf_free(&more);
  }
  if (rc) {
    /* Only what stands beside "routes" is worth keeping from a file that
     * cannot be read: the rewrite replaces the routes anyway. */
    br_routes_free(&out->routes);
    br_routes_init(&out->routes);
    br_strv_free(&out->drift);
    br_strv_init(&out->drift);
    if (rc != -EINVAL)
      members_free(out);
  }
  return rc;
}

/* ---- Rendering ----
 *
 * The routes as the model holds them, written into the live document with
 * common/pyjson, so the file is what the Python tooling that defined its
 * canonical form would write. */

static int put_cstring(struct br_buf *out, const char *s) { return br_pyjson_string(out, s, strlen(s)); }

static int put_paths(struct br_buf *out, const struct br_strv *paths, int depth) {
  int rc = br_pyjson_member(out, "path_allowlist", 14, false, depth + 1);
  if (rc == 0 && paths->n == 0)
    return br_buf_adds(out, "[]");
  if (rc == 0)
    rc = br_buf_add(out, "[", 1);
  for (size_t i = 0; rc == 0 && i < paths->n; i++) {
    rc = i ? br_buf_add(out, ",", 1) : 0;
    if (rc == 0)
      rc = br_pyjson_newline(out, depth + 2);
    if (rc == 0)
      rc = put_cstring(out, paths->v[i]);
  }
  if (rc == 0)
    rc = br_pyjson_newline(out, depth + 1);
  return rc ? rc : br_buf_add(out, "]", 1);
}

static int put_route(struct br_buf *out, const struct br_route *r, int depth) {
  int rc = br_buf_add(out, "{", 1);
  if (rc == 0)
    rc = br_pyjson_member(out, "host", 4, true, depth + 1);
  if (rc == 0)
    rc = put_cstring(out, r->host);
  /* Every path: no path_allowlist at all, as the old tooling wrote it. */
  if (rc == 0 && !r->all_paths)
    rc = put_paths(out, &r->paths, depth);
  if (rc == 0 && r->auth_scheme && r->token_env) {
    rc = br_pyjson_member(out, "auth_scheme", 11, false, depth + 1);
    if (rc == 0)
      rc = put_cstring(out, r->auth_scheme);
    if (rc == 0)
      rc = br_pyjson_member(out, "token_env", 9, false, depth + 1);
    if (rc == 0)
      rc = put_cstring(out, r->token_env);
  }
  if (rc == 0)
    rc = br_pyjson_newline(out, depth);
  return rc ? rc : br_buf_add(out, "}", 1);
}

static int put_routes(struct br_buf *out, const struct br_routes *routes, int depth) {
  if (routes->n == 0)
    return br_buf_adds(out, "[]");
  int rc = br_buf_add(out, "[", 1);
  for (size_t i = 0; rc == 0 && i < routes->n; i++) {
    rc = i ? br_buf_add(out, ",", 1) : 0;
    if (rc == 0)
      rc = br_pyjson_newline(out, depth + 1);
    if (rc == 0)
      rc = put_route(out, &routes->v[i], depth + 1);
  }
  if (rc == 0)
    rc = br_pyjson_newline(out, depth);
  return rc ? rc : br_buf_add(out, "]", 1);
}

static int put_member(struct br_buf *out, const struct br_egress_member *m, bool first) {
  int rc = br_pyjson_member(out, m->key, m->keylen, first, 1);
  if (rc == 0)
    rc = m->value ? br_pyjson_value(out, m->value, 1) : br_buf_add(out, m->raw, m->rawlen);
  return rc;
}

int br_egress_render_live(const struct br_routes *routes, const struct br_egress_live *live, struct br_buf *out) {
  size_t n = live ? live->n_members : 0, at = live ? live->routes_at : 0;
  int rc = br_buf_add(out, "{", 1);
  for (size_t i = 0; i <= n && rc == 0; i++) {
    if (i == at) {
      rc = br_pyjson_member(out, "routes", 6, i == 0, 1);
      if (rc == 0)
        rc = put_routes(out, routes, 1);
    }
    if (i < n && rc == 0)
      rc = put_member(out, &live->members[i], i == 0 && at != 0);
  }
  if (rc == 0)
    rc = br_pyjson_newline(out, 0);
  return rc ? rc : br_buf_adds(out, "}\n");
}

int br_egress_render(const struct br_routes *routes, const json_t *doc, struct br_buf *out) {
  if (doc && !json_is_object(doc))
    return -EINVAL;
  int rc = br_buf_add(out, "{", 1);
  bool first = true, placed = false;
  if (doc) {
    const char *key;
    size_t keylen;
    json_t *member;
    json_object_keylen_foreach((json_t *)doc, key, keylen, member) {
      if (rc == 0)
        rc = br_pyjson_member(out, key, keylen, first, 1);
      if (rc == 0 && keylen == 6 && memcmp(key, "routes", 6) == 0) {
        rc = put_routes(out, routes, 1);
        placed = true;
      } else if (rc == 0) {
        rc = br_pyjson_value(out, member, 1);
      }
      first = false;
    }
  }
  if (rc == 0 && !placed) {
    rc = br_pyjson_member(out, "routes", 6, first, 1);
    if (rc == 0)
      rc = put_routes(out, routes, 1);
  }
  if (rc == 0)
    rc = br_pyjson_newline(out, 0);
  return rc ? rc : br_buf_adds(out, "}\n");
}
