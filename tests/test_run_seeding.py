"""The run engine's chunks are independent: chunk k draws its noise from a generator seeded by (seed, k).

A chunk seeded without k repeats chunk 0 (and the last, shorter chunk repeats its first rows), so a
300-sample run would hold only 108 distinct rows: these tests look at the rows themselves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sdekit.app import run
from sdekit.app.cli import main

EVENT = 3


def config(num: int, chunk: int, seed: int) -> run.RunConfig:
    return run.RunConfig(model="noise", method="randn", num=num, chunk=chunk, seed=seed, shape=[EVENT], dtype="float64")


class NoiseSampler:
    """``sample_fn`` of a run whose samples are its generator's draws; records each chunk's generator seed."""

    def __init__(self) -> None:
        self.seeds: dict[int, int] = {}

    def __call__(self, k: int, n: int, generator: torch.Generator) -> torch.Tensor:
        self.seeds[k] = generator.initial_seed()
        return torch.randn(n, EVENT, generator=generator, dtype=torch.float64)


def run_all(out: Path, cfg: run.RunConfig, chunks=None) -> tuple[list[torch.Tensor], NoiseSampler]:
    sampler = NoiseSampler()
    run.prepare_out(out, cfg)
    run.run_chunks(out, cfg, sampler, range(cfg.num_chunks) if chunks is None else chunks)
    return list(run.iter_chunks(out, cfg)), sampler


def distinct_rows(x: torch.Tensor) -> int:
    return torch.unique(x, dim=0).shape[0]


def test_every_chunk_is_drawn_from_the_generator_of_seed_and_k(tmp_path: Path) -> None:
    """Chunk k is exactly randn from Generator().manual_seed(chunk_seed(seed, k)); no row repeats anywhere."""
    cfg = config(num=300, chunk=64, seed=5)
    chunks, sampler = run_all(tmp_path, cfg)
    assert [len(c) for c in chunks] == [64, 64, 64, 64, 44]
    assert sampler.seeds == {k: run.chunk_seed(5, k) for k in range(5)}
    for k, chunk in enumerate(chunks):
        generator = torch.Generator().manual_seed(run.chunk_seed(5, k))
        assert torch.equal(chunk, torch.randn(len(chunk), EVENT, generator=generator, dtype=torch.float64)), k
    samples = torch.cat(chunks)
    assert distinct_rows(samples) == 300
    for k in range(1, 5):  # chunk k is not chunk 0, nor its first rows (the last chunk is shorter)
        assert not torch.equal(chunks[k], chunks[0][: len(chunks[k])]), k


def test_another_seed_gives_other_chunks_and_a_chunk_does_not_depend_on_the_others(tmp_path: Path) -> None:
    """Seeds 0 and 1 share no row; chunk 3 computed alone (as another rank would) equals chunk 3 of the full run."""
    first, _ = run_all(tmp_path / "a", config(num=100, chunk=25, seed=0))
    other, _ = run_all(tmp_path / "b", config(num=100, chunk=25, seed=1))
    both = torch.cat([*first, *other])
    assert distinct_rows(both) == 200
    cfg = config(num=100, chunk=25, seed=0)
    run.prepare_out(tmp_path / "c", cfg)
    sampler = NoiseSampler()
    assert run.run_chunks(tmp_path / "c", cfg, sampler, [3]) == [3]
    assert sampler.seeds == {3: run.chunk_seed(0, 3)}
    assert torch.equal(run.load_chunk(tmp_path / "c", cfg, 3), first[3])


def test_cli_run_holds_distinct_samples(tmp_path: Path) -> None:
    """``sdekit sample`` end to end: 60 samples in 4 chunks of 16 (the last of 12) are 60 different rows."""
    args = ["sample", "--model", "gmm2d", "--method", "euler_maruyama", "--steps", "2", "--quiet", "--no-eval"]
    threads = torch.get_num_threads()
    try:
        assert main([*args, "--num-samples", "60", "--chunk", "16", "--out", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(threads)  # the command sets its --threads for the whole process
    with np.load(tmp_path / run.SAMPLES_FILE) as data:
        samples = torch.from_numpy(data["samples"])
    assert samples.shape == (60, 2)
    assert distinct_rows(samples) == 60
    assert not torch.equal(samples[16:32], samples[:16]) and not torch.equal(samples[48:], samples[:12])
