"""``sdekit sample --class/--guidance`` and ``--inpaint``: conditional runs of the digits model, and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sdekit.app.cli import main
from sdekit.app.conditioning import Condition, ConditionError, inpainting_panel, mask_of
from sdekit.app.models import digits
from sdekit.app.run import CONFIG_FILE, GRID_FILE, SAMPLES_FILE, RunConfig

FAST = ["--steps", "10", "--quiet"]


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_class_guidance_run_writes_samples_a_grid_and_its_figures(tmp_path: Path, capsys) -> None:
    out = tmp_path / "three"
    args = ["sample", "--model", "digits", "--class", "3", "--guidance", "2", "--method", "ancestral", *FAST]
    code, stdout, _ = run_cli([*args, "-n", "6", "--chunk", "4", "--out", str(out)], capsys)
    assert code == 0
    assert "class 3, classifier guidance w = 2" in stdout and "recognised as 3" in stdout
    assert "FD-digits of 6 samples against" in stdout
    config = json.loads((out / CONFIG_FILE).read_text())
    assert config["condition"] == {"label": 3, "guidance": 2.0}
    with np.load(out / SAMPLES_FILE) as data:
        assert data["samples"].shape == (6, 1, 8, 8) and data["samples"].dtype == np.uint8
    assert (out / GRID_FILE).read_bytes()[:4] == b"\x89PNG"
    code, stdout, _ = run_cli(["eval", str(out)], capsys)
    assert code == 0 and "recognised as 3" in stdout


def test_the_class_run_is_the_guided_sampler_on_each_chunk(tmp_path: Path, capsys) -> None:
    """Chunk 0 of the run equals ClassifierGuidance(score, noisy classifier, 3, w) sampled from the chunk's seed."""
    import sdekit
    from sdekit.app.run import chunk_seed
    from sdekit.guidance import ClassifierGuidance

    out = tmp_path / "run"
    code, _, _ = run_cli(["sample", "--model", "digits", "--class", "3", "--guidance", "1.5", "--method",
                          "ancestral", *FAST, "-n", "3", "--no-eval", "--out", str(out)], capsys)  # fmt: skip
    assert code == 0
    sde, score = digits.load()
    guide = ClassifierGuidance(score, digits.load_noisy_classifier(), torch.full((3,), 3), scale=1.5)
    x = sdekit.sample(sde, guide, (3, 1, 8, 8), method="ancestral", steps=10,
                      generator=torch.Generator().manual_seed(chunk_seed(0, 0)))  # fmt: skip
    with np.load(out / SAMPLES_FILE) as data:
        assert np.array_equal(data["samples"], digits.to_uint8(x).numpy())


def test_class_without_guidance_uses_the_documented_default(tmp_path: Path, capsys) -> None:
    from sdekit.app.cli import DEFAULT_GUIDANCE

    out = tmp_path / "seven"
    code, _, _ = run_cli(
        ["sample", "--class", "7", "--method", "ancestral", *FAST, "-n", "2", "--no-eval", "--out", str(out)], capsys
    )
    assert code == 0
    assert json.loads((out / CONFIG_FILE).read_text())["condition"] == {"label": 7, "guidance": DEFAULT_GUIDANCE}


def test_inpainting_run_holds_the_known_pixels_and_draws_the_panel(tmp_path: Path, capsys) -> None:
    out = tmp_path / "inpaint"
    code, stdout, _ = run_cli(
        ["sample", "--inpaint", "bottom", *FAST, "-n", "5", "--chunk", "3", "--out", str(out)], capsys
    )
    assert code == 0 and "with 'ancestral'" in stdout  # the default method of inpainting
    assert "known pixels equal to the originals" in stdout and "labels agree" in stdout
    real, _ = digits.load_data()
    with np.load(out / SAMPLES_FILE) as data:
        samples = data["samples"]
    originals = digits.to_uint8(real[:5]).numpy()
    assert np.array_equal(samples[:, :, :4], originals[:, :, :4])  # sample i completes real digit i, chunks too
    assert not np.array_equal(samples[:, :, 4:], originals[:, :, 4:])
    assert (out / GRID_FILE).read_bytes()[:4] == b"\x89PNG"


def test_inpainting_with_resampling_is_recorded_and_changes_the_completions(tmp_path: Path, capsys) -> None:
    plain, resampled = tmp_path / "plain", tmp_path / "resampled"
    common = ["sample", "--inpaint", "bottom", *FAST, "-n", "2", "--no-eval"]
    assert run_cli([*common, "--out", str(plain)], capsys)[0] == 0
    assert run_cli([*common, "--resample", "2", "--jump-length", "5", "--out", str(resampled)], capsys)[0] == 0
    condition = json.loads((resampled / CONFIG_FILE).read_text())["condition"]
    assert condition == {"inpaint": "bottom", "resample": 2, "jump_length": 5}
    with np.load(plain / SAMPLES_FILE) as a, np.load(resampled / SAMPLES_FILE) as b:
        assert not np.array_equal(a["samples"], b["samples"])


def test_a_resumed_run_refuses_another_condition(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    base = ["sample", "--method", "ancestral", *FAST, "-n", "2", "--no-eval", "--out", str(out)]
    assert run_cli([*base, "--class", "3"], capsys)[0] == 0
    code, _, err = run_cli([*base, "--class", "4"], capsys)
    assert code == 2 and "condition" in err


def test_an_unconditional_run_keeps_its_identity() -> None:
    """No condition: run.json's identity (and so every chunk digest) is what it was before conditions existed."""
    config = RunConfig(model="digits", method="adaptive", num=4, chunk=4, seed=0, shape=[1, 8, 8])
    assert "condition" not in config.identity()
    conditional = RunConfig(model="digits", method="adaptive", num=4, chunk=4, seed=0, shape=[1, 8, 8],
                            condition={"label": 3})  # fmt: skip
    assert conditional.identity()["condition"] == {"label": 3} and conditional.digest() != config.digest()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--class", "10"], "--class must be in 0..9"),
        (["--class", "-1"], "--class must be in 0..9"),
        (["--guidance", "2"], "--guidance needs --class"),
        (["--class", "3", "--guidance", "-1"], "--guidance must be a finite scale >= 0"),
        (["--class", "3", "--guidance", "nan"], "--guidance must be a finite scale >= 0"),
        (["--class", "3", "--inpaint", "bottom"], "cannot be combined"),
        (["--inpaint", "diagonal"], "unknown mask"),
        (["--inpaint", "bottom", "-n", "1798"], "1797"),
        (["--inpaint", "bottom", "--resample", "0"], "--resample and --jump-length must be >= 1"),
        (["--resample", "3"], "options of --inpaint"),
        (["--model", "gmm2d", "--class", "1"], "no noise-conditional classifier"),
        (["--model", "gmm2d", "--inpaint", "bottom"], "no data set"),
    ],
)
def test_bad_conditions_are_one_line_errors(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    code, _, err = run_cli(["sample", *FAST, "-n", "2", "--out", str(tmp_path / "x"), *args], capsys)
    assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_inpainting_with_an_adaptive_ode_method_is_refused_at_the_call(tmp_path: Path, capsys) -> None:
    code, _, err = run_cli(["sample", "--inpaint", "bottom", "--method", "dopri5", "--quiet", "-n", "2",
                            "--out", str(tmp_path / "x")], capsys)  # fmt: skip
    assert code == 2 and "constraint is not an option of method 'dopri5'" in err


def test_inpainting_with_the_adaptive_sde_solver(tmp_path: Path, capsys) -> None:
    out = tmp_path / "adaptive"
    code, stdout, _ = run_cli(["sample", "--inpaint", "top", "--method", "adaptive", "--quiet", "-n", "3",
                               "--out", str(out)], capsys)  # fmt: skip
    assert code == 0 and "known pixels equal to the originals" in stdout


def test_masks_name_the_redrawn_region() -> None:
    known = mask_of("bottom", (1, 8, 8))[0, 0]
    assert known[:4].all() and not known[4:].any()
    assert mask_of("top", (1, 8, 8))[0, 0, 4:].all() and not mask_of("top", (1, 8, 8))[0, 0, :4].any()
    assert mask_of("left", (1, 8, 8))[0, 0, :, 4:].all() and not mask_of("left", (1, 8, 8))[0, 0, :, :4].any()
    assert mask_of("right", (1, 8, 8))[0, 0, :, :4].all() and not mask_of("right", (1, 8, 8))[0, 0, :, 4:].any()
    center = ~mask_of("center", (1, 8, 8))[0, 0]
    assert center[2:6, 2:6].all() and int(center.sum()) == 16
    with pytest.raises(ConditionError, match="image model"):
        mask_of("bottom", (2,))


def test_the_panel_shows_originals_masked_and_completions_in_rows_of_eight() -> None:
    originals = np.full((10, 1, 8, 8), 200, np.uint8)
    completions = np.full((10, 1, 8, 8), 50, np.uint8)
    panel = inpainting_panel(originals, mask_of("bottom", (1, 8, 8)), completions)
    assert panel.shape == (48, 1, 8, 8)  # two rows of 8 originals | 8 masked | 8 completions
    assert (panel[:8] == 200).all() and (panel[16:24] == 50).all()
    assert (panel[8:16, :, :4] == 200).all() and (panel[8:16, :, 4:] == 128).all()
    assert (panel[24 + 2 : 24 + 8] == 96).all()  # the second row's missing originals are padding


def test_condition_json_round_trip_and_the_empty_condition() -> None:
    assert Condition().to_json() == {} and not Condition().active
    condition = Condition(inpaint="top", resample=3, jump_length=2)
    assert Condition.from_json(condition.to_json()) == condition
