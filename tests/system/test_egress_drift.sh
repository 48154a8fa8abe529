#!/usr/bin/env bash
# System test of a tampered live egress file, judged by its bytes, the
# command output and the egress sidecar's own log. A second entry for a host
# the bottle routes (another token, the host in upper case) and an unknown
# key in a route read as the desired routes once folded, yet the sidecar may
# act on them: `plan` names each and what a rewrite drops, `once` rewrites
# the file, and the keys beside "routes" that jansson cannot hold (an integer
# beyond 64 bits, a string with \u0000) survive byte for byte. A file that
# carries such keys and is otherwise canonical is left alone.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
br_tmpdir
cfg=$BR_TMP/br.yaml
bottles_config "$cfg"
br() { "$BR_BIN" --config "$cfg" "$@"; }
brx() {
  RC=0
  br "$@" >"$BR_TMP/out" 2>"$BR_TMP/err" || RC=$?
}
outerr() { cat "$BR_TMP/out" "$BR_TMP/err"; }

bottle_create alpha
bottle_start alpha
bottle_fragment alpha routes.yaml <<'YAML'
routes:
  - host: new.example.com
    path_allowlist: [/v1/]
    auth_scheme: Bearer
    token_env: EGRESS_TOKEN_1
  - host: pypi.org
    path_allowlist: [/simple/]
YAML
brx once alpha
((RC == 0)) || fail "first once: rc $RC: $(outerr)"
eg=$(eg_file alpha)

# live_file ROUTES_PY: the live file as Python's json.dumps(indent=2) writes
# it, with a big integer before "routes" and a string holding NUL after it.
live_file() {
  python3 -c 'import json, sys
routes = eval(sys.argv[1])
doc = {"serial": 123456789012345678901234567890, "routes": routes, "note": "a\u0000b"}
sys.stdout.write(json.dumps(doc, indent=2) + "\n")' "$1"
}
desired_py='[{"host": "new.example.com", "path_allowlist": ["/v1/"], "auth_scheme": "Bearer", "token_env": "EGRESS_TOKEN_1"},
             {"host": "pypi.org", "path_allowlist": ["/simple/"]}]'
tampered_py='[{"host": "new.example.com", "path_allowlist": ["/v1/"], "auth_scheme": "Bearer", "token_env": "EGRESS_TOKEN_1"},
              {"host": "pypi.org", "path_allowlist": ["/simple/"], "methods": ["GET"]},
              {"host": "NEW.example.com", "path_allowlist": ["/v1/"], "auth_scheme": "Bearer", "token_env": "EGRESS_TOKEN_0"}]'
live_file "$desired_py" >"$BR_TMP/canonical"
grep -q '"serial": 123456789012345678901234567890,' "$BR_TMP/canonical" && grep -q '"note": "a\\u0000b"' "$BR_TMP/canonical" ||
  fail "the test's own file lacks the big integer or the NUL: $(cat "$BR_TMP/canonical")"
canonical=$(sha256_of "$BR_TMP/canonical")

# --- keys jansson cannot hold, routes as desired: nothing to do -------------
live_file "$desired_py" | write_atomic "$eg"
loads=$(sidecar_count "$(eg_log alpha)")
brx plan alpha
((RC == 0)) || fail "plan of a file with a big integer and a NUL beside canonical routes: rc $RC: $(outerr)"
brx once alpha
((RC == 0)) && grep -q '^alpha: converged: no changes' "$BR_TMP/out" ||
  fail "once of a file with a big integer and a NUL beside canonical routes: rc $RC: $(outerr)"
file_is "$eg" "$canonical" || fail "once rewrote a file it had no reason to: $(cat "$eg")"
[[ $(sidecar_count "$(eg_log alpha)") == "$loads" ]] || fail "once reloaded egress for nothing"

# --- tampered: a second entry with another token, an unknown route key ------
live_file "$tampered_py" | write_atomic "$eg"
tampered=$(sha256_of "$eg")
brx plan alpha
((RC == 2)) || fail "plan of the tampered file: rc $RC, expected 2 (changes): $(outerr)"
for why in \
  '  egress: rewrite: routes[1]: unknown key "methods"; a rewrite drops it' \
  '  egress: rewrite: routes[2].host: "NEW.example.com" is not lower case; a rewrite lowers it' \
  '  egress: rewrite: routes[2]: a second route for "NEW.example.com" (the first is routes[0]), auth Bearer $EGRESS_TOKEN_0; a rewrite drops it'; do
  grep -qxF "$why" "$BR_TMP/out" || fail "plan does not say: $why; it says: $(outerr)"
done
file_is "$eg" "$tampered" || fail "plan changed the live file"

brx once alpha
((RC == 0)) || fail "once of the tampered file: rc $RC: $(outerr)"
grep -q '^alpha: converged: 1 file written, 1 reload' "$BR_TMP/out" || fail "once did not rewrite egress alone: $(outerr)"
grep -qF 'a second route for "NEW.example.com"' "$BR_TMP/out" || fail "once does not say why it rewrote: $(outerr)"
file_is "$eg" "$canonical" || fail "the rewritten file is not the canonical one with its other keys kept byte for byte:
$(diff "$BR_TMP/canonical" "$eg")"
wait_for sidecar_has "$(eg_log alpha)" reload "$canonical" ok
audit=$BR_TMP/state/.reconciler/audit.jsonl
tail -n 1 "$audit" | jq -e '.drift | length == 3' >/dev/null || fail "the audit record does not hold the drift: $(tail -n 1 "$audit")"

# Its own output is converged: a second once writes and signals nothing.
loads=$(sidecar_count "$(eg_log alpha)")
brx once alpha
((RC == 0)) && grep -q '^alpha: converged: no changes' "$BR_TMP/out" || fail "second once: rc $RC: $(outerr)"
[[ $(sidecar_count "$(eg_log alpha)") == "$loads" ]] || fail "the second once reloaded egress"

# --- routes that cannot be read: replaced, the other keys kept --------------
python3 -c 'import sys
sys.stdout.write("{\"serial\": 123456789012345678901234567890, \"routes\": [{\"host\": 42}], \"note\": \"a\\u0000b\"}\n")' |
  write_atomic "$eg"
brx plan alpha
((RC == 2)) && grep -qxF "  egress: rewrite unparsable $eg: its routes are dropped, its other top-level keys kept" "$BR_TMP/out" ||
  fail "plan of a file whose routes cannot be read: rc $RC: $(outerr)"
brx once alpha
((RC == 0)) || fail "once of a file whose routes cannot be read: rc $RC: $(outerr)"
file_is "$eg" "$canonical" || fail "the rewrite of unreadable routes lost the other keys: $(cat "$eg")"
echo ok
