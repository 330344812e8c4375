"""Chunked runs (sdekit.app.run): reproducible for any chunk order and process count, atomic, resumable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from sdekit.app import cli, run
from sdekit.app.cli import main

GMM = ["--model", "gmm2d", "--method", "euler_maruyama", "--steps", "20", "--quiet", "--no-eval"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def sample(out: Path, *extra: str) -> int:
    return main(["sample", *GMM, "--out", str(out), *extra])


def npz_bytes(out: Path) -> bytes:
    return (out / run.SAMPLES_FILE).read_bytes()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted, in-order run of 300 samples in chunks of 64 (5 chunks, the last of 44)."""
    out = tmp_path_factory.mktemp("reference")
    assert sample(out, "--num-samples", "300", "--chunk", "64") == 0
    return out


def test_chunk_seeds_are_distinct_and_stable() -> None:
    seeds = {run.chunk_seed(0, k) for k in range(1000)} | {run.chunk_seed(1, k) for k in range(1000)}
    assert len(seeds) == 2000 and all(0 <= s < 2**63 for s in seeds)
    assert run.chunk_seed(3, 7) == run.chunk_seed(3, 7)
    assert run.chunk_sizes(300, 64) == [64, 64, 64, 64, 44]


def test_seeds_are_pinned_and_per_sample_seeds_never_meet_chunk_seeds() -> None:
    """The values are part of every run's reproducibility: a change of the derivation changes every sample
    (pinned: mutants of the word order or the shift gave other, equally distinct seeds and passed before)."""
    assert [run.chunk_seed(0, 0), run.chunk_seed(0, 1), run.chunk_seed(7, 3)] == [
        6375474604893067239, 8514611595815388268, 7443599362937997628,
    ]  # fmt: skip
    assert [run.sample_seed(0, 0), run.sample_seed(7, 3)] == [8069282889424829228, 8251062066923933128]
    chunks = {run.chunk_seed(s, k) for s in range(4) for k in range(256)}
    samples = {run.sample_seed(s, i) for s in range(4) for i in range(256)}
    assert len(chunks) == len(samples) == 1024 and not chunks & samples
    assert all(0 <= s < 2**63 for s in chunks | samples)


def test_on_chunk_hears_each_chunk_and_whether_it_was_computed(tmp_path: Path) -> None:
    config = run.RunConfig(model="m", method="x", num=5, chunk=2, seed=0, shape=[1])
    run.prepare_out(tmp_path, config, write=True)
    heard: list[tuple[int, bool]] = []
    sample_fn = lambda k, n, generator: torch.randn(n, 1, generator=generator)  # noqa: E731
    run.run_chunks(tmp_path, config, sample_fn, [0, 1], on_chunk=lambda k, new: heard.append((k, new)))
    run.run_chunks(tmp_path, config, sample_fn, [1, 2], on_chunk=lambda k, new: heard.append((k, new)))
    assert heard == [(0, True), (1, True), (1, False), (2, True)]


def test_layout(reference: Path) -> None:
    """The run writes run.json, one verified file per chunk, samples.npz in chunk order and grid.png."""
    config = run.RunConfig(**__import__("json").loads((reference / run.CONFIG_FILE).read_text()))
    assert config.num_chunks == 5 and config.options == {"steps": 20}
    assert sorted(p.name for p in (reference / "chunks").iterdir()) == [f"chunk-{k:05d}.safetensors" for k in range(5)]
    with np.load(reference / run.SAMPLES_FILE) as data:
        samples = data["samples"]
    assert samples.shape == (300, 2) and samples.dtype == np.float32
    chunks = torch.cat(list(run.iter_chunks(reference, config))).numpy()
    np.testing.assert_array_equal(samples, chunks)
    assert (reference / run.GRID_FILE).read_bytes()[:4] == b"\x89PNG"


def test_any_chunk_order_is_bit_identical(reference: Path, tmp_path: Path) -> None:
    """Computing the chunks in another order (as other ranks would) gives the same bytes."""
    config = run.RunConfig(**__import__("json").loads((reference / run.CONFIG_FILE).read_text()))
    run.prepare_out(tmp_path, config)
    from sdekit.app.models import gmm2d
    from sdekit.sampling import sample as sample_fn

    sde, score = gmm2d.load()

    def chunk(k: int, n: int, generator: torch.Generator) -> torch.Tensor:
        return sample_fn(sde, score, (n, 2), method="euler_maruyama", steps=20, generator=generator)  # type: ignore[return-value]

    assert run.run_chunks(tmp_path, config, chunk, [4, 2, 0]) == [4, 2, 0]
    assert run.run_chunks(tmp_path, config, chunk, range(5)) == [1, 3]
    run.write_samples(tmp_path, config, lambda x: x.numpy())
    assert npz_bytes(tmp_path) == npz_bytes(reference)


def test_rerun_skips_and_corrupt_chunks_are_recomputed(
    reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert sample(out, "--num-samples", "300", "--chunk", "64") == 0
    chunk1, chunk3 = run.chunk_path(out, 1), run.chunk_path(out, 3)
    chunk1.write_bytes(chunk1.read_bytes()[:100])  # truncated
    data = bytearray(chunk3.read_bytes())
    data[-5] ^= 0xFF  # one flipped byte in the samples
    chunk3.write_bytes(bytes(data))
    before = run.chunk_path(out, 0).stat().st_mtime_ns
    capsys.readouterr()
    assert sample(out, "--num-samples", "300", "--chunk", "64") == 0
    err = capsys.readouterr().err
    assert "chunk 1" in err and "unreadable" in err and "chunk 3" in err and "checksum" in err
    assert run.chunk_path(out, 0).stat().st_mtime_ns == before  # finished chunks are not redone
    assert npz_bytes(out) == npz_bytes(reference)


def test_different_configuration_is_refused(reference: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sample(reference, "--num-samples", "300", "--chunk", "64", "--seed", "1") == 2
    err = capsys.readouterr().err
    assert "different configuration" in err and "seed: 0 there, 1 now" in err and "Traceback" not in err


@pytest.mark.slow
def test_resume_after_sigkill_is_bit_identical(tmp_path: Path) -> None:
    """Kill a real `python -m sdekit sample` process with SIGKILL part-way, rerun, compare with an uninterrupted run."""
    args = ["--num-samples", "400", "--chunk", "20", "--steps", "40"]
    full, killed = tmp_path / "full", tmp_path / "killed"
    command = [sys.executable, "-m", "sdekit", "sample", *GMM, *args]
    process = subprocess.Popen([*command, "--out", str(killed)], env=ENV, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list((killed / "chunks").glob("chunk-*"))) < 3:
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done = len(list((killed / "chunks").glob("chunk-*")))
    assert 3 <= done < 20, f"the run was not killed part-way ({done} of 20 chunks)"
    assert not (killed / run.SAMPLES_FILE).exists()
    subprocess.run([*command, "--out", str(killed)], env=ENV, check=True, capture_output=True)
    assert sample(full, *args) == 0
    assert npz_bytes(killed) == npz_bytes(full)


@pytest.mark.slow
def test_torchrun_two_processes_is_bit_identical(reference: Path, tmp_path: Path) -> None:
    """`torchrun --nproc-per-node 2 -m sdekit sample` (gloo): chunks round-robin, rank 0 merges; same bytes."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    command += ["-m", "sdekit", "sample", *GMM, "-n", "300", "--chunk", "64", "--out", str(tmp_path)]
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert npz_bytes(tmp_path) == npz_bytes(reference)
    assert (tmp_path / run.GRID_FILE).exists()


def test_procs_removes_only_its_own_flag() -> None:
    from sdekit.app.cli import _without_procs

    assert _without_procs(["sample", "--procs", "2", "-n", "4", "--procs=3", "--out", "o"]) == [
        "sample", "-n", "4", "--out", "o"
    ]  # fmt: skip


@pytest.mark.slow
def test_procs_launches_workers_bit_identical_and_a_worker_error_is_one_line(reference: Path, tmp_path: Path) -> None:
    """`sdekit sample --procs 2` is torchrun's launcher without torchrun's report: same bytes; one line on error."""
    command = [sys.executable, "-m", "sdekit", "sample", *GMM, "-n", "300", "--chunk", "64", "--procs", "2"]
    result = subprocess.run([*command, "--out", str(tmp_path / "ok")], env=ENV, capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert npz_bytes(tmp_path / "ok") == npz_bytes(reference)
    result = subprocess.run([*command, "--option", "bogus=1", "--out", str(tmp_path / "bad")], env=ENV,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and "takes no option(s) bogus" in lines[0], result.stderr


# --- the default grid a run started with -------------------------------------------------------------------------


def _old_run(out: Path) -> run.RunConfig:
    """A run.json as written before ``default_grid`` existed (its runs used the uniform grid), with a chunk."""
    config = run.RunConfig(model="gmm2d", method="heun", num=8, chunk=4, seed=0, shape=[2])
    data = json.loads(json.dumps(config.__dict__))
    del data["default_grid"]
    (out / "chunks").mkdir(parents=True)
    (out / run.CONFIG_FILE).write_text(json.dumps(data))
    (out / "chunks" / "chunk-000000.safetensors").write_bytes(b"")
    return config


def test_a_run_started_before_the_log_snr_default_resumes_on_the_uniform_grid(tmp_path):
    old = _old_run(tmp_path)
    new = run.RunConfig(model="gmm2d", method="heun", num=8, chunk=4, seed=0, shape=[2], default_grid="log_snr")
    resumed = run.with_stored_default_grid(tmp_path, new)
    assert resumed.default_grid == "uniform"
    assert resumed.digest() == old.digest()  # the chunks it wrote still belong to it
    assert "default_grid" not in old.identity() and new.identity()["default_grid"] == "log_snr"
    assert new.digest() != old.digest()


def test_a_new_run_or_one_without_results_takes_the_new_default(tmp_path):
    new = run.RunConfig(model="gmm2d", method="heun", num=8, chunk=4, seed=0, shape=[2], default_grid="log_snr")
    assert run.with_stored_default_grid(tmp_path / "absent", new) is new
    _old_run(tmp_path)
    (tmp_path / "chunks" / "chunk-000000.safetensors").unlink()  # a run that failed before its first chunk
    assert run.with_stored_default_grid(tmp_path, new).default_grid == "log_snr"


def test_the_command_line_passes_the_uniform_grid_only_to_fixed_grid_methods_of_old_runs():
    assert cli._fixed_grid("heun") and cli._fixed_grid("pc") and cli._fixed_grid("ancestral")
    assert not cli._fixed_grid("adaptive") and not cli._fixed_grid("dopri5")


def _samples(out: Path) -> np.ndarray:
    with np.load(out / run.SAMPLES_FILE) as data:
        return data["samples"]


def test_a_new_run_samples_on_the_log_snr_grid_and_an_old_one_on_the_uniform_grid(tmp_path, monkeypatch):
    """The command line passes the grid a run started with: none (the library's log-SNR default) for a
    new run, ``grid="uniform"`` for one whose run.json predates the log-SNR default."""
    sample(tmp_path / "new")
    sample(tmp_path / "log_snr", "--grid", "log_snr")
    sample(tmp_path / "uniform", "--grid", "uniform")
    assert np.array_equal(_samples(tmp_path / "new"), _samples(tmp_path / "log_snr"))
    assert not np.allclose(_samples(tmp_path / "new"), _samples(tmp_path / "uniform"))
    assert json.loads((tmp_path / "new" / run.CONFIG_FILE).read_text())["default_grid"] == "log_snr"
    stored = run.with_stored_default_grid
    monkeypatch.setattr(run, "with_stored_default_grid", lambda out, c: stored(out, replace(c, default_grid="uniform")))
    sample(tmp_path / "old")  # as if resumed from a run.json without default_grid
    assert np.array_equal(_samples(tmp_path / "old"), _samples(tmp_path / "uniform"))
