#!/usr/bin/env bash
# The added-hosts record in prune mode, with `once` against real sidecar
# processes: a host this tool added is pruned when no route needs it; a host
# an operator wrote into pipelock by hand is never pruned, even when the
# record is edited to list it, copied from another bottle or replaced with
# the whole STATE/.reconciler; the output says the record does not verify;
# trust-record signs a record the operator vouches for.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
br_tmpdir
cfg=$BR_TMP/br.yaml
br() { "$BR_BIN" --config "$cfg" "$@"; }
rec=$BR_TMP/state/.reconciler

bottles_config "$cfg" <<YAML
pipelock:
  mirror: prune
  settle_ms: 0
  reload: {driver: signal, pidfile: "{state_dir}/{slug}/run/pipelock.pid", grace_ms: 0}
YAML
bottle_create one
bottle_start one
# The operator's own host, in pipelock before this tool adds anything.
sed -i 's/^  - pypi.org .*/&\n  - hand.example.com/' "$(pl_file one)"
grep -q '^  - hand.example.com$' "$(pl_file one)" || fail "could not write the operator's host: $(cat "$(pl_file one)")"

routes() { # SLUG HOST...: the bottle's only fragment routes to these hosts
  local slug=$1 h
  shift
  {
    echo "routes:"
    [[ $# -gt 0 ]] || echo "  []"
    for h in "$@"; do echo "  - {host: $h, path_allowlist: [/]}"; done
  } | bottle_fragment "$slug" a.yaml
}
in_pipelock() { grep -q "^  - $2\$" "$(pl_file "$1")"; }
# Adds HOST to the record's list, whichever format the record has.
record_add() {
  python3 - "$1" "$2" <<'PY'
import json, sys
path, host = sys.argv[1], sys.argv[2]
doc = json.load(open(path))
(doc if isinstance(doc, list) else doc["hosts"]).append(host)
open(path, "w").write(json.dumps(doc, indent=2))
PY
}

# --- a normal prune cycle removes the host this tool added ------------------
routes one tool-a.example.com
br once one >"$BR_TMP/out" 2>&1 || fail "once (add tool-a): $(cat "$BR_TMP/out")"
in_pipelock one tool-a.example.com || fail "tool-a not added: $(cat "$(pl_file one)")"
key=$rec/record.key
[[ -f $key && ! -L $key && $(stat -c '%a %u %s' "$key") == "600 $(id -u) 32" ]] ||
  fail "record key not a 0600 file of 32 bytes of the daemon's user: $(stat -c '%a %u %s %F' "$key" 2>&1)"
routes one
br once one >"$BR_TMP/out" 2>&1 || fail "once (remove tool-a): $(cat "$BR_TMP/out")"
! in_pipelock one tool-a.example.com || fail "prune left the host it added: $(cat "$(pl_file one)")"
in_pipelock one hand.example.com || fail "prune removed the operator's host"
! grep -q 'does not verify' "$BR_TMP/out" || fail "a record this tool signed did not verify: $(cat "$BR_TMP/out")"

# --- the record edited to list the operator's host --------------------------
routes one tool-b.example.com
br once one >"$BR_TMP/out" 2>&1 || fail "once (add tool-b): $(cat "$BR_TMP/out")"
in_pipelock one tool-b.example.com || fail "tool-b not added"
record_add "$rec/added/one.json" hand.example.com
routes one
rc=0
br once one >"$BR_TMP/out" 2>&1 || rc=$?
((rc == 0)) || fail "once with an edited record: rc $rc: $(cat "$BR_TMP/out")"
in_pipelock one hand.example.com ||
  fail "prune removed a host the operator wrote, listed by an edited record: $(cat "$(pl_file one)")"
grep -q 'warning: added-hosts record for one does not verify: its MAC does not match' "$BR_TMP/out" ||
  fail "no warning that the edited record does not verify: $(cat "$BR_TMP/out")"
grep -q '^one: converged: .*; added-hosts record does not verify: pruning none of its hosts$' "$BR_TMP/out" ||
  fail "the slug's line does not say the record does not verify: $(cat "$BR_TMP/out")"
# Distrusted as a whole: the host this tool added stays too (the safe way).
in_pipelock one tool-b.example.com || fail "a distrusted record's host was pruned"
rc=0
br plan one >"$BR_TMP/out" 2>&1 || rc=$?
((rc == 0)) && grep -q '^  pipelock: added-hosts record does not verify; pruning none of the hosts it lists$' "$BR_TMP/out" ||
  fail "plan with an edited record: rc $rc: $(cat "$BR_TMP/out")"

# --- another bottle's record, which verifies there, copied over -------------
bottle_create two
bottle_start two
routes two hand.example.com
br once two >/dev/null 2>&1 || fail "once two failed"
cp "$rec/added/two.json" "$rec/added/one.json"
br once one >"$BR_TMP/out" 2>&1 || fail "once with another bottle's record: $(cat "$BR_TMP/out")"
in_pipelock one hand.example.com || fail "prune removed the operator's host listed by another bottle's record"
grep -q 'added-hosts record for one does not verify: its MAC does not match' "$BR_TMP/out" ||
  fail "no warning about the copied record: $(cat "$BR_TMP/out")"

# --- the whole STATE/.reconciler replaced by someone else's -----------------
if [[ $(id -u) == 0 ]]; then
  mv "$rec" "$rec.orig"
  mkdir -p "$rec/added"
  printf '{"hosts": ["hand.example.com"], "hmac_sha256": "%064d"}\n' 0 >"$rec/added/one.json"
  chown -R 65534:65534 "$rec"
  br once one >"$BR_TMP/out" 2>&1 || fail "once with a replaced .reconciler: $(cat "$BR_TMP/out")"
  in_pipelock one hand.example.com || fail "prune trusted a record in a directory of another user"
  grep -q "added-hosts record for one does not verify: its key cannot be used: $rec is owned by uid 65534" "$BR_TMP/out" ||
    fail "no warning about the replaced directory: $(cat "$BR_TMP/out")"
  [[ ! -e $rec/record.key ]] || fail "a key was made in a directory of another user"
  rm -rf "$rec"
  mv "$rec.orig" "$rec"
else
  echo "note: not root: the replaced .reconciler case was not run"
fi

# --- an earlier version's record: unsigned until the operator vouches -------
printf '["tool-b.example.com"]' >"$rec/added/one.json"
br once one >"$BR_TMP/out" 2>&1 || fail "once with an unsigned record: $(cat "$BR_TMP/out")"
grep -q 'added-hosts record for one does not verify: it is unsigned' "$BR_TMP/out" ||
  fail "no warning about the unsigned record: $(cat "$BR_TMP/out")"
in_pipelock one tool-b.example.com || fail "an unsigned record's host was pruned"
out=$(br trust-record one) || fail "trust-record: $out"
[[ $out == "one: added-hosts record signed; prune mode may remove 1 host no route needs:"$'\n'"  tool-b.example.com" ]] ||
  fail "trust-record said: $out"
grep -q '"event": *"trust-record".*"hosts_trusted": *\["tool-b.example.com"\]' "$rec/audit.jsonl" ||
  fail "no audit record of trust-record: $(tail -n 2 "$rec/audit.jsonl")"
br once one >"$BR_TMP/out" 2>&1 || fail "once after trust-record: $(cat "$BR_TMP/out")"
! in_pipelock one tool-b.example.com || fail "the trusted record's host was not pruned: $(cat "$(pl_file one)")"
in_pipelock one hand.example.com || fail "prune removed the operator's host"
! grep -q 'does not verify' "$BR_TMP/out" || fail "the trusted record still does not verify: $(cat "$BR_TMP/out")"
rc=0
br trust-record nothing-here >"$BR_TMP/out" 2>&1 || rc=$?
((rc == 1)) && grep -q 'no added-hosts record: nothing to trust' "$BR_TMP/out" ||
  fail "trust-record without a record: rc $rc: $(cat "$BR_TMP/out")"

# As a dashboard calls it: one JSON document, and the audit names its user.
out=$(br trust-record one --json --actor dashboard:alice) || fail "trust-record --json: $out"
jq -e '.command == "trust-record" and .slug == "one" and .outcome == "signed" and .error == null
       and (.hosts | type == "array")' <<<"$out" >/dev/null || fail "trust-record --json said: $out"
tail -n 1 "$rec/audit.jsonl" | jq -e '.event == "trust-record" and .actor == "dashboard:alice"' >/dev/null ||
  fail "the audit does not name the actor: $(tail -n 1 "$rec/audit.jsonl")"
rc=0
out=$(br trust-record nothing-here --json 2>/dev/null) || rc=$?
((rc == 1)) && jq -e '.outcome == "not signed" and (.error | contains("nothing to trust"))' <<<"$out" >/dev/null ||
  fail "trust-record --json without a record: rc $rc: $out"

# The key is in no output and no log.
hex=$(od -An -tx1 -v "$key" | tr -d ' \n')
! grep -rqF "$hex" "$rec/audit.jsonl" "$rec/added" "$BR_TMP/out" || fail "the record key was written out"
wait_for sidecar_has "$(pl_log one)" '' "$(sha256_of "$(pl_file one)")" ok
echo ok
