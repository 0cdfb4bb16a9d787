#!/usr/bin/env bash
# Runs every libFuzzer target in BUILD/fuzz for SECONDS each, from its checked-in seed
# corpus (tests/fuzz/corpus/<target>/). New inputs go to a scratch copy, never into git.
set -euo pipefail
build=$1; secs=$2
root=$(cd "$(dirname "$0")/.." && pwd)
shopt -s nullglob
targets=("$build"/fuzz/fuzz_*)
if [ ${#targets[@]} -eq 0 ]; then echo "fuzz: no targets built" >&2; exit 1; fi
pass=0; fail=0
for t in "${targets[@]}"; do
  name=$(basename "$t")
  work=$(mktemp -d)
  [ -d "$root/tests/fuzz/corpus/$name" ] && cp -r "$root/tests/fuzz/corpus/$name/." "$work/"
  dict=()
  [ -f "$root/tests/fuzz/$name.dict" ] && dict=(-dict="$root/tests/fuzz/$name.dict")
  if "$t" "${dict[@]}" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
       -print_final_stats=0 "$work" >"$work.log" 2>&1; then
    echo "fuzz: $name ok ($(grep -c . <(ls "$work")) corpus files, ${secs}s)"
    pass=$((pass + 1))
  else
    echo "fuzz: $name FAILED"; tail -40 "$work.log"
    fail=$((fail + 1))
  fi
  rm -rf "$work" "$work.log"
done
echo "fuzz: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
