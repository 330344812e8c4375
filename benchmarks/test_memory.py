"""Memory stays bounded in a long run: peak RSS of a 20 000-sample run ≤ 1.2× that of a 2 000-sample run.

    pytest benchmarks/test_memory.py --benchmark-only -s

Each run is a fresh ``python -m sdekit sample`` process on the ``gmm2d`` model (chunks of
256 are sampled, written and dropped one at a time; samples.npz is streamed chunk by
chunk), which reports its own peak resident set size. The ratio is asserted: a run that
held all samples or all chunks in memory would grow about tenfold.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CHILD = (
    "import resource, sys\n"
    "from sdekit.app.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "print('PEAK_RSS_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    "sys.exit(code)\n"
)


def peak_rss_kib(num: int, out: Path) -> int:
    args = ["sample", "--model", "gmm2d", "--method", "ancestral", "--steps", "10", "--num-samples", str(num)]
    args += ["--chunk", "256", "--out", str(out), "--quiet", "--no-eval"]
    done = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, check=True)
    line = next(line for line in done.stdout.splitlines() if line.startswith("PEAK_RSS_KIB"))
    return int(line.split()[1])


@pytest.mark.benchmark(group="memory")
def test_peak_rss_is_bounded_in_the_number_of_samples(benchmark, tmp_path):
    def measure() -> tuple[int, int]:
        return peak_rss_kib(2_000, tmp_path / "small"), peak_rss_kib(20_000, tmp_path / "large")

    small, large = benchmark.pedantic(measure, rounds=1, iterations=1)
    ratio = large / small
    benchmark.extra_info.update({"peak_rss_2000_mib": small / 1024, "peak_rss_20000_mib": large / 1024, "ratio": ratio})
    print(f"\npeak RSS: 2 000 samples {small / 1024:.1f} MiB, 20 000 samples {large / 1024:.1f} MiB, ratio {ratio:.3f}")
    assert ratio <= 1.2
