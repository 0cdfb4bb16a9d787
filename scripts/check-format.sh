#!/usr/bin/env bash
# Checks that the C sources and headers under src/, tests/unit/ and tests/fuzz/ match the
# repository's .clang-format. Changes nothing: prints where clang-format would change a
# file (at most FERROR_LIMIT places per file, default 3) and exits 1 when any file differs.
# CLANG_FORMAT picks the binary; the style was measured with clang-format 14.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cf=${CLANG_FORMAT:-clang-format}
command -v "$cf" >/dev/null 2>&1 || { echo "check-format: $cf not found" >&2; exit 2; }
cd "$root"
mapfile -t files < <(find src tests/unit tests/fuzz -type f -name '*.[ch]' | LC_ALL=C sort)
[ ${#files[@]} -gt 0 ] || { echo "check-format: no C files found" >&2; exit 2; }
if "$cf" --style=file --dry-run --Werror --ferror-limit="${FERROR_LIMIT:-3}" "${files[@]}"; then
  echo "check-format: ${#files[@]} files ok"
else
  echo "check-format: files differ from .clang-format; fix with: $cf -i FILE" >&2
  exit 1
fi
