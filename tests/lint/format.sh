#!/usr/bin/env bash
# format.sh: every C file of the project is in the .clang-format style.
# Prints the files that are not, with the fix; exit 1 then.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v clang-format >/dev/null || { echo "format.sh: clang-format is missing (contrib/setup.sh installs it)" >&2; exit 1; }
bad=()
while IFS= read -r f; do
  clang-format --dry-run -Werror "$f" 2>/dev/null || bad+=("$f")
done < <(git ls-files '*.c' '*.h' 2>/dev/null || find common config reconciler tests -name '*.[ch]')
if ((${#bad[@]})); then
  printf 'not in the .clang-format style: %s\n' "${bad[@]}" >&2
  echo "fix: clang-format -i ${bad[*]}" >&2
  exit 1
fi
echo "format.sh: all C files in style"
