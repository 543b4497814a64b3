#!/usr/bin/env bash
# Limits CI keeps on the layout (issue 12): no Rust source file outside
# tests over MAX_LINES lines. "Outside tests": not under a tests/ directory,
# not named tests.rs, not in fuzz/, not generated (target/ is not tracked).
# The limit on function length is clippy's (clippy.toml,
# too-many-lines-threshold).
#
#   .ci/limits.sh           exit 1 naming each file over the limit
#   .ci/limits.sh --report  list them, exit 0
set -euo pipefail
cd "$(dirname "$0")/.."

readonly MAX_LINES=800

report=0
case "${1:-}" in
    --report) report=1 ;;
    "") ;;
    *) echo "usage: $0 [--report]" >&2; exit 2 ;;
esac

# The files git knows (tracked, and new ones not ignored), so target/ and
# other build output never count.
# Outside a git checkout: every .rs file but those under target/.
list_sources() {
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git ls-files -z --cached --others --exclude-standard -- '*.rs'
    else
        find . -path ./target -prune -o -name '*.rs' -type f -printf '%P\0'
    fi
}
files=()
while IFS= read -r -d '' f; do
    # A tracked file deleted in the work tree is not a source any more.
    [ -f "$f" ] && files+=("$f")
done < <(list_sources | grep -zvE '(^|/)tests/|(^|/)tests\.rs$|^fuzz/|(^|/)target/')

offenders=0
checked=0
if [ "${#files[@]}" -gt 0 ]; then
    while read -r lines file; do
        [ "$file" = total ] && continue
        checked=$((checked + 1))
        if [ "$lines" -gt "$MAX_LINES" ]; then
            echo "limits: $file: $lines lines (over $MAX_LINES)"
            offenders=$((offenders + 1))
        fi
    done < <(printf '%s\0' "${files[@]}" | xargs -0 -r wc -l | sort -rn)
fi

if [ "$offenders" -eq 0 ]; then
    echo "limits: $checked Rust source file(s) outside tests, none over $MAX_LINES lines"
    exit 0
fi
echo "limits: $offenders of $checked Rust source files outside tests are over $MAX_LINES lines"
if [ "$report" -eq 1 ]; then
    exit 0
fi
exit 1
