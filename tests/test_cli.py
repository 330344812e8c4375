"""The command line: sample / eval / info / demo, and clear one-line errors (exit 2, no traceback) for bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sdekit.app.cli import main
from sdekit.app.run import GRID_FILE, SAMPLES_FILE

FAST = ["--method", "euler_maruyama", "--steps", "10", "--quiet", "--no-eval"]

USER_MODULE = """
import sdekit
from sdekit.testing import GaussianMixture

def good():
    sde = sdekit.VPSDE()
    return sde, GaussianMixture.random(dim=3, modes=2).score(sde)

def wrong():
    return 42

def broken():
    raise RuntimeError("no GPU here")

not_callable = 3
"""


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "my_sde_models.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_sde_models"


def test_digits_sample_and_eval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The real path: UNet weights (safetensors) -> adapters.ddpm -> discrete VP SDE -> sampler; uint8 images."""
    out = tmp_path / "digits"
    code, stdout, _ = run_cli(
        ["sample", "--model", "digits", *FAST, "--num-samples", "12", "--chunk", "8", "--out", str(out)], capsys
    )
    assert code == 0 and str(out / GRID_FILE) in stdout
    with np.load(out / SAMPLES_FILE) as data:
        samples = data["samples"]
    assert samples.shape == (12, 1, 8, 8) and samples.dtype == np.uint8
    assert (out / GRID_FILE).read_bytes()[:4] == b"\x89PNG"
    code, stdout, _ = run_cli(["eval", "--run", str(out)], capsys)
    assert code == 0 and "FD-digits" in stdout and "two halves" in stdout


@pytest.mark.parametrize("method", ["pc", "heun", "adaptive", "dopri5"])
def test_methods_and_options_reach_the_samplers(
    method: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = {
        "pc": ["--steps", "5", "--snr", "0.1", "--predictor", "euler_maruyama"],
        "heun": ["--steps", "4"],
        "adaptive": ["--rtol", "0.2", "--atol", "0.05"],
        "dopri5": ["--rtol", "1e-2", "--atol", "1e-2"],
    }[method]
    args = ["sample", "--model", "gmm2d", "--method", method, *options, "--num-samples", "20", "--quiet", "--no-eval"]
    code, _, err = run_cli([*args, "--out", str(tmp_path)], capsys)
    assert code == 0, err
    assert np.isfinite(np.load(tmp_path / SAMPLES_FILE)["samples"]).all()


def test_user_model(user_module: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "sample",
        "--model",
        f"{user_module}:good",
        "--shape",
        "3",
        *FAST,
        "--num-samples",
        "5",
        "--out",
        str(tmp_path),
    ]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    assert np.load(tmp_path / SAMPLES_FILE)["samples"].shape == (5, 3)


def test_info_lists_models_samplers_adapters(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["info"], capsys)
    assert code == 0
    for name in ("digits", "gmm2d", "adaptive", "pc", "ancestral", "heun", "dopri5", "ddpm", "ncsn"):
        assert f"  {name} " in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "nope"], "unknown model 'nope'; valid: digits, gmm2d"),
        (["--model", "gmm2d", "--method", "nope"], "unknown method 'nope'; valid: adaptive, ancestral"),
        (["--model", "gmm2d", "--num-samples", "0"], "--num-samples and --chunk must be >= 1"),
        (["--model", "gmm2d", "--num-samples", "-3"], "--num-samples and --chunk must be >= 1"),
        (["--model", "gmm2d", "--chunk", "0"], "--num-samples and --chunk must be >= 1"),
        (["--model", "no_such_module_xyz:make"], "cannot import module 'no_such_module_xyz'"),
        (["--model", "{mod}:missing"], "has no attribute 'missing'"),
        (["--model", "{mod}:not_callable"], "is not callable"),
        (["--model", "{mod}:wrong", "--shape", "2"], "must return (sde, score)"),
        (["--model", "{mod}:broken", "--shape", "2"], "raised RuntimeError: no GPU here"),
        (["--model", "{mod}:good"], "give the event shape with --shape"),
        (["--model", "gmm2d", "--option", "bogus=1"], "rejected the options"),
        (["--model", "gmm2d", "--weights", "x.safetensors"], "takes no weights file"),
    ],
)
def test_bad_input_is_one_clear_line(
    args: list[str], message: str, user_module: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [a.replace("{mod}", user_module) for a in args]
    code, _, err = run_cli(["sample", *FAST[2:], *args, "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and message in err and "Traceback" not in err, err


def test_unwritable_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code, _, err = run_cli(["sample", "--model", "gmm2d", *FAST, "--out", str(blocker / "out")], capsys)
    assert code == 2 and "cannot write to output folder" in err


class NotWeights:
    pass


def test_weights_that_are_not_safe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    garbage, pickled = tmp_path / "w.safetensors", tmp_path / "w.pt"
    garbage.write_bytes(b"\x00" * 64)
    torch.save({"weight": NotWeights()}, pickled)
    for path, message in ((garbage, "not a valid safetensors file"), (pickled, "weights_only=True")):
        args = ["sample", "--model", "digits", *FAST, "--weights", str(path), "--out", str(tmp_path / path.suffix)]
        code, _, err = run_cli(args, capsys)
        assert code == 2 and message in err and "Traceback" not in err, err


@pytest.mark.slow
def test_module_entry_point_exit_status(tmp_path: Path) -> None:
    """`python -m sdekit` itself: a user error exits 2 with one line, no traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "sdekit", "sample", "--model", "nope", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert (
        result.returncode == 2
        and result.stderr.startswith("sdekit: error: unknown model")
        and "Traceback" not in result.stderr
    )


def test_no_command_means_sample_and_gmm2d_eval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sdekit --model gmm2d ...` is `sdekit sample ...`; `eval` reports the mixture metrics (floors stubbed: slow)."""
    code, out, _ = run_cli(["--model", "gmm2d", *FAST, "--num-samples", "10", "--out", str(tmp_path)], capsys)
    assert code == 0 and "10 samples of 'gmm2d'" in out
    monkeypatch.setattr("sdekit.app.cli.evaluate", lambda x, mixture: f"report on {tuple(x.shape)}")
    code, out, _ = run_cli(["eval", "--run", str(tmp_path)], capsys)
    assert code == 0 and "report on (10, 2)" in out


def test_eval_of_a_folder_that_is_not_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["eval", "--run", str(tmp_path)], capsys)
    assert code == 2 and "is not a finished run" in err


def test_user_weights_as_pt_state_dict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A plain .pt state dict a user names loads through torch.load(weights_only=True) and gives the same samples."""
    from sdekit.app.models import digits, load_weights

    pt = tmp_path / "unet.pt"
    torch.save(load_weights(digits.weights_path(digits.UNET_FILE)), pt)
    runs = {}
    for name, extra in (("shipped", []), ("pt", ["--weights", str(pt)])):
        args = ["sample", "--model", "digits", *FAST, "--num-samples", "4", "--out", str(tmp_path / name), *extra]
        assert run_cli(args, capsys)[0] == 0
        runs[name] = np.load(tmp_path / name / SAMPLES_FILE)["samples"]
    np.testing.assert_array_equal(runs["shipped"], runs["pt"])


def _every_listed_choice() -> list[tuple[str, str]]:
    from sdekit.app.cli import flag_choices

    return [(flag, name) for flag, names in flag_choices().items() for name in names]


@pytest.mark.parametrize(("flag", "name"), _every_listed_choice())
def test_every_name_the_help_lists_runs(
    flag: str, name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI's choices come from the registries; each one it lists must run (a short, loose run)."""
    base = {"method": [], "predictor": ["--method", "pc"], "corrector": ["--method", "pc"],
            "grid": ["--method", "euler_maruyama"], "backend": ["--method", "dopri5"]}[flag]  # fmt: skip
    from sdekit.solvers.adaptive_ode import TABLEAUS

    adaptive = flag == "backend" or name in ("adaptive", *TABLEAUS)  # they choose their own steps
    step_control = ["--rtol", "0.2", "--atol", "0.05"] if adaptive else ["--steps", "3"]
    args = ["sample", "--model", "gmm2d", *base, f"--{flag}", name, *step_control]
    code, _, err = run_cli([*args, "--num-samples", "8", "--quiet", "--no-eval", "--out", str(tmp_path)], capsys)
    assert code == 0, err
    assert np.isfinite(np.load(tmp_path / SAMPLES_FILE)["samples"]).all()


def test_the_help_lists_the_registries(capsys: pytest.CaptureFixture[str]) -> None:
    from sdekit.grids import GRIDS
    from sdekit.solvers import CORRECTORS, PREDICTORS

    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for names in (PREDICTORS.names(), CORRECTORS.names(), sorted(GRIDS)):
        assert ", ".join(names) in text
    assert "ald" not in text.split() and "logsnr" not in text  # listed once, never registered ("karras" now is)
