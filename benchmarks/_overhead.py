"""Overhead of a sampler over its own score calls: the measurement every speed benchmark shares.

A sampler's cost beyond the network is its overhead. To measure it fairly the bare loop must
make *the same calls*: a score's cost can depend on its input (the oracle's mixture score
takes 5–16 ms per call on this CPU depending on x and t, through softmax underflow), so a loop
at the prior draw would not be comparable. So a warm-up run records every (x, t) the sampler
passes to the score; then, for ``rounds`` rounds, the recorded calls are replayed bare (no
sampler code between them) and the sampler is run again. The ratio reported is
min(sampler) / min(replay) — minima are the least disturbed by other load — with the median
of the per-round ratios (sampler over the mean of the replays around it) beside it.
"""

from __future__ import annotations

import os
import resource
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import Tensor

from sdekit.app.host_memory import release_free_memory

ScoreFn = Callable[[Tensor, Tensor], Tensor]
R = TypeVar("R")
#: run(score) -> (samples, info) with info.nfe; must be deterministic given its own generator.
Run = Callable[[ScoreFn], tuple[Tensor, Any]]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Recorder:
    """A score wrapper that keeps a copy of every (x, t) it is called with.

    A time shared by the batch arrives expanded (stride 0) and scores may take a fast path
    for it, so the copy keeps that layout.
    """

    def __init__(self, score: ScoreFn) -> None:
        self.score = score
        self.calls: list[tuple[Tensor, Tensor]] = []

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        shared = t.ndim == 1 and t.stride(0) == 0
        self.calls.append((x.clone(), t[:1].clone().expand(t.shape) if shared else t.clone()))
        return self.score(x, t)


@dataclass
class Overhead:
    nfe: int
    batch: int
    sampler_s: list[float] = field(default_factory=list)
    replay_s: list[float] = field(default_factory=list)
    peak_memory_mib: float = float("nan")

    @property
    def ratio(self) -> float:
        return min(self.sampler_s) / min(self.replay_s)

    @property
    def ratio_median(self) -> float:
        paired = [s / (0.5 * (self.replay_s[i] + self.replay_s[i + 1])) for i, s in enumerate(self.sampler_s)]
        return statistics.median(paired)

    @property
    def samples_per_s(self) -> float:
        return self.batch / min(self.sampler_s)

    def as_dict(self) -> dict[str, Any]:
        return {
            "nfe": self.nfe,
            "batch": self.batch,
            "sampler_s": self.sampler_s,
            "replay_s": self.replay_s,
            "ratio_min": self.ratio,
            "ratio_median": self.ratio_median,
            "samples_per_s": self.samples_per_s,
            "peak_memory_mib": self.peak_memory_mib,
        }


def timed(function: Callable[[], object], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    function()
    sync(device)
    return time.perf_counter() - start


def best_of(function: Callable[[], R], rounds: int, device: torch.device | None = None) -> tuple[float, R]:
    """The minimum wall time of ``rounds`` calls, and the last call's result."""
    results: list[R] = []
    seconds = [timed(lambda: results.append(function()), device or torch.device("cpu")) for _ in range(rounds)]
    return min(seconds), results[-1]


def measure(run: Run, score: ScoreFn, device: torch.device, batch: int, rounds: int) -> Overhead:
    """Record the sampler's score calls once, then alternate replay and sampler ``rounds`` times."""
    recorder = Recorder(score)
    with torch.inference_mode():
        _, info = run(recorder)
    calls = recorder.calls
    result = Overhead(nfe=int(info.nfe), batch=batch)
    if len(calls) != result.nfe:
        raise AssertionError(f"the sampler reported {result.nfe} NFE but called the score {len(calls)} times")

    def replay() -> None:
        with torch.inference_mode():
            for x, t in calls:
                score(x, t)

    for _ in range(rounds):
        result.replay_s.append(timed(replay, device))
        result.sampler_s.append(timed(lambda: _inference(run, score), device))
    result.replay_s.append(timed(replay, device))
    calls.clear()  # free the recorded inputs before measuring memory
    result.peak_memory_mib = peak_memory_mib(lambda: run(score), device)
    return result


def peak_memory_mib(function: Callable[[], object], device: torch.device) -> float:
    """Peak memory of one call above what was in use before it.

    CUDA: ``max_memory_allocated`` after a reset. CPU: the resident set size, polled every
    millisecond from /proc/self/statm by a thread (run untimed; NaN where /proc is missing),
    after returning the heap's free pages to the system (so memory the process kept from
    earlier runs counts when it is reused).
    """
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        function()
        sync(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    if not os.path.exists("/proc/self/statm"):
        return float("nan")
    release_free_memory()
    before, peak, done = _rss(), [0], threading.Event()

    def poll() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.001)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        function()
    finally:
        done.set()
        poller.join()
    return max(peak[0] - before, 0) / 2**20


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def report(benchmark: Any, info: dict[str, Any]) -> None:
    """Store ``info`` in the benchmark's extra_info (the JSON report) and print it, one ``key: value`` a line."""
    benchmark.extra_info.update(info)
    print()
    for key, value in info.items():
        print(f"  {key}: {value:.4g}" if isinstance(value, float) else f"  {key}: {value}")


def asserting() -> bool:
    """Assert the overhead targets? Only with SDEKIT_ASSERT_OVERHEAD=1: on a loaded machine they measure the load."""
    return os.environ.get("SDEKIT_ASSERT_OVERHEAD", "") not in ("", "0")


def _inference(run: Run, score: ScoreFn) -> object:
    with torch.inference_mode():
        return run(score)
