#!/usr/bin/env bash
# Runs the whole test-suite N times (default 20), each with a different seed of the global RNGs
# and of hypothesis, and prints one line per run; exits non-zero if any run failed.
#
#   scripts/seed_sweep.sh            # 20 runs of the full suite (≈ 20 × 3 min on 2 cores)
#   scripts/seed_sweep.sh 5 -m "not slow"
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
case "$runs" in
    '' | *[!0-9]*) echo "usage: scripts/seed_sweep.sh [RUNS] [PYTEST ARGS...]; RUNS must be a positive integer, got '$runs'" >&2; exit 2 ;;
esac
[ $# -gt 0 ] && shift
unset CI  # hypothesis derandomised under CI would ignore --hypothesis-seed (tests/conftest.py)
python=python
[ -x .venv/bin/python ] && python=.venv/bin/python
failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for seed in $(seq 1 "$runs"); do
    status=0
    "$python" -m pytest -q -p no:cacheprovider --global-seed "$seed" --hypothesis-seed "$seed" "$@" >"$log" 2>&1 || status=$?
    printf 'seed %3d: %s\n' "$seed" "$(tail -n 1 "$log")"
    if [ "$status" -ne 0 ]; then
        failed=$((failed + 1))
        grep -E '^(FAILED|ERROR)' "$log" || true
    fi
done
echo "$failed of $runs runs failed"
[ "$failed" -eq 0 ]
