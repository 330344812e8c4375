"""Fixed-grid steps, the final denoising and the discrete DDPM levels against formulas written out by hand.

Every expected value here is computed in float64 from the closed forms of the forward SDEs and the steps with plain
Python arithmetic (math.exp, math.sqrt), never through sdekit's schedule methods: a step's coefficient,
a level's index or the time of the final denoising that drifts from the formula fails a test at 1e-10.
The noise is known: a sampler given ``x_T`` draws only the steps' noise, one ``randn`` of the state's
shape per step, from the generator passed in, so the same seed reproduces it here.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import pytest
import torch

from sdekit import VESDE, VPSDE, SubVPSDE, ode_sample, pc_sample, sample
from sdekit.losses import ddpm_loss
from sdekit.sde import DiscreteVPSDE, LinearSDE

F64 = torch.float64
SHAPE = (6, 2, 3)  # an image-like event: the steps broadcast for any event shape


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def per_sample(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, *[1] * (x.ndim - 1))


def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A known score, non-linear in t (a step that evaluates it at the wrong time shows)."""
    tt = per_sample(t, x)
    return -(x - 0.3 * tt) / (0.5 + tt)


# --- hand-written schedules ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """α(t), σ(t), f(t), g(t)² of one forward SDE, as Python floats."""

    kind: str  # "vp", "subvp", "ve" or "discrete"
    sde: LinearSDE
    beta_min: float = 0.0
    beta_max: float = 0.0
    sigma_min: float = 0.0
    sigma_max: float = 0.0
    abar: tuple[float, ...] = ()  # ᾱ_0 = 1, ᾱ_1 … ᾱ_N for the discrete schedule

    def beta(self, t: float) -> float:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def alpha(self, t: float) -> float:
        if self.kind == "ve":
            return 1.0
        if self.kind == "discrete":
            n = len(self.abar) - 1
            i = round(t * n)
            assert abs(i - t * n) < 1e-9, "discrete steps are taken at the trained levels t = i/N"
            return math.sqrt(self.abar[i])
        return math.exp(-0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min)

    def sigma(self, t: float) -> float:
        if self.kind == "ve":
            return self.sigma_min * (self.sigma_max / self.sigma_min) ** t
        if self.kind == "subvp":
            return 1 - self.alpha(t) ** 2
        return math.sqrt(1 - self.alpha(t) ** 2)

    def f(self, t: float) -> float:
        return 0.0 if self.kind == "ve" else -0.5 * self.beta(t)

    def g2(self, t: float) -> float:
        if self.kind == "ve":
            return self.sigma(t) ** 2 * 2 * math.log(self.sigma_max / self.sigma_min)
        if self.kind == "subvp":
            return self.beta(t) * (1 - self.alpha(t) ** 4)
        return self.beta(t)


BETAS = 0.02 + 0.3 * torch.rand(10, generator=gen(7), dtype=F64)  # a random 10-step DDPM schedule, large β
ABAR = torch.cumprod(1 - BETAS, 0)  # ᾱ_i = ∏_{j≤i}(1 − β_j), computed here, not by sdekit

SCHEDULES = {
    "vp": Schedule("vp", VPSDE(0.1, 20.0), beta_min=0.1, beta_max=20.0),
    "subvp": Schedule("subvp", SubVPSDE(0.3, 12.0), beta_min=0.3, beta_max=12.0),
    "ve": Schedule("ve", VESDE(0.02, 8.0), sigma_min=0.02, sigma_max=8.0),
    "discrete": Schedule("discrete", VPSDE.from_betas(BETAS), abar=(1.0, *ABAR.tolist())),
}
#: Two steps per grid; the discrete grid sits on trained levels 10 → 7 → 6 (a skipped level, then one β_i).
GRIDS = {
    "vp": (0.9, 0.55, 0.2),
    "subvp": (0.95, 0.6, 0.25),
    "ve": (1.0, 0.6, 0.3),
    "discrete": (1.0, 0.7, 0.6),
}


# --- the predictors' steps -------------------------------------------------------------------------------------------


def euler_maruyama(sch: Schedule, x, s, z, t: float, t_next: float):
    """x' = x − h[f x − g² s] + g √h z."""
    h = t - t_next
    return x - h * (sch.f(t) * x - sch.g2(t) * s) + math.sqrt(sch.g2(t) * h) * z


def reverse_diffusion(sch: Schedule, x, s, z, t: float, t_next: float):
    """Reverse the forward chain x_t = x_t' + f_i + G_i z: x' = x − f_i + G_i² s + G_i z."""
    if sch.kind in ("vp", "discrete"):  # DDPM's chain with the step's own β = 1 − ᾱ(t)/ᾱ(t')
        beta = 1 - sch.alpha(t) ** 2 / sch.alpha(t_next) ** 2
        return x - (math.sqrt(1 - beta) - 1) * x + beta * s + math.sqrt(beta) * z
    if sch.kind == "ve":  # SMLD's chain: f_i = 0, G_i² = σ² − σ'²
        v = sch.sigma(t) ** 2 - sch.sigma(t_next) ** 2
        return x + v * s + math.sqrt(v) * z
    h = t - t_next  # sub-VP: the Euler–Maruyama chain, f_i = f h x, G_i = g √h
    return x - sch.f(t) * h * x + sch.g2(t) * h * s + math.sqrt(sch.g2(t) * h) * z


def ancestral(sch: Schedule, x, s, z, t: float, t_next: float):
    """The Gaussian posterior of x_t' given x_t with x_0 estimated through the score."""
    if sch.kind in ("vp", "discrete"):
        abar, abar_next = sch.alpha(t) ** 2, sch.alpha(t_next) ** 2
        beta = 1 - abar / abar_next
        posterior_var = beta * (1 - abar_next) / (1 - abar)  # DDPM's β̃, not β
        return (x + beta * s) / math.sqrt(1 - beta) + math.sqrt(posterior_var) * z
    if sch.kind == "ve":
        sigma2, sigma2_next = sch.sigma(t) ** 2, sch.sigma(t_next) ** 2
        return x + (sigma2 - sigma2_next) * s + math.sqrt(sigma2_next * (sigma2 - sigma2_next) / sigma2) * z
    a = sch.alpha(t) / sch.alpha(t_next)  # sub-VP: the step's kernel x_t = a x_t' + √v z
    v = sch.sigma(t) ** 2 - (a * sch.sigma(t_next)) ** 2
    return (x + v * s) / a + math.sqrt(v * sch.sigma(t_next) ** 2 / sch.sigma(t) ** 2) * z


STEPS = {"euler_maruyama": euler_maruyama, "reverse_diffusion": reverse_diffusion, "ancestral": ancestral}
CASES = [(m, k) for m in STEPS for k in SCHEDULES if not (m == "euler_maruyama" and k == "discrete")]


@pytest.mark.parametrize(("method", "kind"), CASES)
def test_predictor_steps_are_the_hand_derived_formulas(method: str, kind: str) -> None:
    """Two steps of each predictor on an explicit grid equal its formula with the same score and noise."""
    sch, grid = SCHEDULES[kind], GRIDS[kind]
    x = torch.randn(SHAPE, generator=gen(0), dtype=F64)
    ours = sample(
        sch.sde,
        score,
        x_T=x,
        grid=torch.tensor(grid, dtype=F64),
        method=method,
        denoise=False,
        generator=gen(1),
        dtype=F64,
    )
    noise = gen(1)
    for t, t_next in itertools.pairwise(grid):
        s = score(x, torch.full((SHAPE[0],), t, dtype=F64))
        z = torch.randn(SHAPE, generator=noise, dtype=F64)
        x = STEPS[method](sch, x, s, z, t, t_next)
    assert ours.dtype == F64
    torch.testing.assert_close(ours, x, rtol=1e-10, atol=1e-12, msg=lambda m: f"{method} on {kind}: {m}")


@pytest.mark.parametrize("kind", ["vp", "discrete"])
def test_ancestral_noise_is_the_ddpm_posterior_std_not_sqrt_beta(kind: str) -> None:
    """With a zero score the ancestral step is x/√(1−β) + √β̃ z, β̃ = β(1 − ᾱ(t'))/(1 − ᾱ(t)): its noise
    (the step minus its mean) is √β̃ z exactly — √β, the reference code's choice, is larger."""
    sch = SCHEDULES[kind]
    grid = torch.tensor((0.55, 0.2) if kind == "vp" else (0.3, 0.2), dtype=F64)  # one step; levels 3 → 2
    t, t_next = float(grid[0]), float(grid[1])
    x = torch.randn(SHAPE, generator=gen(2), dtype=F64)
    zero = lambda x, t: torch.zeros_like(x)  # noqa: E731
    out = sample(sch.sde, zero, x_T=x, grid=grid, method="ancestral", denoise=False, generator=gen(3), dtype=F64)
    z = torch.randn(SHAPE, generator=gen(3), dtype=F64)
    abar, abar_next = sch.alpha(t) ** 2, sch.alpha(t_next) ** 2
    beta = 1 - abar / abar_next
    posterior_std = math.sqrt(beta * (1 - abar_next) / (1 - abar))
    if kind == "discrete":  # between trained levels the step 3 → 2 is DDPM's step with β_3 and its β̃_3
        assert beta == pytest.approx(float(BETAS[2]), rel=1e-10)
        posterior_std = math.sqrt(float(BETAS[2] * (1 - ABAR[1]) / (1 - ABAR[2])))
    assert posterior_std < 0.9 * math.sqrt(beta)  # the check below tells the two apart
    torch.testing.assert_close(
        out - x / math.sqrt(1 - beta), posterior_std * z, rtol=1e-10, atol=1e-12, msg=lambda m: f"noise not √β̃ z: {m}"
    )


# --- the final denoising (Tweedie at eps) ----------------------------------------------------------------------------


class Recorder:
    """A score that records the times it is called with."""

    def __init__(self, fn) -> None:
        self.fn = fn
        self.times: list[torch.Tensor] = []

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.times.append(t.detach().clone())
        return self.fn(x, t)


FRONT_DOORS = {
    "pc_sample": lambda *a, **k: pc_sample(*a, steps=3, **k),
    "euler_maruyama": lambda *a, **k: sample(*a, method="euler_maruyama", steps=3, **k),
    "ancestral": lambda *a, **k: sample(*a, method="ancestral", steps=3, **k),
    "dpmpp_2m_sde": lambda *a, **k: sample(*a, method="dpmpp_2m_sde", steps=3, **k),
    "adaptive_sde": lambda *a, **k: sample(*a, method="adaptive", rtol=0.2, **k),
    "heun": lambda *a, **k: ode_sample(*a, method="heun", steps=3, **k),
    "dpmpp_2m": lambda *a, **k: ode_sample(*a, method="dpmpp_2m", steps=3, **k),
    "dopri5": lambda *a, **k: ode_sample(*a, method="dopri5", rtol=1e-3, atol=1e-3, **k),
}


@pytest.mark.parametrize("door", FRONT_DOORS)
@pytest.mark.parametrize(("kind", "eps"), [("vp", 0.05), ("subvp", 0.1), ("ve", 0.2), ("vp", None)])
def test_final_denoising_is_tweedie_at_eps(door: str, kind: str, eps: float | None) -> None:
    """denoise=True is one more score call, at t = eps exactly, and returns (x + σ(eps)² s(x, eps)) / α(eps)
    of the state denoise=False returns (same x_T, same noise)."""
    sch, run = SCHEDULES[kind], FRONT_DOORS[door]
    x_T = torch.randn(SHAPE, generator=gen(4), dtype=F64) * sch.sde.prior_std
    raw_score, denoised_score = Recorder(score), Recorder(score)
    raw = run(sch.sde, raw_score, x_T=x_T, eps=eps, denoise=False, generator=gen(5), dtype=F64)
    out = run(sch.sde, denoised_score, x_T=x_T, eps=eps, denoise=True, generator=gen(5), dtype=F64)
    end = 1e-3 if eps is None else eps  # the VP default
    assert len(denoised_score.times) == len(raw_score.times) + 1
    last = denoised_score.times[-1]
    assert torch.equal(last, torch.full((SHAPE[0],), end, dtype=F64)), f"denoised at t = {last[0]:.6g}, not {end:g}"
    t = torch.full((SHAPE[0],), end, dtype=F64)
    expected = (raw + sch.sigma(end) ** 2 * score(raw, t)) / sch.alpha(end)
    torch.testing.assert_close(
        out, expected, rtol=1e-10, atol=1e-12, msg=lambda m: f"not Tweedie at eps = {end:g}: {m}"
    )


# --- DiscreteVPSDE at the trained levels -----------------------------------------------------------------------------


def test_level_kernel_kernel_and_marginal_are_abar_at_the_trained_indices() -> None:
    """0-based index i is the level ᾱ_{i+1} of t = (i + 1)/N: level_kernel(i), kernel((i+1)/N) and
    marginal(x0, (i+1)/N) all give (√ᾱ_{i+1}, √(1 − ᾱ_{i+1})), ᾱ = cumprod(1 − β) computed here."""
    sde = VPSDE.from_betas(BETAS)
    assert isinstance(sde, DiscreteVPSDE) and sde.num_timesteps == 10
    index = torch.arange(10)
    root_abar, root_one_minus = ABAR.sqrt(), (1 - ABAR).sqrt()
    alpha, sigma = sde.level_kernel(index)
    torch.testing.assert_close(alpha, root_abar, rtol=1e-12, atol=0, msg=lambda m: f"level_kernel's √ᾱ_(i+1): {m}")
    torch.testing.assert_close(sigma, root_one_minus, rtol=1e-10, atol=0)
    t = (index + 1).double() / 10
    kernel_alpha, kernel_sigma = sde.kernel(t)
    torch.testing.assert_close(kernel_alpha, root_abar, rtol=1e-12, atol=0)
    torch.testing.assert_close(kernel_sigma, root_one_minus, rtol=1e-10, atol=0)
    x0 = torch.randn(10, 2, 3, generator=gen(6), dtype=F64)
    mean, std = sde.marginal(x0, t)
    torch.testing.assert_close(mean, root_abar.view(-1, 1, 1) * x0, rtol=1e-12, atol=0)
    torch.testing.assert_close(std, root_one_minus, rtol=1e-10, atol=0)
    # one index at a time, and the first and last levels by value: ᾱ_1 = 1 − β_1, ᾱ_N = ∏(1 − β)
    first, last = sde.level_kernel(torch.tensor([0])), sde.level_kernel(torch.tensor([9]))
    assert float(first[0]) ** 2 == pytest.approx(1 - float(BETAS[0]), rel=1e-12)
    assert float(last[1]) ** 2 == pytest.approx(1 - math.prod(1 - b for b in BETAS.tolist()), rel=1e-10)


@pytest.mark.parametrize("as_betas", [True, False])
def test_ddpm_loss_noises_at_the_trained_level(as_betas: bool) -> None:
    """The loss noises x0 to √ᾱ_{i+1} x0 + √(1 − ᾱ_{i+1}) ε at index i: the model that inverts exactly that
    (with ᾱ from the test's own table) predicts ε exactly and scores a loss of 0 on every sample."""
    x0 = torch.randn(64, 2, 3, generator=gen(8), dtype=F64)
    seen: list[torch.Tensor] = []

    def exact_eps(x_t: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        seen.append(i)
        abar = ABAR[i].view(-1, 1, 1)
        return (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()

    schedule = BETAS if as_betas else VPSDE.from_betas(BETAS)
    losses = ddpm_loss(exact_eps, schedule, x0, generator=gen(9), per_sample=True)
    assert seen[0].unique().numel() == 10  # every level drawn, the first and the last included
    torch.testing.assert_close(
        losses, torch.zeros(64, dtype=F64), rtol=0, atol=1e-20, msg=lambda m: f"x_t not at level ᾱ_(i+1): {m}"
    )
