/* pipelock: reads and rewrites api_allowlist in the bytes of a pipelock config.
 * Pure: no I/O, and never a spliced file that it has not read back and checked. */
#ifndef BR_RECONCILER_PIPELOCK_H
#define BR_RECONCILER_PIPELOCK_H

#include <stddef.h>

#include "common/buf.h"
#include "common/strv.h"

/* Largest pipelock config read or written; larger files are refused (-EFBIG). */
#define BR_PIPELOCK_MAX_BYTES (1024 * 1024)

/* Reads the top-level api_allowlist of a pipelock config (name is only used in
 * messages). Absent or null gives no entries. Entries are appended to hosts
 * exactly as written: matching is br_pipelock_allows' business (pipelock_plan.h).
 *
 * Returns 0, -ENOMEM, -EFBIG (file too large) or -EINVAL with one line per
 * problem appended to err, "NAME:LINE:COLUMN: FIELD: what is wrong, what was
 * expected", for: not exactly one document, a top level that is not a
 * mapping, a top-level merge key (<<) or alias key (either could hide an
 * allowlist), an api_allowlist that is not a list of strings, and anchors,
 * aliases or tags on the list or its items (the splice rewrites the list and
 * would drop them; an alias elsewhere would be left pointing at nothing).
 * Anchors and aliases elsewhere in the file are accepted. On error hosts is
 * left as it was. */
int br_pipelock_allowlist(const char *name, const char *bytes, size_t len, struct br_strv *hosts,
                          struct br_buf *err);

/* Appends to out the config with api_allowlist replaced by new_list and every
 * other byte unchanged: comments, blank lines, key order, other keys, line
 * endings (LF or CRLF), a UTF-8 byte-order mark. How the list is written:
 *
 * - A block list keeps its layout: the line of an entry that stays is kept
 *   byte for byte (with its quoting and its own trailing comment), the line
 *   of a removed entry goes with it, comment and blank lines between entries
 *   stay where they are, and comments after the last entry stay after the
 *   list. New entries get lines like the first entry's ("  - " or "- " at the
 *   key's own indent); they go right after the kept entry before them in
 *   new_list (before comment lines that follow it), or where the first
 *   entry was. Kept entries are matched in order, greedily: a reordered list
 *   rewrites the entries that moved.
 * - A flow list stays a flow list: "[a, b]", or one entry per line with the
 *   same commas and comments. A comment between two entries can be lost when
 *   the entries around it are removed or reordered, and when the list becomes
 *   empty ("[]") or was empty before; entries that stay keep their text.
 * - A null or empty value ("api_allowlist:" or "api_allowlist: ~") becomes a
 *   block list after the key's line (a flow list inside a flow mapping, and
 *   "[a, b]" in place of an explicit "~" or "null"), with the indentation of
 *   the file's other top-level block lists when it has any.
 * - An absent key is added at the end of the top-level mapping: after any
 *   trailing comment lines but before a "..." document end marker, indented
 *   like the other top-level keys, a newline added first if the file lacks
 *   one; in a flow mapping, after its last entry.
 * - An empty new_list is written "api_allowlist: []" (or "[]" in place).
 * - Hosts are written plain when YAML reads them back as the same string,
 *   else double-quoted ("*.example.com", "yes", "1.5", "2024-01-01").
 *
 * Before returning, the result is read back with br_pipelock_allowlist and
 * must give exactly new_list and the same top-level keys with the same
 * values, in the same order; otherwise nothing is appended to out and
 * -EINVAL comes back with a line in err saying the splice could not be done
 * safely. That is what happens, for example, when the key must be appended
 * after a block scalar ("|") that ends the file without a line break: the
 * line break added first would change that scalar's value. Also -EINVAL for
 * every error of br_pipelock_allowlist on the input, for a new entry that is
 * not UTF-8, for layouts this function does not edit (lone-CR line breaks,
 * an entry not on its dash's line, a dash not first on its line, ...),
 * -EFBIG when the result would exceed BR_PIPELOCK_MAX_BYTES or out's room,
 * -ENOMEM. Each error appends one line to err and nothing to out. The key
 * is always written, even when new_list equals the current list and the key
 * was absent: compare the lists first to avoid needless writes (an unchanged
 * list in a list layout gives back the input bytes). */
int br_pipelock_splice(const char *name, const char *bytes, size_t len, const struct br_strv *new_list,
                       struct br_buf *out, struct br_buf *err);

#endif
