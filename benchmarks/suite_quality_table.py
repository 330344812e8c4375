"""The full quality-against-NFE sweep over the oracle suite: docs/suite.md, its data and its plots.

    python benchmarks/suite_quality_table.py [--num 4096] [--distributions narrow ring] [--sdes vp ve]
                                             [--jobs 2] [--out docs] [--add]

Runs every sampler of ``_suite.samplers()`` (sdekit's methods at their defaults, k-diffusion's on
its Karras grid) at every budget of ``_suite.NFES`` on every problem of the suite, in ``--jobs``
processes (one problem at a time each), and writes ``<out>/data/suite_quality.json`` (every
result), ``<out>/suite.md`` (the summary and one table per problem) and the plots
``<out>/images/suite_nll.png`` and ``<out>/images/suite_sw1.png`` (one panel per problem).
``--from-json`` redraws the page and the plots from a saved run without sampling; ``--add`` runs only
the problems and samplers chosen and adds them to the saved run, replacing the same problem and sampler
(a new SDE family: ``--sdes rf edm --add``; a new method: ``--samplers "sdekit unipc" --add``). On two CPU
cores the whole sweep at n = 4096 takes about an hour, most of it the 256-D problems.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch

from sdekit.testing.suite import DISTRIBUTIONS, SDES, problems

from _suite import MAX_NFE, NFES, CaseUnavailableError, run_case, samplers


def _sweep_problem(name: str, n: int, budgets: tuple[int, ...], chosen: tuple[str, ...], capped: bool) -> list[dict]:
    torch.set_num_threads(1)
    distribution, sde = name.split("/")
    (problem,) = problems([distribution], [sde])
    rows = []
    for sampler in samplers():
        if chosen and sampler.label not in chosen:
            continue
        for budget in budgets:
            try:
                rows.append(run_case(problem, sampler, budget, n, capped=capped).as_dict())
            except CaseUnavailableError:
                continue
    print(f"{name}: {len(rows)} results", flush=True)
    return rows


def _best(rows: list[dict], kind: str, peer: bool) -> dict[int, dict]:
    """Per budget, the row of smallest |NLL gap| among at-floor-first ordering, for sdekit or the peers."""
    chosen: dict[int, dict] = {}
    for r in rows:
        if r["kind"] != kind or r["sampler"].startswith("sdekit") == peer:
            continue
        key = (not r["at_floor"], abs(r["nll_gap"]), r["sw1_ratio"])
        if r["budget"] not in chosen or key < chosen[r["budget"]]["_key"]:
            chosen[r["budget"]] = {**r, "_key": key}
    return chosen


def _smallest_at_floor(rows: list[dict], kind: str, peer: bool) -> str:
    best = _best(rows, kind, peer)
    for budget in sorted(best):
        if best[budget]["at_floor"]:
            return f"{best[budget]['nfe']} ({best[budget]['sampler'].split(' ', 1)[1]})"
    return "not reached"


def _cell(r: dict | None) -> str:
    if r is None:
        return ""
    gap = r["nll_gap"]
    text = (
        f"{gap:+.2f}" if math.isfinite(gap) and abs(gap) < 1e4 else ("inf" if not math.isfinite(gap) else f"{gap:+.0e}")
    )
    return f"**{text}**" if r["at_floor"] else text


def write_page(rows: list[dict], out: Path, meta: dict[str, object]) -> None:
    by_problem: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_problem[r["problem"]].append(r)
    names = [p.name for p in problems() if p.name in by_problem]
    lines = [
        "# Quality on the oracle suite",
        "",
        "Every sampler at its defaults on every problem of `sdekit.testing.suite` "
        "(six distributions × VP, sub-VP, VE, DDPM's discrete schedule, the rectified flow and EDM's σ(t) = t), "
        "at NFE budgets "
        f"{', '.join(map(str, NFES))}, beside k-diffusion's samplers on their Karras grid. Made by",
        "",
        "```bash",
        f"python benchmarks/suite_quality_table.py --num {meta['n']} --jobs {meta['jobs']}",
        "```",
        "",
        f"on {meta['machine']} (torch {meta['torch']}, {meta['date']}, {meta['minutes']:.0f} minutes); "
        f"n = {meta['n']} samples per case from one prior draw per problem. A budget is a maximum: a method "
        "takes as many steps as fit, final denoising included. Judged by `sdekit.testing.evaluate`: a result is "
        "**at floor** (bold) when its NLL gap, sliced W1 and mode TV are all within the limits that exact "
        "sample sets of the same size exceed with probability 0.1 % (docs/testing.md); the cells give "
        "NLL − H in nats. The same cases run under `pytest benchmarks/test_suite_quality.py --benchmark-only "
        "--runslow`; the plots are `images/suite_nll.png` and `images/suite_sw1.png`.",
        "",
        *[
            f"Added by `--add` on {added['date']} ({added['minutes']:.0f} minutes, the same machine and settings): "
            f"{', '.join(added.get('samplers', ['every sampler']))} on {', '.join(added['problems'])}."
            for added in meta.get("added", [])  # type: ignore[attr-defined]
        ],
        "",
        "## Smallest NFE at floor",
        "",
        "| problem | sdekit deterministic | k-diffusion deterministic | sdekit stochastic | k-diffusion stochastic |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        rs = by_problem[name]
        lines.append(
            f"| {name} | {_smallest_at_floor(rs, 'deterministic', False)} | "
            f"{_smallest_at_floor(rs, 'deterministic', True)} | {_smallest_at_floor(rs, 'stochastic', False)} | "
            f"{_smallest_at_floor(rs, 'stochastic', True)} |"
        )
    lines += ["", "## Where a peer does better", "",
              "Budgets at which the best k-diffusion configuration is at floor and no sdekit one of the same kind "
              "is, or both miss it and the peer's |NLL gap| is smaller by more than the limit:", ""]  # fmt: skip
    wins = []
    for name in names:
        for kind in ("deterministic", "stochastic"):
            ours, theirs = _best(by_problem[name], kind, False), _best(by_problem[name], kind, True)
            for budget in sorted(set(ours) & set(theirs)):
                o, t = ours[budget], theirs[budget]
                better = (t["at_floor"] and not o["at_floor"]) or (
                    not o["at_floor"] and not t["at_floor"] and abs(t["nll_gap"]) + o["nll_limit"] < abs(o["nll_gap"])
                )
                if better:
                    wins.append(
                        f"| {name} | {kind} | {budget} | {o['sampler']} {_cell(o)} | {t['sampler']} {_cell(t)} |"
                    )
    if wins:
        lines += ["| problem | kind | budget | best sdekit | best peer |", "|---|---|---:|---|---|", *wins]
    else:
        lines.append("None.")
    lines += ["", "## Every result", ""]
    labels = [s.label for s in samplers()]
    for name in names:
        cells = {(r["sampler"], r["budget"]): r for r in by_problem[name]}
        budgets = sorted({r["budget"] for r in by_problem[name]})
        lines += [f"### {name}", "", "| sampler | " + " | ".join(map(str, budgets)) + " |",
                  "|---|" + "---:|" * len(budgets)]  # fmt: skip
        for label in labels:
            if any((label, b) in cells for b in budgets):
                lines.append(f"| {label} | " + " | ".join(_cell(cells.get((label, b))) for b in budgets) + " |")
        lines.append("")
    (out / "suite.md").write_text("\n".join(lines) + "\n")


def write_plots(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [p.name for p in problems() if any(r["problem"] == p.name for r in rows)]
    labels = [s.label for s in samplers()]
    colors = {label: plt.cm.tab20(i % 20) for i, label in enumerate(labels)}
    for metric, ylabel, path in (("nll_gap", "|NLL − H| (nats)", "suite_nll.png"),
                                 ("sw1_ratio", "sliced W1 / limit", "suite_sw1.png")):  # fmt: skip
        cols = len(SDES)
        rows_ = math.ceil(len(names) / cols)
        fig, axes = plt.subplots(rows_, cols, figsize=(4 * cols, 3 * rows_), squeeze=False, sharex=True)
        for ax, name in zip(axes.flat, names, strict=False):
            for label in labels:
                mine = [r for r in rows if r["problem"] == name and r["sampler"] == label]
                pts = sorted((r["nfe"], abs(r[metric])) for r in mine if math.isfinite(r[metric]))
                if pts:
                    style = "-" if label.startswith("sdekit") else "--"
                    ax.plot(*zip(*pts, strict=True), style, color=colors[label], label=label, lw=1.2, marker=".")
            limit = [r["nll_limit"] if metric == "nll_gap" else 1.0 for r in rows if r["problem"] == name][:1]
            if limit:
                ax.axhline(limit[0], color="black", lw=0.8, ls=":")
            ax.set(xscale="log", yscale="log", title=name)
            ax.set_ylim(max(1e-3, ax.get_ylim()[0]), min(1e3, ax.get_ylim()[1]))
        for ax in axes[-1]:
            ax.set_xlabel("NFE")
        for ax in axes[:, 0]:
            ax.set_ylabel(ylabel)
        handles, names_ = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, names_, loc="lower center", ncol=6, fontsize=8)
        fig.tight_layout(rect=(0, 0.1, 1, 1))
        (out / "images").mkdir(parents=True, exist_ok=True)
        fig.savefig(out / "images" / path, dpi=80)
        plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=4096)
    parser.add_argument("--distributions", nargs="+", default=list(DISTRIBUTIONS))
    parser.add_argument("--sdes", nargs="+", default=list(SDES))
    parser.add_argument("--jobs", type=int, default=max(1, min(2, os.cpu_count() or 1)))
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs")
    parser.add_argument("--from-json", action="store_true", help="redraw from <out>/data/suite_quality.json")
    parser.add_argument(
        "--add", action="store_true", help="add these results to the saved ones (replacing the same problem/sampler)"
    )
    parser.add_argument("--budgets", type=int, nargs="+", default=list(NFES), help="NFE budgets (default: NFES)")
    parser.add_argument("--samplers", nargs="+", default=[], help='labels to run, e.g. "sdekit dpmpp_2m" (all)')
    parser.add_argument("--no-cap", action="store_true", help="lift the sweep's NFE caps (MAX_NFE, max_nfe)")
    args = parser.parse_args()
    data = args.out / "data" / "suite_quality.json"
    if args.from_json:
        saved = json.loads(data.read_text())
        rows, meta = saved["results"], saved["meta"]
    else:
        start = time.perf_counter()
        names = [p.name for p in problems(args.distributions, args.sdes)]
        names.sort(key=lambda name: name.split("/")[0] not in MAX_NFE)  # the costly ones first
        with ProcessPoolExecutor(args.jobs) as pool:
            jobs = [(name, args.num, tuple(args.budgets), tuple(args.samplers), not args.no_cap) for name in names]
            rows = [row for part in pool.map(_sweep_problem, *zip(*jobs, strict=True)) for row in part]
        meta = {
            "n": args.num,
            "jobs": args.jobs,
            "torch": torch.__version__,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
            "date": time.strftime("%Y-%m-%d"),
            "minutes": (time.perf_counter() - start) / 60,
        }
        if args.add:  # earlier problems kept, these replaced; the page states both runs
            saved = json.loads(data.read_text())
            rerun = {(r["problem"], r["sampler"]) for r in rows}
            rows = [r for r in saved["results"] if (r["problem"], r["sampler"]) not in rerun] + rows
            chosen = args.samplers or ["every sampler"]
            meta = {**saved["meta"], "added": [*saved["meta"].get("added", []),
                                               {**meta, "problems": names, "samplers": chosen}]}  # fmt: skip
        data.parent.mkdir(parents=True, exist_ok=True)
        compact = [{k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in row.items()} for row in rows]
        data.write_text(json.dumps({"meta": meta, "results": compact}, separators=(",", ":")) + "\n")
    write_page(rows, args.out, meta)
    write_plots(rows, args.out)
    print(f"wrote {args.out / 'suite.md'} and its plots from {len(rows)} results")


if __name__ == "__main__":
    main()
