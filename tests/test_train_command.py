"""Training recipes (every loss on a continuous-time score) and the ``sdekit train`` command.

The slow test trains the 2-D MLP by multi-level sliced score matching and samples it with NCSN's
annealed Langevin dynamics and with the reverse SDE. The command tests run ``sdekit train``
through conftest's ``sdekit_cli`` (in process for the fast tier, and in a subprocess in the slow
tier): exit status, one-line errors; and a SIGKILL mid-run (slow) whose resume ends with the same
weights, bit for bit, as an uninterrupted run.
"""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from sdekit import sample
from sdekit.adapters import ncsn
from sdekit.app.train import (
    LOSSES,
    ImageScore,
    ScoreMLP,
    at_levels,
    level_times,
    recipe,
    train_score_model,
)
from sdekit.sde import VESDE, DiscreteVPSDE
from sdekit.testing import GaussianMixture, mode_weight_tv

from conftest import Cli, CliResult, sdekit_subprocess


def g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- recipes: the label maps are exact --------------------------------------------------------------------------


def test_level_times_hit_every_level_of_the_ve_sde():
    plan = recipe("ssm", sigma_max=20.0, sigma_min=0.01, levels=7)
    assert isinstance(plan.sde, VESDE) and plan.sigmas is not None
    assert float(plan.sigmas[0]) == pytest.approx(20.0, rel=1e-14) and float(plan.sigmas[-1]) == pytest.approx(0.01)
    torch.testing.assert_close(plan.sde.std(level_times(plan.sigmas)), plan.sigmas, rtol=1e-13, atol=0)
    seen = []
    score = at_levels(lambda x, t: (seen.append(t), x)[1], plan.sigmas)
    score(torch.zeros(3, 2), torch.tensor([0, 3, 6]))
    torch.testing.assert_close(seen[0].double(), level_times(plan.sigmas)[[0, 3, 6]].float().double())
    assert float(seen[0][0]) == 1.0 and float(seen[0][2]) == 0.0


def test_ddpm_recipe_calls_the_score_at_the_trained_level():
    """ε = −σ_i·s(x, t_i) with t_i = (i + 1)/N: for the exact ε the DDPM loss is its known value."""
    plan = recipe("ddpm", timesteps=50)
    assert isinstance(plan.sde, DiscreteVPSDE) and plan.sde.num_timesteps == 50
    index = torch.arange(50)
    _, sigma = plan.sde.level_kernel(index)
    torch.testing.assert_close(plan.sde.std((index + 1).double() / 50), sigma, rtol=1e-13, atol=0)
    x0 = torch.randn(64, 3, generator=g(0), dtype=torch.float64)

    class NoiseOracle(torch.nn.Module):  # the score whose ε is the noise that was added: the loss is exactly 0
        def forward(self, x, t):
            alpha, sigma = plan.sde.kernel(t.double())
            return -(x - alpha[:, None] * x0) / sigma[:, None] ** 2

    assert float(plan.loss(NoiseOracle(), x0, g(1))) == pytest.approx(0.0, abs=1e-20)


@pytest.mark.parametrize("name", LOSSES)
def test_every_recipe_trains_a_few_steps_and_lowers_its_loss(name):
    plan = recipe(name, sigma_max=10.0, levels=8)
    mixture = GaussianMixture.random(dim=2, modes=4, generator=g(0))
    torch.manual_seed(0)
    model = ScoreMLP(plan.sde, dim=2, hidden=32, depth=2, data_std=3.0)
    result = train_score_model(model, plan.sde, lambda n, gen: mixture.sample(n, generator=gen), steps=150,
                               batch_size=256, loss=plan.loss, generator=g(1))  # fmt: skip
    first, last = sum(result.losses[:20]) / 20, sum(result.losses[-20:]) / 20
    assert math.isfinite(last) and last < first, (first, last)


def test_each_recipe_is_its_loss_on_its_levels():
    """recipe(name).loss(model, x0, g) is the library's loss called directly on the recipe's SDE and levels."""
    from sdekit import dsm_loss, ism_loss, smld_loss, ssm_loss
    from sdekit.losses import NoiseLevels

    x0 = torch.randn(32, 2, generator=g(0), dtype=torch.float64)
    for name in ("dsm", "smld", "ssm", "ism"):
        plan = recipe(name, sigma_max=10.0, sigma_min=0.05, levels=6)
        torch.manual_seed(0)
        model = ScoreMLP(plan.sde, dim=2, hidden=16, depth=2).double()
        if name == "dsm":
            direct = dsm_loss(plan.sde, model, x0, eps=1e-5, generator=g(1))
        else:
            assert plan.sigmas is not None
            levels = torch.logspace(1.0, math.log10(0.05), 6, dtype=torch.float64)
            torch.testing.assert_close(plan.sigmas, levels, rtol=1e-14, atol=0)  # largest first
            score, noise = plan.at_levels(model), NoiseLevels(levels)
            if name == "smld":
                direct = smld_loss(score, levels, x0, generator=g(1))
            elif name == "ssm":
                direct = ssm_loss(score, x0, noise=noise, variance_reduced=True, generator=g(1))
            else:
                direct = ism_loss(score, x0, noise=noise, generator=g(1))
        assert torch.equal(plan.loss(model, x0, g(1)), direct), name
    plan = recipe("ssm", sigma_max=10.0, sigma_min=0.05, levels=6, projections=3)  # the projections reach the loss
    torch.manual_seed(0)
    model = ScoreMLP(plan.sde, dim=2, hidden=16, depth=2).double()
    three = ssm_loss(plan.at_levels(model), x0, noise=NoiseLevels(plan.sigmas), n_projections=3, variance_reduced=True,
                     generator=g(1))  # fmt: skip
    assert torch.equal(plan.loss(model, x0, g(1)), three)


def test_image_score_preconditions_an_eps_network():
    sde = recipe("dsm").sde
    seen = {}

    def network(x, label):
        seen["x"], seen["label"] = x, label
        return torch.ones_like(x)

    score = ImageScore(_Wrap(network), sde, data_std=0.5)
    x, t = torch.full((2, 1, 2, 2), 2.0), torch.tensor([0.5, 0.5])
    out = score(x, t)
    alpha, sigma = sde.kernel(t.double())
    torch.testing.assert_close(out, (-1 / sigma).float()[:, None, None, None].expand_as(x))
    torch.testing.assert_close(seen["x"], x * (alpha**2 * 0.25 + sigma**2).rsqrt().float()[:, None, None, None])
    torch.testing.assert_close(seen["label"], torch.tensor([499.5, 499.5]))


class _Wrap(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x, label):
        return self.fn(x, label)


# --- the quality check: sliced score matching, multi-level, on the 2-D mixture -------------------------------


N_QUALITY = 16384


@pytest.mark.slow
def test_sliced_score_matching_learns_the_mixture():
    """10 000 Adam steps of multi-level SSM-VR (about 50 s on 2 CPU cores), then ALD and the reverse SDE: TV ≤ 0.05."""
    mixture = GaussianMixture.random(dim=2, modes=8, generator=g(0))
    plan = recipe("ssm", sigma_max=20.0, sigma_min=0.01, levels=32)
    torch.manual_seed(0)
    model = ScoreMLP(plan.sde, dim=2, data_std=5.0)
    result = train_score_model(model, plan.sde, lambda n, gen: mixture.sample(n, generator=gen), steps=10_000,
                               loss=plan.loss, generator=g(1))  # fmt: skip
    assert plan.sigmas is not None
    with torch.no_grad():  # 16 384 samples: mode TV's own sampling noise (sd ≈ 0.002) well below the bar
        reverse = sample(plan.sde, result.ema, shape=(N_QUALITY, 2), method="euler_maruyama", steps=500,
                         generator=g(2))  # fmt: skip
        langevin = ncsn.annealed_langevin_sample(
            plan.at_levels(result.ema), plan.sigmas, shape=(N_QUALITY, 2), steps_each=100, step_lr=2e-5, denoise=True,
            x_init=20.0 * torch.randn(N_QUALITY, 2, generator=g(3)), generator=g(4),
        )  # fmt: skip
    tv_reverse, tv_langevin = mode_weight_tv(reverse, mixture), mode_weight_tv(langevin, mixture)
    print(
        f"\nSSM, {result.steps} steps in {result.seconds:.1f} s: TV reverse SDE {tv_reverse:.4f}, ALD {tv_langevin:.4f}"
    )
    assert tv_reverse <= 0.05 and tv_langevin <= 0.05


# --- the command ------------------------------------------------------------------------------------------------


def train(cli: Cli, *args: str, cwd: Path) -> CliResult:
    return cli("train", "--quiet", *args, cwd=cwd)


FAST = ["--loss", "ssm", "--batch-size", "64", "--levels", "8"]


def test_train_command_trains_samples_and_evaluates(sdekit_cli, tmp_path):
    result = train(sdekit_cli, *FAST, "--train-steps", "60", "-n", "256", "--steps", "50", "--out", "a", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "trained gmm2d with 'ssm'" in result.stdout and "TV" in result.stdout
    assert sorted(p.name for p in (tmp_path / "a").iterdir() if not p.name.startswith(".")) == [
        "checkpoint.safetensors", "samples.npz", "train.json",
    ]  # fmt: skip
    again = train(sdekit_cli, *FAST, "--train-steps", "60", "-n", "256", "--steps", "50", "--out", "a", cwd=tmp_path)
    assert again.returncode == 0 and "60 steps\n" in again.stdout  # finished: nothing trained again


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--loss", "sliced"], "unknown --loss 'sliced'; valid: ddpm, dsm, ism, smld, ssm"),
        (["--data", "cifar"], "unknown --data 'cifar'; valid: digits, gmm2d"),
        (["--train-steps", "0"], "--train-steps must be >= 1, got 0"),
        (["--projections", "0"], "--projections must be >= 1"),
        (["--loss", "ssm", "--sigma-min", "30"], "--sigma-min 30.0 must be below the largest level"),
        (["--lr", "nan"], "--lr must be a finite number > 0"),
        (["--ema-decay", "1"], "--ema-decay must lie in (0, 1)"),
        (["--method", "nope"], "unknown method 'nope'; valid: adaptive"),
    ],
)
def test_train_command_bad_input_is_one_line(sdekit_cli, tmp_path, args, words):
    result = train(sdekit_cli, *args, "--out", "x", cwd=tmp_path)
    assert result.returncode == 2
    assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_train_command_refuses_a_folder_with_other_settings(sdekit_cli, tmp_path):
    assert train(sdekit_cli, *FAST, "--train-steps", "5", "-n", "0", "--out", "a", cwd=tmp_path).returncode == 0
    result = train(sdekit_cli, *FAST, "--train-steps", "5", "-n", "0", "--lr", "1e-3", "--out", "a", cwd=tmp_path)
    assert result.returncode == 2 and "holds a training run with other settings (lr)" in result.stderr
    resample = train(sdekit_cli, *FAST, "--train-steps", "5", "-n", "16", "--steps", "10", "--out", "a", cwd=tmp_path)
    assert resample.returncode == 0 and "samples:" in resample.stdout  # sampling options may change
    no_levels = train(sdekit_cli, "--loss", "dsm", "--sigma-min", "30", "--levels", "1", "--train-steps", "2",
                      "-n", "0", "--out", "b", cwd=tmp_path)  # fmt: skip
    assert no_levels.returncode == 0, no_levels.stderr  # level options do not apply to dsm


def _step(path: Path) -> int:
    try:
        with safe_open(str(path), framework="pt") as handle:
            return int((handle.metadata() or {}).get("step", 0))
    except (OSError, ValueError, RuntimeError):  # not written yet
        return 0


@pytest.mark.slow
def test_train_resumed_after_sigkill_ends_with_the_same_weights(tmp_path):
    args = [*FAST, "--train-steps", "1500", "--checkpoint-every", "25", "-n", "0"]
    reference = train(sdekit_subprocess, *args, "--out", "reference", cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr
    command = [sys.executable, "-m", "sdekit", "train", "--quiet", *args, "--out", "killed"]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = tmp_path / "killed" / "checkpoint.safetensors"
    deadline = time.monotonic() + 300
    while _step(checkpoint) < 300 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = _step(checkpoint)
    assert 300 <= killed_at < 1500, f"the run was not killed mid-way (checkpoint at step {killed_at})"
    resumed = train(sdekit_subprocess, *args, "--out", "killed", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"1500 steps, {1500 - killed_at} in this run" in resumed.stdout
    mine, theirs = load_file(str(checkpoint)), load_file(str(tmp_path / "reference" / "checkpoint.safetensors"))
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[key], theirs[key]) for key in theirs)


def test_train_command_on_digits_runs(sdekit_cli, tmp_path):
    result = train(sdekit_cli, "--data", "digits", "--loss", "ddpm", "--train-steps", "2", "--batch-size", "8",
                   "-n", "0", "--out", "d", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "trained digits with 'ddpm'" in result.stdout
