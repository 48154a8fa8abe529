#!/usr/bin/env bash
# check-tree.sh: the CI check of a bottles repository in plain shell, for a
# pipeline other than GitHub's (GitLab, Jenkins, a cron job) or a git server's
# pre-receive hook. Checks the working tree at DIR, or with --commit REV the
# tree of that commit of the repository at DIR (exported whole, symlinks as
# they are, to a temporary directory), exactly as each host checks a commit
# before it publishes it.
#
#   check-tree.sh [DIR] [--commit REV] [--config FILE] [--format text|github]
#
# Environment: BOTTLE_RECONCILER, the binary (default: bottle-reconciler).
# Exit status: 0 valid, 1 findings (one per line on stderr), 64 usage.
#
# As a pre-receive hook (refuses a push to main that no host would publish):
#   while read -r old new ref; do
#     [ "$ref" = refs/heads/main ] || continue
#     check-tree.sh . --commit "$new" || exit 1
#   done
set -euo pipefail
dir=.
commit=
args=()
while (($#)); do
  case $1 in
  --commit) commit=${2:?--commit needs a revision}; shift 2 ;;
  --config) args+=(--config "${2:?--config needs a file}"); shift 2 ;;
  --format) args+=(--format "${2:?--format needs text or github}"); shift 2 ;;
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  -*) echo "check-tree.sh: unknown option $1" >&2; exit 64 ;;
  *) dir=$1; shift ;;
  esac
done
br=${BOTTLE_RECONCILER:-bottle-reconciler}
if [[ -z $commit ]]; then
  cd -- "$dir"
  exec "$br" check --tree . "${args[@]}"
fi
tmp=$(mktemp -d)
trap 'rm -rf -- "$tmp"' EXIT
git -C "$dir" archive --format=tar "$commit" | tar -x -C "$tmp"
cd -- "$tmp"
"$br" check --tree . "${args[@]}"
