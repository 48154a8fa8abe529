# approvals.sh: helpers for the system tests of the commands that change a
# bottle's fragments (adopt, add-route, remove-route, revoke, edit, apply and
# their --wait); source it after lib.sh and bottles.sh, and after br_tmpdir.
# Defines functions only, except use_fast_python, which sets PATH.
# shellcheck shell=bash
#
#   use_fast_python              put /usr/bin/python3 (when there) first on PATH: a pyenv shim takes a second a call
#   brx ARG...                   run `br ARG...` (the caller's function), stdout to $BR_TMP/out, stderr to
#                                $BR_TMP/err; set RC to its exit status and MS to how long it took (ms)
#   outerr                       print what the last brx printed, stdout then stderr
#   json_assert FILE CODE [ARG...]  run python CODE with d = the JSON document in FILE (ARGs in sys.argv[2:]);
#                                fails when CODE raises
#   handmade_bottle SLUG         a bottle whose live egress file was written by hand (three routes, two with
#                                auth in slots EGRESS_TOKEN_0 and EGRESS_TOKEN_2, not in canonical layout), with
#                                no routes.d, and a pipelock file that allows those hosts
#   HANDMADE_ROUTES              those three routes as a JSON list, in their order
#   egress_routes_are SLUG JSON  succeed when SLUG's live egress file routes exactly the JSON list of routes
#   tree_sum DIR                 print one line per file of DIR: its SHA-256 and name (a DIR that does not
#                                exist prints nothing)


use_fast_python() {
  if [[ -x /usr/bin/python3 ]]; then
    mkdir -p "$BR_TMP/bin"
    ln -sf /usr/bin/python3 "$BR_TMP/bin/python3"
    PATH=$BR_TMP/bin:$PATH
  fi
}

# RC, MS and HANDMADE_ROUTES are for the tests that source this file.
# shellcheck disable=SC2034
brx() {
  local t0
  t0=$(_br_now_us)
  RC=0
  br "$@" >"$BR_TMP/out" 2>"$BR_TMP/err" || RC=$?
  MS=$((($(_br_now_us) - t0) / 1000))
}

outerr() { cat "$BR_TMP/out" "$BR_TMP/err"; }

json_assert() {
  python3 -c "import json, sys
d = json.load(open(sys.argv[1]))
$2" "$1" "${@:3}"
}

# shellcheck disable=SC2034
HANDMADE_ROUTES='[
  {"host": "api.github.com", "path_allowlist": ["/repos/acme/"], "auth_scheme": "Bearer", "token_env": "EGRESS_TOKEN_0"},
  {"host": "pypi.org", "path_allowlist": ["/simple/"]},
  {"host": "api.anthropic.com", "path_allowlist": ["/v1/"], "auth_scheme": "x-api-key", "token_env": "EGRESS_TOKEN_2"}
]'

handmade_bottle() {
  local slug=$1 d=$BR_TMP/state/$1
  bottle_create "$slug"
  rmdir "$d/routes.d"
  # One route a line, as a person writes it: not the canonical rendering.
  cat >"$(eg_file "$slug")" <<'JSON'
{"routes": [
  {"host": "api.github.com", "path_allowlist": ["/repos/acme/"], "auth_scheme": "Bearer", "token_env": "EGRESS_TOKEN_0"},
  {"host": "pypi.org", "path_allowlist": ["/simple/"]},
  {"host": "api.anthropic.com", "path_allowlist": ["/v1/"], "auth_scheme": "x-api-key", "token_env": "EGRESS_TOKEN_2"}
]}
JSON
  cat >"$(pl_file "$slug")" <<'YAML'
# pipelock config written by hand with the egress routes
mode: strict
api_allowlist:
  - pypi.org
  - api.github.com
  - api.anthropic.com
YAML
}

egress_routes_are() {
  python3 -c 'import json, sys
try:
    routes = json.load(open(sys.argv[1]))["routes"]
except (OSError, ValueError, KeyError):
    sys.exit(1)
sys.exit(0 if routes == json.loads(sys.argv[2]) else 1)' "$(eg_file "$1")" "$2"
}

tree_sum() {
  [[ -d $1 ]] || return 0
  (cd "$1" && find . -type f -print0 | sort -z | xargs -0r sha256sum)
}

