/* yamldoc: a strict, bounded YAML loader: bytes to a small node tree with
 * positions, for the fragment, config and pipelock readers, and the quoting
 * of a string for the writers. It knows YAML, not what any key means. */
#ifndef BR_COMMON_YAMLDOC_H
#define BR_COMMON_YAMLDOC_H

#include <stdbool.h>
#include <stddef.h>

#include "common/buf.h"

enum br_ynode_kind {
  BR_YNODE_SCALAR,
  BR_YNODE_SEQ,
  BR_YNODE_MAP,
  BR_YNODE_ALIAS, /* only with allow_aliases: a reference, not followed */
};

/* The type a plain scalar resolves to under YAML 1.1 rules (the strictest of
 * the readers a file may meet); quoted scalars are always strings. */
enum br_yscalar_type {
  BR_YSTR,
  BR_YNULL,
  BR_YBOOL,
  BR_YINT,
  BR_YFLOAT,
};

struct br_ynode {
  enum br_ynode_kind kind;
  size_t line, column;     /* 1-based position of the node's first character */
  size_t start, end;       /* character offsets of the node in the input (libyaml
                              counts characters, not bytes: see br_ydoc_byte_offset) */
  bool plain;              /* scalar written without quotes */
  bool flow;               /* collection written in flow style ([...] or {...}) */
  bool tagged;             /* an explicit tag such as !!str was written */
  bool anchored;           /* carries an &anchor */
  char *value;             /* scalar text, NUL-terminated; lives in the node's own
                              allocation: never freed or replaced on its own */
  size_t len;              /* scalar length (may contain NUL bytes) */
  struct br_ynode **items; /* SEQ: elements; MAP: key, value, key, value...; owned */
  size_t n;                /* number of entries in items */
};

struct br_yopts {
  size_t max_bytes;    /* larger input is refused before parsing */
  size_t max_depth;    /* nesting of collections */
  size_t max_nodes;    /* every node counted; bounds memory */
  bool allow_aliases;  /* otherwise anchors, aliases and tags are errors */
  bool allow_dup_keys; /* otherwise a repeated scalar key is an error */
};

/* Parses exactly one document. The empty input (or only comments) gives
 * *root == NULL and 0; bytes may be NULL when len is 0. Errors return -EINVAL
 * (-EFBIG for more than max_bytes, -E2BIG for more than max_nodes) and append
 * "NAME:LINE:COLUMN: FIELD: what is wrong, what was expected" to err, where
 * FIELD is a path like routes[2].host. Input must be UTF-8. */
int br_ydoc_parse(const char *name, const char *bytes, size_t len, const struct br_yopts *opts,
                  struct br_ynode **root, struct br_buf *err);
void br_ynode_free(struct br_ynode *node);

/* The value for key in a mapping, or NULL. */
const struct br_ynode *br_ymap_get(const struct br_ynode *map, const char *key);
enum br_yscalar_type br_yscalar_type(const struct br_ynode *scalar);
/* "a string", "a list", "a mapping", "a number", "a boolean", "null". */
const char *br_ynode_describe(const struct br_ynode *node);
/* Parses an unsigned decimal scalar no larger than max. -EINVAL otherwise. */
int br_yscalar_uint(const struct br_ynode *node, unsigned long long max, unsigned long long *out);
/* true/false (and YAML 1.1's yes/no/on/off). -EINVAL otherwise. */
int br_yscalar_bool(const struct br_ynode *node, bool *out);
/* Byte offset of a character offset in the UTF-8 input (skipping a BOM). */
size_t br_ydoc_byte_offset(const char *bytes, size_t len, size_t char_index);
/* Appends s as a YAML double-quoted scalar that every YAML reader (libyaml,
 * ours; go-yaml, pipelock's) reads back as exactly s: '"' and '\\' escaped
 * with a backslash, control characters and DEL as \xNN in upper-case hex
 * (as libyaml's and go-yaml's own emitters write them; both readers accept
 * either case), every other byte as it is. Bytes from 0x80 up are copied
 * unchanged: s is UTF-8, and \xNN would mean the code point U+00NN, not the
 * byte. Returns 0, -ENOMEM or -EFBIG (out's maximum; out may then hold part
 * of the scalar). */
int br_yaml_quote(struct br_buf *out, const char *s);
/* Appends a short printable excerpt of s (at most max characters, escaped,
 * with "..." when cut) to out, in double quotes: error messages quote no more. */
int br_quote_excerpt(struct br_buf *out, const char *s, size_t len, size_t max);

#endif
