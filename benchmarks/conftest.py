"""Shared options and fixtures for ``pytest benchmarks --benchmark-only``.

Options and environment variables (all benchmarks):

* ``--runslow`` or ``SDEKIT_BENCH_FULL=1``: also run the cases marked ``slow`` (the full
  quality table: 1000-step samplers, extra tolerances, …). Without it they are skipped.
* ``SDEKIT_BENCH_DEVICES=cpu,cuda``: the devices to run on (default: ``cpu``, plus ``cuda``
  when available). Tests that take the ``device`` fixture run once per device.
* ``SDEKIT_BENCH_SAMPLES``: samples per quality case (default 16384, the size the floors
  in docs/benchmarks.md were measured at).
* ``SDEKIT_KEEP_FREED_MEMORY=0``: measure with glibc's default allocator settings. By default
  the session keeps freed host memory for reuse (:func:`sdekit.app.host_memory.keep_freed_memory`,
  as the command line does): otherwise page faults of freshly mapped buffers are up to half of
  a cheap score's time on CPU, and vary with what else the process allocated, so the overhead
  ratios would measure the allocator. The tables' header line says which setting was used.

Every benchmark that calls :func:`bench_table` adds one row to a Markdown table; the
tables are printed at the end of the session (also under ``-q`` and without ``-s``), so a
rerun on a quiet machine gives the text for docs/benchmarks.md directly.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
import torch

from sdekit.app.host_memory import keep_freed_memory
from sdekit.testing import GaussianMixture

_TABLES = pytest.StashKey[dict[str, tuple[str, list[str]]]]()
_KEPT = pytest.StashKey[bool]()


def _full_run(config: pytest.Config) -> bool:
    return bool(config.getoption("--runslow")) or os.environ.get("SDEKIT_BENCH_FULL", "") not in ("", "0")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sdekit benchmarks")
    group.addoption(
        "--runslow",
        action="store_true",
        default=False,
        help="also run the benchmark cases marked slow (full quality table); same as SDEKIT_BENCH_FULL=1",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: long benchmark case, run only with --runslow or SDEKIT_BENCH_FULL=1")
    config.stash[_TABLES] = {}
    config.stash[_KEPT] = keep_freed_memory()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _full_run(config):
        return
    skip = pytest.mark.skip(reason="slow benchmark case: pass --runslow or set SDEKIT_BENCH_FULL=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    tables = config.stash.get(_TABLES, {})
    if not tables:
        return
    threads = torch.get_num_threads()
    terminalreporter.section("sdekit benchmark tables")
    kept = "kept" if config.stash.get(_KEPT, False) else "returned to the system (glibc defaults)"
    terminalreporter.write_line(
        f"torch {torch.__version__}, {threads} threads, load average {_load()}, freed host memory {kept}"
    )
    for title, (header, rows) in tables.items():
        terminalreporter.write_line("")
        terminalreporter.write_line(f"### {title}")
        terminalreporter.write_line("")
        terminalreporter.write_line(header)
        terminalreporter.write_line("|" + "|".join("---" for _ in range(header.count("|") - 1)) + "|")
        for row in rows:
            terminalreporter.write_line(row)


def _load() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "n/a"


def _devices() -> list[str]:
    wanted = os.environ.get("SDEKIT_BENCH_DEVICES")
    available = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if not wanted:
        return available
    chosen = [name.strip() for name in wanted.split(",") if name.strip()]
    return [name for name in chosen if name in available]


@pytest.fixture(params=_devices())
def device(request: pytest.FixtureRequest) -> torch.device:
    """Each device the benchmarks run on (cpu, and cuda when available; see SDEKIT_BENCH_DEVICES)."""
    return torch.device(request.param)


@pytest.fixture(scope="session")
def mixture() -> GaussianMixture:
    """The standard oracle: 16-D, 8-mode Gaussian mixture. Session-wide, so the
    entropy and finite-sample floors (tens of seconds the first time) are computed once."""
    return GaussianMixture.random(dim=16, modes=8, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="session")
def num_samples() -> int:
    return int(os.environ.get("SDEKIT_BENCH_SAMPLES", "16384"))


@pytest.fixture
def bench_table(request: pytest.FixtureRequest) -> Callable[[str, str, str], None]:
    """``bench_table(title, header, row)``: print the row now and add it to the end-of-session table."""
    tables = request.config.stash[_TABLES]

    def add(title: str, header: str, row: str) -> None:
        tables.setdefault(title, (header, []))[1].append(row)
        print(f"\n{row}", flush=True)

    return add
