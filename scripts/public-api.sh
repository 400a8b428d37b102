#!/usr/bin/env bash
# Compares rdebug's public API (all features) at two git revisions: prints the items that differ
# (`-` only in OLD, `+` only in NEW) and exits 1 if any does. Uses rustdoc's JSON output on the
# stable toolchain (RUSTC_BOOTSTRAP=1) and scripts/public-api.py.
#
# usage: scripts/public-api.sh OLD [NEW]   (NEW defaults to the working tree)
set -euo pipefail
cd "$(dirname "$0")/.."
old=$1 new=${2:-}
work=$(mktemp -d)
trap 'git worktree remove --force "$work/old" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
api() { # dir out
  (cd "$1" && RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$work/target" cargo rustdoc -q --lib --all-features \
    -- -Z unstable-options --output-format json >/dev/null 2>&1)
  python3 scripts/public-api.py "$work/target/doc/rdebug.json" > "$2"
}
git worktree add -q --detach "$work/old" "$old"
api "$work/old" "$work/old.txt"
if [ -n "$new" ]; then
  git worktree add -q --detach "$work/new" "$new"
  api "$work/new" "$work/new.txt"
  git worktree remove --force "$work/new" >/dev/null
else
  api . "$work/new.txt"
fi
echo "public items: $(wc -l < "$work/old.txt") at $old, $(wc -l < "$work/new.txt") now"
diff "$work/old.txt" "$work/new.txt" | grep '^[<>]' | sed 's/^</-/; s/^>/+/' || { echo "no difference"; exit 0; }
exit 1
