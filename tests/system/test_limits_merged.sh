#!/usr/bin/env bash
# limits.max_routes and limits.max_paths hold for a bottle's merged routes,
# not only for each fragment: 64 fragments of 1,024 paths for one host, each
# within the limit, made an egress route of 65,536 paths. The bottle is
# invalid, nothing is written, and the message names the fragment and the
# route that crossed the limit. Run with BR_BIN=/work/baseline/... to see the
# old behaviour fail it.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/bottles.sh"
br_tmpdir
cfg=$BR_TMP/br.yaml
bottles_config "$cfg"
br() { "$BR_BIN" --config "$cfg" "$@"; }

bottle_create alpha
for i in $(seq -w 1 64); do
  python3 - "$i" <<'PY' | bottle_fragment alpha "f$i.json"
import json, sys
i = sys.argv[1]
print(json.dumps({"routes": [{"host": "api.example.com", "path_allowlist": [f"/{i}/{j}" for j in range(1024)]}]}))
PY
done
pl_before=$(sha256_of "$(pl_file alpha)")

rc=0
br once >"$BR_TMP/once.out" 2>&1 || rc=$?
((rc == 1)) || fail "once exited $rc, expected 1 (invalid): $(head -c 2000 "$BR_TMP/once.out")"
grep -q '^alpha: invalid' "$BR_TMP/once.out" || fail "alpha is not invalid: $(head -c 2000 "$BR_TMP/once.out")"
# The second fragment takes the host past 1,024 paths.
grep -Eq 'routes\.d/f02\.json:1:1: routes\[0\]\.path_allowlist: takes host api\.example\.com past 1024 paths across the bottle.s fragments, expected at most 1024 per route \(limits\.max_paths\)' "$BR_TMP/once.out" ||
  fail "the message does not name the fragment and route: $(head -c 2000 "$BR_TMP/once.out")"
[[ ! -e $(eg_file alpha) ]] || fail "an egress file was written: $(wc -c <"$(eg_file alpha)") bytes"
[[ $(sha256_of "$(pl_file alpha)") == "$pl_before" ]] || fail "pipelock was written for an invalid bottle"

# max_routes across fragments: three fragments of two hosts each against a
# bound of five; the third fragment's second new host crosses it.
bottle_create beta
bottles_config "$cfg" <<'YAML'
limits: {max_routes: 5}
YAML
for i in 1 2 3; do
  printf '{"routes": [{"host": "a%s.example.com", "path_allowlist": ["/"]}, {"host": "b%s.example.com", "path_allowlist": ["/"]}]}\n' "$i" "$i" |
    bottle_fragment beta "f$i.json"
done
rc=0
br once beta >"$BR_TMP/once.out" 2>&1 || rc=$?
((rc == 1)) || fail "once beta exited $rc, expected 1: $(cat "$BR_TMP/once.out")"
grep -Eq 'routes\.d/f3\.json:1:1: routes\[1\]\.host: takes the bottle past 5 distinct hosts' "$BR_TMP/once.out" ||
  fail "the max_routes message does not name the route: $(cat "$BR_TMP/once.out")"

# Within the limits the same bottle converges: a fragment's paths that
# repeat another's count once.
rm -- "$BR_TMP"/state/alpha/routes.d/f0[3-9].json "$BR_TMP"/state/alpha/routes.d/f[1-6]?.json
python3 -c 'import json; print(json.dumps({"routes": [{"host": "api.example.com", "path_allowlist": [f"/01/{j}" for j in range(1024)]}]}))' |
  bottle_fragment alpha f02.json
bottle_start alpha
br once alpha >"$BR_TMP/once.out" 2>&1 || fail "once alpha within the limits failed: $(cat "$BR_TMP/once.out")"
python3 - "$(eg_file alpha)" <<'PY' || fail "the egress route is not the 1,024 paths"
import json, sys
routes = json.load(open(sys.argv[1]))["routes"]
assert len(routes) == 1 and len(routes[0]["path_allowlist"]) == 1024, [len(r.get("path_allowlist", [])) for r in routes]
PY
