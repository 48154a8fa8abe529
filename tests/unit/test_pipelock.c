/* Unit tests for reconciler/model/pipelock and pipelock_plan: reading
 * api_allowlist, pipelock's host matching, the plan, and the splice
 * (table-driven from tests/data/pipelock). */
#include "reconciler/model/pipelock.h"
#include "reconciler/model/pipelock_plan.h"

#include <errno.h>
#include <stdlib.h>

#include "cases.h"
#include "check.h"

/* ---- helpers ------------------------------------------------------------ */

static int read_file(const char *path, struct br_buf *out) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return -errno;
  char chunk[4096];
  size_t n;
  int rc = 0;
  while (!rc && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
    rc = br_buf_add(out, chunk, n);
  if (!rc && ferror(f))
    rc = -EIO;
  fclose(f);
  if (!rc && !out->data)
    rc = br_buf_add(out, "", 0); /* an empty file still gets a "" */
  return rc;
}

/* One host per line; an empty file is the empty list. */
static void split_lines(const char *text, struct br_strv *list) {
  while (*text) {
    const char *nl = strchr(text, '\n');
    size_t n = nl ? (size_t)(nl - text) : strlen(text);
    br_strv_addn(list, text, n);
    text += n + (nl ? 1 : 0);
  }
}

static void list_of(struct br_strv *list, const char *const *items) {
  br_strv_init(list);
  for (; *items; items++)
    br_strv_add(list, *items);
}

static bool same_list(const struct br_strv *a, const char *const *want) {
  size_t n = 0;
  for (; want[n]; n++)
    if (n >= a->n || strcmp(a->v[n], want[n]) != 0)
      return false;
  return n == a->n;
}

#define CHECK_LIST(got, ...)                                                                                      \
  do {                                                                                                            \
    static const char *const want_[] = {__VA_ARGS__, NULL};                                                       \
    if (!same_list((got), want_)) {                                                                               \
      fprintf(stderr, "%s:%d: list differs; got:", __FILE__, __LINE__);                                           \
      for (size_t k_ = 0; k_ < (got)->n; k_++)                                                                    \
        fprintf(stderr, " [%s]", (got)->v[k_]);                                                                   \
      fprintf(stderr, "\n");                                                                                      \
      check_failures++;                                                                                           \
    }                                                                                                             \
  } while (0)

/* Splices text with the given hosts; returns the result (or NULL) and puts
 * the error text into err. */
static char *splice(const char *text, size_t len, const struct br_strv *hosts, struct br_buf *err) {
  struct br_buf out;
  br_buf_init(&out, BR_PIPELOCK_MAX_BYTES);
  int rc = br_pipelock_splice("t.yaml", text, len, hosts, &out, err);
  if (rc) {
    br_buf_free(&out);
    return NULL;
  }
  return br_buf_steal(&out);
}

static void show_difference(const char *what, const char *got, const char *want) {
  size_t i = 0;
  while (got[i] && got[i] == want[i])
    i++;
  fprintf(stderr, "%s: differs at byte %zu\n--- got:\n%s--- want:\n%s---\n", what, i, got, want);
}

/* ---- the table: tests/data/pipelock/NAME.in.yaml, NAME.hosts, and
 * NAME.out.yaml (exact bytes) or NAME.err (exact error) ------------------ */

static int run_case(const char *dir, const char *name) {
  char path[512];
  struct br_buf in, hosts_text, want, err;
  br_buf_init(&in, BR_PIPELOCK_MAX_BYTES);
  br_buf_init(&hosts_text, 65536);
  br_buf_init(&want, BR_PIPELOCK_MAX_BYTES);
  br_buf_init(&err, 4096);
  struct br_strv hosts;
  br_strv_init(&hosts);
  int failures = check_failures;

  snprintf(path, sizeof path, "%s/%s.in.yaml", dir, name);
  CHECK(read_file(path, &in) == 0);
  snprintf(path, sizeof path, "%s/%s.hosts", dir, name);
  CHECK(read_file(path, &hosts_text) == 0);
  split_lines(br_buf_str(&hosts_text), &hosts);

  char display[256];
  snprintf(display, sizeof display, "%s.in.yaml", name);
  struct br_buf out;
  br_buf_init(&out, BR_PIPELOCK_MAX_BYTES);
  int rc = br_pipelock_splice(display, in.data, in.len, &hosts, &out, &err);

  snprintf(path, sizeof path, "%s/%s.out.yaml", dir, name);
  if (read_file(path, &want) == 0) {
    if (rc)
      fprintf(stderr, "%s: unexpected error %d: %s", name, rc, br_buf_str(&err));
    CHECK(rc == 0);
    if (!rc && (out.len != want.len || memcmp(out.data, want.data, want.len) != 0)) {
      show_difference(name, out.data, want.data);
      check_failures++;
    }
    if (!rc) {
      /* The result reads back as the list, and splicing it again with the
       * same list changes nothing. */
      struct br_strv back;
      br_strv_init(&back);
      CHECK(br_pipelock_allowlist(name, out.data, out.len, &back, &err) == 0);
      CHECK(back.n == hosts.n);
      for (size_t i = 0; i < back.n && i < hosts.n; i++)
        CHECK_STR(back.v[i], hosts.v[i]);
      br_strv_free(&back);
      char *again = splice(out.data, out.len, &hosts, &err);
      CHECK(again && strcmp(again, out.data) == 0);
      free(again);
    }
  } else {
    struct br_buf want_err;
    br_buf_init(&want_err, 4096);
    snprintf(path, sizeof path, "%s/%s.err", dir, name);
    CHECK(read_file(path, &want_err) == 0);
    CHECK(rc == -EINVAL);
    CHECK(out.len == 0);
    if (!err.data || !want_err.data || strncmp(err.data, want_err.data, want_err.len) != 0) {
      fprintf(stderr, "%s: error\n  got  %s  want %s\n", name, err.data ? err.data : "(none)\n",
              want_err.data ? want_err.data : "(none)");
      check_failures++;
    }
    /* The reader reports the same problem (unless only the splice is unsafe). */
    struct br_strv listed;
    br_strv_init(&listed);
    struct br_buf err2;
    br_buf_init(&err2, 4096);
    if (strncmp(name, "err_unsafe", 10) != 0)
      CHECK(br_pipelock_allowlist(display, in.data, in.len, &listed, &err2) == -EINVAL &&
            strcmp(err2.data, err.data) == 0);
    CHECK(listed.n == 0);
    br_strv_free(&listed);
    br_buf_free(&err2);
    br_buf_free(&want_err);
  }
  if (check_failures != failures)
    fprintf(stderr, "  in case %s\n", name);
  br_buf_free(&out);
  br_buf_free(&in);
  br_buf_free(&hosts_text);
  br_buf_free(&want);
  br_buf_free(&err);
  br_strv_free(&hosts);
  return 0;
}

static void run_table(void) {
  const char *dir = "pipelock";
  struct br_strv names;
  case_stems(dir, ".in.yaml", &names);
  CHECK(names.n >= 30);
  for (size_t i = 0; i < names.n; i++)
    run_case(dir, names.v[i]);
  br_strv_free(&names);
}

/* ---- reading ------------------------------------------------------------ */

static void test_allowlist(void) {
  struct br_strv hosts;
  struct br_buf err;
  br_buf_init(&err, 4096);

  br_strv_init(&hosts);
  const char *text = "mode: strict\napi_allowlist:\n  - API.GitHub.com.\n  - \"*.example.com\"\n  - 'x:443'\n";
  CHECK(br_pipelock_allowlist("p.yaml", text, strlen(text), &hosts, &err) == 0);
  CHECK_LIST(&hosts, "API.GitHub.com.", "*.example.com", "x:443"); /* as written */
  br_strv_free(&hosts);

  /* absent and null are the empty list */
  static const char *const empties[] = {"mode: strict\n",        "api_allowlist:\n",    "api_allowlist: ~\n",
                                        "api_allowlist: null\n", "api_allowlist: []\n", "{api_allowlist: }\n"};
  for (size_t i = 0; i < sizeof empties / sizeof *empties; i++) {
    br_strv_init(&hosts);
    CHECK(br_pipelock_allowlist("p.yaml", empties[i], strlen(empties[i]), &hosts, &err) == 0);
    CHECK(hosts.n == 0);
    br_strv_free(&hosts);
  }

  /* entries are appended; on error the list is left as it was */
  br_strv_init(&hosts);
  br_strv_add(&hosts, "first");
  text = "api_allowlist: [a, b]\n";
  CHECK(br_pipelock_allowlist("p.yaml", text, strlen(text), &hosts, &err) == 0);
  CHECK_LIST(&hosts, "first", "a", "b");
  text = "api_allowlist: [a, {b: c}]\n";
  br_buf_reset(&err);
  CHECK(br_pipelock_allowlist("p.yaml", text, strlen(text), &hosts, &err) == -EINVAL);
  CHECK_STR(err.data, "p.yaml:1:20: api_allowlist[1]: a mapping, expected a host name (quote it if it is one)\n");
  CHECK_LIST(&hosts, "first", "a", "b");
  br_strv_free(&hosts);

  static const struct {
    const char *text, *err;
  } bad[] = {
      {"api_allowlist: [true]\n", "p.yaml:1:17: api_allowlist[0]: a boolean, expected a host name"},
      {"api_allowlist: [~]\n", "p.yaml:1:17: api_allowlist[0]: null, expected a host name"},
      {"api_allowlist: {a: b}\n", "p.yaml:1:16: api_allowlist: a mapping, expected a list of host names"},
      {"api_allowlist: [!!str a]\n", "p.yaml:1:17: api_allowlist[0]: an anchor or tag"},
      {"api_allowlist: [&x a]\n", "p.yaml:1:17: api_allowlist[0]: an anchor or tag"},
      {"api_allowlist: [\"a\\0b\"]\n", "p.yaml:1:17: api_allowlist[0]: a NUL character"},
      {"&k api_allowlist: [a]\n*k : [b]\n", "p.yaml:2:1: (document): an alias as a key"},
      {"\"x\"\n", "p.yaml:1:1: (document): a string, expected a mapping of pipelock settings"},
      {"", "p.yaml:1:1: (document): empty, expected one YAML document"},
      {"api_allowlist: [a\n", "p.yaml:"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    br_strv_init(&hosts);
    br_buf_reset(&err);
    CHECK(br_pipelock_allowlist("p.yaml", bad[i].text, strlen(bad[i].text), &hosts, &err) == -EINVAL);
    if (!err.data || strncmp(err.data, bad[i].err, strlen(bad[i].err)) != 0) {
      fprintf(stderr, "case %zu: want \"%s\" got \"%s\"\n", i, bad[i].err, br_buf_str(&err));
      check_failures++;
    }
    CHECK(hosts.n == 0);
    br_strv_free(&hosts);
  }

  /* bounded input */
  size_t big = BR_PIPELOCK_MAX_BYTES + 1;
  char *huge = malloc(big);
  if (huge) {
    memset(huge, '#', big);
    br_strv_init(&hosts);
    CHECK(br_pipelock_allowlist("p.yaml", huge, big, &hosts, &err) == -EFBIG);
    free(huge);
  }
  br_buf_free(&err);
}

/* ---- matching ----------------------------------------------------------- */

static void test_matching(void) {
  char host[] = "API.Example.COM.";
  br_pipelock_host_normalise(host);
  CHECK_STR(host, "api.example.com");
  char dots[] = "a..";
  br_pipelock_host_normalise(dots);
  CHECK_STR(dots, "a."); /* one trailing dot, as pipelock strips */
  char empty[] = "";
  br_pipelock_host_normalise(empty);
  CHECK_STR(empty, "");

  struct br_strv list;
  list_of(&list, (const char *const[]){"*.example.com", "API.GitHub.com.", "exact.org", NULL});
  CHECK(br_pipelock_allows(&list, "example.com")); /* *.x also allows x */
  CHECK(br_pipelock_allows(&list, "a.example.com"));
  CHECK(br_pipelock_allows(&list, "a.b.example.com"));
  CHECK(br_pipelock_allows(&list, "A.EXAMPLE.COM."));
  CHECK(!br_pipelock_allows(&list, "badexample.com"));
  CHECK(!br_pipelock_allows(&list, "example.com.evil"));
  CHECK(br_pipelock_allows(&list, "api.github.com"));
  CHECK(br_pipelock_allows(&list, "api.github.com."));
  CHECK(!br_pipelock_allows(&list, "github.com"));
  CHECK(!br_pipelock_allows(&list, "x.api.github.com")); /* exact entries are exact */
  CHECK(br_pipelock_allows(&list, "exact.org"));
  CHECK(!br_pipelock_allows(&list, "sub.exact.org"));
  CHECK(!br_pipelock_allows(&list, ""));
  br_strv_free(&list);

  /* entries pipelock accepts but never matches */
  list_of(&list, (const char *const[]){"*", "*.", "api.x.com:443", "https://api.y.com", "", ".", NULL});
  CHECK(!br_pipelock_allows(&list, "api.x.com"));
  CHECK(!br_pipelock_allows(&list, "api.y.com"));
  CHECK(!br_pipelock_allows(&list, "anything.com"));
  CHECK(!br_pipelock_allows(&list, "com"));
  br_strv_free(&list);

  /* a wildcard in the middle is not a wildcard */
  list_of(&list, (const char *const[]){"api.*.com", "x*.example.com", NULL});
  CHECK(!br_pipelock_allows(&list, "api.foo.com"));
  CHECK(!br_pipelock_allows(&list, "xy.example.com"));
  br_strv_free(&list);
}

/* ---- planning ----------------------------------------------------------- */

static void test_plan(void) {
  struct br_strv live, needed, ours, wide, narrow, added, removed;
  list_of(&live, (const char *const[]){"*.github.com", "pypi.org", "old.example.com", "ops.example.com", NULL});
  list_of(&needed, (const char *const[]){"api.github.com", "github.com", "PyPI.org.", "new.example.com",
                                         "files.example.com", "new.example.com", NULL});
  list_of(&ours, (const char *const[]){"old.example.com", "pypi.org", "files.example.com", NULL});
  br_strv_init(&wide);
  br_strv_init(&narrow);
  br_strv_init(&added);
  br_strv_init(&removed);

  /* additive: wildcard and case/dot variants count as allowed; duplicates added once */
  CHECK(br_pipelock_plan(&live, &needed, &ours, false, &wide, &narrow, &added, &removed) == 0);
  CHECK_LIST(&wide, "*.github.com", "pypi.org", "old.example.com", "ops.example.com", "new.example.com",
             "files.example.com");
  CHECK_LIST(&added, "new.example.com", "files.example.com");
  CHECK_LIST(&narrow, "*.github.com", "pypi.org", "old.example.com", "ops.example.com", "new.example.com",
             "files.example.com");
  CHECK(removed.n == 0);
  br_strv_free(&wide);
  br_strv_free(&narrow);
  br_strv_free(&added);

  /* prune: only ours and unneeded goes (old.example.com); pypi.org is ours
   * but still needed (as PyPI.org.); ops.example.com is not ours */
  CHECK(br_pipelock_plan(&live, &needed, &ours, true, &wide, &narrow, &added, &removed) == 0);
  CHECK_LIST(&narrow, "*.github.com", "pypi.org", "ops.example.com", "new.example.com", "files.example.com");
  CHECK_LIST(&removed, "old.example.com");
  CHECK_LIST(&added, "new.example.com", "files.example.com");
  br_strv_free(&wide);
  br_strv_free(&narrow);
  br_strv_free(&added);
  br_strv_free(&removed);

  /* nothing needed, prune: everything we added goes, duplicates reported once */
  struct br_strv none;
  br_strv_init(&none);
  br_strv_add(&live, "old.example.com");
  CHECK(br_pipelock_plan(&live, &none, &ours, true, &wide, &narrow, &added, &removed) == 0);
  CHECK_LIST(&narrow, "*.github.com", "ops.example.com");
  CHECK_LIST(&removed, "pypi.org", "old.example.com");
  CHECK(added.n == 0);
  CHECK(wide.n == live.n);
  br_strv_free(&wide);
  br_strv_free(&narrow);
  br_strv_free(&removed);

  /* a host we added that is needed again through a wildcard we added stays */
  br_strv_free(&live);
  br_strv_free(&ours);
  br_strv_free(&needed);
  list_of(&live, (const char *const[]){"*.corp.example", NULL});
  list_of(&ours, (const char *const[]){"*.corp.example", NULL});
  list_of(&needed, (const char *const[]){"git.corp.example", NULL});
  CHECK(br_pipelock_plan(&live, &needed, &ours, true, &wide, &narrow, &added, &removed) == 0);
  CHECK_LIST(&narrow, "*.corp.example");
  CHECK(added.n == 0 && removed.n == 0);

  br_strv_free(&live);
  br_strv_free(&needed);
  br_strv_free(&ours);
  br_strv_free(&wide);
  br_strv_free(&narrow);
  br_strv_free(&added);
  br_strv_free(&removed);
}

/* ---- splicing: cases that read better inline ------------------------------ */

static void check_splice(const char *in, size_t in_len, const char *const *hosts, const char *want) {
  struct br_strv list;
  list_of(&list, hosts);
  struct br_buf err;
  br_buf_init(&err, 4096);
  char *got = splice(in, in_len, &list, &err);
  if (!got)
    fprintf(stderr, "unexpected error: %s", br_buf_str(&err));
  CHECK(got != NULL);
  if (got && strcmp(got, want) != 0) {
    show_difference("inline splice", got, want);
    check_failures++;
  }
  free(got);
  br_buf_free(&err);
  br_strv_free(&list);
}

#define SPLICE(in, want, ...) check_splice((in), sizeof(in) - 1, (const char *const[]){__VA_ARGS__, NULL}, (want))

static void test_splice_inline(void) {
  /* CRLF line endings are kept, also on new lines */
  SPLICE(
      "mode: strict\r\napi_allowlist:\r\n  - a.example\r\n  # c\r\n  - b.example\r\ndlp: {}\r\n",
      "mode: strict\r\napi_allowlist:\r\n  - a.example\r\n  # c\r\n  - b.example\r\n  - c.example\r\ndlp: {}\r\n",
      "a.example", "b.example", "c.example");
  SPLICE("mode: strict\r\n", "mode: strict\r\napi_allowlist:\r\n  - a.example\r\n", "a.example");
  SPLICE("mode: strict\r\napi_allowlist:  # x\r\nv: 1\r\n",
         "mode: strict\r\napi_allowlist:  # x\r\n  - a.example\r\nv: 1\r\n", "a.example");
  SPLICE("api_allowlist: [\r\n  a.example,  # one\r\n  b.example\r\n]\r\n",
         "api_allowlist: [\r\n  a.example,  # one\r\n  c.example\r\n]\r\n", "a.example", "c.example");
  SPLICE("api_allowlist: [\r\n  a.example,  # one\r\n  b.example\r\n]\r\n",
         "api_allowlist: [\r\n  a.example  # one\r\n]\r\n", "a.example");

  /* a UTF-8 byte-order mark is kept, and positions after it are right */
  SPLICE("\xEF\xBB\xBF"
         "api_allowlist:\n  - a.example\nmode: strict\n",
         "\xEF\xBB\xBF"
         "api_allowlist:\n  - a.example\n  - b.example\nmode: strict\n",
         "a.example", "b.example");
  SPLICE("\xEF\xBB\xBF  mode: strict\n  v: 1\n",
         "\xEF\xBB\xBF  mode: strict\n  v: 1\n  api_allowlist:\n    - a.example\n", "a.example");
  SPLICE("\xEF\xBB\xBF# caf\xC3\xA9\nmode: \"\xC3\xA9t\xC3\xA9\"\n",
         "\xEF\xBB\xBF# caf\xC3\xA9\nmode: \"\xC3\xA9t\xC3\xA9\"\napi_allowlist:\n  - a.example\n", "a.example");

  /* multi-byte characters before and inside the list */
  SPLICE("k: \xE2\x98\x95\xE2\x98\x95\xE2\x98\x95\napi_allowlist: [\"\xC3\xA9.example\", b.example]  # "
         "\xE2\x9C\x93\n",
         "k: \xE2\x98\x95\xE2\x98\x95\xE2\x98\x95\napi_allowlist: [\"\xC3\xA9.example\", c.example]  # "
         "\xE2\x9C\x93\n",
         "\xC3\xA9.example", "c.example");

  /* the same list gives back the same bytes, in every list layout */
  static const char *const layouts[] = {
      "api_allowlist:\n- a\n-   \"b\"   # x\n\n# y\n- c\n",
      "api_allowlist: [a,b ,  'c']\n",
      "api_allowlist: [\n  a, b,\n  # c next\n  c,   # c\n]  # end\n",
      "{x: 1, api_allowlist: [a, b, c]}",
      "api_allowlist:\n  - a\n  - b\n  - c",
  };
  for (size_t i = 0; i < sizeof layouts / sizeof *layouts; i++)
    check_splice(layouts[i], strlen(layouts[i]), (const char *const[]){"a", "b", "c", NULL}, layouts[i]);

  /* reordered: entries kept in order keep their own text (a, greedily),
   * the others are written anew */
  SPLICE("api_allowlist:\n  - a   # A\n  - b   # B\n  - c   # C\n", "api_allowlist:\n  - c\n  - x\n  - a   # A\n",
         "c", "x", "a");
  SPLICE("api_allowlist: [a, b, c]\n", "api_allowlist: [c, x, a]\n", "c", "x", "a");

  /* an explicit key and a quoted key */
  SPLICE("? api_allowlist\n:\n  - a\n", "? api_allowlist\n:\n  - a\n  - b\n", "a", "b");
  SPLICE("\"api_allowlist\": [a]\n", "\"api_allowlist\": [a, b]\n", "a", "b");
}

/* What refuses to splice says so and leaves out untouched. */
static void test_splice_refusals(void) {
  struct br_strv list;
  list_of(&list, (const char *const[]){"a.example", NULL});
  struct br_buf out, err;
  br_buf_init(&out, BR_PIPELOCK_MAX_BYTES);
  br_buf_init(&err, 4096);
  br_buf_adds(&out, "kept");

  static const struct {
    const char *text, *err;
  } cases[] = {
      /* a lone CR is a line break to YAML, not to the splice */
      {"mode: strict\rapi_allowlist: [b]\r",
       "t.yaml:2:1: api_allowlist: the splice could not be done safely (it has line breaks made of a lone CR)"},
      /* an entry on the line after its dash */
      {"api_allowlist:\n  -\n    b\n",
       "t.yaml:1:1: api_allowlist: the splice could not be done safely (an entry is not on the line of its dash)"},
      /* appending would change the last block scalar's value */
      {"api_allowlist: ~\nbanner: |\n  hi", NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    br_buf_reset(&err);
    int rc = br_pipelock_splice("t.yaml", cases[i].text, strlen(cases[i].text), &list, &out, &err);
    if (!cases[i].err) {
      CHECK(rc == 0); /* the list edit itself touches nothing else */
      CHECK(strncmp(out.data, "keptapi_allowlist: [a.example]\n", 31) == 0);
      out.len = 4;
      out.data[4] = '\0';
      continue;
    }
    CHECK(rc == -EINVAL);
    CHECK_STR(out.data, "kept");
    if (!err.data || strncmp(err.data, cases[i].err, strlen(cases[i].err)) != 0) {
      fprintf(stderr, "refusal %zu: want \"%s\"\n got \"%s\"\n", i, cases[i].err, br_buf_str(&err));
      check_failures++;
    }
  }

  /* the new list is checked too */
  struct br_strv bad;
  list_of(&bad, (const char *const[]){"ok.example",
                                      "b\xFF"
                                      "d",
                                      NULL});
  br_buf_reset(&err);
  CHECK(br_pipelock_splice("t.yaml", "mode: x\n", 8, &bad, &out, &err) == -EINVAL);
  CHECK_STR(err.data,
            "t.yaml:1:1: api_allowlist: the new entry \"b\\xffd\" is not UTF-8 text, expected host names\n");
  CHECK_STR(out.data, "kept");
  br_strv_free(&bad);

  /* out's maximum bounds the result */
  struct br_buf small;
  br_buf_init(&small, 10);
  br_buf_reset(&err);
  const char *text = "mode: strict\n";
  CHECK(br_pipelock_splice("t.yaml", text, strlen(text), &list, &small, &err) == -EFBIG);
  CHECK(small.len == 0);
  CHECK(err.data && strstr(err.data, "would exceed 10 bytes"));
  br_buf_free(&small);

  br_buf_free(&out);
  br_buf_free(&err);
  br_strv_free(&list);
}

/* The realistic config: plan with pruning, splice, and every byte outside
 * the list kept. */
static void test_realistic_plan(void) {
  struct br_buf in, want, err, out;
  br_buf_init(&in, BR_PIPELOCK_MAX_BYTES);
  br_buf_init(&want, BR_PIPELOCK_MAX_BYTES);
  br_buf_init(&err, 4096);
  br_buf_init(&out, BR_PIPELOCK_MAX_BYTES);
  CHECK(read_file("pipelock/realistic.in.yaml", &in) == 0);
  CHECK(read_file("pipelock/realistic_plan.expected", &want) == 0);
  if (!in.data || !want.data)
    return;

  struct br_strv live, needed, ours, wide, narrow, added, removed;
  br_strv_init(&live);
  CHECK(br_pipelock_allowlist("realistic.in.yaml", in.data, in.len, &live, &err) == 0);
  CHECK(live.n == 7);
  list_of(&needed, (const char *const[]){"api.github.com", "raw.githubusercontent.com", "api.anthropic.com",
                                         "uploads.github.com", "pypi.org", NULL});
  list_of(&ours, (const char *const[]){"old-mirror.example.org", "api.github.com", NULL});
  br_strv_init(&wide);
  br_strv_init(&narrow);
  br_strv_init(&added);
  br_strv_init(&removed);
  CHECK(br_pipelock_plan(&live, &needed, &ours, true, &wide, &narrow, &added, &removed) == 0);
  CHECK_LIST(&added, "uploads.github.com", "pypi.org");
  CHECK_LIST(&removed, "old-mirror.example.org");

  /* converge writes the widened list first, the narrowed one after */
  CHECK(br_pipelock_splice("realistic.in.yaml", in.data, in.len, &wide, &out, &err) == 0);
  struct br_buf narrowed_out;
  br_buf_init(&narrowed_out, BR_PIPELOCK_MAX_BYTES);
  CHECK(br_pipelock_splice("realistic.in.yaml", out.data, out.len, &narrow, &narrowed_out, &err) == 0);
  if (narrowed_out.data && strcmp(narrowed_out.data, want.data) != 0) {
    show_difference("realistic plan", narrowed_out.data, want.data);
    check_failures++;
  }

  /* Outside the list every byte is the same: the text up to the first entry
   * and from the line after the last entry on. */
  const char *list_start = strstr(in.data, "api_allowlist:\n");
  const char *list_end = strstr(in.data, "\nfetch_proxy:");
  CHECK(list_start && list_end);
  if (list_start && list_end && narrowed_out.data) {
    size_t head = (size_t)(list_start - in.data) + strlen("api_allowlist:\n");
    size_t tail = in.len - (size_t)(list_end - in.data);
    CHECK(narrowed_out.len > head + tail);
    CHECK(memcmp(narrowed_out.data, in.data, head) == 0);
    CHECK(memcmp(narrowed_out.data + narrowed_out.len - tail, list_end, tail) == 0);
    /* and inside it, every comment line */
    for (const char *p = list_start; p < list_end; p = strchr(p, '\n') + 1) {
      const char *nl = strchr(p, '\n');
      const char *s = p + strspn(p, " ");
      if (*s == '#' || *s == '\n') {
        char line[256];
        snprintf(line, sizeof line, "%.*s", (int)(nl - p + 1), p);
        CHECK(strstr(narrowed_out.data, line) != NULL);
      }
    }
  }

  br_buf_free(&narrowed_out);
  br_strv_free(&live);
  br_strv_free(&needed);
  br_strv_free(&ours);
  br_strv_free(&wide);
  br_strv_free(&narrow);
  br_strv_free(&added);
  br_strv_free(&removed);
  br_buf_free(&in);
  br_buf_free(&want);
  br_buf_free(&err);
  br_buf_free(&out);
}

int main(void) {
  test_allowlist();
  test_matching();
  test_plan();
  test_splice_inline();
  test_splice_refusals();
  test_realistic_plan();
  run_table();
  CHECK_DONE();
}
