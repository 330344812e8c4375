"""Run folders that cannot lie, and CLI faults that get one line (the hostile-input issue's battery).

CLI cases run twice (conftest's ``sdekit_cli``): in process for the fast tier and through a real
``python -m sdekit`` subprocess in the slow tier, whose exit status and exact stderr are what a user
sees. Each case asserts one line, the status (2 for the user's mistakes, 1 for the machine's faults) and that
nothing finished was lost.
"""

from __future__ import annotations

import errno
import fcntl
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sdekit.app import run
from sdekit.app.cli import _parser, main

from conftest import Cli, CliResult

GMM = ["--model", "gmm2d", "--method", "euler_maruyama", "--steps", "10", "--quiet", "--no-eval"]


def one_line(result: CliResult, status: int, message: str) -> None:
    err = result.err_lines
    assert result.returncode == status and len(err) == 1, (result.returncode, err)
    assert err[0].startswith("sdekit: error: ") and message in err[0], err


def snapshot(out: Path) -> dict[str, bytes]:
    """Every file of a run folder but the lock (which only says who holds the folder)."""
    files = (p for p in sorted(out.rglob("*")) if p.is_file() and p.name != run.LOCK_FILE)
    return {str(p.relative_to(out)): p.read_bytes() for p in files}


@pytest.fixture()
def finished(tmp_path: Path) -> Path:
    out = tmp_path / "run"
    assert main(["sample", *GMM, "-n", "40", "--chunk", "16", "--out", str(out)]) == 0
    return out


def test_a_second_process_on_a_folder_is_refused_naming_the_holder(sdekit_cli: Cli, finished: Path) -> None:
    before = snapshot(finished)
    with open(finished / run.LOCK_FILE, "r+") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        f.truncate(0)
        f.write("sdekit pid 4242 on somehost\n")
        f.flush()
        result = sdekit_cli("sample", *GMM, "-n", "40", "--chunk", "16", "--seed", "1", "--out", str(finished))
    one_line(result, 2, "is in use by sdekit pid 4242 on somehost; wait for it to finish, or choose another --out")
    assert snapshot(finished) == before


def test_debris_of_a_killed_run_is_removed_by_the_next(finished: Path) -> None:
    npz = (finished / run.SAMPLES_FILE).read_bytes()
    debris = [finished / ".samples.npz.999.tmp", finished / "chunks" / ".chunk-00001.safetensors.999.tmp"]
    for path in debris:
        path.write_bytes(b"half a file")
    assert main(["sample", *GMM, "-n", "40", "--chunk", "16", "--out", str(finished)]) == 0
    assert not any(p.exists() for p in debris)
    assert (finished / run.SAMPLES_FILE).read_bytes() == npz


def test_chunks_without_run_json_are_refused_not_overwritten(sdekit_cli: Cli, finished: Path) -> None:
    (finished / run.CONFIG_FILE).unlink()
    before = snapshot(finished)
    result = sdekit_cli("sample", *GMM, "-n", "40", "--chunk", "16", "--seed", "3", "--out", str(finished))
    one_line(result, 2, "holds chunks or samples but no run.json")
    assert snapshot(finished) == before


def test_samples_of_another_configuration_cannot_pass_as_this_one(sdekit_cli: Cli, finished: Path) -> None:
    """The battery's case: delete chunks/, rerun with another configuration; then forge run.json by hand."""
    for path in (finished / "chunks").iterdir():
        path.unlink()
    result = sdekit_cli("sample", *GMM, "-n", "40", "--chunk", "16", "--seed", "1", "--out", str(finished))
    one_line(result, 2, "holds a run with a different configuration (seed: 0 there, 1 now)")
    stored = json.loads((finished / run.CONFIG_FILE).read_text())
    (finished / run.CONFIG_FILE).write_text(json.dumps({**stored, "seed": 1}))
    result = sdekit_cli("eval", str(finished))
    one_line(result, 2, "was written by a run with another configuration than run.json says")


def test_samples_not_made_from_the_chunks_present_are_refused(sdekit_cli: Cli, finished: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    assert main(["sample", *GMM, "-n", "40", "--chunk", "16", "--steps", "11", "--out", str(other)]) == 0
    # same configuration digest, but chunks recomputed differently would not match: swap in foreign chunk 0
    config = run.read_config(finished / run.CONFIG_FILE)
    run.save_chunk(finished, config, 0, torch.zeros(16, 2))
    result = sdekit_cli("eval", str(finished))
    one_line(result, 2, "does not hold the chunks in")


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda out: (out / run.CONFIG_FILE).write_text("[1, 2, 3]"), "holds a JSON list, not a run configuration"),
        (lambda out: (out / run.CONFIG_FILE).write_text("{not json"), "is not valid JSON"),
        (lambda out: (out / run.CONFIG_FILE).write_text('{"model": "gmm2d"}'), "missing keys ['chunk', 'method'"),
        (lambda out: (out / run.SAMPLES_FILE).write_bytes((out / run.SAMPLES_FILE).read_bytes()[:300]),
         "is not a readable samples file"),
        (lambda out: np.savez(out / run.SAMPLES_FILE, samples=np.zeros((40, 2), np.float32)),
         "has no sdekit.json (written by another program or an older sdekit)"),
    ],
    ids=["run.json-list", "run.json-not-json", "run.json-missing-keys", "truncated-npz", "foreign-npz"],
)  # fmt: skip
def test_eval_faults_are_one_line(sdekit_cli: Cli, finished: Path, tamper, message: str) -> None:  # type: ignore[no-untyped-def]
    tamper(finished)
    result = sdekit_cli("eval", str(finished))
    one_line(result, 2, message)


def test_a_json_list_as_run_json_is_one_line_for_sample_too(sdekit_cli: Cli, finished: Path) -> None:
    (finished / run.CONFIG_FILE).write_text("[]")
    result = sdekit_cli("sample", *GMM, "-n", "40", "--chunk", "16", "--out", str(finished))
    one_line(result, 2, "holds a JSON list, not a run configuration")


def test_eval_of_a_good_run_prints_its_figures(sdekit_cli: Cli, finished: Path) -> None:
    result = sdekit_cli("eval", str(finished))
    assert result.returncode == 0 and "SW1" in result.stdout, result.stderr


BAD_MODELS = {
    "broken_syntax.py": "def model(:\n    pass\n",
    "wrong_shape.py": ("import sdekit\ndef model():\n    return sdekit.VPSDE(), lambda x, t: -x[:, :1]\n"),
}


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["--model", "broken_syntax:model", "--shape", "2"], 2,
         "cannot import module 'broken_syntax' (SyntaxError: invalid syntax"),
        (["--model", "wrong_shape:model", "--shape", "2"], 2,
         "--model 'wrong_shape:model': score returned shape (8, 1); it must match x's shape (8, 2)"),
        (["--model", "gmm2d", "--device", "meta"], 2, "--device 'meta': sdekit samples on cpu, cuda or mps"),
        (["--model", "gmm2d", "--device", "mps"], 2, "--device 'mps': MPS (Apple GPU) is not available"),
        (["--model", "gmm2d", "--method", "dopri5", "--dtype", "float16"], 2,
         "rtol=1e-05 is finer than a float16 state can resolve"),
        (["--model", "gmm2d", "--num-samples", str(10**12)], 2, "--num-samples 1000000000000 of shape (2,) needs"),
        (["--model", "gmm2d", "--method", "ancestral", "--steps", str(10**9)], 2,
         "steps=1000000000 would need about 2.0 TB of host memory"),
    ],
    ids=["syntax-error", "wrong-shape-score", "device-meta", "device-mps", "float16-dopri5", "num-beyond-disk",
         "steps-beyond-memory"],
)  # fmt: skip
def test_cli_faults_are_one_line(sdekit_cli: Cli, args: list[str], status: int, message: str, tmp_path: Path) -> None:
    if "mps" in args and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    for name, text in BAD_MODELS.items():
        (tmp_path / name).write_text(text)
    env = {"PYTHONPATH": str(tmp_path)}
    out = tmp_path / "out"
    result = sdekit_cli("sample", "-n", "8", "--quiet", "--no-eval", *args, "--out", str(out), env=env)
    one_line(result, status, message)
    assert not (out / "chunks").exists() or not any((out / "chunks").iterdir())


def test_weights_of_another_architecture_are_one_line(sdekit_cli: Cli, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from sdekit.app.models.digits import DigitClassifier

    path = tmp_path / "classifier.safetensors"
    save_file(DigitClassifier().state_dict(), str(path))
    result = sdekit_cli("sample", "--model", "digits", "-n", "2", "--weights", str(path), "--out", str(tmp_path / "o"))
    one_line(result, 2, "holds weights of another architecture than DigitsUNet")


def test_a_full_disk_is_exit_1_and_loses_nothing(
    finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunk writes that fail with ENOSPC after two succeed (simulated; a real tmpfs in test_faults.py).

    One line, status 1; the two finished chunks stay, no temporary file is left, and the rerun
    finishes with the same bytes as an uninterrupted run.
    """
    out, real, written = tmp_path / "full", Path.write_bytes, []

    def full(self: Path, data: bytes) -> int:
        if len(written) == 2:
            real(self, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(self)
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", full)
    code = main(["sample", *GMM, "-n", "40", "--chunk", "16", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "the disk is full; finished chunks are kept" in err[0], err
    monkeypatch.undo()
    assert sorted(p.name for p in (out / "chunks").iterdir()) == ["chunk-00000.safetensors", "chunk-00001.safetensors"]
    assert not list(out.rglob("*.tmp")) and not (out / run.SAMPLES_FILE).exists()
    assert main(["sample", *GMM, "-n", "40", "--chunk", "16", "--out", str(out)]) == 0
    assert (out / run.SAMPLES_FILE).read_bytes() == (finished / run.SAMPLES_FILE).read_bytes()


def _sample_flags() -> list[list[str]]:
    """Every option of ``sdekit sample`` as a user writes it, with a value where it takes one."""
    sample = next(a for a in _parser()._actions if isinstance(a, type(_parser()._subparsers._group_actions[0])))
    parser = sample.choices["sample"]
    flags = []
    for action in parser._actions:
        for flag in action.option_strings:
            if flag in ("-h", "--help"):
                continue
            flags.append([flag] if action.nargs == 0 else [flag, "1"])
            if action.nargs != 0 and flag.startswith("--"):
                flags.append([f"{flag}=1"])
    return flags


def test_every_sample_option_passes_torchrun_s_parser_untouched() -> None:
    """torchrun's parser prefix-matches its own options (``--num`` could be ``--numa-binding``); none may match."""
    from torch.distributed.run import get_args_parser

    flags = _sample_flags()
    assert ["--num-samples", "1"] in flags and len(flags) > 30
    for args in [*flags, ["eval", "runs/x"]]:
        tail = ["sample", *args] if args[0] != "eval" else args
        parsed = get_args_parser().parse_args(["--standalone", "--nproc-per-node", "2", "-m", "sdekit", *tail])
        assert parsed.training_script == "sdekit" and parsed.training_script_args == tail, args


def test_a_later_run_waits_for_ranks_still_writing(finished: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A rank that outlives rank 0 holds OUT/.ranks; a new run must not clean up under it."""
    mine = finished / ".chunk-00007.safetensors.31337.tmp"
    (finished / "chunks" / mine.name).write_bytes(b"being written")
    with open(finished / run.RANKS_FILE, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_SH)
        code = main(["sample", *GMM, "-n", "40", "--chunk", "16", "--out", str(finished)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [
        f"sdekit: error: processes of an earlier run in {str(finished)!r} are still writing; "
        "wait for them, or choose another --out"
    ]
    assert (finished / "chunks" / mine.name).exists()


def test_clean_up_removes_only_sdekit_s_temporary_files(finished: Path) -> None:
    theirs = [finished / ".notes.tmp", finished / ".samples.npz.draft.tmp", finished / "chunks" / ".mine.tmp"]
    for path in theirs:
        path.write_text("the user's")
    assert main(["sample", *GMM, "-n", "40", "--chunk", "16", "--out", str(finished)]) == 0
    assert all(path.read_text() == "the user's" for path in theirs)


def test_the_disk_estimate_is_chunks_plus_samples_less_what_is_already_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """100 float32 samples of shape (2,), 4 bytes a value in samples.npz: 100·2·(4 + 4) = 1600 bytes."""
    import shutil

    config = run.RunConfig(model="m", method="ancestral", num=100, chunk=50, seed=0, shape=[2])
    (tmp_path / "chunks").mkdir()
    free = {"bytes": 1600}
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(0, 0, free["bytes"]))  # type: ignore[attr-defined]
    run.check_space(tmp_path, config, 4)  # exactly fits
    free["bytes"] = 1599
    with pytest.raises(run.RunError, match=r"needs about 1.6 KB of disk .* 1.6 KB is free"):
        run.check_space(tmp_path, config, 4)
    (tmp_path / "chunks" / "chunk-00000.safetensors").write_bytes(b"x" * 10)  # a resume needs less
    run.check_space(tmp_path, config, 4)


@pytest.mark.parametrize(
    ("n", "text"), [(0, "0 B"), (999, "999 B"), (1000, "1.0 KB"), (2.048e9, "2.0 GB"), (3e15, "3000.0 TB")]
)
def test_format_bytes(n: float, text: str) -> None:
    from sdekit.checks import format_bytes

    assert format_bytes(n) == text


def test_small_requests_are_not_checked_and_the_threshold_is_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    import sdekit.checks as checks

    reads: list[int] = []
    monkeypatch.setattr(checks, "available_memory", lambda: reads.append(1) or 0)
    checks.check_fits("x", checks.UNCHECKED_BYTES - 1, "")
    assert reads == []  # below the threshold the kernel's figure is not even read
    with pytest.raises(checks.EstimateError, match=r"x would need about 67\.1 MB of host memory; 0 B is available"):
        checks.check_fits("x", checks.UNCHECKED_BYTES, "")


def test_per_sample_seeds_make_the_samples_independent_of_the_chunk_size(tmp_path: Path) -> None:
    def samples(chunk: int, *flags: str) -> np.ndarray:
        out = tmp_path / f"c{chunk}{''.join(flags)}"
        assert main(["sample", *GMM, "-n", "12", "--chunk", str(chunk), *flags, "--out", str(out)]) == 0
        with np.load(out / run.SAMPLES_FILE) as data:
            return data["samples"]

    # another chunking, the same samples up to float32 rounding (a row rounds by its position in the batch: 1e-6)
    per_sample = samples(4, "--per-sample-seeds")
    np.testing.assert_allclose(samples(5, "--per-sample-seeds"), per_sample, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(samples(12, "--per-sample-seeds"), per_sample, rtol=1e-5, atol=1e-5)
    assert not np.array_equal(samples(4), samples(5))  # seeded per chunk, the chunking is part of the result
    assert not np.array_equal(per_sample, samples(4))
    config = run.read_config(tmp_path / "c4--per-sample-seeds" / run.CONFIG_FILE)
    assert config.seeds == "sample" and run.read_config(tmp_path / "c4" / run.CONFIG_FILE).seeds == "chunk"
    assert "seeds" not in run.read_config(tmp_path / "c4" / run.CONFIG_FILE).identity()  # old digests hold


def test_per_sample_seeds_with_a_method_that_draws_for_the_batch_is_one_line(sdekit_cli: Cli, tmp_path: Path) -> None:
    """The method's own refusal (it knows it couples the batch), in the flag's words, before any chunk is written."""
    for method, words in [
        ("pc", "Langevin couples the samples of a batch"),
        ("torchsde:euler", "draws one Brownian path for the whole batch"),
    ]:
        out = tmp_path / method.replace(":", "_")
        result = sdekit_cli("sample", "--model", "gmm2d", "--method", method, "-n", "4", "--per-sample-seeds",
                            "--quiet", "--no-eval", "--out", str(out))  # fmt: skip
        one_line(result, 2, "--per-sample-seeds: ")
        assert words in result.err_lines[0]
        assert not (out / "chunks").exists() or not any((out / "chunks").iterdir())
