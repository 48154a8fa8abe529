#!/usr/bin/env bash
# layers.sh: each layer includes only its own headers and those of the layers
# below it (the order of CMakeLists.txt; the build refuses upward calls, this
# refuses upward #include lines, which may pull in types alone).
set -euo pipefail
cd "$(dirname "$0")/../.."
declare -A allowed=(
  [common]="common"
  [config]="config common"
  [reconciler/model]="reconciler/model common"
  [reconciler/drivers]="reconciler/drivers config common"
  [reconciler/bottle]="reconciler/bottle reconciler/model reconciler/drivers config common"
  [reconciler/daemon]="reconciler/daemon reconciler/bottle reconciler/model reconciler/drivers config common"
  [reconciler/cli]="reconciler/cli reconciler/daemon reconciler/bottle reconciler/model reconciler/drivers config common"
)
bad=0
for layer in "${!allowed[@]}"; do
  for f in "$layer"/*.[ch]; do
    [[ -e $f ]] || continue
    while IFS=: read -r line inc; do
      dir=${inc%/*}
      ok=false
      for a in ${allowed[$layer]}; do [[ $dir == "$a" ]] && ok=true; done
      $ok || { echo "$f:$line: includes $inc, but $layer may only use: ${allowed[$layer]}" >&2; bad=1; }
    done < <(grep -noE '^#include "[^"]+"' "$f" | sed -E 's/#include "([^"]+)"/\1/')
  done
done
for f in reconciler/*.[ch]; do
  [[ -e $f ]] && { echo "$f: every source belongs to a layer folder (reconciler/model, bottle, drivers, daemon, cli)" >&2; bad=1; }
done
exit $bad
