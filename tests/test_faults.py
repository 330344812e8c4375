"""Fault injection: SIGKILL at random moments and a real full disk, then resumption (bit-identical, no debris).

The hostile-input battery's loop, bounded: a real ``python -m sdekit sample`` killed ten times at
seeded random moments (during start-up, between chunks, while writing), rerun after each kill,
then finished; and a run on a tiny tmpfs that fills part-way (root only: it mounts one). After
each fault: every finished chunk kept, no half-written ``samples.npz``, and once finished the
same bytes as an uninterrupted run and no temporary file left.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sdekit.app import run
from sdekit.app.cli import main

GMM = ["--model", "gmm2d", "--method", "euler_maruyama", "--steps", "30", "--quiet", "--no-eval"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
COMMAND = [sys.executable, "-m", "sdekit", "sample", *GMM]

pytestmark = pytest.mark.slow


def debris(out: Path) -> list[Path]:
    return sorted(out.rglob("*.tmp"))


def _chunks(out: Path) -> int:
    return len(list((out / "chunks").glob("chunk-*.safetensors")))


def test_ten_sigkills_at_random_moments_resume_bit_identically(tmp_path: Path) -> None:
    """Each kill waits for a seeded 0–2 more finished chunks (0: during start-up), then a seeded few ms.

    The moments are set by the run's own progress, not by the clock: with about ten chunks
    still to go when the last kill lands, every run is killed part-way on a fast machine or a slow one.
    """
    args = ["-n", "600", "--chunk", "20"]  # 30 chunks
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert main(["sample", *GMM, *args, "--out", str(reference)]) == 0
    rng = random.Random(20261202)
    for _ in range(10):
        target = _chunks(killed) + rng.randint(0, 2)
        process = subprocess.Popen([*COMMAND, *args, "--out", str(killed)], env=ENV, stderr=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL)  # fmt: skip
        while _chunks(killed) < target and process.poll() is None:
            time.sleep(0.001)
        time.sleep(rng.uniform(0.0, 0.005))  # inside a chunk's sampling or its write
        assert process.poll() is None, f"the run finished before its kill (target {target} chunks)"
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        assert not (killed / run.SAMPLES_FILE).exists()  # never a half-written (or early) samples file
    subprocess.run([*COMMAND, *args, "--out", str(killed)], env=ENV, check=True, capture_output=True)
    assert (killed / run.SAMPLES_FILE).read_bytes() == (reference / run.SAMPLES_FILE).read_bytes()
    assert debris(killed) == []


@pytest.fixture()
def tiny_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A 256 KiB tmpfs (every file takes at least a 4 KiB page there), unmounted afterwards."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_real_full_disk_is_one_line_exit_1_and_resumes(tiny_disk: Path, tmp_path: Path) -> None:
    args = ["-n", "2000", "--chunk", "10"]  # 200 chunk files: 800 KiB of pages, 32 KB by the estimate
    reference, out = tmp_path / "reference", tiny_disk / "run"
    assert main(["sample", *GMM, *args, "--out", str(reference)]) == 0
    result = subprocess.run([*COMMAND, *args, "--out", str(out)], env=ENV, capture_output=True, text=True)
    err = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(err) == 1, result.stderr
    assert "the disk is full; finished chunks are kept: fix it, then rerun the same command" in err[0]
    kept = sorted((out / "chunks").glob("chunk-*.safetensors"))
    assert 0 < len(kept) < 200 and not (out / run.SAMPLES_FILE).exists()
    subprocess.run(["mount", "-o", "remount,size=8m", str(tiny_disk)], check=True)  # "free space"
    subprocess.run([*COMMAND, *args, "--out", str(out)], env=ENV, check=True, capture_output=True)
    assert (out / run.SAMPLES_FILE).read_bytes() == (reference / run.SAMPLES_FILE).read_bytes()
    assert debris(out) == []
