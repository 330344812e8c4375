#!/usr/bin/env bash
# Mutation testing of sdekit's numerical core with mutmut 3.8.1 (docs/mutation.md).
# The configuration is [tool.mutmut] in pyproject.toml; everything mutmut writes goes to mutants/.
#
#   scripts/mutation.sh                   run every core mutant, then print the score
#   scripts/mutation.sh GLOB ...          run only the mutants whose names match, e.g. 'sdekit.grids.*'
#   scripts/mutation.sh --resume [GLOB]   run only the matching mutants that have no result yet
#   scripts/mutation.sh --score [GLOB]    print the score of what has been run, run nothing
#
# Environment: MUTATION_JOBS (parallel mutant workers, default 1), MUTATION_NICE (default 19).
set -euo pipefail
cd "$(dirname "$0")/.."

# The numerical core as mutant-name globs. Of run.py only the chunk seeding is in scope.
CORE=(
    'sdekit.sde.*'
    'sdekit.interpolants.*'
    'sdekit.reverse.*'
    'sdekit.grids.*'
    'sdekit.solvers.*'
    'sdekit.sampling.*'
    'sdekit.likelihood.*'
    'sdekit.losses.*'
    'sdekit.budget.*'
    'sdekit.app.run.x_chunk_seed__mutmut_*'
    'sdekit.app.run.x_chunk_sizes__mutmut_*'
    'sdekit.app.run.x_run_chunks__mutmut_*'
)

mode=run
case "${1:-}" in
    --score) mode=score; shift ;;
    --resume) mode=resume; shift ;;
esac
globs=("$@")
[[ ${#globs[@]} -gt 0 ]] || globs=("${CORE[@]}")

# list GLOB...: one "name status" line per mutant matching a glob; score GLOB...: the table and the
# survivors. Both read mutmut's results in mutants/**/*.py.meta.
report() {
    python - "$@" <<'PY'
import collections, fnmatch, json, sys
from pathlib import Path
from mutmut.stats import status_by_exit_code

what, globs = sys.argv[1], sys.argv[2:]
rows = []
for meta in sorted(Path("mutants").rglob("*.py.meta")):
    for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
        if any(fnmatch.fnmatchcase(name, g) for g in globs):
            rows.append((name, status_by_exit_code[code].replace(" ", "_")))
if what == "list":
    for name, status in rows:
        print(name, status)
    sys.exit()

cols = ["killed", "survived", "timeout", "no_tests", "suspicious", "segfault", "not_checked"]
by_module = collections.defaultdict(collections.Counter)
for name, status in rows:
    module = name.split(".x_")[0].split(".x\u01c1")[0]
    by_module[module][status] += 1
    by_module["TOTAL"][status] += 1
print(f"{'module':32}" + "".join(f"{c:>12}" for c in cols) + f"{'total':>8}{'score':>8}")
for module in sorted(by_module, key=lambda m: (m == "TOTAL", m)):
    c = by_module[module]
    checked = sum(c.values()) - c["not_checked"]
    killed = c["killed"] + c["timeout"] + c["segfault"]
    pct = f"{100 * killed / checked:.1f}%" if checked else "-"
    print(f"{module:32}" + "".join(f"{c[k]:>12}" for k in cols) + f"{sum(c.values()):>8}{pct:>8}")
print()
print("score = (killed + timeout + segfault) / checked. Not killed (see one with: mutmut show NAME):")
for name, status in rows:
    if status in ("survived", "suspicious", "no_tests"):
        print(f"  {status:10} {name}")
PY
}

if [[ $mode != score ]]; then
    # One thread per test process: the workers run side by side, not each on every core.
    export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
    names=("${globs[@]}")
    if [[ $mode == resume && -d mutants ]]; then
        mapfile -t names < <(report list "${globs[@]}" | awk '$2 == "not_checked" {print $1}')
        if [[ ${#names[@]} -eq 0 ]]; then
            echo "nothing left to run"
            names=()
        fi
    fi
    if [[ ${#names[@]} -gt 0 ]]; then
        start=$(date +%s)
        nice -n "${MUTATION_NICE:-19}" mutmut run --max-children "${MUTATION_JOBS:-1}" "${names[@]}"
        echo "wall time: $(($(date +%s) - start)) s"
    fi
fi
report score "${globs[@]}"
