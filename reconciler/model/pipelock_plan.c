/* pipelock_plan: pipelock's host matching and the add/remove plan, lists in
 * and lists out. It must not know how the list is written (pipelock.c). */
#include "reconciler/model/pipelock_plan.h"

#include <string.h>

/* ---- matching --------------------------------------------------------- */

/* ASCII only, like the host names pipelock compares (IDNs arrive as
 * punycode); never the C library's locale-dependent tolower. */
static char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c; }

static bool same_nocase(const char *a, const char *b, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (ascii_lower(a[i]) != ascii_lower(b[i]))
      return false;
  return true;
}

void br_pipelock_host_normalise(char *host) {
  size_t n = strlen(host);
  for (size_t i = 0; i < n; i++)
    host[i] = ascii_lower(host[i]);
  if (n && host[n - 1] == '.')
    host[n - 1] = '\0';
}

/* Compares normalised views of both strings without copying them. */
static bool entry_allows(const char *entry, const char *host) {
  size_t hl = strlen(host), el = strlen(entry);
  if (hl && host[hl - 1] == '.')
    hl--;
  if (el && entry[el - 1] == '.')
    el--;
  if (hl == 0 || el == 0)
    return false;
  if (memchr(entry, ':', el) || memchr(entry, '/', el))
    return false; /* a port or a scheme: pipelock never matches these */
  if (entry[0] == '*' && el >= 2 && entry[1] == '.') {
    const char *suffix = entry + 2;
    size_t sl = el - 2;
    if (sl == 0)
      return false;
    if (hl == sl)
      return same_nocase(host, suffix, sl);
    return hl > sl && host[hl - sl - 1] == '.' && same_nocase(host + hl - sl, suffix, sl);
  }
  if (el == 1 && entry[0] == '*')
    return false;
  return hl == el && same_nocase(host, entry, el);
}

bool br_pipelock_allows(const struct br_strv *allowlist, const char *host) {
  for (size_t i = 0; i < allowlist->n; i++)
    if (entry_allows(allowlist->v[i], host))
      return true;
  return false;
}

/* ---- planning --------------------------------------------------------- */

static bool serves_a_needed_host(const char *entry, const struct br_strv *needed) {
  for (size_t i = 0; i < needed->n; i++)
    if (entry_allows(entry, needed->v[i]))
      return true;
  return false;
}

int br_pipelock_plan(const struct br_strv *live, const struct br_strv *needed, const struct br_strv *added_by_us,
                     bool prune, struct br_strv *widened, struct br_strv *narrowed, struct br_strv *hosts_added,
                     struct br_strv *hosts_removed) {
  struct br_strv wide, narrow, added, removed;
  br_strv_init(&narrow);
  br_strv_init(&added);
  br_strv_init(&removed);
  int rc = br_strv_copy(&wide, live);
  /* Checked against the list as it grows, so a host needed twice (or in
   * two spellings pipelock treats as one) is added once. */
  for (size_t i = 0; !rc && i < needed->n; i++) {
    if (br_pipelock_allows(&wide, needed->v[i]))
      continue;
    rc = br_strv_add(&wide, needed->v[i]);
    if (!rc)
      rc = br_strv_add(&added, needed->v[i]);
  }
  for (size_t i = 0; !rc && i < wide.n; i++) {
    const char *entry = wide.v[i];
    if (prune && br_strv_contains(added_by_us, entry) && !serves_a_needed_host(entry, needed))
      rc = br_strv_add_unique(&removed, entry);
    else
      rc = br_strv_add(&narrow, entry);
  }
  size_t n_wide = widened->n, n_narrow = narrowed->n, n_added = hosts_added->n;
  if (!rc)
    rc = br_strv_append_all(widened, &wide);
  if (!rc)
    rc = br_strv_append_all(narrowed, &narrow);
  if (!rc)
    rc = br_strv_append_all(hosts_added, &added);
  if (!rc)
    rc = br_strv_append_all(hosts_removed, &removed);
  if (rc) {
    br_strv_truncate(widened, n_wide);
    br_strv_truncate(narrowed, n_narrow);
    br_strv_truncate(hosts_added, n_added);
  }
  br_strv_free(&wide);
  br_strv_free(&narrow);
  br_strv_free(&added);
  br_strv_free(&removed);
  return rc;
}
