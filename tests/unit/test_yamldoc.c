/* Unit tests for common/yamldoc: strictness rules, positions and quoting. */
#include <errno.h>

#include "check.h"
#include "common/yamldoc.h"

static const struct br_yopts strict = {.max_bytes = 4096, .max_depth = 4, .max_nodes = 1000};

static struct br_ynode *parse_ok(const char *text) {
  struct br_buf err;
  br_buf_init(&err, 4096);
  struct br_ynode *root = NULL;
  int rc = br_ydoc_parse("t.yaml", text, strlen(text), &strict, &root, &err);
  if (rc)
    fprintf(stderr, "unexpected error: %s", err.data);
  CHECK(rc == 0);
  br_buf_free(&err);
  return root;
}

static void parse_err(const char *text, const char *want) {
  struct br_buf err;
  br_buf_init(&err, 4096);
  struct br_ynode *root = NULL;
  int rc = br_ydoc_parse("t.yaml", text, strlen(text), &strict, &root, &err);
  CHECK(rc < 0);
  CHECK(root == NULL);
  if (!err.data || !strstr(err.data, want)) {
    fprintf(stderr, "want \"%s\" in: %s\n", want, err.data ? err.data : "(none)");
    check_failures++;
  }
  br_buf_free(&err);
}

static void parse_ok_free(const char *text) { br_ynode_free(parse_ok(text)); }

/* 100,000 distinct keys in one mapping load (each checked against the
 * earlier ones by sorting, not a scan of them all: that took 30 s of
 * CPU), and a repeated one at the end is found and names its first line.
 * No time is asserted: the result is. */
static void test_many_keys(void) {
  enum { KEYS = 100000 };
  const struct br_yopts big = {.max_bytes = 4 << 20, .max_depth = 4, .max_nodes = 2 * KEYS + 8};
  struct br_buf text;
  br_buf_init(&text, 4 << 20);
  for (int i = 0; i < KEYS; i++)
    br_buf_printf(&text, "k%05d: %d\n", i, i);
  struct br_buf err;
  br_buf_init(&err, 4096);
  struct br_ynode *root = NULL;
  CHECK(br_ydoc_parse("t.yaml", text.data, text.len, &big, &root, &err) == 0);
  CHECK(root && root->kind == BR_YNODE_MAP && root->n == 2 * KEYS);
  CHECK(root && br_ymap_get(root, "k99999") == root->items[2 * KEYS - 1]);
  br_ynode_free(root);
  br_buf_adds(&text, "k00000: again\n");
  CHECK(br_ydoc_parse("t.yaml", text.data, text.len, &big, &root, &err) == -EINVAL);
  CHECK(root == NULL);
  CHECK_STR(br_buf_str(&err),
            "t.yaml:100001:1: k00000: duplicate key (first at line 1), expected each key once\n");
  br_buf_free(&err);
  br_buf_free(&text);
}

int main(void) {
  test_many_keys();
  struct br_ynode *r = parse_ok("a: 1\nb: [x, 'y']\nc: {d: true}\n");
  CHECK(r && r->kind == BR_YNODE_MAP && r->n == 6);
  const struct br_ynode *b = br_ymap_get(r, "b");
  CHECK(b && b->kind == BR_YNODE_SEQ && b->flow && b->n == 2);
  CHECK(b && b->line == 2 && b->column == 4);
  CHECK(br_yscalar_type(br_ymap_get(r, "a")) == BR_YINT);
  CHECK(b && br_yscalar_type(b->items[1]) == BR_YSTR);
  unsigned long long v = 0;
  CHECK(br_yscalar_uint(br_ymap_get(r, "a"), 10, &v) == 0 && v == 1);
  CHECK(br_yscalar_uint(br_ymap_get(r, "a"), 0, &v) != 0); /* 1 > 0 */
  br_ynode_free(r);

  r = parse_ok("# only a comment\n");
  CHECK(r == NULL);

  parse_err("a: 1\na: 2\n", "t.yaml:2:1: a: duplicate key (first at line 1)");
  parse_err("routes:\n  - host: x\n    host: y\n", "t.yaml:3:5: routes[0].host: duplicate key");
  parse_err("a: &x 1\nb: *x\n", "t.yaml:1:4: a: anchors");
  parse_err("a: !!str 1\n", "tags");
  parse_err("a: ! x\n", "t.yaml:1:4: a: tags"); /* the non-specific tag, implicit to libyaml */
  parse_err("a: ! [x]\n", "t.yaml:1:4: a: tags");
  parse_err("\xef\xbb\xbf\xef\xbb\xbf"
            "a: 1\n",
            "t.yaml:1:1: encoding: a byte order mark");
  parse_err("a: 1\n\xef\xbb\xbf"
            "b: 2\n",
            "t.yaml:2:1: encoding: a byte order mark");
  parse_ok_free("\xef\xbb\xbf"
                "a: 1\n");
  parse_err("a: 1\n---\nb: 2\n", "a second YAML document");
  parse_err("a: [[[[[1]]]]]\n", "nested too deeply");
  parse_err("a: \xff\n", "encoding:");
  parse_err("a: [1\n", "t.yaml:");

  /* types of plain scalars */
  r = parse_ok("[yes, No, ~, 1.5, 0x1F, '1', host.example, 1.2.3.4, .inf]\n");
  CHECK(r && r->n == 9);
  if (r && r->n == 9) {
    CHECK(br_yscalar_type(r->items[0]) == BR_YBOOL);
    CHECK(br_yscalar_type(r->items[1]) == BR_YBOOL);
    CHECK(br_yscalar_type(r->items[2]) == BR_YNULL);
    CHECK(br_yscalar_type(r->items[3]) == BR_YFLOAT);
    CHECK(br_yscalar_type(r->items[4]) == BR_YINT);
    CHECK(br_yscalar_type(r->items[5]) == BR_YSTR);
    CHECK(br_yscalar_type(r->items[6]) == BR_YSTR);
    CHECK(br_yscalar_type(r->items[7]) == BR_YSTR);
    CHECK(br_yscalar_type(r->items[8]) == BR_YFLOAT);
  }
  br_ynode_free(r);

  /* character offsets map back to bytes across multi-byte characters */
  const char *text = "k: \"\xc3\xa9t\xc3\xa9\"\nz: [a]\n";
  r = parse_ok(text);
  const struct br_ynode *z = br_ymap_get(r, "z");
  CHECK(z != NULL);
  if (z) {
    size_t at = br_ydoc_byte_offset(text, strlen(text), z->start);
    CHECK(text[at] == '[');
    CHECK(text[br_ydoc_byte_offset(text, strlen(text), z->end) - 1] == ']');
  }
  br_ynode_free(r);

  struct br_buf q;
  br_buf_init(&q, 256);
  br_quote_excerpt(&q, "ab\"c\n", 5, 3);
  CHECK_STR(q.data, "\"ab\\\"...\"");
  br_buf_free(&q);

  /* br_yaml_quote: the exact bytes (hex in upper case), and every string
   * reads back as itself, as a value in block and in flow context. */
  br_buf_init(&q, 256);
  CHECK(br_yaml_quote(&q, "a\"b\\c\n\x1f\x7f\tcaf\xc3\xa9 #d: [e]") == 0);
  CHECK_STR(br_buf_str(&q), "\"a\\\"b\\\\c\\x0A\\x1F\\x7F\\x09caf\xc3\xa9 #d: [e]\"");
  br_buf_free(&q);
  const char *round_trip[] = {"",
                              "plain",
                              "yes",
                              "*.example.com",
                              "\"\\",
                              "\x01\x0b\r\n\x1b\x7f",
                              "'single'",
                              "  spaces  ",
                              "caf\xc3\xa9 \xe2\x98\x95",
                              "- not a list",
                              "{not: a map}"};
  for (size_t i = 0; i < sizeof round_trip / sizeof *round_trip; i++) {
    struct br_buf doc;
    br_buf_init(&doc, 1024);
    br_buf_adds(&doc, "k: ");
    br_yaml_quote(&doc, round_trip[i]);
    br_buf_adds(&doc, "\nf: [");
    br_yaml_quote(&doc, round_trip[i]);
    br_buf_adds(&doc, "]\n");
    r = parse_ok(doc.data);
    const struct br_ynode *k = br_ymap_get(r, "k"), *f = br_ymap_get(r, "f");
    CHECK(k && k->kind == BR_YNODE_SCALAR && !k->plain && br_yscalar_type(k) == BR_YSTR);
    CHECK_STR(k ? k->value : NULL, round_trip[i]);
    CHECK(f && f->kind == BR_YNODE_SEQ && f->n == 1);
    CHECK_STR(f && f->n == 1 ? f->items[0]->value : NULL, round_trip[i]);
    br_ynode_free(r);
    br_buf_free(&doc);
  }
  CHECK_DONE();
}
