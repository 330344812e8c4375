"""State constraints in the solve loop (sdekit.constraints) and callbacks that replace the state.

Imputation replaces the known coordinates after every step by α(t) y + σ(t) z and returns y
there exactly. On data whose known and unknown coordinates are independent it leaves the
unknown coordinates' trajectory untouched (exact); on correlated data it is the SDE paper's
approximation, whose bias ``test_replacement_bias_on_correlated_data`` measures.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

import sdekit
from sdekit import VESDE, VPSDE
from sdekit.constraints import Imputation
from sdekit.solvers.grid_stepper import GridStepper
from sdekit.testing import Gaussian

F64 = torch.float64
MASK = torch.tensor([[True, False, True, False]])  # coordinates 0 and 2 known, shared by every sample


def independent() -> Gaussian:
    return Gaussian([1.0, -1.0, 0.5, 2.0], torch.diag(torch.tensor([0.3, 0.5, 0.2, 0.4], dtype=F64)))


def correlated() -> Gaussian:
    return Gaussian([0.0, 0.0], [[1.0, 0.9], [0.9, 1.0]])


Y = torch.tensor([[2.0, 0.0, -1.0, 0.0]], dtype=F64)

FIXED_GRID = [
    (sdekit.pc_sample, {"predictor": "reverse_diffusion", "corrector": "langevin", "steps": 30}),
    (sdekit.sample, {"method": "ancestral", "steps": 30}),
    (sdekit.sample, {"method": "euler_maruyama", "steps": 30}),
    (sdekit.sample, {"method": "dpmpp_2m_sde", "steps": 30}),
    (sdekit.ode_sample, {"method": "dpmpp_2m", "steps": 30}),
    (sdekit.ode_sample, {"method": "heun", "steps": 30}),
]


@pytest.mark.parametrize(("sampler", "options"), FIXED_GRID, ids=lambda v: getattr(v, "__name__", str(v)))
@pytest.mark.parametrize("denoise", [True, False])
def test_the_output_holds_y_exactly_on_the_mask(sampler, options, denoise):
    data, sde = independent(), VPSDE()
    x = sampler(sde, data.score(sde), shape=(5, 4), constraint=Imputation(sde, Y, MASK), denoise=denoise,
                generator=torch.Generator().manual_seed(0), dtype=F64, **options)  # fmt: skip
    assert torch.equal(x[:, [0, 2]], Y[:, [0, 2]].expand(5, 2))
    assert torch.isfinite(x).all()


@pytest.mark.parametrize("sde", [VPSDE(), VESDE(sigma_min=0.01, sigma_max=10.0)], ids=["vp", "ve"])
def test_independent_unknowns_follow_their_own_flow_exactly(sde):
    """The flow of independent coordinates does not see the known ones: with or without the constraint, equal."""
    data = independent()
    x_T = sde.prior_sample((6, 4), generator=torch.Generator().manual_seed(1), dtype=F64)
    free = sdekit.ode_sample(sde, data.score(sde), x_T=x_T, method="heun", steps=40, dtype=F64)
    constraint = Imputation(sde, Y, MASK)
    held = sdekit.ode_sample(sde, data.score(sde), x_T=x_T, method="heun", steps=40, dtype=F64,
                             constraint=constraint, generator=torch.Generator().manual_seed(2))  # fmt: skip
    torch.testing.assert_close(held[:, [1, 3]], free[:, [1, 3]], rtol=1e-12, atol=1e-12)
    assert (held[:, [0, 2]] - free[:, [0, 2]]).abs().max() > 0.1


def test_the_known_part_is_the_forward_kernel_draw_at_every_step():
    """After each step (seen by the callback) the known coordinates are α(t') y + σ(t') z, with t' the step's end."""
    data, sde = independent(), VPSDE()
    seen: list[tuple[float, Tensor]] = []
    sdekit.sample(sde, data.score(sde), shape=(4096, 4), method="euler_maruyama", steps=5, dtype=F64,
                  constraint=Imputation(sde, Y, MASK), generator=torch.Generator().manual_seed(3),
                  callback=lambda p: seen.append((p["t_next"], p["x"][:, [0, 2]].clone())))  # fmt: skip
    assert len(seen) == 5
    for t_next, known in seen:
        alpha, sigma = (float(v) for v in sde.kernel(torch.tensor([t_next], dtype=F64)))
        z = (known - alpha * Y[:, [0, 2]]) / sigma
        assert abs(float(z.mean())) < 5 / (2 * 4096) ** 0.5  # standard normal: mean 0, variance 1 (5 s.e.)
        assert abs(float(z.var()) - 1) < 5 * (2 / (2 * 4096)) ** 0.5


@pytest.mark.slow
def test_replacement_bias_on_correlated_data():
    """x ~ N(0, [[1, .9], [.9, 1]]), x₀ known = 1.5: exact x₁ | x₀ ~ N(1.35, 0.19). Replacement is pulled toward 0.

    Measured (VP, 16384 samples, ancestral 500 steps, seed 4): mean 0.939 and variance 0.302 instead
    of 1.35 and 0.19 — the method's known bias, stated in docs/guidance.md (standard errors 0.004 and
    0.003). The known coordinate is exact.
    """
    data, sde, n = correlated(), VPSDE(), 16384
    y, mask = torch.tensor([[1.5, 0.0]], dtype=F64), torch.tensor([[True, False]])
    x = sdekit.sample(sde, data.score(sde), shape=(n, 2), method="ancestral", steps=500, dtype=F64,
                      constraint=Imputation(sde, y, mask), generator=torch.Generator().manual_seed(4))  # fmt: skip
    assert torch.equal(x[:, 0], torch.full((n,), 1.5, dtype=F64))
    mean, var = float(x[:, 1].mean()), float(x[:, 1].var())
    print(f"replacement: mean {mean:.3f} (exact 1.350), variance {var:.3f} (exact 0.190)")
    assert 0.89 < mean < 0.99 and 0.27 < var < 0.35  # a regression pin of the measured bias (about ±12 s.e.)


def test_imputation_is_reproducible_from_the_samplers_generator_and_keeps_float32():
    data, sde = independent(), VPSDE()
    mask = MASK.float()  # a float mask of 0s and 1s works like a bool one

    def run(seed: int, dtype: torch.dtype) -> Tensor:
        constraint, generator = Imputation(sde, Y, mask), torch.Generator().manual_seed(seed)
        return sdekit.sample(sde, data.score(sde), shape=(4, 4), method="euler_maruyama", steps=10, dtype=dtype,
                             constraint=constraint, generator=generator)  # fmt: skip

    assert torch.equal(run(1, F64), run(1, F64)) and not torch.equal(run(1, F64), run(2, F64))
    x = run(1, torch.float32)
    assert x.dtype == torch.float32 and torch.equal(x[:, [0, 2]], Y[:, [0, 2]].float().expand(4, 2))


def test_the_start_is_projected_and_the_sde_must_match():
    data, sde = independent(), VPSDE()
    score = Recorder(data.score(sde))
    x_T = torch.full((3, 4), 100.0, dtype=F64)
    sdekit.ode_sample(sde, score, x_T=x_T, method="euler", steps=3, dtype=F64, constraint=Imputation(sde, Y, MASK),
                      generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert (score.inputs[0][:, [0, 2]].abs() < 10).all() and (score.inputs[0][:, [1, 3]] == 100).all()
    with pytest.raises(ValueError, match=r"the constraint was built for VPSDE.* but the sampler runs VESDE"):
        sdekit.ode_sample(VESDE(), data.score(VESDE()), shape=(3, 4), method="euler", steps=3,
                          constraint=Imputation(sde, Y, MASK))  # fmt: skip


# --- callbacks that return a state ------------------------------------------------------------------------------


class Recorder:
    def __init__(self, score):
        self.score, self.inputs = score, []

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        self.inputs.append(x.clone())
        return self.score(x, t)


def test_a_callback_that_returns_a_tensor_replaces_the_state():
    data, sde = independent(), VPSDE()
    score = Recorder(data.score(sde))
    replacement = torch.full((3, 4), 0.25, dtype=F64)

    def callback(payload):
        return replacement if payload["i"] == 2 else None

    sdekit.ode_sample(sde, score, shape=(3, 4), method="euler", steps=6, dtype=F64, callback=callback, denoise=False,
                      generator=torch.Generator().manual_seed(5))  # fmt: skip
    assert torch.equal(score.inputs[3], replacement)  # step 3 starts from the returned state
    assert not torch.equal(score.inputs[2], replacement)


def test_a_callback_returning_none_or_editing_in_place_keeps_working():
    data, sde = independent(), VPSDE()
    kwargs = {"shape": (3, 4), "method": "heun", "steps": 6, "dtype": F64}
    a = sdekit.ode_sample(sde, data.score(sde), generator=torch.Generator().manual_seed(6), **kwargs)
    b = sdekit.ode_sample(sde, data.score(sde), generator=torch.Generator().manual_seed(6), callback=lambda p: None,
                          **kwargs)  # fmt: skip
    assert torch.equal(a, b)

    def clamp(payload):
        payload["x"].clamp_(-0.1, 0.1)

    c = sdekit.ode_sample(sde, data.score(sde), generator=torch.Generator().manual_seed(6), callback=clamp, **kwargs)
    d = sdekit.ode_sample(sde, data.score(sde), generator=torch.Generator().manual_seed(6),
                          callback=lambda p: p["x"].clamp(-0.1, 0.1), **kwargs)  # fmt: skip
    assert torch.equal(c, d) and not torch.equal(a, c)


def test_a_callback_returning_anything_but_a_tensor_is_ignored_as_before():
    data, sde = independent(), VPSDE()
    kwargs = {"shape": (3, 4), "method": "heun", "steps": 4, "dtype": F64}
    a = sdekit.ode_sample(sde, data.score(sde), generator=torch.Generator().manual_seed(6), **kwargs)
    for callback in (lambda p: 1.0, lambda p: p, lambda p: p["i"], lambda p: True):
        b = sdekit.ode_sample(sde, data.score(sde), generator=torch.Generator().manual_seed(6), callback=callback,
                              **kwargs)  # fmt: skip
        assert torch.equal(a, b)
    sdekit.sample(sde, data.score(sde), shape=(3, 4), method="adaptive", callback=lambda p: True,
                  generator=torch.Generator().manual_seed(7))  # fmt: skip


def test_bad_callback_returns_are_refused():
    data, sde = independent(), VPSDE()
    kwargs = {"shape": (3, 4), "steps": 4, "generator": torch.Generator().manual_seed(7)}
    with pytest.raises(ValueError, match=r"callback returned a state of shape \(3, 2\)"):
        sdekit.ode_sample(sde, data.score(sde), method="euler", callback=lambda p: p["x"][:, :2], **kwargs)
    with pytest.raises(ValueError, match=r"callback returned a state of shape .*torch.float64"):
        sdekit.ode_sample(sde, data.score(sde), method="euler", callback=lambda p: p["x"].double(), **kwargs)
    with pytest.raises(
        FloatingPointError, match=r"non-finite state after step 0 of 4.*or a callback returned such a state"
    ):
        sdekit.ode_sample(sde, data.score(sde), method="euler", callback=lambda p: p["x"] * float("nan"), **kwargs)
    with pytest.raises(TypeError, match="callback returned a new state, which this method cannot take"):
        sdekit.sample(sde, data.score(sde), shape=(3, 4), method="adaptive", callback=lambda p: p["x"],
                      generator=torch.Generator().manual_seed(7))  # fmt: skip


def test_bad_constraints_are_refused_at_the_call():
    data, sde = independent(), VPSDE()
    score = data.score(sde)
    with pytest.raises(ValueError, match=r"mask must hold only 0 and 1"):
        Imputation(sde, Y, torch.tensor([[1.0, 0.5, 0.0, 0.0]]))
    with pytest.raises(ValueError, match=r"mask of shape \(3,\) does not broadcast with y of shape \(1, 4\)"):
        Imputation(sde, Y, torch.ones(3))
    with pytest.raises(ValueError, match="y must be finite"):
        Imputation(sde, torch.tensor([[float("nan"), 0.0, 0.0, 0.0]]), MASK)
    with pytest.raises(TypeError, match=r"sde must be a sdekit\.LinearSDE"):
        Imputation(object(), Y, MASK)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"y of shape \(1, 4\) does not broadcast to the samples' shape \(3, 2\)"):
        sdekit.ode_sample(sde, score, shape=(3, 2), method="euler", steps=3, constraint=Imputation(sde, Y, MASK))
    with pytest.raises(
        ValueError, match=r"mask of shape \(2, 3, 4\) does not broadcast to the samples' shape \(3, 4\)"
    ):
        sdekit.ode_sample(sde, score, shape=(3, 4), method="euler", steps=3,
                          constraint=Imputation(sde, Y, torch.ones(2, 3, 4, dtype=torch.bool)))  # fmt: skip
    with pytest.raises(TypeError, match="constraint is not an option of method 'dopri5' yet"):
        sdekit.ode_sample(sde, score, shape=(3, 4), method="dopri5", constraint=Imputation(sde, Y, MASK))
    with pytest.raises(ValueError, match=r"resample > 1 .* needs a fixed grid"):
        sdekit.sample(sde, score, shape=(3, 4), method="adaptive", constraint=Imputation(sde, Y, MASK, resample=2))
    with pytest.raises(TypeError, match="constraint must have check"):
        sdekit.ode_sample(sde, score, shape=(3, 4), method="euler", steps=3, constraint=lambda x: x)  # type: ignore[arg-type]


# --- colorisation: imputation in an orthonormal colour basis -------------------------------------------------


def test_the_colour_basis_is_orthonormal_with_grey_first():
    from sdekit.constraints import COLOR_BASIS, couple, decouple

    torch.testing.assert_close(COLOR_BASIS @ COLOR_BASIS.T, torch.eye(3, dtype=F64), rtol=0, atol=1e-15)
    x = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(8), dtype=F64)
    torch.testing.assert_close(couple(decouple(x)), x, rtol=0, atol=1e-14)
    u = decouple(x)
    torch.testing.assert_close(u[:, 0], x.sum(1) / 3**0.5, rtol=0, atol=1e-14)  # the grey channel, scaled
    grey = torch.rand(2, 1, 4, 5, generator=torch.Generator().manual_seed(9), dtype=F64).expand(2, 3, 4, 5)
    torch.testing.assert_close(decouple(grey)[:, 1:], torch.zeros(2, 2, 4, 5, dtype=F64), rtol=0, atol=1e-15)


def colour_gaussian() -> Gaussian:
    """Images (3, 2, 2) whose decoupled channels are independent: covariance Bᵀ diag(d) B."""
    from sdekit.constraints import COLOR_BASIS

    basis = torch.kron(COLOR_BASIS, torch.eye(4, dtype=F64))  # acts on the channel-major flattening
    d = torch.linspace(0.2, 0.6, 12, dtype=F64)
    mean = torch.linspace(-1.0, 1.0, 12, dtype=F64)
    return Gaussian(mean, basis.T @ torch.diag(d) @ basis, event_shape=(3, 2, 2))


def test_colorization_returns_the_grey_image_and_leaves_independent_colours_their_own_flow():
    from sdekit.constraints import decouple

    data, sde = colour_gaussian(), VPSDE()
    grey = torch.rand(5, 1, 2, 2, generator=torch.Generator().manual_seed(10), dtype=F64)
    x_T = sde.prior_sample((5, 3, 2, 2), generator=torch.Generator().manual_seed(11), dtype=F64)
    kwargs = {"x_T": x_T, "method": "heun", "steps": 40, "dtype": F64}
    held = sdekit.ode_sample(sde, data.score(sde), constraint=Imputation.colorization(sde, grey),
                             generator=torch.Generator().manual_seed(12), **kwargs)  # fmt: skip
    free = sdekit.ode_sample(sde, data.score(sde), **kwargs)
    torch.testing.assert_close(held.mean(1, keepdim=True), grey, rtol=0, atol=1e-12)
    torch.testing.assert_close(decouple(held)[:, 1:], decouple(free)[:, 1:], rtol=1e-10, atol=1e-10)


def test_bad_colorization_arguments_are_refused():
    from sdekit.constraints import COLOR_BASIS

    sde = VPSDE()
    with pytest.raises(ValueError, match=r"grey must be a tensor of shape \(B, 1, H, W\), got \(2, 3, 4, 4\)"):
        Imputation.colorization(sde, torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match="basis must be orthonormal"):
        Imputation(sde, torch.zeros(1, 3), torch.ones(1, 3, dtype=torch.bool), basis=2 * COLOR_BASIS)
    with pytest.raises(ValueError, match=r"basis must be a square"):
        Imputation(sde, torch.zeros(1, 3), torch.ones(1, 3, dtype=torch.bool), basis=torch.ones(3, 2))
    flat = Imputation(sde, torch.zeros(1, 12), torch.ones(1, 12), basis=COLOR_BASIS)
    with pytest.raises(ValueError, match=r"basis is \(3, 3\) but the samples have shape \(2, 12\)"):
        sdekit.ode_sample(sde, Gaussian(torch.zeros(12)).score(sde), shape=(2, 12), method="euler", steps=2,
                          constraint=flat)  # fmt: skip


# --------------------------------------------------------------------------- RePaint resampling


class Hold(GridStepper):
    """A method that leaves the state where it is: what remains of a run is the constraint and the re-noising."""

    def step(self, x: Tensor, i: int) -> Tensor:
        return x


def test_resampling_visits_each_block_r_times_and_restarts_the_method_on_it():
    """4 steps in blocks of 2, r = 3: steps 0 1 0 1 0 1 2 3 2 3 2 3, 3× the score calls, y held on the mask."""
    data, sde = independent(), VPSDE()
    seen: list[int] = []
    x, info = sdekit.sample(
        sde,
        data.score(sde),
        shape=(8, 4),
        method="euler_maruyama",
        steps=4,
        dtype=F64,
        constraint=Imputation(sde, Y, MASK, resample=3, jump_length=2),
        return_info=True,
        callback=lambda d: seen.append(d["i"]),
        generator=torch.Generator().manual_seed(0),
    )
    assert seen == [0, 1] * 3 + [2, 3] * 3
    assert info.steps == 12 and info.nfe == 12 + 1  # the final denoising is one more call
    assert torch.equal(x[:, [0, 2]], Y[:, [0, 2]].expand(8, 2))
    starts: list[int] = []

    class Counting(Hold):
        def bind(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            super().bind(*args, **kwargs)
            starts.append(self.steps)

    sdekit.sample(sde, data.score(sde), shape=(2, 4), method=Counting(), steps=5, denoise=False,
                  constraint=Imputation(sde, Y, MASK, resample=2, jump_length=2))  # fmt: skip
    assert starts == [5, 2, 2, 2, 2, 1, 1]  # the run's own start, then a fresh method per pass of each block


def test_resampling_noises_back_up_the_block_by_the_forward_transition_kernel():
    """With a method that holds the state, the unknown coordinate after r passes over one step t₁ → t₀ is
    x_T a^{r-1} + noise: a = α(t₁)/α(t₀), v = σ(t₁)² − a² σ(t₀)² per re-noising — exact moments."""
    sde, n, r = VPSDE(), 65536, 3
    grid = torch.tensor([0.3, 0.1], dtype=F64)  # a = 0.66, v = 0.56: a swapped t or a missing root shows
    alpha, sigma = sde.kernel(grid)
    a = float(alpha[0] / alpha[1])
    v = float(sigma[0] ** 2 - a**2 * sigma[1] ** 2)
    x_T = torch.full((n, 2), 2.0, dtype=F64)
    y, mask = torch.zeros(1, 2, dtype=F64), torch.tensor([[True, False]])
    x = sdekit.sample(
        sde,
        lambda x, t: torch.zeros_like(x),
        x_T=x_T,
        method=Hold(),
        grid=grid,
        denoise=False,
        constraint=Imputation(sde, y, mask, resample=r),
        generator=torch.Generator().manual_seed(1),
    )
    mean = 2.0 * a ** (r - 1)
    var = v * sum(a ** (2 * k) for k in range(r - 1))
    unknown = x[:, 1]
    assert abs(float(unknown.mean()) - mean) < 5 * (var / n) ** 0.5
    assert abs(float(unknown.var()) / var - 1) < 5 * (2 / n) ** 0.5
    assert torch.equal(x[:, 0], torch.zeros(n, dtype=F64))


def test_resample_one_is_the_plain_method_bit_for_bit():
    data, sde = correlated(), VPSDE()
    y, mask = torch.tensor([[1.5, 0.0]], dtype=F64), torch.tensor([[True, False]])

    def run(**options: int) -> Tensor:
        return sdekit.sample(
            sde,
            data.score(sde),
            shape=(64, 2),
            method="dpmpp_2m_sde",
            steps=12,
            dtype=F64,
            constraint=Imputation(sde, y, mask, **options),
            generator=torch.Generator().manual_seed(3),
        )

    assert torch.equal(run(), run(resample=1, jump_length=5))
    assert not torch.equal(run(), run(resample=2))


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_resampling_options_are_refused(bad):
    sde = VPSDE()
    for name in ("resample", "jump_length"):
        with pytest.raises(ValueError, match=name):
            Imputation(sde, Y, MASK, **{name: bad})


@pytest.mark.slow
def test_resampling_reduces_the_replacement_bias():
    """Same problem as the replacement test: ancestral 100 steps, RePaint r = 10, j = 10 (1000 steps in all).

    Measured (seed 4): mean 1.276, variance 0.188 against the exact 1.350 and 0.190 (replacement at
    500 steps: 0.939, 0.302). Resampling removes most of the bias of the mean and all of the variance's;
    a bias of −0.07 in the mean remains (18 s.e.).
    """
    data, sde, n = correlated(), VPSDE(), 16384
    y, mask = torch.tensor([[1.5, 0.0]], dtype=F64), torch.tensor([[True, False]])
    constraint = Imputation(sde, y, mask, resample=10, jump_length=10)
    x = sdekit.sample(sde, data.score(sde), shape=(n, 2), method="ancestral", steps=100, dtype=F64,
                      constraint=constraint, generator=torch.Generator().manual_seed(4))  # fmt: skip
    mean, var = float(x[:, 1].mean()), float(x[:, 1].var())
    print(f"RePaint r=10 j=10: mean {mean:.3f} (exact 1.350), variance {var:.3f} (exact 0.190)")
    assert 1.24 < mean < 1.31 and 0.17 < var < 0.21  # a regression pin of the measured figures (about ±8 s.e.)


# --------------------------------------------------------------------------- the adaptive SDE solver


def test_adaptive_sde_holds_each_samples_own_observation_through_the_active_set():
    """ρ = 0.9 Gaussian, x₀ known = +1.5 for a random half and −1.5 for the rest (per-sample y, shuffled).

    Samples finish at their own times and leave the active set; each must keep being imputed with its
    own y. Measured (4096 samples, seed 4): unknown-coordinate means +0.89 and −0.90 (the shared-y run:
    +0.88; replacement's bias, exact 1.35), so a misaligned y would pull both groups toward 0.
    """
    data, sde, n = correlated(), VPSDE(), 4096
    sign = torch.where(torch.rand(n, generator=torch.Generator().manual_seed(0)) < 0.5, 1.0, -1.0).double()
    y = torch.stack([1.5 * sign, torch.zeros(n, dtype=F64)], 1)
    seen: list[int] = []
    x = sdekit.sample(
        sde,
        data.score(sde),
        shape=(n, 2),
        method="adaptive",
        dtype=F64,
        constraint=Imputation(sde, y, torch.tensor([[True, False]])),
        generator=torch.Generator().manual_seed(4),
        callback=lambda d: seen.append(d["index"].numel()),
    )
    assert len(set(seen)) > 3  # the active set shrank several times
    assert torch.equal(x[:, 0], y[:, 0])
    up, down = x[sign > 0, 1], x[sign < 0, 1]
    se = (float(up.var()) / up.numel()) ** 0.5
    assert float(up.mean()) > 0.8 and float(down.mean()) < -0.8
    assert abs(float(up.mean()) + float(down.mean())) < 5 * 2**0.5 * se


def test_adaptive_sde_projects_accepted_samples_at_their_own_times():
    """A score of zero and VP: the known coordinate after each iteration is α(t_i) y + σ(t_i) z at each sample's t_i,
    so (x_k − α(t_i) y)/σ(t_i) is standard normal over samples and iterations (rejected ones keep theirs)."""
    sde, n = VPSDE(), 2048
    y = torch.full((1, 2), 3.0, dtype=F64)
    records: list[Tensor] = []

    def record(d):
        alpha, sigma = sde.kernel(d["t"])
        records.append(((d["x"][:, 0] - alpha * 3.0) / sigma)[d["accepted"]])

    sdekit.sample(sde, lambda x, t: -x, shape=(n, 2), method="adaptive", dtype=F64, denoise=False,
                  constraint=Imputation(sde, y, torch.tensor([[True, False]])), callback=record,
                  generator=torch.Generator().manual_seed(2))  # fmt: skip
    z = torch.cat(records)
    assert z.numel() > 10 * n
    assert abs(float(z.mean())) < 0.05 and abs(float(z.var()) - 1) < 0.05
