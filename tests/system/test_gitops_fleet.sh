#!/usr/bin/env bash
# GitOps for a fleet: one bare repository, three hosts on this machine (each
# a state directory with its own bottles, a daemon, stand-in sidecars and
# contrib/gitops/bottle-gitops-sync run once per push). Each host converges
# exactly its own bottles; a push reaches every host's sidecars (their logs'
# hashes are the canonical egress rendering of the expected routes); an
# invalid commit, an unsigned one and one signed by a key outside the
# keyring change nothing anywhere and are reported in each host's status
# file and metrics; `git revert` recovers; a sync killed half-way, with its
# worktree made, publishes nothing, and a half-made worktree left behind is
# never trusted. Prints the time from push to every host converged.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
source "$here/daemon.sh"
br_tmpdir
for tool in git gpg gpgconf jq setsid; do
  command -v "$tool" >/dev/null || fail "$tool is missing: contrib/setup.sh installs it"
done
sync=$(realpath "$here/../../contrib/gitops/bottle-gitops-sync")
root=$BR_TMP
hosts=(h1 h2 h3)

# Signing keys made here, without network: the fleet's signer (its public
# key is the hosts' keyring) and an outsider. The agents gpg starts are
# stopped on exit, before the directories go.
signer=$root/gpg-signer outsider=$root/gpg-outsider keyring=$root/keyring
mkdir -m 0700 "$signer" "$outsider" "$keyring"
# STUCK[host]: a sync run as a process group of its own (step 7).
declare -A STUCK=()
stop_agents() {
  local rc=$? home pid
  set +e # in an EXIT trap: a failure here must not skip the cleanup after it
  for home in "$signer" "$outsider" "$keyring"; do
    gpgconf --homedir "$home" --kill all 2>/dev/null
  done
  for pid in "${STUCK[@]}"; do
    kill -KILL -- "-$pid" 2>/dev/null
  done
  return "$rc"
}
trap 'stop_agents; _br_cleanup' EXIT
gpg --homedir "$signer" --batch --quiet --passphrase '' --quick-gen-key 'Fleet Signer <signer@example.org>' ed25519 sign never 2>/dev/null
gpg --homedir "$outsider" --batch --quiet --passphrase '' --quick-gen-key 'Outsider <outsider@example.org>' ed25519 sign never 2>/dev/null
gpg --homedir "$signer" --export --armor signer@example.org >"$root/signer.asc"
gpg --homedir "$keyring" --batch --quiet --import "$root/signer.asc" 2>/dev/null

# The repository and an operator's clone of it.
origin=$root/origin.git work=$root/work
git init --quiet --bare --initial-branch=main "$origin"
git init --quiet --initial-branch=main "$work"
g() { git -C "$work" -c user.name=Operator -c user.email=op@example.org "$@"; }
# commit HOW MESSAGE: HOW is signed, unsigned or outsider.
commit() {
  g add -A
  case $1 in
  signed) GNUPGHOME=$signer g -c user.signingkey=signer@example.org commit --quiet -S -m "$2" ;;
  outsider) GNUPGHOME=$outsider g -c user.signingkey=outsider@example.org commit --quiet -S -m "$2" ;;
  unsigned) g commit --quiet -m "$2" ;;
  esac
}
push() { g push --quiet "$origin" HEAD:main; }
head_sha() { g rev-parse HEAD; }
# fragment SLUG-PATH HOST...: a fragment of the repository allowing / on each HOST.
fragment() {
  local file=$work/$1 h
  shift
  mkdir -p "$(dirname "$file")"
  {
    echo "routes:"
    for h in "$@"; do echo "  - {host: $h, path_allowlist: [/]}"; done
  } >"$file"
}

# Three hosts. bottles.sh keeps a host under $BR_TMP; each host gets a
# directory of its own and the helpers run with BR_TMP pointing there.
# ci runs on h1 and h2; h3's l3 has local fragments only; "retired" in the
# repository runs nowhere.
declare -A SLUGS=([h1]="a1 a2 ci" [h2]="b1 ci" [h3]="c1 l3")
declare -A DPID DCFG DLOG
on() {
  local host=$1
  shift
  BR_TMP=$root/$host "$@"
}
for h in "${hosts[@]}"; do
  mkdir -p "$root/$h"
  DCFG[$h]=$root/$h/br.yaml
  on "$h" bottles_config "${DCFG[$h]}" <<YAML
sources:
  - "{state_dir}/{slug}/routes.d"
  - "$root/$h/sync/current/bottles/{slug}"
  - "$root/$h/sync/current/hosts/$h/bottles/{slug}"
YAML
  for slug in ${SLUGS[$h]}; do
    on "$h" bottle_create "$slug"
    on "$h" bottle_start "$slug"
  done
done
on h3 bottle_fragment l3 00-local.yaml <<'YAML'
routes:
  - {host: l3.example.org, path_allowlist: [/]}
YAML
for h in "${hosts[@]}"; do
  on "$h" start_daemon "${DCFG[$h]}"
  DPID[$h]=$DAEMON_PID DLOG[$h]=$DAEMON_LOG
done

# What each bottle must run: DESIRED[host/slug] is its hosts in merge order
# (local fragments, bottles/<slug>, hosts/<host>/bottles/<slug>).
declare -A DESIRED
desire() {
  local key=$1
  shift
  DESIRED[$key]="$*"
}
# at_desired: every bottle's egress sidecar runs the egress file the daemon
# renders for its desired hosts (the hash on its log's last ok line is the
# SHA-256 of their canonical JSON, byte-identical to Python's
# json.dumps(indent=2)), and its pipelock sidecar runs its live file, which
# allows every desired host. One process for all seven bottles. With
# --when it prints when the last of them was reached: the latest stamp of
# the first line on which an egress sidecar loaded its desired state.
cat >"$root/at_desired.py" <<'PY'
import hashlib, json, sys
when = sys.argv[1] == "--when"
root = sys.argv[1 + when]
latest = 0.0
def live_hash(log, want=None):
    global latest
    h, first = "", None
    try:
        for line in open(log):
            f = line.split()
            if len(f) >= 4 and f[3] == "ok":
                h = f[2]
                if h == want:
                    first = first or float(f[0])
    except OSError:
        pass
    if first:
        latest = max(latest, first)
    return h
for spec in sys.argv[2 + when:]:
    key, hosts = spec.split("=", 1)
    host, slug = key.split("/")
    hosts = hosts.split()
    doc = {"routes": [{"host": h, "path_allowlist": ["/"]} for h in hosts]}
    want = hashlib.sha256((json.dumps(doc, indent=2) + "\n").encode()).hexdigest()
    if live_hash(f"{root}/{host}/logs/{slug}.egress.log", want) != want:
        sys.exit(1)
    pl = open(f"{root}/{host}/state/{slug}/pipelock/pipelock.yaml", "rb").read()
    if live_hash(f"{root}/{host}/logs/{slug}.pipelock.log") != hashlib.sha256(pl).hexdigest():
        sys.exit(1)
    lines = pl.decode().splitlines()
    if not all(f"  - {h}" in lines for h in hosts):
        sys.exit(1)
if when:
    print(int(latest * 1e6))
PY
at_desired() {
  local key specs=()
  for key in "${!DESIRED[@]}"; do
    specs+=("$key=${DESIRED[$key]}")
  done
  python3 "$root/at_desired.py" "$@" "$root" "${specs[@]}"
}

# sync_all [ARG...]: every host's sync, at once, as their timers would fire
# after a push; SYNC_RC[host] is its exit status.
declare -A SYNC_RC
sync_args() {
  local h=$1
  echo --repo "$origin" --root "$root/$h/sync" --keyring "$keyring" --config "${DCFG[$h]}" --bin "$BR_BIN" \
    --metrics-file "$root/$h/sync.prom" --settle-timeout 20
}
# sync_start starts them, sync_reap waits for them.
SYNC_PIDS=()
sync_start() {
  local h
  SYNC_PIDS=()
  for h in "${hosts[@]}"; do
    # shellcheck disable=SC2046 # sync_args prints words without blanks in them
    "$sync" $(sync_args "$h") 2>>"$root/$h/sync.log" &
    br_track $!
    SYNC_PIDS+=($!)
  done
}
sync_reap() {
  local h i=0
  for h in "${hosts[@]}"; do
    reap "${SYNC_PIDS[$i]}"
    SYNC_RC[$h]=$REAP_STATUS
    i=$((i + 1))
  done
}
sync_all() {
  sync_start
  sync_reap
}
# status HOST KEY: a key of the host's status file (jq's raw output).
sync_status() { jq -r ".$2" "$root/$1/sync/status.json"; }
served_link() { readlink "$root/$1/sync/current"; }

# snapshot: every sidecar log and live file of every host, and the links.
snapshot() {
  local h
  for h in "${hosts[@]}"; do
    (cd "$root/$h" && find logs state -type f ! -path '*/.reconciler/*' -print0 | sort -z | xargs -0 sha256sum)
    echo "$h -> $(served_link "$h")"
  done
}

# 1. The first commit: every host publishes it and converges its bottles.
fragment bottles/a1/10.yaml a1.example.org
fragment bottles/a2/10.yaml a2.example.org
fragment bottles/b1/10.yaml b1.example.org
fragment bottles/c1/10.yaml c1.example.org
fragment bottles/ci/10.yaml ci.example.org
fragment hosts/h1/bottles/ci/50.yaml h1-cache.example.org
fragment bottles/retired/10.yaml retired.example.org
commit signed "the fleet's bottles"
push
desire h1/a1 a1.example.org
desire h1/a2 a2.example.org
desire h1/ci ci.example.org h1-cache.example.org
desire h2/b1 b1.example.org
desire h2/ci ci.example.org
desire h3/c1 c1.example.org
desire h3/l3 l3.example.org
sync_all
for h in "${hosts[@]}"; do
  ((SYNC_RC[$h] == 0)) || fail "$h: the first sync exited ${SYNC_RC[$h]}: $(cat "$root/$h/sync.log")"
  [[ $(served_link "$h") == "rev-$(head_sha)" ]] || fail "$h does not serve the first commit"
  [[ $(sync_status "$h" outcome) == published && $(sync_status "$h" served) == "$(head_sha)" ]] ||
    fail "$h status: $(cat "$root/$h/sync/status.json")"
done
wait_for -t 30 at_desired

# Exactly its own bottles: no state directory appears for the repository's
# other bottles, each daemon knows only its own, and h2's ci lacks h1's
# folder.
for h in "${hosts[@]}"; do
  got=$(cd "$root/$h/state" && echo *)
  [[ $got == "$(tr ' ' '\n' <<<"${SLUGS[$h]}" | sort | xargs)" ]] || fail "$h state holds: $got"
  DAEMON_CFG=${DCFG[$h]}
  for slug in ${SLUGS[$h]}; do
    slug_converged "$slug" || fail "$h: $slug not converged: $(daemon_status "$slug")"
  done
  [[ $(daemon_status | jq '.slugs | length') == $(wc -w <<<"${SLUGS[$h]}") ]] ||
    fail "$h's daemon knows other bottles: $(daemon_status)"
done
not grep -q h1-cache "$root/h2/state/ci/egress/egress_routes.yaml" || fail "h2's ci got h1's host"

# 2. Pushes that change bottles on every host, timed from the push to
# every host's sidecars running the change: the syncs start at the push, as
# if their timers fired then, and the end is read from the sidecars' logs
# (the stamp of the last first load of a desired state), so that neither
# the time a sync spends waiting for its daemon and removing the previous
# checkout nor the test's polling counts.
times=() swaps=()
# swapped_us HOST: when HOST's current link was last swapped (its own mtime).
swapped_us() {
  local t
  t=$(find "$root/$1/sync/current" -maxdepth 0 -printf '%T@')
  echo "$((10#${t%.*} * 1000000 + 10#$(cut -c1-6 <<<"${t#*.}")))"
}
for round in 1 2 3 4 5; do
  fragment bottles/a1/10.yaml a1.example.org "round$round.example.org"
  fragment bottles/ci/10.yaml ci.example.org "round$round.example.org"
  fragment bottles/c1/10.yaml c1.example.org "round$round.example.org"
  commit signed "round $round"
  desire h1/a1 a1.example.org "round$round.example.org"
  desire h1/ci ci.example.org "round$round.example.org" h1-cache.example.org
  desire h2/ci ci.example.org "round$round.example.org"
  desire h3/c1 c1.example.org "round$round.example.org"
  t0=$(_br_now_us)
  push
  sync_all
  wait_for -t 30 at_desired
  t1=$(at_desired --when)
  times+=($(((t1 - t0) / 1000)))
  last=0
  for h in "${hosts[@]}"; do
    t=$(swapped_us "$h")
    ((t <= last)) || last=$t
  done
  swaps+=($(((last - t0) / 1000)))
  for h in "${hosts[@]}"; do
    ((SYNC_RC[$h] == 0)) || fail "$h: sync of round $round exited ${SYNC_RC[$h]}: $(tail -n 5 "$root/$h/sync.log")"
  done
done
good=$(head_sha)
sorted=$(printf '%s\n' "${times[@]}" | sort -n | xargs)
echo "push to every host converged (3 hosts, 7 bottles, sync run at the push), ms: ${times[*]}; median $(cut -d' ' -f3 <<<"$sorted"), max ${sorted##* }"
echo "  of which push to the last host's swap of current, ms: ${swaps[*]}"
# The previous checkout is gone once the daemon moved on; only current stays.
for h in "${hosts[@]}"; do
  revs=$(cd "$root/$h/sync" && echo rev-*)
  [[ $revs == "rev-$good" ]] || fail "$h keeps checkouts: $revs"
done

# refused_everywhere SHA REASON: every host's sync exited 1, its status
# names SHA as tried and REASON in the error, it still serves $good, its
# metrics say so, and no checkout of SHA is left.
refused_everywhere() {
  local sha=$1 reason=$2 h
  for h in "${hosts[@]}"; do
    ((SYNC_RC[$h] == 1)) || fail "$h: the sync of a refused commit exited ${SYNC_RC[$h]}"
    [[ $(sync_status "$h" outcome) == refused && $(sync_status "$h" tried) == "$sha" && $(sync_status "$h" served) == "$good" ]] ||
      fail "$h status: $(cat "$root/$h/sync/status.json")"
    [[ $(sync_status "$h" error) == "$reason"* ]] || fail "$h: error $(sync_status "$h" error), expected $reason..."
    [[ $(served_link "$h") == "rev-$good" && ! -e $root/$h/sync/rev-$sha ]] || fail "$h published or kept $sha"
    grep -qx "bottle_gitops_sync_ok{repo=\"$origin\",branch=\"main\"} 0" "$root/$h/sync.prom" &&
      grep -q "^bottle_gitops_refused_info{commit=\"$sha\",reason=\"${reason%%:*}\"} 1$" "$root/$h/sync.prom" &&
      grep -q "^bottle_gitops_served_info{commit=\"$good\"} 1$" "$root/$h/sync.prom" ||
      fail "$h metrics: $(cat "$root/$h/sync.prom")"
    grep -q "refused $sha: $reason" "$root/$h/sync.log" || fail "$h: the refusal is not logged"
  done
}
snapshot >"$root/before"

# 3. An invalid commit, signed: a wildcard in b1 (h2's) beside a valid
# change to a1 (h1's). No host publishes any of it.
fragment bottles/a1/10.yaml a1.example.org round5.example.org never.example.org
fragment bottles/b1/20.yaml '"*.example.org"'
commit signed "a wildcard"
push
bad=$(head_sha)
sync_all
refused_everywhere "$bad" "invalid: bottles/b1/20.yaml:2:"

# 4. The fix, unsigned: refused for the signature, before any checkout.
rm "$work/bottles/b1/20.yaml"
commit unsigned "the fix, unsigned"
push
unsigned=$(head_sha)
sync_all
refused_everywhere "$unsigned" "unsigned: the commit has no signature"

# 5. Signed, by a key that is not in the keyring.
fragment bottles/c1/10.yaml c1.example.org round5.example.org outsider.example.org
commit outsider "signed by an outsider"
push
outsider_sha=$(head_sha)
sync_all
refused_everywhere "$outsider_sha" "bad signature: not a valid signature by a key in $keyring"
# Nothing of it reached any sidecar or file, on any host.
snapshot | diff "$root/before" - >&2 || fail "a refused commit changed a host"
for h in "${hosts[@]}"; do
  not grep -q 'never.example.org\|outsider.example.org' "$root/$h/state/.reconciler/audit.jsonl" ||
    fail "$h applied part of a refused commit"
done

# 6. git revert recovers: the three commits reverted, signed; every host
# serves the new head, whose tree is the last good one, so no sidecar is
# told anything, and the status is clean again.
GNUPGHOME=$signer g -c user.signingkey=signer@example.org revert --no-edit -S "$good..HEAD" >/dev/null
[[ -z $(g diff "$good" HEAD) ]] || fail "the revert does not restore the good tree"
push
sync_all
for h in "${hosts[@]}"; do
  ((SYNC_RC[$h] == 0)) || fail "$h: the sync of the revert exited ${SYNC_RC[$h]}: $(tail -n 5 "$root/$h/sync.log")"
  [[ $(sync_status "$h" outcome) == published && $(sync_status "$h" served) == "$(head_sha)" && $(sync_status "$h" error) == null ]] ||
    fail "$h status after the revert: $(cat "$root/$h/sync/status.json")"
  grep -qx "bottle_gitops_sync_ok{repo=\"$origin\",branch=\"main\"} 1" "$root/$h/sync.prom" &&
    not grep -q '^bottle_gitops_refused_info{' "$root/$h/sync.prom" || fail "$h metrics: $(cat "$root/$h/sync.prom")"
done
wait_for at_desired
for h in "${hosts[@]}"; do
  DAEMON_CFG=${DCFG[$h]}
  wait_for all_converged "$(wc -w <<<"${SLUGS[$h]}")"
done
snapshot | sed '/ -> rev-/d' | diff <(sed '/ -> rev-/d' "$root/before") - >&2 || fail "the revert changed a sidecar"
good=$(head_sha)

# 7. A sync killed half-way: its worktree is made and the check is under
# way (a bottle-reconciler whose check never ends) when the whole sync is
# killed. Nothing is published.
fragment bottles/a1/10.yaml a1.example.org final.example.org
fragment bottles/b1/10.yaml b1.example.org final.example.org
fragment bottles/c1/10.yaml c1.example.org round5.example.org final.example.org
commit signed "final"
push
final=$(head_sha)
cat >"$root/stuck-br" <<EOF
#!/usr/bin/env bash
# bottle-reconciler whose check never ends, until the sync around it is killed
[[ " \$* " == *" check "* ]] || exec "$BR_BIN" "\$@"
touch "\$STUCK_MARK"
exec sleep 600
EOF
chmod +x "$root/stuck-br"
for h in "${hosts[@]}"; do
  # shellcheck disable=SC2046
  STUCK_MARK=$root/$h/stuck setsid "$sync" $(sync_args "$h") --bin "$root/stuck-br" 2>>"$root/$h/sync.log" &
  STUCK[$h]=$!
  br_track $!
done
for h in "${hosts[@]}"; do
  wait_for test -e "$root/$h/stuck"
  [[ -d $root/$h/sync/rev-$final ]] || fail "$h: no worktree of $final while its check runs"
  [[ $(ps -o pgid= "${STUCK[$h]}" | tr -d ' ') == "${STUCK[$h]}" ]] || fail "the sync is not a process group of its own"
  kill -KILL -- "-${STUCK[$h]}"
  reap "${STUCK[$h]}"
  unset "STUCK[$h]"
done
for h in "${hosts[@]}"; do
  [[ $(served_link "$h") == "rev-$good" ]] || fail "$h published a commit whose sync was killed"
done
snapshot | sed '/ -> rev-/d' | diff <(sed '/ -> rev-/d' "$root/before") - >&2 || fail "a killed sync changed a host"

# 8. What the killed sync left is never trusted: with a fragment of the
# half-made worktree gone (as from a checkout stopped half-way), the next
# sync makes it afresh and publishes it whole.
for h in "${hosts[@]}"; do
  rm "$root/$h/sync/rev-$final/bottles/c1/10.yaml"
done
desire h1/a1 a1.example.org final.example.org
desire h2/b1 b1.example.org final.example.org
desire h3/c1 c1.example.org round5.example.org final.example.org
sync_all
for h in "${hosts[@]}"; do
  ((SYNC_RC[$h] == 0)) || fail "$h: the sync after the kill exited ${SYNC_RC[$h]}: $(tail -n 5 "$root/$h/sync.log")"
  [[ $(served_link "$h") == "rev-$final" && -e $root/$h/sync/current/bottles/c1/10.yaml ]] ||
    fail "$h does not serve the whole of $final"
done
wait_for at_desired

for h in "${hosts[@]}"; do
  for slug in ${SLUGS[$h]}; do
    sidecar_lines_valid "$root/$h/logs/$slug.egress.log"
    sidecar_lines_valid "$root/$h/logs/$slug.pipelock.log"
  done
  DAEMON_PID=${DPID[$h]} DAEMON_LOG=${DLOG[$h]}
  stop_daemon
done
echo ok
