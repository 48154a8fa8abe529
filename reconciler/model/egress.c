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
#include "common/pyjson.h"

void br_egress_live_init(struct br_egress_live *live) {
  live->doc = NULL;
  br_routes_init(&live->routes);
}

void br_egress_live_free(struct br_egress_live *live) {
  json_decref(live->doc);
  br_routes_free(&live->routes);
  live->doc = NULL;
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
  size_t i = skip_ws(s, len, 0);
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
  for (size_t i = 0; i < pos; i++) {
    if (s[i] == '\n') {
      (*line)++;
      *column = 1;
    } else if (((unsigned char)s[i] & 0xC0) != 0x80) {
      (*column)++;
    }
  }
}

/* ---- Parsing ---- */

struct parse {
  const char *name;
  const char *bytes;
  size_t len;
  struct br_buf *err;
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

/* An optional string member: absent and null both give *out = NULL. */
static int opt_string(const struct parse *p, json_t *route, struct step *path, const char *key, const char **out) {
  json_t *v = json_object_get(route, key);
  *out = NULL;
  if (!v || json_is_null(v))
    return 0;
  path[2] = (struct step){.key = key};
  if (!json_is_string(v))
    return shape_error(p, path, 3, "is %s, expected a string", type_name(v));
  *out = json_string_value(v);
  return 0;
}

static int set_opt(char **dst, const char *src) {
  if (src && !(*dst = strdup(src)))
    return -ENOMEM;
  return 0;
}

/* Reads routes[i] into the model; a repeated host is folded into the route
 * that first named it. hosts maps each host to its index in out. */
static int parse_route(const struct parse *p, json_t *route, size_t i, json_t *hosts, struct br_routes *out) {
  struct step path[4] = {{.key = "routes"}, {.index = i}};
  if (!json_is_object(route))
    return shape_error(p, path, 2, "is %s, expected an object with a \"host\"", type_name(route));

  path[2] = (struct step){.key = "host"};
  json_t *host = json_object_get(route, "host");
  if (!host)
    return shape_error(p, path, 3, "missing, expected a host name");
  if (!json_is_string(host))
    return shape_error(p, path, 3, "is %s, expected a string", type_name(host));
  if (json_string_length(host) == 0)
    return shape_error(p, path, 3, "is empty, expected a host name");

  path[2] = (struct step){.key = "path_allowlist"};
  json_t *paths = json_object_get(route, "path_allowlist");
  if (paths && json_is_null(paths))
    paths = NULL;
  if (paths && !json_is_array(paths))
    return shape_error(p, path, 3, "is %s, expected an array of path strings", type_name(paths));
  size_t j;
  json_t *v;
  json_array_foreach(paths, j, v) {
    if (!json_is_string(v)) {
      path[3] = (struct step){.index = j};
      return shape_error(p, path, 4, "is %s, expected a path string", type_name(v));
    }
  }

  const char *scheme, *token_env;
  int rc = opt_string(p, route, path, "auth_scheme", &scheme);
  if (rc == 0)
    rc = opt_string(p, route, path, "token_env", &token_env);
  if (rc)
    return rc;
  if (!scheme != !token_env) {
    path[2] = (struct step){.key = scheme ? "token_env" : "auth_scheme"};
    return shape_error(p, path, 3, "missing, expected auth_scheme and token_env both or neither");
  }

  /* Old tooling did not normalise case; the sidecar compares hosts
   * case-insensitively, and the model keeps them lowercase. */
  char *lower = strdup(json_string_value(host));
  if (!lower)
    return -ENOMEM;
  for (char *c = lower; *c; c++)
    if (*c >= 'A' && *c <= 'Z')
      *c = (char)(*c - 'A' + 'a');

  json_t *index = json_object_get(hosts, lower);
  if (index) {
    /* Seen before: union the paths; the first occurrence keeps its auth. */
    free(lower);
    struct br_route *first = &out->v[json_integer_value(index)];
    if (!paths) {
      first->all_paths = true;
      br_strv_free(&first->paths);
      br_strv_init(&first->paths);
    }
    if (first->all_paths)
      return 0;
    json_array_foreach(paths, j, v) {
      if ((rc = br_strv_add_unique(&first->paths, json_string_value(v))))
        return rc;
    }
    return 0;
  }

  if (json_object_set_new(hosts, lower, json_integer((json_int_t)out->n))) {
    free(lower);
    return -ENOMEM;
  }
  struct br_route *r = br_routes_append(out, lower);
  free(lower);
  if (!r)
    return -ENOMEM;
  r->all_paths = !paths; /* no path_allowlist (or null): every path */
  /* A set of the paths so far keeps de-duplication linear even for a route
   * with many thousands of paths. */
  json_t *seen = json_object();
  if (!seen)
    return -ENOMEM;
  json_array_foreach(paths, j, v) {
    const char *path_str = json_string_value(v);
    if (json_object_get(seen, path_str))
      continue;
    if (json_object_set_new(seen, path_str, json_true()) || (rc = br_strv_add(&r->paths, path_str))) {
      json_decref(seen);
      return rc ? rc : -ENOMEM;
    }
  }
  json_decref(seen);
  if (set_opt(&r->auth_scheme, scheme) || set_opt(&r->token_env, token_env))
    return -ENOMEM;
  return 0;
}

int br_egress_parse(const char *name, const char *bytes, size_t len, struct br_egress_live *out,
                    struct br_buf *err) {
  br_egress_live_init(out);
  struct parse p = {.name = name, .bytes = bytes, .len = len, .err = err};

  json_error_t jerr;
  json_t *doc = json_loadb(bytes, len, 0, &jerr);
  if (!doc) {
    if (json_error_code(&jerr) == json_error_out_of_memory)
      return -ENOMEM;
    /* jansson's text already says what it expected ("'}' expected near
     * ']'"), except for numbers it cannot hold. An empty file reports
     * column 0; editors count from 1. */
    if (err && !br_diag_start(err, name, jerr.line > 0 ? (size_t)jerr.line : 1,
                              jerr.column > 0 ? (size_t)jerr.column : 1, "invalid JSON"))
      br_buf_printf(err, "%s%s", jerr.text,
                    json_error_code(&jerr) == json_error_numeric_overflow
                        ? ", expected a number that fits a 64-bit integer or a double"
                        : "");
    return -EINVAL;
  }

  int rc;
  struct step path[1] = {{.key = "routes"}};
  json_t *routes = json_object_get(doc, "routes");
  json_t *hosts = json_object();
  if (!hosts)
    rc = -ENOMEM;
  else if (!json_is_object(doc))
    rc = shape_error(&p, path, 0, "is %s, expected an object with a \"routes\" array", type_name(doc));
  else if (!routes)
    rc = shape_error(&p, path, 1, "missing, expected an array of route objects");
  else if (!json_is_array(routes))
    rc = shape_error(&p, path, 1, "is %s, expected an array of route objects", type_name(routes));
  else {
    rc = 0;
    for (size_t i = 0; i < json_array_size(routes) && rc == 0; i++)
      rc = parse_route(&p, json_array_get(routes, i), i, hosts, &out->routes);
  }
  json_decref(hosts);
  if (rc) {
    json_decref(doc);
    br_egress_live_free(out);
    return rc;
  }
  out->doc = doc;
  return 0;
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
