/* validate: the acceptance rules of the two sidecars, kept to what the daemon
 * depends on. It must not know the daemon's own schema: it judges, never fixes. */
#include "validate.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <yaml.h>

static int reject(char *reason, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int reject(char *reason, size_t size, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(reason, size, fmt, ap);
  va_end(ap);
  return -EINVAL;
}

/* egress: the addon takes "routes" and, per route, "host" and "path_allowlist";
 * anything else in the file it carries along unread, so it is not checked. */
static int validate_egress(const char *bytes, size_t len, char *reason, size_t size) {
  json_error_t err;
  /* Duplicate keys are allowed on purpose: Python's json module, which the
   * addon uses, keeps the last one instead of failing. It also reads
   * integers of any size and strings holding \u0000, which jansson holds
   * only as reals and with JSON_ALLOW_NUL: enough for the shape checked
   * here, which never looks at such a value. */
  json_t *root = json_loadb(bytes, len, JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL, &err);
  if (!root)
    return reject(reason, size, "json: %s at line %d column %d", err.text, err.line, err.column);
  int rc = 0;
  json_t *routes = json_object_get(root, "routes");
  if (!json_is_object(root)) {
    rc = reject(reason, size, "top level is not an object");
  } else if (!routes) {
    rc = reject(reason, size, "routes: missing");
  } else if (!json_is_array(routes)) {
    rc = reject(reason, size, "routes: not an array");
  } else {
    size_t i;
    json_t *route;
    json_array_foreach(routes, i, route) {
      if (!json_is_object(route)) {
        rc = reject(reason, size, "routes[%zu]: not an object", i);
        break;
      }
      if (!json_is_string(json_object_get(route, "host"))) {
        rc = reject(reason, size, "routes[%zu].host: missing or not a string", i);
        break;
      }
      json_t *paths = json_object_get(route, "path_allowlist");
      if (!paths)
        continue;
      if (!json_is_array(paths)) {
        rc = reject(reason, size, "routes[%zu].path_allowlist: not an array", i);
        break;
      }
      size_t j;
      json_t *path;
      json_array_foreach(paths, j, path) {
        if (!json_is_string(path)) {
          rc = reject(reason, size, "routes[%zu].path_allowlist[%zu]: not a string", i, j);
          break;
        }
      }
      if (rc)
        break;
    }
  }
  json_decref(root);
  return rc;
}

/* pipelock: walked as a libyaml event stream, so the rules that matter here
 * (one document, a top-level mapping, unique top-level keys, api_allowlist a
 * list of strings) are checked without building a tree. */
struct yaml_walk {
  yaml_parser_t parser;
  yaml_event_t event; /* the current event; valid until the next next_event() */
  bool have_event;
  char *reason;
  size_t size;
};

static int next_event(struct yaml_walk *w) {
  if (w->have_event)
    yaml_event_delete(&w->event);
  w->have_event = false;
  if (!yaml_parser_parse(&w->parser, &w->event))
    return reject(w->reason, w->size, "yaml: %s at line %zu column %zu",
                  w->parser.problem ? w->parser.problem : "parse error", w->parser.problem_mark.line + 1,
                  w->parser.problem_mark.column + 1);
  w->have_event = true;
  return 0;
}

static size_t event_line(const struct yaml_walk *w) { return w->event.start_mark.line + 1; }

/* Consumes the rest of a node whose first event is current. */
static int skip_node(struct yaml_walk *w) {
  int depth = 0;
  for (;;) {
    switch (w->event.type) {
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT:
      depth++;
      break;
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
      depth--;
      break;
    default:
      break;
    }
    if (depth == 0)
      return 0;
    int rc = next_event(w);
    if (rc)
      return rc;
  }
}

/* Go's YAML decoder turns a null into an empty list, so `api_allowlist:` with
 * nothing after it is accepted as "no hosts", like an omitted key. */
static bool is_null_scalar(const yaml_event_t *ev) {
  if (ev->type != YAML_SCALAR_EVENT || ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
    return false;
  const char *v = (const char *)ev->data.scalar.value;
  return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") || !strcmp(v, "NULL");
}

static int check_allowlist(struct yaml_walk *w) {
  if (is_null_scalar(&w->event))
    return 0;
  if (w->event.type != YAML_SEQUENCE_START_EVENT)
    return reject(w->reason, w->size, "api_allowlist: not a sequence (line %zu)", event_line(w));
  for (size_t i = 0;; i++) {
    int rc = next_event(w);
    if (rc)
      return rc;
    if (w->event.type == YAML_SEQUENCE_END_EVENT)
      return 0;
    /* Block scalars (| and >) and nested nodes are not host names. */
    bool entry_ok =
        w->event.type == YAML_SCALAR_EVENT && (w->event.data.scalar.style == YAML_PLAIN_SCALAR_STYLE ||
                                               w->event.data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
                                               w->event.data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE);
    if (!entry_ok)
      return reject(w->reason, w->size, "api_allowlist[%zu]: not a plain or quoted scalar (line %zu)", i,
                    event_line(w));
  }
}

/* Keys seen so far, for the duplicate check; a config has a few dozen. */
struct key_list {
  char **v;
  size_t n;
};

static int remember_key(struct key_list *keys, const char *key, bool *dup) {
  for (size_t i = 0; i < keys->n; i++)
    if (!strcmp(keys->v[i], key)) {
      *dup = true;
      return 0;
    }
  *dup = false;
  char **v = realloc(keys->v, (keys->n + 1) * sizeof *v);
  if (!v)
    return -ENOMEM;
  keys->v = v;
  if (!(keys->v[keys->n] = strdup(key)))
    return -ENOMEM;
  keys->n++;
  return 0;
}

static int walk_pipelock(struct yaml_walk *w, struct key_list *keys) {
  int rc;
  if ((rc = next_event(w)) || (rc = next_event(w))) /* STREAM_START, then... */
    return rc;
  if (w->event.type != YAML_DOCUMENT_START_EVENT)
    return reject(w->reason, w->size, "no YAML document");
  if ((rc = next_event(w)))
    return rc;
  if (w->event.type != YAML_MAPPING_START_EVENT)
    return reject(w->reason, w->size, "top level is not a mapping");
  for (;;) {
    if ((rc = next_event(w)))
      return rc;
    if (w->event.type == YAML_MAPPING_END_EVENT)
      break;
    if (w->event.type != YAML_SCALAR_EVENT)
      return reject(w->reason, w->size, "top-level key is not a scalar (line %zu)", event_line(w));
    bool dup, allowlist = !strcmp((const char *)w->event.data.scalar.value, "api_allowlist");
    if ((rc = remember_key(keys, (const char *)w->event.data.scalar.value, &dup)))
      return reject(w->reason, w->size, "out of memory");
    if (dup)
      return reject(w->reason, w->size, "duplicate top-level key \"%s\" (line %zu)",
                    (const char *)w->event.data.scalar.value, event_line(w));
    if ((rc = next_event(w)))
      return rc;
    if ((rc = allowlist ? check_allowlist(w) : skip_node(w)))
      return rc;
  }
  if ((rc = next_event(w)) || (rc = next_event(w))) /* DOCUMENT_END, then... */
    return rc;
  if (w->event.type == YAML_DOCUMENT_START_EVENT)
    return reject(w->reason, w->size, "more than one YAML document (line %zu)", event_line(w));
  return 0;
}

static int validate_pipelock(const char *bytes, size_t len, char *reason, size_t size) {
  struct yaml_walk w = {.have_event = false, .reason = reason, .size = size};
  struct key_list keys = {NULL, 0};
  if (!yaml_parser_initialize(&w.parser))
    return reject(reason, size, "out of memory");
  yaml_parser_set_input_string(&w.parser, (const unsigned char *)bytes, len);
  int rc = walk_pipelock(&w, &keys);
  if (w.have_event)
    yaml_event_delete(&w.event);
  yaml_parser_delete(&w.parser);
  for (size_t i = 0; i < keys.n; i++)
    free(keys.v[i]);
  free(keys.v);
  return rc;
}

int sidecar_validate(enum sidecar_mode mode, const char *bytes, size_t len, char *reason, size_t reason_size) {
  reason[0] = '\0';
  if (mode == SIDECAR_EGRESS)
    return validate_egress(bytes, len, reason, reason_size);
  return validate_pipelock(bytes, len, reason, reason_size);
}
