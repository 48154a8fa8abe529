#!/usr/bin/env bash
# banned.sh: no call of the functions the conventions avoid (unbounded or
# not re-entrant): strcpy, strcat, sprintf, vsprintf, strtok, atoi, atol, gets.
# Prints each call with its file and line; exit 1 when there is one.
set -euo pipefail
cd "$(dirname "$0")/../.."
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find common config reconciler tests -name '*.[ch]')
# A word boundary before the name, so snprintf and strtok_r do not count.
if hits=$(grep -nE '(^|[^A-Za-z0-9_])(strcpy|strcat|sprintf|vsprintf|strtok|atoi|atol|gets)[[:space:]]*\(' $files); then
  echo "calls of functions the conventions avoid (see CONVENTIONS: bounded buffers, errors checked):" >&2
  echo "$hits" >&2
  exit 1
fi
echo "banned.sh: none of strcpy, strcat, sprintf, vsprintf, strtok, atoi, atol, gets"
