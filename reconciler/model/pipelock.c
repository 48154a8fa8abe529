/* pipelock: reads api_allowlist in a pipelock config's text and splices a new
 * list in. No I/O; a splice edits only the list and reads its result back. */
#include "reconciler/model/pipelock.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/diag.h"
#include "common/yamldoc.h"

#define ALLOWLIST_KEY "api_allowlist"

static const struct br_yopts pipelock_yopts = {
    .max_bytes = BR_PIPELOCK_MAX_BYTES,
    .max_depth = 64,
    .max_nodes = 200000,
    /* Operators write these files by hand and may use anchors for their
     * own repeated settings; only the list itself must be free of them. */
    .allow_aliases = true,
    /* pipelock's YAML reader rejects a repeated key too. */
    .allow_dup_keys = false,
};

/* ---- reading ---------------------------------------------------------- */

/* A parsed config: the tree, and where api_allowlist sits in it. */
struct parsed {
  struct br_ynode *root;
  const struct br_ynode *key;  /* the api_allowlist key; NULL when absent */
  const struct br_ynode *list; /* its value; NULL when absent */
};

static int fail_at(struct br_buf *err, const char *name, const struct br_ynode *at, const char *field,
                   const char *what) {
  br_diag(err, name, at ? at->line : 1, at ? at->column : 1, field, "%s", what);
  return -EINVAL;
}

/* Names the entry only once it is wrong: formatting the field of every
 * entry of every converge would cost more than checking it. */
static int fail_item(struct br_buf *err, const char *name, const struct br_ynode *item, size_t i,
                     const char *what) {
  char field[48];
  snprintf(field, sizeof field, ALLOWLIST_KEY "[%zu]", i);
  return fail_at(err, name, item, field, what);
}

static int check_entries(const char *name, const struct br_ynode *list, struct br_strv *hosts,
                         struct br_buf *err) {
  char what[160];
  if (list->kind == BR_YNODE_ALIAS)
    return fail_at(err, name, list, ALLOWLIST_KEY,
                   "an alias, expected the list written out here, where it can be edited");
  if (list->anchored || list->tagged)
    return fail_at(err, name, list, ALLOWLIST_KEY,
                   "an anchor or tag, expected a plain list (rewriting the list would drop it)");
  if (list->kind == BR_YNODE_SCALAR && br_yscalar_type(list) == BR_YNULL)
    return 0; /* pipelock reads null as an empty list */
  if (list->kind != BR_YNODE_SEQ) {
    snprintf(what, sizeof what, "%s, expected a list of host names", br_ynode_describe(list));
    return fail_at(err, name, list, ALLOWLIST_KEY, what);
  }
  for (size_t i = 0; i < list->n; i++) {
    const struct br_ynode *item = list->items[i];
    if (item->kind == BR_YNODE_ALIAS)
      return fail_item(err, name, item, i, "an alias, expected a host name written out");
    if (item->anchored || item->tagged)
      return fail_item(err, name, item, i,
                       "an anchor or tag, expected a plain host name (rewriting the list would drop it)");
    if (item->kind != BR_YNODE_SCALAR || br_yscalar_type(item) != BR_YSTR) {
      snprintf(what, sizeof what, "%s, expected a host name (quote it if it is one)", br_ynode_describe(item));
      return fail_item(err, name, item, i, what);
    }
    if (strlen(item->value) != item->len)
      return fail_item(err, name, item, i, "a NUL character, expected a host name");
    int rc = br_strv_addn(hosts, item->value, item->len);
    if (rc)
      return rc;
  }
  return 0;
}

static int check_top_level(const char *name, struct parsed *doc, struct br_strv *hosts, struct br_buf *err) {
  const struct br_ynode *root = doc->root;
  char what[160];
  if (!root)
    return fail_at(err, name, NULL, "(document)", "empty, expected one YAML document with pipelock's settings");
  if (root->kind != BR_YNODE_MAP) {
    snprintf(what, sizeof what, "%s, expected a mapping of pipelock settings", br_ynode_describe(root));
    return fail_at(err, name, root, "(document)", what);
  }
  for (size_t i = 0; i + 1 < root->n; i += 2) {
    const struct br_ynode *key = root->items[i];
    /* Either could bring in an api_allowlist that this reader cannot see. */
    if (key->kind == BR_YNODE_ALIAS)
      return fail_at(err, name, key, "(document)", "an alias as a key, expected plain keys");
    if (key->kind == BR_YNODE_SCALAR && key->plain && strcmp(key->value, "<<") == 0)
      return fail_at(err, name, key, "<<", "a merge key at the top level, expected every setting written out");
    if (key->kind == BR_YNODE_SCALAR && key->len == strlen(ALLOWLIST_KEY) &&
        strcmp(key->value, ALLOWLIST_KEY) == 0) {
      doc->key = key;
      doc->list = root->items[i + 1];
    }
  }
  return doc->list ? check_entries(name, doc->list, hosts, err) : 0;
}

/* Parses and checks; on success the caller frees doc->root. hosts receives
 * the entries and is freed on error. */
static int read_config(const char *name, const char *bytes, size_t len, struct parsed *doc, struct br_strv *hosts,
                       struct br_buf *err) {
  memset(doc, 0, sizeof *doc);
  br_strv_init(hosts);
  int rc = br_ydoc_parse(name, bytes, len, &pipelock_yopts, &doc->root, err);
  if (!rc)
    rc = check_top_level(name, doc, hosts, err);
  if (rc) {
    br_ynode_free(doc->root);
    memset(doc, 0, sizeof *doc);
    br_strv_free(hosts);
  }
  return rc;
}

int br_pipelock_allowlist(const char *name, const char *bytes, size_t len, struct br_strv *hosts,
                          struct br_buf *err) {
  struct parsed doc;
  struct br_strv found;
  int rc = read_config(name, bytes, len, &doc, &found, err);
  if (rc)
    return rc;
  rc = br_strv_append_all(hosts, &found);
  br_strv_free(&found);
  br_ynode_free(doc.root);
  return rc;
}

/* ---- splicing: positions ---------------------------------------------- */

/* Turns libyaml's character offsets into byte offsets. Node offsets are
 * asked for mostly in increasing order, so it walks forward from the last
 * answer instead of from the start each time (br_ydoc_byte_offset's rule:
 * a leading BOM is not counted, each UTF-8 sequence is one character). */
struct offsets {
  const char *bytes;
  size_t len;
  size_t first; /* byte offset of character 0 */
  size_t ch, at;
};

static void offsets_init(struct offsets *o, const char *bytes, size_t len) {
  o->bytes = bytes;
  o->len = len;
  o->first = br_ydoc_byte_offset(bytes, len, 0);
  o->ch = 0;
  o->at = o->first;
}

static size_t byte_at(struct offsets *o, size_t ch) {
  if (ch < o->ch) {
    o->ch = 0;
    o->at = o->first;
  }
  while (o->ch < ch && o->at < o->len) {
    o->at++;
    while (o->at < o->len && ((unsigned char)o->bytes[o->at] & 0xC0) == 0x80)
      o->at++;
    o->ch++;
  }
  return o->at;
}

/* ---- splicing: text scanning ------------------------------------------ */

static bool is_blank(char c) { return c == ' ' || c == '\t'; }

static size_t line_start(const char *b, size_t at) {
  size_t s = at;
  while (s > 0 && b[s - 1] != '\n')
    s--;
  /* A byte-order mark opens the first line but is no part of its indentation. */
  if (s == 0 && at >= 3 && memcmp(b, "\xEF\xBB\xBF", 3) == 0)
    s = 3;
  return s;
}

/* Number of spaces that open the line holding at. */
static size_t line_indent(const char *b, size_t len, size_t at) {
  size_t s = line_start(b, at), i = s;
  while (i < len && b[i] == ' ')
    i++;
  return i - s;
}

static bool all_spaces(const char *b, size_t from, size_t to) {
  for (size_t i = from; i < to; i++)
    if (b[i] != ' ')
      return false;
  return true;
}

/* The end of the line that a node ending at `at` sits on, past its line
 * break: blanks and a comment may follow the node, nothing else. A node that
 * already ends at a line start (a block scalar) ends its own line. SIZE_MAX
 * when something else follows. */
static size_t rest_of_line(const char *b, size_t len, size_t at) {
  if (at > 0 && b[at - 1] == '\n')
    return at;
  while (at < len && is_blank(b[at]))
    at++;
  if (at < len && b[at] == '#')
    while (at < len && b[at] != '\n')
      at++;
  if (at < len && b[at] == '\r' && at + 1 < len && b[at + 1] == '\n')
    at++;
  if (at == len)
    return len;
  return b[at] == '\n' ? at + 1 : SIZE_MAX;
}

/* Blanks and a comment after `at` on its line, up to (not including) the
 * line break or the next token. */
static size_t same_line_end(const char *b, size_t len, size_t at) {
  while (at < len && is_blank(b[at]))
    at++;
  if (at < len && b[at] == '#') {
    while (at < len && b[at] != '\n')
      at++;
    if (b[at - 1] == '\r')
      at--;
  }
  return at;
}

/* Skips blanks, line breaks and comments. */
static size_t skip_space(const char *b, size_t len, size_t at) {
  while (at < len) {
    if (is_blank(b[at]) || b[at] == '\r' || b[at] == '\n')
      at++;
    else if (b[at] == '#')
      while (at < len && b[at] != '\n')
        at++;
    else
      break;
  }
  return at;
}

static bool has_byte(const char *b, size_t from, size_t to, char c) {
  return to > from && memchr(b + from, c, to - from) != NULL;
}

/* ---- splicing: writing hosts ------------------------------------------ */

/* Whether YAML would read s, written without quotes, back as the same
 * string, in block and in flow context, under YAML 1.1 and 1.2 alike. Kept
 * narrow on purpose: host-name characters only, and not a word or number
 * that resolves to another type. */
static bool plain_is_safe(const char *s) {
  static const char host_chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_";
  size_t n = strlen(s);
  if (n == 0 || s[0] == '-' || strspn(s, host_chars) != n)
    return false;
  /* Digits and dashes only, like 2024-01-01: some readers make it a date. */
  if (strspn(s, "0123456789-") == n)
    return false;
  struct br_ynode probe = {.kind = BR_YNODE_SCALAR, .plain = true, .value = (char *)s, .len = n};
  return br_yscalar_type(&probe) == BR_YSTR;
}

static int add_host(struct br_buf *out, const char *host) {
  return plain_is_safe(host) ? br_buf_adds(out, host) : br_yaml_quote(out, host);
}

/* Whether s is well-formed UTF-8, which YAML requires of the whole file. */
static bool is_utf8(const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  while (*p) {
    size_t n = *p < 0x80 ? 0 : (*p & 0xE0) == 0xC0 ? 1 : (*p & 0xF0) == 0xE0 ? 2 : (*p & 0xF8) == 0xF0 ? 3 : 9;
    if (n == 9 || (n == 1 && *p < 0xC2) || (n == 3 && *p > 0xF4))
      return false;
    /* No overlong forms, no surrogates, nothing past U+10FFFF. */
    if ((n == 2 && *p == 0xE0 && p[1] < 0xA0) || (n == 2 && *p == 0xED && p[1] >= 0xA0) ||
        (n == 3 && *p == 0xF0 && p[1] < 0x90) || (n == 3 && *p == 0xF4 && p[1] >= 0x90))
      return false;
    for (size_t k = 1; k <= n; k++)
      if ((p[k] & 0xC0) != 0x80)
        return false;
    p += n + 1;
  }
  return true;
}

/* ---- splicing ---------------------------------------------------------- */

struct splice {
  const char *name;
  const char *bytes;
  size_t len;
  const struct br_strv *hosts; /* the new list */
  struct parsed doc;
  struct br_strv old; /* the list as it is */
  struct offsets off;
  const char *eol;     /* the file's line break: "\n" or "\r\n" */
  struct br_buf out;   /* the new file */
  size_t copied;       /* bytes of the input copied to out so far */
  const char *refusal; /* why the layout cannot be edited, for the message */
};

static size_t node_start(struct splice *sp, const struct br_ynode *n) { return byte_at(&sp->off, n->start); }

static size_t node_end(struct splice *sp, const struct br_ynode *n) { return byte_at(&sp->off, n->end); }

static int refuse(struct splice *sp, const char *why) {
  sp->refusal = why;
  return -EINVAL;
}

/* Copies the input up to `to` (exclusive) after what was copied so far. */
static int copy_to(struct splice *sp, size_t to) {
  if (to < sp->copied || to > sp->len)
    return refuse(sp, "its parts are not in the order expected");
  int rc = br_buf_add(&sp->out, sp->bytes + sp->copied, to - sp->copied);
  sp->copied = to;
  return rc;
}

static int add_bytes(struct splice *sp, size_t from, size_t to) {
  return br_buf_add(&sp->out, sp->bytes + from, to - from);
}

/* New lines may only start at a line start. */
static int ensure_line_start(struct splice *sp) {
  if (sp->out.len && sp->out.data[sp->out.len - 1] != '\n')
    return br_buf_adds(&sp->out, sp->eol);
  return 0;
}

static int add_flow_list(struct splice *sp) {
  int rc = br_buf_adds(&sp->out, "[");
  for (size_t j = 0; !rc && j < sp->hosts->n; j++) {
    if (j)
      rc = br_buf_adds(&sp->out, ", ");
    if (!rc)
      rc = add_host(&sp->out, sp->hosts->v[j]);
  }
  return rc ? rc : br_buf_adds(&sp->out, "]");
}

static int add_block_line(struct splice *sp, const struct br_buf *prefix, const char *host) {
  int rc = ensure_line_start(sp);
  if (!rc)
    rc = br_buf_add(&sp->out, prefix->data, prefix->len);
  if (!rc)
    rc = add_host(&sp->out, host);
  return rc ? rc : br_buf_adds(&sp->out, sp->eol);
}

/* Which old entries stay, and where: match[i] is the index in the new list
 * of old entry i, or -1 when it goes; kept[j] is the old index of new entry
 * j, or -1 when it is new. Greedy in order (each old entry takes the first
 * equal new entry after the previous match), which is exact for what
 * br_pipelock_plan produces (entries removed, others appended) and still a
 * correct, if not minimal, edit for any other list. A sorted index keeps it
 * O((n + m) log m) however long the lists are. */
struct entry_match {
  long *match; /* old->n entries */
  long *kept;  /* new_list->n entries */
};

struct keyed {
  const char *host;
  size_t index;
};

static int keyed_cmp(const void *x, const void *y) {
  const struct keyed *a = x, *b = y;
  int c = strcmp(a->host, b->host);
  return c ? c : (a->index > b->index) - (a->index < b->index);
}

static void match_free(struct entry_match *m) {
  free(m->match);
  free(m->kept);
  m->match = m->kept = NULL;
}

static int match_entries(const struct br_strv *old, const struct br_strv *new_list, struct entry_match *m) {
  m->match = calloc(old->n + 1, sizeof *m->match);
  m->kept = calloc(new_list->n + 1, sizeof *m->kept);
  struct keyed *sorted = calloc(new_list->n + 1, sizeof *sorted);
  if (!m->match || !m->kept || !sorted) {
    free(sorted);
    match_free(m);
    return -ENOMEM;
  }
  for (size_t j = 0; j < new_list->n; j++) {
    sorted[j] = (struct keyed){new_list->v[j], j};
    m->kept[j] = -1;
  }
  qsort(sorted, new_list->n, sizeof *sorted, keyed_cmp);
  size_t next = 0;
  for (size_t i = 0; i < old->n; i++) {
    /* The first (host, index) at or after (old entry, next). */
    struct keyed want = {old->v[i], next};
    size_t lo = 0, hi = new_list->n;
    while (lo < hi) {
      size_t mid = lo + (hi - lo) / 2;
      if (keyed_cmp(&sorted[mid], &want) < 0)
        lo = mid + 1;
      else
        hi = mid;
    }
    m->match[i] = -1;
    if (lo < new_list->n && strcmp(sorted[lo].host, old->v[i]) == 0) {
      m->match[i] = (long)sorted[lo].index;
      m->kept[sorted[lo].index] = (long)i;
      next = sorted[lo].index + 1;
    }
  }
  free(sorted);
  return 0;
}

/* The colon after the api_allowlist key (also on the next line, for the
 * explicit "? key" form). */
static size_t find_colon(struct splice *sp) {
  size_t at = skip_space(sp->bytes, sp->len, node_end(sp, sp->doc.key));
  return at < sp->len && sp->bytes[at] == ':' ? at : SIZE_MAX;
}

/* How a new block list's lines start, when the file has none to copy: like
 * the file's other top-level block lists relative to their key ("- " at the
 * key's column or indented), else two spaces deeper than the key. */
static int block_prefix_for_new_list(struct splice *sp, size_t key_indent, struct br_buf *prefix) {
  const struct br_ynode *root = sp->doc.root;
  for (size_t i = 0; i + 1 < root->n; i += 2) {
    const struct br_ynode *key = root->items[i], *v = root->items[i + 1];
    if (v->kind != BR_YNODE_SEQ || v->flow || v->n == 0)
      continue;
    size_t dash = node_start(sp, v), first = node_start(sp, v->items[0]);
    size_t ls = line_start(sp->bytes, dash);
    size_t own = line_indent(sp->bytes, sp->len, node_start(sp, key));
    if (sp->bytes[dash] != '-' || !all_spaces(sp->bytes, ls, dash) || dash - ls < own || first <= dash + 1 ||
        !all_spaces(sp->bytes, dash + 1, first))
      continue;
    int rc = 0;
    for (size_t k = 0; !rc && k < key_indent + (dash - ls - own); k++)
      rc = br_buf_adds(prefix, " ");
    return rc ? rc : br_buf_add(prefix, sp->bytes + dash, first - dash);
  }
  int rc = 0;
  for (size_t k = 0; !rc && k < key_indent + 2; k++)
    rc = br_buf_adds(prefix, " ");
  return rc ? rc : br_buf_adds(prefix, "- ");
}

static int splice_block_list(struct splice *sp) {
  const char *b = sp->bytes;
  const struct br_ynode *seq = sp->doc.list;
  size_t n = seq->n;
  size_t *first = calloc(n, sizeof *first); /* start of each entry's line */
  size_t *last = calloc(n, sizeof *last);   /* past the end of its last line */
  struct entry_match m = {0};
  struct br_buf prefix;
  br_buf_init(&prefix, BR_PIPELOCK_MAX_BYTES);
  int rc = first && last ? match_entries(&sp->old, sp->hosts, &m) : -ENOMEM;
  for (size_t i = 0; !rc && i < n; i++) {
    size_t s = node_start(sp, seq->items[i]), e = node_end(sp, seq->items[i]);
    size_t dash = s;
    while (dash > 0 && is_blank(b[dash - 1]))
      dash--;
    if (dash == 0 || b[--dash] != '-') {
      rc = refuse(sp, "an entry is not on the line of its dash");
      break;
    }
    first[i] = line_start(b, dash);
    last[i] = rest_of_line(b, sp->len, e);
    if (!all_spaces(b, first[i], dash))
      rc = refuse(sp, "an entry's dash does not start its line");
    else if (last[i] == SIZE_MAX)
      rc = refuse(sp, "something follows an entry on its line");
    else if (i > 0 && first[i] < last[i - 1])
      rc = refuse(sp, "two entries share a line");
    else if (i == 0) {
      /* New lines copy the first entry's "  - " when it is that simple. */
      if (dash + 1 < s && all_spaces(b, dash + 1, s) && b[dash + 1] == ' ')
        rc = br_buf_add(&prefix, b + first[0], s - first[0]);
      else
        rc = block_prefix_for_new_list(sp, line_indent(b, sp->len, node_start(sp, sp->doc.key)), &prefix);
    }
  }
  if (!rc && sp->hosts->n == 0) {
    /* Comment lines between entries stay; "[]" keeps the value a list. */
    size_t colon = find_colon(sp);
    if (colon == SIZE_MAX || colon >= first[0])
      rc = refuse(sp, "no ':' found after the key");
    if (!rc)
      rc = copy_to(sp, colon + 1);
    if (!rc)
      rc = br_buf_adds(&sp->out, " []");
  }
  if (!rc)
    rc = copy_to(sp, first[0]);
  /* New entries go after the kept entry before them in the new list, or
   * where the first entry was when no kept entry comes before them. */
  size_t j = 0;
  for (; !rc && j < sp->hosts->n && m.kept[j] < 0; j++)
    rc = add_block_line(sp, &prefix, sp->hosts->v[j]);
  for (size_t i = 0; !rc && i < n; i++) {
    if (i > 0)
      rc = add_bytes(sp, last[i - 1], first[i]); /* comment and blank lines */
    if (rc || m.match[i] < 0)
      continue;
    rc = add_bytes(sp, first[i], last[i]);
    for (j = (size_t)m.match[i] + 1; !rc && j < sp->hosts->n && m.kept[j] < 0; j++)
      rc = add_block_line(sp, &prefix, sp->hosts->v[j]);
  }
  if (!rc)
    sp->copied = last[n - 1];
  free(first);
  free(last);
  match_free(&m);
  br_buf_free(&prefix);
  return rc;
}

/* One entry of a flow list and what follows it up to the next entry or the
 * closing bracket: its text, the comma (if any), the blanks and comment on
 * the comma's line, and the line breaks and indentation after them. */
struct flow_entry {
  size_t start;    /* the entry's first byte */
  size_t text_end; /* the comma, or where the text ends when none follows */
  bool comma;
  size_t same_line; /* end of the blanks and comment after the comma */
  size_t next;      /* the next entry's first byte, or the ']' */
};

/* Whether a comment follows the entry on its line. */
static bool flow_comment(const struct splice *sp, const struct flow_entry *f) {
  return has_byte(sp->bytes, f->text_end, f->same_line, '#');
}

/* The entry's own comment, then what must follow a comment (a line break
 * and indentation), unless the caller writes a line break itself. */
static int add_flow_comment(struct splice *sp, const struct flow_entry *f, const struct br_buf *line_break) {
  int rc = add_bytes(sp, f->comma ? f->text_end + 1 : f->text_end, f->same_line);
  return rc || !line_break ? rc : br_buf_add(&sp->out, line_break->data, line_break->len);
}

static int splice_flow_list(struct splice *sp) {
  const char *b = sp->bytes;
  const struct br_ynode *seq = sp->doc.list;
  size_t open = node_start(sp, seq), close = node_end(sp, seq);
  if (open >= sp->len || b[open] != '[' || close == 0 || close > sp->len || b[--close] != ']')
    return refuse(sp, "the flow list's brackets are not where expected");
  size_t n = seq->n;
  if (n == 0 || sp->hosts->n == 0) {
    /* Nothing to keep from an empty list; nothing to write into one. */
    if (n == 0 && sp->hosts->n == 0)
      return 0;
    int rc = copy_to(sp, open);
    if (!rc)
      rc = add_flow_list(sp);
    sp->copied = close + 1;
    return rc;
  }
  struct flow_entry *ent = calloc(n, sizeof *ent);
  struct entry_match m = {0};
  int rc = ent ? match_entries(&sp->old, sp->hosts, &m) : -ENOMEM;
  bool multi_line = false;
  size_t indent_at = SIZE_MAX; /* an entry that starts its own line */
  for (size_t i = 0; !rc && i < n; i++) {
    struct flow_entry *f = &ent[i];
    f->start = node_start(sp, seq->items[i]);
    size_t e = node_end(sp, seq->items[i]);
    size_t at = skip_space(b, sp->len, e);
    f->next = i + 1 < n ? node_start(sp, seq->items[i + 1]) : close;
    f->comma = at < f->next && b[at] == ',';
    if (!f->comma && (i + 1 < n || at != close)) {
      rc = refuse(sp, "no comma where one was expected in the flow list");
      break;
    }
    f->text_end = f->comma ? at : e;
    f->same_line = same_line_end(b, sp->len, f->comma ? at + 1 : e);
    if (f->same_line > f->next)
      f->same_line = f->next;
    if (all_spaces(b, line_start(b, f->start), f->start) && line_start(b, f->start) > open) {
      multi_line = true;
      if (indent_at == SIZE_MAX)
        indent_at = f->start;
    }
  }
  /* Between entries that were not neighbours: a comma, then a space, or a
   * line break and the entries' indentation in a list written one entry per
   * line. A comment that ended the previous entry's line still ends it. */
  struct br_buf between, after_comment;
  br_buf_init(&between, BR_PIPELOCK_MAX_BYTES);
  br_buf_init(&after_comment, BR_PIPELOCK_MAX_BYTES);
  if (!rc) {
    size_t indent =
        indent_at != SIZE_MAX ? indent_at - line_start(b, indent_at) : line_indent(b, sp->len, open) + 2;
    rc = br_buf_adds(&after_comment, sp->eol);
    for (size_t k = 0; !rc && k < indent; k++)
      rc = br_buf_adds(&after_comment, " ");
    if (!rc)
      rc = multi_line ? br_buf_add(&between, after_comment.data, after_comment.len) : br_buf_adds(&between, " ");
  }
  if (!rc)
    rc = copy_to(sp, ent[0].start); /* '[' and what follows it */
  /* Walks the new list; old entries kept are written from their own text. */
  long prev_old = -1; /* old index of the entry just written, -1 for a new one */
  for (size_t j = 0; !rc && j < sp->hosts->n; j++) {
    long cur = m.kept[j];
    if (j > 0 && prev_old >= 0 && cur == prev_old + 1) {
      rc = add_bytes(sp, ent[prev_old].text_end, ent[cur].start); /* as it was */
    } else if (j > 0) {
      rc = br_buf_adds(&sp->out, ",");
      if (!rc && prev_old >= 0 && flow_comment(sp, &ent[prev_old]))
        rc = add_flow_comment(sp, &ent[prev_old], &after_comment);
      else if (!rc)
        rc = br_buf_add(&sp->out, between.data, between.len);
    }
    if (!rc && cur >= 0)
      rc = add_bytes(sp, ent[cur].start, ent[cur].text_end);
    else if (!rc)
      rc = add_host(&sp->out, sp->hosts->v[j]);
    prev_old = cur;
  }
  if (!rc) {
    /* After the last entry: the old last entry's tail when it is still the
     * last, else the old trailing comma (or none) and the lines before ']'. */
    const struct flow_entry *tail = &ent[n - 1];
    if (prev_old == (long)n - 1) {
      rc = add_bytes(sp, tail->text_end, close);
    } else {
      if (tail->comma)
        rc = br_buf_adds(&sp->out, ",");
      bool ends_line = has_byte(b, tail->same_line, close, '\n');
      if (!rc && prev_old >= 0 && flow_comment(sp, &ent[prev_old]))
        rc = add_flow_comment(sp, &ent[prev_old], ends_line ? NULL : &after_comment);
      if (!rc)
        rc = add_bytes(sp, tail->same_line, close);
    }
  }
  sp->copied = close;
  free(ent);
  match_free(&m);
  br_buf_free(&between);
  br_buf_free(&after_comment);
  return rc;
}

/* "api_allowlist:" with nothing after it, "~" or "null". */
static int splice_null(struct splice *sp) {
  const struct br_ynode *v = sp->doc.list;
  size_t at = node_start(sp, v);
  int rc;
  if (v->len > 0) {
    /* An explicit null: the list goes where it was, on the key's line. */
    if ((rc = copy_to(sp, at)) || (rc = add_flow_list(sp)))
      return rc;
    sp->copied = node_end(sp, v);
    return 0;
  }
  if (!sp->doc.root->flow && sp->hosts->n > 0) {
    /* Entries go on the lines after the key's, which keeps its comment. */
    size_t end = rest_of_line(sp->bytes, sp->len, at);
    if (end == SIZE_MAX)
      return refuse(sp, "something follows the key on its line");
    struct br_buf prefix;
    br_buf_init(&prefix, BR_PIPELOCK_MAX_BYTES);
    rc = block_prefix_for_new_list(sp, line_indent(sp->bytes, sp->len, node_start(sp, sp->doc.key)), &prefix);
    if (!rc)
      rc = copy_to(sp, end);
    for (size_t j = 0; !rc && j < sp->hosts->n; j++)
      rc = add_block_line(sp, &prefix, sp->hosts->v[j]);
    br_buf_free(&prefix);
    return rc;
  }
  /* In a flow mapping the key may stand alone ("{api_allowlist}"). */
  const char *lead = at == node_end(sp, sp->doc.key) ? ": " : "";
  if (!*lead && at > 0 && sp->bytes[at - 1] == ':')
    lead = " ";
  else if (!*lead && (at == 0 || !is_blank(sp->bytes[at - 1])))
    return refuse(sp, "no ':' found after the key");
  if ((rc = copy_to(sp, at)) || (rc = br_buf_adds(&sp->out, lead)))
    return rc;
  return add_flow_list(sp);
}

/* No api_allowlist yet: add it as the top-level mapping's last key. */
static int splice_absent(struct splice *sp) {
  const struct br_ynode *root = sp->doc.root;
  int rc;
  if (root->flow) {
    size_t at;
    if (root->n == 0) {
      at = node_start(sp, root) + 1;
    } else {
      size_t k = node_end(sp, root->items[root->n - 2]), v = node_end(sp, root->items[root->n - 1]);
      at = k > v ? k : v;
    }
    if ((rc = copy_to(sp, at)) || (rc = br_buf_adds(&sp->out, root->n ? ", " : "")) ||
        (rc = br_buf_adds(&sp->out, ALLOWLIST_KEY ": ")))
      return rc;
    return add_flow_list(sp);
  }
  /* The mapping ends where the document does: at the end of the file, or at
   * a "..." line, which must stay last. Trailing comments stay above. */
  size_t at = node_end(sp, root);
  if (at < sp->len && (at == 0 || sp->bytes[at - 1] != '\n'))
    return refuse(sp, "the top-level mapping does not end at a line start");
  size_t key_indent = line_indent(sp->bytes, sp->len, node_start(sp, root->items[0]));
  struct br_buf prefix;
  br_buf_init(&prefix, BR_PIPELOCK_MAX_BYTES);
  rc = copy_to(sp, at);
  if (!rc)
    rc = ensure_line_start(sp);
  for (size_t k = 0; !rc && k < key_indent; k++)
    rc = br_buf_adds(&sp->out, " ");
  if (!rc)
    rc = br_buf_adds(&sp->out, ALLOWLIST_KEY ":");
  if (!rc && sp->hosts->n == 0)
    rc = br_buf_printf(&sp->out, " []%s", sp->eol);
  else if (!rc)
    rc = br_buf_adds(&sp->out, sp->eol);
  if (!rc && sp->hosts->n > 0)
    rc = block_prefix_for_new_list(sp, key_indent, &prefix);
  for (size_t j = 0; !rc && j < sp->hosts->n; j++)
    rc = add_block_line(sp, &prefix, sp->hosts->v[j]);
  br_buf_free(&prefix);
  return rc;
}

static bool same_node(const struct br_ynode *a, const struct br_ynode *b) {
  if (a->kind != b->kind || a->plain != b->plain || a->flow != b->flow || a->tagged != b->tagged ||
      a->anchored != b->anchored || a->len != b->len || a->n != b->n)
    return false;
  if (a->len && memcmp(a->value, b->value, a->len) != 0)
    return false;
  for (size_t i = 0; i < a->n; i++)
    if (!same_node(a->items[i], b->items[i]))
      return false;
  return true;
}

static bool is_allowlist_key(const struct br_ynode *key) {
  return key->kind == BR_YNODE_SCALAR && key->len == strlen(ALLOWLIST_KEY) &&
         strcmp(key->value, ALLOWLIST_KEY) == 0;
}

/* The other top-level keys, in order, with equal values. */
static bool same_other_settings(const struct br_ynode *a, const struct br_ynode *b) {
  size_t i = 0, k = 0;
  for (;;) {
    while (i + 1 < a->n && is_allowlist_key(a->items[i]))
      i += 2;
    while (k + 1 < b->n && is_allowlist_key(b->items[k]))
      k += 2;
    if (i + 1 >= a->n || k + 1 >= b->n)
      return i + 1 >= a->n && k + 1 >= b->n;
    if (!same_node(a->items[i], b->items[k]) || !same_node(a->items[i + 1], b->items[k + 1]))
      return false;
    i += 2;
    k += 2;
  }
}

/* Reads the result back: the proof that the splice did what it meant to. */
static const char *verify(struct splice *sp) {
  struct parsed doc;
  struct br_strv got;
  struct br_buf scratch;
  br_buf_init(&scratch, 4096);
  const char *why = NULL;
  if (read_config(sp->name, sp->out.data, sp->out.len, &doc, &got, &scratch)) {
    why = "the result does not read back as a valid config";
  } else {
    if (!doc.key || got.n != sp->hosts->n)
      why = "the result's list is not the new list";
    for (size_t i = 0; !why && i < got.n; i++)
      if (strcmp(got.v[i], sp->hosts->v[i]) != 0)
        why = "the result's list is not the new list";
    if (!why && (doc.root->flow != sp->doc.root->flow || !same_other_settings(sp->doc.root, doc.root)))
      why = "other settings would change";
    br_ynode_free(doc.root);
    br_strv_free(&got);
  }
  br_buf_free(&scratch);
  return why;
}

static const char *line_break_of(const char *b, size_t len) {
  const char *nl = memchr(b, '\n', len);
  return nl && nl > b && nl[-1] == '\r' ? "\r\n" : "\n";
}

int br_pipelock_splice(const char *name, const char *bytes, size_t len, const struct br_strv *new_list,
                       struct br_buf *out, struct br_buf *err) {
  struct splice sp = {.name = name, .bytes = bytes, .len = len, .hosts = new_list};
  for (size_t i = 0; i < new_list->n; i++) {
    if (!is_utf8(new_list->v[i])) {
      br_diag_start(err, name, 1, 1, ALLOWLIST_KEY);
      br_buf_adds(err, "the new entry ");
      br_quote_excerpt(err, new_list->v[i], strlen(new_list->v[i]), 64);
      br_buf_adds(err, " is not UTF-8 text, expected host names\n");
      return -EINVAL;
    }
  }
  int rc = read_config(name, bytes, len, &sp.doc, &sp.old, err);
  if (rc)
    return rc;
  offsets_init(&sp.off, bytes, len);
  sp.eol = line_break_of(bytes, len);
  size_t room = out->max > out->len ? out->max - out->len : 0;
  br_buf_init(&sp.out, room < BR_PIPELOCK_MAX_BYTES ? room : BR_PIPELOCK_MAX_BYTES);
  /* A lone CR is a line break to YAML but not to the line scanning here. */
  for (const char *cr = memchr(bytes, '\r', len); cr && !rc;
       cr = memchr(cr + 1, '\r', len - (size_t)(cr + 1 - bytes)))
    if ((size_t)(cr - bytes) + 1 >= len || cr[1] != '\n')
      rc = refuse(&sp, "it has line breaks made of a lone CR");
  if (!rc) {
    const struct br_ynode *list = sp.doc.list;
    if (!list)
      rc = splice_absent(&sp);
    else if (list->kind == BR_YNODE_SCALAR)
      rc = splice_null(&sp);
    else if (list->flow)
      rc = splice_flow_list(&sp);
    else
      rc = splice_block_list(&sp);
  }
  if (!rc)
    rc = copy_to(&sp, len);
  if (!rc && !sp.refusal)
    sp.refusal = verify(&sp);
  if (rc == -EINVAL || (!rc && sp.refusal)) {
    const struct br_ynode *at = sp.doc.key ? sp.doc.key : sp.doc.root;
    br_diag(err, name, at->line, at->column, ALLOWLIST_KEY,
            "the splice could not be done safely (%s), expected a file where the list can be replaced "
            "without touching anything else; edit it by hand",
            sp.refusal ? sp.refusal : "unexpected layout");
    rc = -EINVAL;
  } else if (rc == -EFBIG) {
    br_diag(err, name, 1, 1, ALLOWLIST_KEY, "the spliced file would exceed %zu bytes, expected a shorter list",
            sp.out.max);
  }
  if (!rc)
    rc = br_buf_add(out, br_buf_str(&sp.out), sp.out.len);
  br_buf_free(&sp.out);
  br_strv_free(&sp.old);
  br_ynode_free(sp.doc.root);
  return rc;
}
