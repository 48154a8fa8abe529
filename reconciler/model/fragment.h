/* fragment: parses and validates one desired-route fragment (a routes.d file,
 * YAML or JSON) into routes. Pure: it reads no files and merges nothing. */
#ifndef BR_RECONCILER_FRAGMENT_H
#define BR_RECONCILER_FRAGMENT_H

#include <stdbool.h>
#include <stddef.h>

#include "common/buf.h"
#include "reconciler/model/routes.h"

#define BR_HOST_MAX 253      /* characters in a host name (DNS) */
#define BR_HOST_LABEL_MAX 63 /* characters in one label of it */
#define BR_PATH_MAX 2048     /* characters in one allowlisted path */
#define BR_TOKEN_ENV_MAX 128 /* characters in a token_env name */

/* Parses the bytes of one fragment. name is what messages and origins call
 * the file (the caller decides: a base name or a path); limits may be NULL
 * for br_limits_default().
 *
 * A name ending in ".json" makes the bytes strict JSON (RFC 8259, one
 * leading byte order mark allowed): what YAML would forgive in it (a
 * trailing comma, NaN, a comment) is an error. Any YAML tag and a second
 * byte order mark are errors in either.
 *
 * A fragment is one mapping with the single key "routes", a list of
 * {host, path_allowlist, auth_scheme?, token_env?} as in DESIGN.md. Hosts are
 * lowercased; duplicate paths within a route are dropped (first-seen order
 * kept); each route's origin is "NAME:LINE" of its mapping. Routes are
 * appended to out (initialised by the caller, possibly non-empty) in file
 * order; the same host twice gives two routes, since uniting them is the
 * merge's job. "routes: []" appends nothing and is a success.
 *
 * Returns 0, or on error leaves out exactly as it was and returns:
 *   -EINVAL  invalid YAML or JSON, or a rule broken (empty file, unknown or
 *            missing key, wrong type, bad host, path or auth, aliases, ...)
 *   -EFBIG   more than limits->max_file_bytes bytes
 *   -E2BIG   more than limits->max_routes routes or limits->max_paths paths
 *            in one route, or too many YAML nodes overall
 *   -ENOMEM  out of memory (then err may hold no line)
 * With the first three, exactly one line is appended to err (unless err is
 * full, then none: a line is added whole or not at all):
 *   "NAME:LINE:COLUMN: FIELD: what is wrong, what was expected\n"
 * where FIELD is a path such as routes[1].path_allowlist[0]. Values are
 * quoted only as a short excerpt, and auth values never, in case someone
 * pasted a secret where a name belongs. */
int br_fragment_parse(const char *name, const char *bytes, size_t len, const struct br_limits *limits,
                      struct br_routes *out, struct br_buf *err);

/* The validators, for every reader of hosts and paths. Each returns 0 or
 * -EINVAL and then sets *why to a static "what is wrong, what was expected"
 * text meant to follow a quoted excerpt of the value, e.g.
 * "is a wildcard, expected an exact host name". s need not be NUL-terminated;
 * a NUL byte within len is a control character. */

/* An exact host name or IPv4 dotted quad: no wildcard, scheme, port, IPv6
 * literal, path, user info, empty label or trailing dot. On success the
 * lowercased name and a NUL are written to normalised, which must hold
 * BR_HOST_MAX + 1 bytes; on failure normalised is unspecified. */
int br_host_check(const char *s, size_t len, char *normalised, const char **why);
/* An allowlisted path: starts with "/", printable ASCII only (anything else
 * percent-encoded), at most BR_PATH_MAX characters. */
int br_path_check(const char *s, size_t len, const char **why);
/* A token_env name: [A-Z_][A-Z0-9_]*, 1..BR_TOKEN_ENV_MAX characters. */
bool br_token_env_valid(const char *s);
/* An auth_scheme: an HTTP token (1*tchar of RFC 9110), e.g. Bearer, token,
 * Basic. Checks len bytes of s. */
bool br_auth_scheme_valid(const char *s, size_t len);

/* True for file names that count as fragments: *.yaml, *.yml, *.json, not
 * starting with "." (editors' and producers' temp files). The scanner and the
 * watcher both ask this, so they never disagree. */
bool br_fragment_name_counts(const char *name);

#endif
