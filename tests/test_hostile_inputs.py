"""Hostile but fair inputs get a clear answer (part of the battery of the hostile-input issue).

Each case: a fault a user can make, and the one-line error (or correct behaviour) it must get.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import sdekit.checks
from sdekit import (
    VPSDE,
    ScoreError,
    cosine_alphas_cumprod,
    linear_betas,
    log_likelihood,
    ode_sample,
    pc_sample,
    sample,
    uniform_dequantize,
)
from sdekit.app.cli import main

from conftest import Cli, gaussian_score


class Changing:
    """A score that behaves for its first ``good`` calls and then returns ``bad(x)``."""

    def __init__(self, bad, good: int = 1) -> None:  # type: ignore[no-untyped-def]
        self.score, self.bad, self.good, self.calls = gaussian_score(VPSDE()), bad, good, 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.score(x, t) if self.calls <= self.good else self.bad(self.score(x, t))


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        (lambda s: s[:, :1], ScoreError, r"score returned shape \(4, 1\); it must match x's shape \(4, 3\)"),
        (lambda s: s.double(), ScoreError, "score returned dtype torch.float64; it must match x's dtype torch.float32"),
    ],
    ids=["broadcastable-shape", "dtype"],
)
@pytest.mark.parametrize("method", ["ancestral", "adaptive", "dopri5", "heun"])
def test_a_score_that_changes_its_output_after_the_first_call_is_caught(bad, error, message, method) -> None:  # type: ignore[no-untyped-def]
    score = Changing(bad, good=2)
    sampler = ode_sample if method in ("dopri5", "heun") else sample
    steps = {} if method in ("adaptive", "dopri5") else {"steps": 5}  # the adaptive methods choose their own
    with pytest.raises(error, match=message):
        sampler(VPSDE(), score, (4, 3), method=method, generator=torch.Generator().manual_seed(0), **steps)
    assert score.calls == 3  # refused at the first bad call, not at the end


@pytest.mark.parametrize("schedule", [linear_betas, cosine_alphas_cumprod])
@pytest.mark.parametrize("count", [0, -3])
def test_an_empty_schedule_is_refused(schedule, count) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="num_timesteps"):
        schedule(count)


def test_dequantising_nan_is_refused() -> None:
    x = torch.tensor([[0.0, float("nan")]])
    with pytest.raises(ValueError, match="x must be finite"):
        uniform_dequantize(x, generator=torch.Generator().manual_seed(0))


def test_an_empty_out_folder_name_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code = main(
        ["sample", "--model", "gmm2d", "--num-samples", "4", "--steps", "3", "--quiet", "--no-eval", "--out", ""]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.strip().splitlines() == [
        "sdekit: error: --out '': give the output folder a name, e.g. --out runs/digits (or leave --out out)"
    ]
    assert list(tmp_path.iterdir()) == []  # nothing written into the current folder


INTERRUPTING_MODEL = """
import sdekit
from sdekit.testing import GaussianMixture

def model():
    sde = sdekit.VPSDE()
    exact = GaussianMixture.random(dim=2, modes=2).score(sde)
    calls = []

    def score(x, t):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt  # what Ctrl-C raises in the main thread
        return exact(x, t)

    return sde, score
"""


def test_ctrl_c_is_one_line_and_exit_status_130(sdekit_cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "interrupting.py").write_text(INTERRUPTING_MODEL)
    args = ["sample", "--model", "interrupting:model", "--shape", "2", "--method", "ancestral", "--steps", "20",
            "--num-samples", "8", "--quiet", "--no-eval", "--out", str(tmp_path / "run")]  # fmt: skip
    result = sdekit_cli(*args, env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 130, result.stderr
    assert result.stderr.strip().splitlines() == ["sdekit: interrupted; rerun the same command to resume"]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda s: sample(VPSDE(), s, (4, 2), method="adaptive", steps=5), TypeError,
         "steps is not an option of method 'adaptive': it chooses its own steps"),
        (lambda s: ode_sample(VPSDE(), s, (4, 2), method="dopri5", steps=50), TypeError,
         "steps is not an option of method 'dopri5'"),
        (lambda s: sample(VPSDE(), s, (4, 2), method="ancestral", steps=-5), ValueError, "steps must be"),
        (lambda s: sample(VPSDE(), s, (4, 2), method="ancestral", steps=2.5), TypeError, "steps must be"),
        (lambda s: sample(VPSDE(), s, (4, 2), method="ancestral", denoise="no"), TypeError,
         "denoise must be a bool, got str 'no'"),
    ],
    ids=["adaptive-steps", "dopri5-steps", "negative-steps", "float-steps", "denoise-string"],
)  # fmt: skip
def test_arguments_a_method_would_ignore_or_misread_are_refused(call, error, message) -> None:  # type: ignore[no-untyped-def]
    calls = []

    def score(x, t):  # type: ignore[no-untyped-def]
        calls.append(1)
        return -x

    with pytest.raises(error, match=message):
        call(score)
    assert calls == []  # refused before any work


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--option", "denoise=no"], "--option denoise: use --no-denoise"),
        (["--option", "return_info=True"], "--option return_info: the command records the run's information itself"),
        (["--steps", "5", "--option", "steps=7"], "--option steps: given twice (also as --steps); give it once"),
        (["--method", "adaptive", "--steps", "5"], "steps is not an option of method 'adaptive'"),
    ],
)
def test_cli_options_that_would_be_misread_are_one_line(
    options: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "sample",
        "--model",
        "gmm2d",
        "--num-samples",
        "4",
        "--quiet",
        "--no-eval",
        "--out",
        str(tmp_path / "r"),
        *options,
    ]
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err


def test_a_score_error_is_still_a_value_and_a_type_error() -> None:
    """Code written before ScoreError existed caught ValueError (shape, device) or TypeError (dtype, type)."""
    assert issubclass(ScoreError, ValueError) and issubclass(ScoreError, TypeError)


def _counting(limit: int = 10**6) -> tuple[list[int], object]:
    calls: list[int] = []

    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if len(calls) > limit:
            raise RuntimeError(f"more than {limit} score calls: time stopped advancing")
        return -x

    return calls, score


NAN_X_T = torch.tensor([[0.0, 1.0], [float("nan"), 0.0], [0.5, 0.5]])


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda s: ode_sample(VPSDE(), s, (4,), method="dopri5"), ValueError,
         r"event of at least one dimension, got \(4,\); for scalar data use shape=\(4, 1\)"),
        (lambda s: ode_sample(VPSDE(), s, (4,), method="bosh3"), ValueError, r"for scalar data use shape=\(4, 1\)"),
        (lambda s: pc_sample(VPSDE(), s, (4,), steps=5), ValueError, r"for scalar data use shape=\(4, 1\)"),
        (lambda s: sample(VPSDE(), s, (4,), method="adaptive"), ValueError, r"for scalar data use shape=\(4, 1\)"),
        (lambda s: sample(VPSDE(), s, (4, 2), method="ancestral", steps=5, generator=np.random.default_rng(0)),
         TypeError, r"generator must be a torch.Generator, a list of one per sample \(generators or int seeds\) or "
         "None, got numpy.random._generator.Generator"),
        (lambda s: log_likelihood(VPSDE(), s, torch.zeros(3, 2), divergence="hutchinson_gaussian",
                                  generator=np.random.default_rng(0)), TypeError, "generator must be a torch"),
        (lambda s: sample(VPSDE(), s, method="ancestral", steps=5, x_T=NAN_X_T), ValueError,
         r"x_T must be finite; sample 1 \(of 3\) contains NaN or Inf"),
        (lambda s: ode_sample(VPSDE(), s, method="dopri5", x_T=NAN_X_T), ValueError, "x_T must be finite; sample 1"),
        (lambda s: sample(VPSDE(), s, (4, 2), method="ancestral", steps=5, device="meta"), ValueError,
         "device 'meta' holds no data"),
        (lambda s: sample(VPSDE(), s, method="ancestral", steps=5, x_T=torch.zeros(3, 2, device="meta")), ValueError,
         "x_T is on device 'meta'"),
        (lambda s: sample(VPSDE(), s, (4, 2), method="ancestral", steps=10**9), MemoryError,
         r"steps=1000000000 would need about 2.0 TB of host memory; .* is available: use fewer steps"),
    ],
    ids=["scalar-event-dopri5", "scalar-event-bosh3", "scalar-event-langevin", "scalar-event-adaptive",
         "numpy-generator", "numpy-generator-likelihood", "nan-x_T", "nan-x_T-dopri5", "meta-device", "meta-x_T",
         "steps-beyond-memory"],
)  # fmt: skip
def test_inputs_refused_at_the_call_before_any_work(call, error, message) -> None:  # type: ignore[no-untyped-def]
    calls, score = _counting()
    with pytest.raises(error, match=message):
        call(score)
    assert calls == []


def test_steps_that_do_not_fit_are_refused_with_the_estimate(monkeypatch: pytest.MonkeyPatch) -> None:
    """The estimate is BYTES_PER_STEP a step against what the kernel reports available."""
    monkeypatch.setattr(sdekit.checks, "available_memory", lambda: 10**9)
    calls, score = _counting()
    with pytest.raises(MemoryError, match=r"steps=1000000 would need about 2.0 GB of host memory; 1.0 GB is available"):
        sample(VPSDE(), score, (2, 2), method="ancestral", steps=10**6)
    x = sample(VPSDE(), score, (2, 2), method="ancestral", steps=400)  # well within: runs
    assert x.shape == (2, 2) and len(calls) == 401


@pytest.mark.parametrize("divergence", ["exact", "hutchinson_rademacher"])
def test_a_likelihood_score_without_a_gradient_path_is_refused(divergence: str) -> None:
    """A detached score would make the flow's divergence that of a constant: silently wrong log-densities."""
    with pytest.raises(ScoreError, match="no gradient path to x"):
        log_likelihood(VPSDE(), lambda x, t: (-x).detach(), torch.zeros(3, 2), divergence=divergence,
                       generator=torch.Generator().manual_seed(0))  # fmt: skip


@pytest.mark.parametrize("method", ["euler", "milstein", pytest.param("srk", marks=pytest.mark.slow)])  # srk: 2.5 s
def test_torchsde_in_bfloat16_finishes_at_the_default_steps(method: str) -> None:
    """In bfloat16, t + 0.001 rounds back to t near t = 0.5: time must be kept in float64, or sdeint never ends."""
    per_step = {"euler": 1, "milstein": 1, "srk": 10}[method]
    _, score = _counting(limit=per_step * 1003 + 1)
    x = sample(VPSDE(), score, (2, 2), method=f"torchsde:{method}", dtype=torch.bfloat16, steps=1000,
               generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert x.dtype == torch.bfloat16 and bool(torch.isfinite(x).all())


@pytest.mark.parametrize("adapter", ["ddpm.EpsilonScore", "x0.DataScore", "v.VelocityScore"])
def test_prediction_adapters_refuse_the_noise_free_time(adapter: str) -> None:
    """At t = 0 a VP SDE has σ = 0: the x0 and v conversions divide by it (they returned NaN)."""
    import importlib

    module, name = adapter.split(".")
    cls = getattr(importlib.import_module(f"sdekit.adapters.{module}"), name)
    score = cls(lambda x, t: torch.zeros_like(x), VPSDE())
    with pytest.raises(ValueError, match=f"{name}: t = 0 is noise level σ = 0"):
        score(torch.ones(3, 2), torch.tensor([0.5, 0.0, 0.2]))
    assert bool(torch.isfinite(score(torch.ones(3, 2), torch.full((3,), 1e-3))).all())


def test_float32_keeps_fine_tolerances() -> None:
    """The resolution check is for half precision: float32 at rtol 1e-6 (a usual likelihood setting) runs."""
    x = ode_sample(VPSDE(), lambda x, t: -x, (2, 2), method="dopri5", rtol=1e-6, atol=1e-6,
                   generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert bool(torch.isfinite(x).all())
    logp = log_likelihood(VPSDE(), lambda x, t: -x, torch.zeros(2, 2), rtol=1e-6, atol=1e-6)
    assert bool(torch.isfinite(logp).all())


@pytest.mark.parametrize(("dtype", "finest"), [(torch.float16, 10 * 2.0**-10), (torch.bfloat16, 10 * 2.0**-7)])
def test_the_half_precision_rtol_floor_is_ten_eps(dtype: torch.dtype, finest: float) -> None:
    from sdekit.solvers import solve_ivp_batched

    y0 = torch.ones(2, 2, dtype=dtype)
    with pytest.raises(ValueError, match=f"rtol={finest * 0.99:g} is finer than a {str(dtype)[6:]} state"):
        solve_ivp_batched(lambda t, y: -y, y0, 0.0, 1.0, rtol=finest * 0.99, atol=1e-2)
    y, _ = solve_ivp_batched(lambda t, y: -y, y0, 0.0, 1.0, rtol=finest, atol=1e-2)
    assert y.dtype == dtype and abs(float(y[0, 0]) - 0.3679) < 0.02
