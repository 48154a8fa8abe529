/* yamldoc: strict, bounded YAML loading on top of libyaml's event parser.
 * Produces a plain tree; it must not interpret keys or know any schema. */
#include "common/yamldoc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "common/diag.h"

struct loader {
  yaml_parser_t parser;
  const char *name;
  const struct br_yopts *opts;
  struct br_buf *err;
  struct br_buf path; /* field path of the node being built, for messages */
  size_t nodes;
  size_t bom;        /* bytes of a UTF-8 byte-order mark not shown to libyaml */
  int node_error;    /* why new_node last returned NULL: -E2BIG or -ENOMEM */
  const char *bytes; /* the input, to place reader errors */
  size_t len;
};

static void fail_at(struct loader *ld, size_t line, size_t column, const char *what) {
  br_diag(ld->err, ld->name, line, column, ld->path.len ? ld->path.data : "(document)", "%s", what);
}

static void fail_parser(struct loader *ld) {
  yaml_parser_t *p = &ld->parser;
  size_t line = p->problem_mark.line + 1, column = p->problem_mark.column + 1;
  if (p->error == YAML_READER_ERROR) {
    /* The reader reports a byte offset and leaves problem_mark unset: count
     * the line and column (in characters) up to that offset ourselves. */
    size_t end = p->problem_offset + ld->bom < ld->len ? p->problem_offset + ld->bom : ld->len;
    line = 1, column = 1;
    for (size_t i = ld->bom; i < end; i++) {
      if (ld->bytes[i] == '\n')
        line++, column = 1;
      else if (((unsigned char)ld->bytes[i] & 0xC0) != 0x80)
        column++;
    }
    br_diag(ld->err, ld->name, line, column, "encoding", "%s at byte %zu, expected UTF-8 text",
            p->problem ? p->problem : "unreadable input", p->problem_offset + ld->bom);
    return;
  }
  struct br_buf msg;
  br_buf_init(&msg, 1024);
  br_buf_printf(&msg, "%s", p->problem ? p->problem : "malformed YAML");
  if (p->context)
    br_buf_printf(&msg, " %s (line %zu)", p->context, p->context_mark.line + 1);
  br_buf_adds(&msg, ", expected well-formed YAML");
  fail_at(ld, line, column, msg.data ? msg.data : "malformed YAML");
  br_buf_free(&msg);
}

static int next_event(struct loader *ld, yaml_event_t *ev) {
  if (!yaml_parser_parse(&ld->parser, ev)) {
    fail_parser(ld);
    return -EINVAL;
  }
  return 0;
}

/* A scalar's text lives in the same allocation as its node (extra bytes):
 * one malloc per scalar instead of two. */
static struct br_ynode *new_node(struct loader *ld, enum br_ynode_kind kind, const yaml_event_t *ev,
                                 size_t extra) {
  if (++ld->nodes > ld->opts->max_nodes) {
    fail_at(ld, ev->start_mark.line + 1, ev->start_mark.column + 1, "too many nodes, expected a smaller document");
    ld->node_error = -E2BIG;
    return NULL;
  }
  struct br_ynode *n = calloc(1, sizeof *n + extra);
  if (!n) {
    ld->node_error = -ENOMEM;
    return NULL;
  }
  n->kind = kind;
  n->line = ev->start_mark.line + 1;
  n->column = ev->start_mark.column + 1;
  n->start = ev->start_mark.index;
  n->end = ev->end_mark.index;
  return n;
}

static int push_item(struct br_ynode *parent, struct br_ynode *child) {
  /* items has room for 4, then doubles whenever n reaches a power of two. */
  if (parent->n == 0 || (parent->n >= 4 && (parent->n & (parent->n - 1)) == 0)) {
    size_t cap = parent->n ? parent->n * 2 : 4;
    struct br_ynode **items = realloc(parent->items, cap * sizeof *items);
    if (!items)
      return -ENOMEM;
    parent->items = items;
  }
  parent->items[parent->n++] = child;
  return 0;
}

/* Anchors, aliases and tags make one text mean something else than it reads;
 * the strict readers refuse them. */
static int check_decorations(struct loader *ld, const yaml_event_t *ev, const yaml_char_t *anchor,
                             const yaml_char_t *tag, bool implicit_tag) {
  if (ld->opts->allow_aliases)
    return 0;
  if (anchor) {
    fail_at(ld, ev->start_mark.line + 1, ev->start_mark.column + 1,
            "anchors (&name) are not allowed, expected plain values");
    return -EINVAL;
  }
  /* Any tag, the non-specific "!" too: libyaml calls a scalar tagged "!"
   * implicit, yet "! 123" is the string "123" to YAML while it reads as a
   * number. */
  (void)implicit_tag;
  if (tag) {
    fail_at(ld, ev->start_mark.line + 1, ev->start_mark.column + 1,
            "tags (!name) are not allowed, expected plain values");
    return -EINVAL;
  }
  return 0;
}

static int build(struct loader *ld, yaml_event_t *ev, size_t depth, struct br_ynode **out);

static void path_truncate(struct loader *ld, size_t mark) {
  ld->path.len = mark;
  if (ld->path.data)
    ld->path.data[mark] = '\0';
}

/* Names a mapping key in the field path: routes[0].host, or a quoted excerpt
 * for keys that are not plain identifiers. */
static void path_push_key(struct loader *ld, size_t mark, const struct br_ynode *key) {
  path_truncate(ld, mark);
  if (mark)
    br_buf_adds(&ld->path, ".");
  if (key->kind != BR_YNODE_SCALAR)
    br_buf_adds(&ld->path, "<complex key>");
  else if (key->len &&
           strspn(key->value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == key->len)
    br_buf_add(&ld->path, key->value, key->len);
  else
    br_quote_excerpt(&ld->path, key->value, key->len, 40);
}

/* A mapping's scalar keys sorted by their bytes, ties in document order:
 * equal keys end up side by side, found in O(n log n) whatever the keys are
 * (a hash set could be flooded with colliding keys). Comparing each key with
 * every earlier one made refusing a 1 MiB mapping of 100,000 keys cost 30 s
 * of CPU. */
struct sorted_key {
  const struct br_ynode *key;
  size_t index;
};

static int cmp_keys(const void *x, const void *y) {
  const struct sorted_key *a = x, *b = y;
  size_t n = a->key->len < b->key->len ? a->key->len : b->key->len;
  int c = memcmp(a->key->value, b->key->value, n);
  if (c || a->key->len != b->key->len)
    return c ? c : a->key->len < b->key->len ? -1 : 1;
  return a->index < b->index ? -1 : a->index > b->index;
}

/* Refuses the mapping's first repeated key (the repeat nearest the start),
 * naming where the key was first. */
static int check_duplicates(struct loader *ld, const struct br_ynode *map, size_t mark) {
  if (map->n < 4)
    return 0;
  struct sorted_key *keys = malloc(map->n / 2 * sizeof *keys);
  if (!keys)
    return -ENOMEM;
  size_t n = 0;
  for (size_t i = 0; i + 1 < map->n; i += 2)
    if (map->items[i]->kind == BR_YNODE_SCALAR)
      keys[n++] = (struct sorted_key){.key = map->items[i], .index = i};
  qsort(keys, n, sizeof *keys, cmp_keys);
  const struct sorted_key *repeat = NULL, *first = NULL;
  for (size_t i = 1, group = 0; i < n; i++) {
    if (keys[i].key->len != keys[group].key->len ||
        memcmp(keys[i].key->value, keys[group].key->value, keys[i].key->len) != 0) {
      group = i;
      continue;
    }
    if (i == group + 1 && (!repeat || keys[i].index < repeat->index))
      repeat = &keys[i], first = &keys[group];
  }
  int rc = 0;
  if (repeat) {
    char what[128];
    snprintf(what, sizeof what, "duplicate key (first at line %zu), expected each key once", first->key->line);
    path_push_key(ld, mark, repeat->key);
    fail_at(ld, repeat->key->line, repeat->key->column, what);
    rc = -EINVAL;
  }
  free(keys);
  return rc;
}

static int build_collection(struct loader *ld, struct br_ynode *node, size_t depth) {
  yaml_event_type_t end = node->kind == BR_YNODE_SEQ ? YAML_SEQUENCE_END_EVENT : YAML_MAPPING_END_EVENT;
  size_t mark = ld->path.len; /* the path of this collection */
  int rc = 0;
  for (size_t i = 0; !rc; i++) {
    yaml_event_t ev;
    if ((rc = next_event(ld, &ev)))
      break;
    if (ev.type == end) {
      node->end = ev.end_mark.index;
      yaml_event_delete(&ev);
      if (node->kind == BR_YNODE_MAP && !ld->opts->allow_dup_keys)
        rc = check_duplicates(ld, node, mark);
      if (!rc)
        path_truncate(ld, mark);
      break;
    }
    bool is_key = node->kind == BR_YNODE_MAP && i % 2 == 0;
    if (node->kind == BR_YNODE_SEQ) {
      /* "[i]" by hand: printf costs more than the rest of a list item. */
      char index[24], *p = index + sizeof index;
      *--p = ']';
      size_t v = i;
      do
        *--p = (char)('0' + v % 10);
      while ((v /= 10));
      *--p = '[';
      path_truncate(ld, mark);
      br_buf_add(&ld->path, p, (size_t)(index + sizeof index - p));
    }
    struct br_ynode *child = NULL;
    rc = build(ld, &ev, depth + 1, &child);
    yaml_event_delete(&ev);
    if (!rc)
      rc = push_item(node, child);
    if (rc) {
      br_ynode_free(child);
      break;
    }
    if (!is_key)
      continue;
    /* The key stays in the path while its value is built. */
    path_push_key(ld, mark, child);
  }
  return rc;
}

static int build(struct loader *ld, yaml_event_t *ev, size_t depth, struct br_ynode **out) {
  struct br_ynode *node = NULL;
  int rc;
  switch (ev->type) {
  case YAML_SCALAR_EVENT:
    if ((rc = check_decorations(ld, ev, ev->data.scalar.anchor, ev->data.scalar.tag,
                                ev->data.scalar.plain_implicit || ev->data.scalar.quoted_implicit)))
      return rc;
    if (!(node = new_node(ld, BR_YNODE_SCALAR, ev, ev->data.scalar.length + 1)))
      return ld->node_error;
    node->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    /* libyaml sets a tag only where one was written; "!" it calls
     * plain_implicit, yet it makes a plain scalar a string. */
    node->tagged = ev->data.scalar.tag != NULL;
    node->anchored = ev->data.scalar.anchor != NULL;
    node->len = ev->data.scalar.length;
    node->value = (char *)(node + 1);
    memcpy(node->value, ev->data.scalar.value, node->len);
    node->value[node->len] = '\0';
    *out = node;
    return 0;
  case YAML_ALIAS_EVENT:
    if (!ld->opts->allow_aliases) {
      fail_at(ld, ev->start_mark.line + 1, ev->start_mark.column + 1,
              "aliases (*name) are not allowed, expected plain values");
      return -EINVAL;
    }
    if (!(node = new_node(ld, BR_YNODE_ALIAS, ev, 0)))
      return ld->node_error;
    *out = node;
    return 0;
  case YAML_SEQUENCE_START_EVENT:
  case YAML_MAPPING_START_EVENT: {
    bool seq = ev->type == YAML_SEQUENCE_START_EVENT;
    if (seq)
      rc = check_decorations(ld, ev, ev->data.sequence_start.anchor, ev->data.sequence_start.tag,
                             ev->data.sequence_start.implicit);
    else
      rc = check_decorations(ld, ev, ev->data.mapping_start.anchor, ev->data.mapping_start.tag,
                             ev->data.mapping_start.implicit);
    if (rc)
      return rc;
    if (depth >= ld->opts->max_depth) {
      char what[96];
      snprintf(what, sizeof what, "nested too deeply, expected at most %zu levels", ld->opts->max_depth);
      fail_at(ld, ev->start_mark.line + 1, ev->start_mark.column + 1, what);
      return -EINVAL;
    }
    if (!(node = new_node(ld, seq ? BR_YNODE_SEQ : BR_YNODE_MAP, ev, 0)))
      return ld->node_error;
    node->flow = seq ? ev->data.sequence_start.style == YAML_FLOW_SEQUENCE_STYLE
                     : ev->data.mapping_start.style == YAML_FLOW_MAPPING_STYLE;
    node->anchored = (seq ? ev->data.sequence_start.anchor : ev->data.mapping_start.anchor) != NULL;
    rc = build_collection(ld, node, depth);
    if (rc) {
      br_ynode_free(node);
      return rc;
    }
    *out = node;
    return 0;
  }
  default:
    fail_at(ld, ev->start_mark.line + 1, ev->start_mark.column + 1, "unexpected YAML event");
    return -EINVAL;
  }
}

static int load(struct loader *ld, struct br_ynode **root) {
  yaml_event_t ev;
  int rc;
  bool have_doc = false;
  for (;;) {
    if ((rc = next_event(ld, &ev)))
      return rc;
    yaml_event_type_t type = ev.type;
    if (type == YAML_STREAM_END_EVENT) {
      yaml_event_delete(&ev);
      return 0;
    }
    if (type == YAML_DOCUMENT_START_EVENT && have_doc) {
      fail_at(ld, ev.start_mark.line + 1, ev.start_mark.column + 1,
              "a second YAML document, expected exactly one");
      yaml_event_delete(&ev);
      return -EINVAL;
    }
    if (type == YAML_DOCUMENT_START_EVENT)
      have_doc = true;
    if (type == YAML_SCALAR_EVENT || type == YAML_SEQUENCE_START_EVENT || type == YAML_MAPPING_START_EVENT ||
        type == YAML_ALIAS_EVENT) {
      rc = build(ld, &ev, 0, root);
      yaml_event_delete(&ev);
      if (rc)
        return rc;
      continue;
    }
    yaml_event_delete(&ev);
  }
}

int br_ydoc_parse(const char *name, const char *bytes, size_t len, const struct br_yopts *opts,
                  struct br_ynode **root, struct br_buf *err) {
  *root = NULL;
  if (len > opts->max_bytes) {
    br_diag(err, name, 1, 1, "(file)", "%zu bytes, expected at most %zu", len, opts->max_bytes);
    return -EFBIG;
  }
  /* libyaml asserts on a NULL input, which an empty buffer may well be. */
  if (!bytes)
    bytes = "";
  struct loader ld = {.name = name, .opts = opts, .err = err, .bytes = bytes, .len = len};
  br_buf_init(&ld.path, 4096);
  if (!yaml_parser_initialize(&ld.parser)) {
    br_buf_free(&ld.path);
    return -ENOMEM;
  }
  /* Force UTF-8 so a UTF-16 byte-order mark is an error, not a new encoding.
   * libyaml drops a UTF-8 BOM only when it detects the encoding itself; forced,
   * it reads the BOM as a character that shifts the first line one column to
   * the right of the rest and fails on any block mapping. So the BOM is not
   * shown to it, and positions count from after it, as br_ydoc_byte_offset
   * expects. */
  yaml_parser_set_encoding(&ld.parser, YAML_UTF8_ENCODING);
  if (len >= 3 && memcmp(bytes, "\xEF\xBB\xBF", 3) == 0)
    ld.bom = 3;
  /* libyaml skips a BOM at the start of any line, so a second one would be
   * read past in silence; the strict readers allow one, as the first
   * character, and refuse U+FEFF anywhere else (where it is invisible). */
  const char *again = opts->allow_aliases ? NULL : memmem(bytes + ld.bom, len - ld.bom, "\xEF\xBB\xBF", 3);
  if (again) {
    size_t line = 1, column = 1;
    for (const char *c = bytes + ld.bom; c < again; c++) {
      if (*c == '\n')
        line++, column = 1;
      else if (((unsigned char)*c & 0xC0) != 0x80)
        column++;
    }
    br_diag(err, name, line, column, "encoding",
            "a byte order mark (U+FEFF) %s, expected at most one, as the very first character",
            again == bytes + ld.bom ? "after the first one" : "after the start of the file");
    yaml_parser_delete(&ld.parser);
    br_buf_free(&ld.path);
    return -EINVAL;
  }
  yaml_parser_set_input_string(&ld.parser, (const unsigned char *)bytes + ld.bom, len - ld.bom);
  int rc = load(&ld, root);
  yaml_parser_delete(&ld.parser);
  br_buf_free(&ld.path);
  if (rc) {
    br_ynode_free(*root);
    *root = NULL;
  }
  return rc;
}

void br_ynode_free(struct br_ynode *node) {
  if (!node)
    return;
  for (size_t i = 0; i < node->n; i++)
    br_ynode_free(node->items[i]);
  free(node->items);
  free(node); /* and the scalar text with it */
}

const struct br_ynode *br_ymap_get(const struct br_ynode *map, const char *key) {
  if (!map || map->kind != BR_YNODE_MAP)
    return NULL;
  size_t klen = strlen(key);
  for (size_t i = 0; i + 1 < map->n; i += 2) {
    const struct br_ynode *k = map->items[i];
    if (k->kind == BR_YNODE_SCALAR && k->len == klen && memcmp(k->value, key, klen) == 0)
      return map->items[i + 1];
  }
  return NULL;
}

static bool all_of(const char *s, const char *set) { return *s && s[strspn(s, set)] == '\0'; }

static bool is_int(const char *s) {
  if (*s == '-' || *s == '+')
    s++;
  if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
    return all_of(s + 2, "0123456789abcdefABCDEF_");
  if (s[0] == '0' && (s[1] == 'o' || s[1] == 'b'))
    return all_of(s + 2, "01234567_");
  return all_of(s, "0123456789_") && strchr("0123456789", s[0]);
}

static bool is_float(const char *s) {
  static const char *const special[] = {".inf", ".Inf", ".INF", ".nan", ".NaN", ".NAN"};
  const char *t = (*s == '-' || *s == '+') ? s + 1 : s;
  for (size_t i = 0; i < sizeof special / sizeof *special; i++)
    if (strcmp(t, special[i]) == 0)
      return true;
  size_t digits = 0;
  while (*t >= '0' && *t <= '9')
    t++, digits++;
  if (*t == '.') {
    t++;
    while (*t >= '0' && *t <= '9')
      t++, digits++;
  } else if (*t != 'e' && *t != 'E') {
    return false;
  }
  if (!digits)
    return false;
  if (*t == 'e' || *t == 'E') {
    t++;
    if (*t == '-' || *t == '+')
      t++;
    if (!(*t >= '0' && *t <= '9'))
      return false;
    while (*t >= '0' && *t <= '9')
      t++;
  }
  return *t == '\0';
}

enum br_yscalar_type br_yscalar_type(const struct br_ynode *n) {
  static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
  static const char *const bools[] = {"true", "True", "TRUE", "false", "False", "FALSE", "yes", "Yes",
                                      "YES",  "no",   "No",   "NO",    "on",    "On",    "ON",  "off",
                                      "Off",  "OFF",  "y",    "Y",     "n",     "N"};
  if (n->kind != BR_YNODE_SCALAR || !n->plain || n->tagged)
    return BR_YSTR;
  /* Every null and bool word is at most 5 characters: skip 27 strcmp()s
   * for the rest, host names mostly. */
  for (size_t i = 0; n->len <= 5 && i < sizeof nulls / sizeof *nulls; i++)
    if (strcmp(n->value, nulls[i]) == 0)
      return BR_YNULL;
  for (size_t i = 0; n->len <= 5 && i < sizeof bools / sizeof *bools; i++)
    if (strcmp(n->value, bools[i]) == 0)
      return BR_YBOOL;
  if (is_int(n->value))
    return BR_YINT;
  if (is_float(n->value))
    return BR_YFLOAT;
  return BR_YSTR;
}

const char *br_ynode_describe(const struct br_ynode *n) {
  if (!n)
    return "nothing";
  switch (n->kind) {
  case BR_YNODE_SEQ:
    return "a list";
  case BR_YNODE_MAP:
    return "a mapping";
  case BR_YNODE_ALIAS:
    return "an alias";
  case BR_YNODE_SCALAR:
    break;
  }
  switch (br_yscalar_type(n)) {
  case BR_YNULL:
    return "null";
  case BR_YBOOL:
    return "a boolean";
  case BR_YINT:
  case BR_YFLOAT:
    return "a number";
  case BR_YSTR:
    break;
  }
  return "a string";
}

int br_yscalar_uint(const struct br_ynode *n, unsigned long long max, unsigned long long *out) {
  if (!n || n->kind != BR_YNODE_SCALAR || n->len == 0 || n->len > 20 || strspn(n->value, "0123456789") != n->len)
    return -EINVAL;
  unsigned long long v = 0;
  for (size_t i = 0; i < n->len; i++) {
    unsigned d = (unsigned)(n->value[i] - '0');
    if (d > max || v > (max - d) / 10) /* d > max: max - d would wrap */
      return -EINVAL;
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

int br_yscalar_bool(const struct br_ynode *n, bool *out) {
  if (!n || br_yscalar_type(n) != BR_YBOOL)
    return -EINVAL;
  *out = strchr("tTyY", n->value[0]) != NULL || strcasecmp(n->value, "on") == 0;
  return 0;
}

size_t br_ydoc_byte_offset(const char *bytes, size_t len, size_t char_index) {
  size_t i = 0;
  if (len >= 3 && memcmp(bytes, "\xEF\xBB\xBF", 3) == 0)
    i = 3;
  for (size_t c = 0; c < char_index && i < len; c++) {
    i++;
    while (i < len && ((unsigned char)bytes[i] & 0xC0) == 0x80)
      i++;
  }
  return i;
}

int br_yaml_quote(struct br_buf *out, const char *s) {
  int rc = br_buf_adds(out, "\"");
  while (*s && !rc) {
    /* Copy the longest run that needs no escape in one go. */
    size_t run = 0;
    while (s[run] && s[run] != '"' && s[run] != '\\' && (unsigned char)s[run] >= 0x20 && s[run] != 0x7f)
      run++;
    if (run) {
      rc = br_buf_add(out, s, run);
      s += run;
      continue;
    }
    unsigned char c = (unsigned char)*s++;
    rc = c == '"' || c == '\\' ? br_buf_printf(out, "\\%c", c) : br_buf_printf(out, "\\x%02X", c);
  }
  return rc ? rc : br_buf_adds(out, "\"");
}

int br_quote_excerpt(struct br_buf *out, const char *s, size_t len, size_t max) {
  int rc = br_buf_adds(out, "\"");
  size_t i;
  for (i = 0; i < len && i < max && !rc; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\')
      rc = br_buf_printf(out, "\\%c", c);
    else if (c < 0x20 || c == 0x7f || c >= 0x80)
      rc = br_buf_printf(out, "\\x%02x", c);
    else
      rc = br_buf_add(out, &s[i], 1);
  }
  if (!rc && i < len)
    rc = br_buf_adds(out, "...");
  return rc ? rc : br_buf_adds(out, "\"");
}
