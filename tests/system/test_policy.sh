#!/usr/bin/env bash
# System tests of the operator's policy (issue 13, "Policy before any write"),
# with `check`, `plan`, `once`, `apply` and the daemon's status against real
# sidecar processes: one credential serves one host (the reproduction: a
# second fragment binding the GitHub token to another host), sharing it on
# purpose, deny rules on names and IP ranges, the rules of a less trusted
# source, and an egress validate command that refuses a host. Each refusal
# leaves both live files byte-identical and no sidecar signalled.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
br_tmpdir
cfg=$BR_TMP/br.yaml
br() { "$BR_BIN" --config "$cfg" "$@"; }
# brx ARGS: run br, stdout to $BR_TMP/out, stderr to $BR_TMP/err, status in RC.
brx() {
  RC=0
  br "$@" >"$BR_TMP/out" 2>"$BR_TMP/err" || RC=$?
}
outerr() { cat "$BR_TMP/out" "$BR_TMP/err"; }

mkdir -p "$BR_TMP/gitops/p"
policy_config() {
  bottles_config "$cfg" <<YAML
sources:
  - "{state_dir}/{slug}/routes.d"
  - {path: "$BR_TMP/gitops/{slug}", may_bind_credentials: false, may_allow_every_path: false, max_routes: 3}
policy:
  deny_hosts: [metadata.google.internal, "*.internal"]
  deny_ip_ranges: [169.254.0.0/16, 127.0.0.0/8]
$*
YAML
}
policy_config
bottle_create p
bottle_start p
bottle_fragment p 10-github.yaml <<'YAML'
routes:
  - host: api.github.com
    path_allowlist: [/repos/acme/]
    auth_scheme: Bearer
    token_env: EGRESS_TOKEN_0
YAML
brx once p
((RC == 0)) || fail "once with a clean bottle: rc $RC: $(outerr)"
wait_for sidecar_has "$(eg_log p)" reload "$(sha256_of "$(eg_file p)")" ok

# unchanged LABEL: both live files as they were and no sidecar told again.
pl_hash=$(sha256_of "$(pl_file p)")
eg_hash=$(sha256_of "$(eg_file p)")
pl_loads=$(sidecar_count "$(pl_log p)")
eg_loads=$(sidecar_count "$(eg_log p)")
unchanged() {
  file_is "$(pl_file p)" "$pl_hash" || fail "$1: the pipelock file changed"
  file_is "$(eg_file p)" "$eg_hash" || fail "$1: the egress file changed"
  [[ $(sidecar_count "$(pl_log p)") == "$pl_loads" ]] || fail "$1: pipelock was told to reload"
  [[ $(sidecar_count "$(eg_log p)") == "$eg_loads" ]] || fail "$1: egress was told to reload"
}

# --- (a) one credential, a second host: refused everywhere, nothing written ---
cat >"$BR_TMP/p7.json" <<'JSON'
{"routes": [
  {"host": "paste.evil.example", "path_allowlist": ["/"], "auth_scheme": "Bearer", "token_env": "EGRESS_TOKEN_0"}
]}
JSON
d=$BR_TMP/state/p/routes.d
brx check "$d/10-github.yaml" "$BR_TMP/p7.json"
((RC == 1)) || fail "check accepted one credential for two hosts: rc $RC: $(outerr)"
grep -qF "$BR_TMP/p7.json:2:3: routes[0].token_env: EGRESS_TOKEN_0 is bound to api.github.com already ($d/10-github.yaml:2:5), so egress would inject that credential into requests to paste.evil.example too" "$BR_TMP/err" ||
  fail "check's message does not name both hosts and both places: $(outerr)"
brx apply p "$BR_TMP/p7.json" --name "~approval-p7.json"
((RC == 1)) || fail "apply installed a second host for EGRESS_TOKEN_0: rc $RC: $(outerr)"
[[ ! -e $d/~approval-p7.json ]] || fail "the refused approval was left installed"
unchanged "apply"
# Dropped in by another tool all the same: plan and once refuse the bottle.
bottle_fragment p "~approval-p7.json" <"$BR_TMP/p7.json"
brx plan p
((RC == 1)) || fail "plan of the bottle with a credential for two hosts: rc $RC: $(outerr)"
grep -q "^p: invalid: " "$BR_TMP/out" || fail "plan does not call the bottle invalid: $(outerr)"
grep -qF "$d/~approval-p7.json:2:3: routes[0].token_env: EGRESS_TOKEN_0 is bound to api.github.com already ($d/10-github.yaml:2:5)" "$BR_TMP/err" ||
  fail "plan does not show the error: $(outerr)"
brx once p
((RC == 1)) || fail "once converged a credential for two hosts: rc $RC: $(outerr)"
grep -q "paste.evil.example" "$BR_TMP/err" || fail "once does not say why: $(outerr)"
unchanged "one credential for two hosts"
! grep -q paste.evil.example "$(eg_file p)" "$(pl_file p)" || fail "the second host reached a live file"

# Shared on purpose, in the config: then it converges, and plan says so.
policy_config "  shared_credentials:
    - {token_env: EGRESS_TOKEN_0, hosts: [api.github.com, paste.evil.example]}"
brx plan p
((RC == 2)) || fail "plan with the credential shared on purpose: rc $RC: $(outerr)"
grep -qx "  credential EGRESS_TOKEN_0: api.github.com, paste.evil.example (shared)" "$BR_TMP/out" ||
  fail "plan does not show which slot goes to which host: $(outerr)"
brx once p
((RC == 0)) || fail "once with the credential shared on purpose: rc $RC: $(outerr)"
grep -q '"host": "paste.evil.example"' "$(eg_file p)" || fail "the shared host did not reach egress"
# A share names its hosts: a third one is refused.
bottle_fragment p "~approval-p8.json" <<'JSON'
{"routes": [{"host": "third.example", "path_allowlist": ["/x/"], "auth_scheme": "Bearer", "token_env": "EGRESS_TOKEN_0"}]}
JSON
brx once p
((RC == 1)) && grep -q "EGRESS_TOKEN_0 is shared with api.github.com and paste.evil.example only" "$BR_TMP/err" ||
  fail "a third host for a shared credential: rc $RC: $(outerr)"
rm "$d/~approval-p7.json" "$d/~approval-p8.json"
policy_config
brx once p
((RC == 0)) || fail "once after taking the approvals out: rc $RC: $(outerr)"
wait_for sidecar_has "$(eg_log p)" reload "$(sha256_of "$(eg_file p)")" ok
pl_hash=$(sha256_of "$(pl_file p)")
eg_hash=$(sha256_of "$(eg_file p)")
pl_loads=$(sidecar_count "$(pl_log p)")
eg_loads=$(sidecar_count "$(eg_log p)")
brx plan p
((RC == 0)) && grep -qx "  credential EGRESS_TOKEN_0: api.github.com" "$BR_TMP/out" ||
  fail "plan of the converged bottle: rc $RC: $(outerr)"

# --- deny rules: a denied name or address is an error, not a silent drop ----
bottle_fragment p 20-meta.yaml <<'YAML'
routes:
  - host: pypi.org
    path_allowlist: [/simple/]
  - host: metadata.google.internal
    path_allowlist: [/computeMetadata/]
  - host: 169.254.169.254
    path_allowlist: [/latest/meta-data/]
YAML
brx once p
((RC == 1)) || fail "once converged denied hosts: rc $RC: $(outerr)"
grep -qF "$d/20-meta.yaml:4:5: routes[1].host: \"metadata.google.internal\" is denied by policy.deny_hosts[0] \"metadata.google.internal\" ($cfg:" "$BR_TMP/err" ||
  fail "no error naming the denied host and the rule: $(outerr)"
grep -qF "$d/20-meta.yaml:6:5: routes[2].host: \"169.254.169.254\" is in 169.254.0.0/16, denied by policy.deny_ip_ranges[0] ($cfg:" "$BR_TMP/err" ||
  fail "no error naming the denied address and the range: $(outerr)"
unchanged "denied hosts"
brx check "$d/20-meta.yaml"
((RC == 1)) && grep -q 'is denied by policy.deny_hosts\[0\]' "$BR_TMP/err" || fail "check accepted a denied host: $(outerr)"
rm "$d/20-meta.yaml"
printf 'routes:\n  - {host: 127.0.0.1, path_allowlist: [/]}\n' >"$BR_TMP/loop.yaml"
brx apply p "$BR_TMP/loop.yaml"
((RC == 1)) && grep -q 'is in 127.0.0.0/8, denied by policy.deny_ip_ranges\[1\]' "$BR_TMP/err" ||
  fail "apply of a loopback route: rc $RC: $(outerr)"
[[ ! -e $d/loop.yaml ]] || fail "a refused fragment was installed"
unchanged "apply of a denied address"

# --- a less trusted source: no credentials, no every path, at most 3 routes --
git=$BR_TMP/gitops/p
cat >"$git/a.yaml" <<'YAML'
routes:
  - host: uploads.example.com
    path_allowlist: [/in/]
    auth_scheme: Bearer
    token_env: EGRESS_TOKEN_5
  - host: docs.example.com
YAML
brx once p
((RC == 1)) || fail "once converged what the git source may not say: rc $RC: $(outerr)"
grep -qF "$git/a.yaml:2:5: routes[0].token_env: binds the credential EGRESS_TOKEN_5 to uploads.example.com, but sources[1].may_bind_credentials is false ($cfg:" "$BR_TMP/err" ||
  fail "no error naming the fragment and the source rule: $(outerr)"
grep -qF "$git/a.yaml:6:5: routes[1]: allows every path of docs.example.com (no path_allowlist), but sources[1].may_allow_every_path is false ($cfg:" "$BR_TMP/err" ||
  fail "no error for every path from the git source: $(outerr)"
unchanged "the git source's rules"
printf 'routes:\n  - {host: docs.example.com, path_allowlist: [/a/, /b/]}\n  - {host: uploads.example.com, path_allowlist: [/in/]}\n' >"$git/a.yaml"
printf 'routes:\n  - {host: c.example.com, path_allowlist: [/c/]}\n  - {host: d.example.com, path_allowlist: [/d/]}\n' >"$git/b.yaml"
brx once p
((RC == 1)) && grep -qF "$git/b.yaml:1:1: routes: brings the routes of sources[1] for this bottle to 4, more than sources[1].max_routes 3 ($cfg:" "$BR_TMP/err" ||
  fail "the git source past its max_routes: rc $RC: $(outerr)"
unchanged "the git source past its max_routes"
rm "$git/b.yaml"
brx once p
((RC == 0)) || fail "once with what the git source may say: rc $RC: $(outerr)"
grep -q '"host": "docs.example.com"' "$(eg_file p)" || fail "the git source's routes did not reach egress"
wait_for sidecar_has "$(eg_log p)" reload "$(sha256_of "$(eg_file p)")" ok

# --- an egress validate command refusing a host: neither file is replaced ---
policy_config "egress:
  validate: [sh, -c, '! grep -q blocked.example \"\$1\"', sh, \"{file}\"]
  reload: {driver: signal, pidfile: \"{state_dir}/{slug}/run/egress.pid\", grace_ms: 0}"
pl_hash=$(sha256_of "$(pl_file p)")
eg_hash=$(sha256_of "$(eg_file p)")
pl_loads=$(sidecar_count "$(pl_log p)")
eg_loads=$(sidecar_count "$(eg_log p)")
bottle_fragment p 30-blocked.yaml <<'YAML'
routes:
  - {host: blocked.example, path_allowlist: [/]}
YAML
brx once p
((RC == 1)) && grep -q "egress validate command refused the new file" "$BR_TMP/err" ||
  fail "the egress validate command's refusal: rc $RC: $(outerr)"
unchanged "a host the egress validate command refuses"
! grep -q blocked.example "$(pl_file p)" || fail "pipelock was widened for a host egress refused"
rm "$d/30-blocked.yaml"

# --- status: which slot goes to which host, from the daemon ----------------
policy_config
start_daemon "$cfg"
wait_for slug_converged p
credentials() {
  daemon_status p | python3 -c 'import json, sys
s = json.load(sys.stdin)["slugs"][0]
print(json.dumps(s.get("credentials"), sort_keys=True))'
}
[[ $(credentials) == '{"EGRESS_TOKEN_0": ["api.github.com"]}' ]] || fail "status --json credentials: $(daemon_status p)"
br status | grep -qx "  credential EGRESS_TOKEN_0: api.github.com" || fail "status does not show the slot: $(br status)"
# A fragment that breaks the policy while the daemon runs: invalid, untouched.
pl_hash=$(sha256_of "$(pl_file p)")
eg_hash=$(sha256_of "$(eg_file p)")
pl_loads=$(sidecar_count "$(pl_log p)")
eg_loads=$(sidecar_count "$(eg_log p)")
bottle_fragment p "~approval-p9.json" <"$BR_TMP/p7.json"
phase_is() { [[ $(status_field p phase) == "$1" ]]; }
wait_for phase_is invalid
[[ $(status_field p message) == *"EGRESS_TOKEN_0 is bound to api.github.com already"* ]] ||
  fail "status message: $(status_field p message)"
unchanged "the daemon, one credential for two hosts"
stop_daemon
echo ok
