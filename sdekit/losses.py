"""Training losses for score models: continuous denoising score matching, DDPM's ε-loss, SMLD's σ-loss.

All three perturb clean data with the forward kernel, x_t = α(t) x₀ + σ(t) z, and regress
the network onto the noise that was added. They share one convention:

* each returns the **batch mean** of the per-sample losses, a scalar ready for
  ``loss.backward()``; ``per_sample=True`` returns the (B,) vector instead (for
  importance weights, logging per noise level, or Monte-Carlo error bars);
* ``reduce`` is the reduction over the dimensions of one sample: ``"mean"`` (default,
  scale-free across resolutions) or ``"sum"`` (the true squared norm; the SDE paper's
  ``reduce_mean=False`` is ½ of our ``"sum"``);
* every random draw (times, labels, noise) comes from ``generator``.

:func:`dsm_loss` is the continuous objective,

    L(θ) = E_{t ~ U(eps, T)} E_{x₀, z} λ(t) ‖s_θ(x_t, t) + z/σ(t)‖²,

with λ = σ² (``weighting="std2"``, the default: every noise level weighs about the same)
or λ = g² (``"likelihood"``: the bound on the negative log-likelihood of Song et al. 2021,
"Maximum Likelihood Training of Score-Based Diffusion Models"). Likelihood weighting puts
most of its mass near t = 0 and is noisy with uniform t; ``importance_sampling=True``
draws t ∝ g(t)²/σ(t)² instead (the same expectation, much lower variance).

Even at the exact score the loss is not 0: E‖s(x_t) − ∇log p(x_t | x₀)‖² is the
irreducible variance of the conditional score. For N(μ, cI) data in d dimensions it is
d(1/σ² − 1/(α²c + σ²)) per t — docs/likelihood.md and the tests use it to check the loss.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from sdekit.checks import batch_view, check_choice, check_data, check_open_interval, check_score_output
from sdekit.reverse import ScoreFn
from sdekit.sde import SDE, DiscreteVPSDE, LinearSDE, time_checks

__all__ = [
    "WEIGHTINGS",
    "REDUCTIONS",
    "dsm_loss",
    "ddpm_loss",
    "smld_loss",
    "likelihood_time_sampler",
    "Perturbed",
    "ContinuousTime",
    "NoiseLevels",
]

WEIGHTINGS = ("std2", "likelihood")
REDUCTIONS = ("mean", "sum")
_IS_GRID = 4096  # points of the tabulated importance density (log-spaced in t)

#: ``model(x, labels)`` with integer labels (B,): a DDPM ε-network or an NCSN score network.
LabelledModel = Callable[[Tensor, Tensor], Tensor]


def dsm_loss(
    sde: SDE,
    score: ScoreFn,
    x0: Tensor,
    *,
    eps: float = 1e-5,
    weighting: str = "std2",
    reduce: str = "mean",
    importance_sampling: bool = False,
    generator: torch.Generator | None = None,
    per_sample: bool = False,
) -> Tensor:
    """Continuous denoising score matching: batch mean of λ(t)‖s(x_t, t) + z/σ(t)‖², t ~ U(eps, T).

    Args:
        sde: the forward SDE (any SDE with a Gaussian ``marginal``).
        score: ``score(x, t)``, x of shape (B, *event), t of shape (B,) in x's dtype.
        x0: clean data, shape (B, *event).
        eps: smallest time drawn, in (0, T). 1e-5 is the SDE paper's choice for training;
            raise it (1e-3) if the loss is dominated by a few tiny-σ draws.
        weighting: ``"std2"`` (λ = σ², the default) or ``"likelihood"`` (λ = g²).
        reduce: ``"mean"`` or ``"sum"`` over the dimensions of a sample.
        importance_sampling: draw t ∝ g²/σ² and reweight (likelihood weighting with a
            :class:`~sdekit.sde.LinearSDE` only); same expectation, far lower variance.
        generator: draws t and z.
        per_sample: return the (B,) losses instead of their mean.

    The residual is computed as σ·s + z (times the weight λ/σ²), which stays O(1) where
    s + z/σ would cancel large terms at small σ.
    """
    reduce = check_choice("reduce", reduce, REDUCTIONS)
    check_data("x0", x0)
    noisy = ContinuousTime(sde, eps=eps, weighting=weighting, importance_sampling=importance_sampling).perturb(
        x0, generator
    )
    std = batch_view(noisy.std, x0)
    residual = std * _call(score, noisy.x, noisy.label) + noisy.noise
    losses = _reduce(residual.square(), reduce)
    if noisy.weight_over_std2 is not None:
        losses = noisy.weight_over_std2.to(x0.dtype) * losses
    return losses if per_sample else losses.mean()


@dataclass(frozen=True)
class Perturbed:
    """A batch of clean data perturbed by a Gaussian kernel: ``x = mean + std·noise``.

    ``label`` is what the network gets as its second argument (a time, a level index or σ).
    ``weight_over_std2`` is λ/σ² per sample (float64), the factor a loss in the σ-scaled form
    σ‖s + z/σ‖² multiplies by; None means 1 (λ = σ²). The weight λ itself is
    :meth:`weight` (what :mod:`sdekit.score_matching` multiplies its per-sample losses by).
    """

    x: Tensor
    label: Tensor
    noise: Tensor
    std: Tensor
    weight_over_std2: Tensor | None

    def weight(self) -> Tensor:
        """λ per sample, float64 (B,): σ² times :attr:`weight_over_std2`."""
        std2 = self.std.double().square()
        return std2 if self.weight_over_std2 is None else std2 * self.weight_over_std2.double()


class ContinuousTime:
    """The continuous-time perturbation of :func:`dsm_loss`: t ~ U(eps, T), x_t ~ N(α(t) x₀, σ(t)² I).

    The score is called as ``score(x_t, t)`` with t in x's dtype. λ = σ(t)² (``"std2"``) or g(t)²
    (``"likelihood"``); ``importance_sampling`` draws t ∝ g²/σ² instead and reweights (same
    expectation). Draw order: t, then the noise, both from the generator.
    """

    def __init__(self, sde: SDE, *, eps: float = 1e-5, weighting: str = "std2", importance_sampling: bool = False):
        if not isinstance(sde, SDE):
            raise TypeError(f"sde must be an sdekit.SDE, got {type(sde).__name__}")
        self.sde = sde
        self.eps = check_open_interval("eps", eps, 0.0, sde.T)
        self.weighting = check_choice("weighting", weighting, WEIGHTINGS)
        if importance_sampling and (self.weighting != "likelihood" or not isinstance(sde, LinearSDE)):
            raise ValueError("importance_sampling=True needs weighting='likelihood' and a LinearSDE")
        self.importance_sampling = bool(importance_sampling)

    def __repr__(self) -> str:
        return (
            f"ContinuousTime({self.sde!r}, eps={self.eps:g}, weighting={self.weighting!r}, "
            f"importance_sampling={self.importance_sampling})"
        )

    def perturb(self, x0: Tensor, generator: torch.Generator | None = None) -> Perturbed:
        batch, sde = x0.shape[0], self.sde
        if self.importance_sampling:
            assert isinstance(sde, LinearSDE)
            t, weight = likelihood_time_sampler(sde, self.eps).sample(batch, generator=generator, device=x0.device)
        else:
            t = self.eps + (sde.T - self.eps) * torch.rand(
                batch, generator=generator, device=x0.device, dtype=torch.float64
            )
            weight = None
        z = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        times = t.to(x0.dtype)
        with time_checks(False):
            mean, std = sde.marginal(x0, times)
            if weight is None and self.weighting == "likelihood":  # λ/σ² = g²/σ² (for "std2" it is 1)
                weight = (sde.diffusion(x0.double(), times).double() / std.double()) ** 2
        return Perturbed(mean + batch_view(std, x0) * z, times, z, std, weight)


class NoiseLevels:
    """NCSN's multi-level perturbation (:func:`smld_loss`): i ~ U{0 … L−1} per sample, x̃ = x₀ + σ_i z, λ = σ_i².

    Args:
        sigmas: the noise levels σ_0 … σ_{L−1} (any order; NCSN lists them decreasing), all > 0.
        label: what the network gets: ``"index"`` (int64 level indices, as NCSN code) or
            ``"sigma"`` (σ_i in x's dtype, for networks with a continuous noise input).

    Draw order: the level indices, then the noise, both from the generator.
    """

    def __init__(self, sigmas: Tensor | Sequence[float], *, label: str = "index") -> None:
        levels = torch.as_tensor(sigmas, dtype=torch.float64)
        if levels.ndim != 1 or levels.numel() < 1 or not bool((levels > 0).all() & levels.isfinite().all()):
            raise ValueError(f"sigmas must be a non-empty 1-D sequence of finite numbers > 0, got {sigmas!r:.80}")
        self.sigmas = levels.detach().cpu()
        self.label = check_choice("label", label, ("index", "sigma"))

    def __repr__(self) -> str:
        return f"NoiseLevels({self.sigmas.numel()} levels {float(self.sigmas.max()):g} … {float(self.sigmas.min()):g})"

    def perturb(self, x0: Tensor, generator: torch.Generator | None = None) -> Perturbed:
        levels = self.sigmas.to(x0.device)
        i, z = _level_and_noise(x0, levels.numel(), generator)
        sigma = levels[i]
        label = i if self.label == "index" else sigma.to(x0.dtype)
        return Perturbed(x0 + batch_view(sigma, x0) * z, label, z, sigma, None)


class ImportanceTimes:
    """Draws t on [eps, T] with density q(t) ∝ w(t) = g(t)²/σ(t)², and the weight w(t)/(q(t)(T − eps)).

    The density is tabulated on a grid uniform in log t (it behaves like 1/t near 0 for
    VP) and sampled by inverting its piecewise-linear CDF, so q is piecewise constant in
    log t and the returned weights are exact for it: E_q[weight·L(t)] = E_{U(eps,T)}[w(t) L(t)]
    for any L, with no bias from the tabulation.
    """

    def __init__(self, sde: LinearSDE, eps: float) -> None:
        self.sde, self.eps = sde, eps
        log_t = torch.linspace(math.log(eps), math.log(sde.T), _IS_GRID, dtype=torch.float64)
        w = self._w(log_t.exp())
        # ∫ w dt = ∫ w(t) t d(log t): trapezoids in log t
        mass = 0.5 * (w[1:] * log_t[1:].exp() + w[:-1] * log_t[:-1].exp()) * log_t.diff()
        self.log_t, self.cdf = log_t, torch.cat([torch.zeros(1, dtype=torch.float64), mass.cumsum(0)])
        self.total = float(self.cdf[-1])
        self._device_tables: dict[torch.device, tuple[Tensor, Tensor]] = {}

    def _tables(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """(cdf, log t) on ``device``, copied there once: sampling stays on the device, without a round trip."""
        if device not in self._device_tables:
            self._device_tables[device] = (self.cdf.to(device), self.log_t.to(device))
        return self._device_tables[device]

    def _w(self, t: Tensor) -> Tensor:
        return self.sde.diffusion_squared(t) / self.sde.std(t) ** 2

    def sample(
        self, n: int, *, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(t, weight)``, both float64 of shape (n,) on ``device``."""
        u = torch.rand(n, generator=generator, dtype=torch.float64, device=device) * self.total
        cdf, log_t = self._tables(u.device)
        i = torch.searchsorted(cdf, u, right=True).clamp(1, _IS_GRID - 1)
        frac = (u - cdf[i - 1]) / (cdf[i] - cdf[i - 1])
        t = torch.lerp(log_t[i - 1], log_t[i], frac).exp().clamp(self.eps, self.sde.T)
        density = (cdf[i] - cdf[i - 1]) / (log_t[i] - log_t[i - 1]) / t / self.total
        return t, self._w(t) / (density * (self.sde.T - self.eps))


@functools.lru_cache(maxsize=16)
def likelihood_time_sampler(sde: LinearSDE, eps: float) -> ImportanceTimes:
    """The importance sampler of t for likelihood weighting, tabulated once per (sde, eps)."""
    return ImportanceTimes(sde, eps)


def ddpm_loss(
    eps_model: LabelledModel,
    schedule: DiscreteVPSDE | Tensor,
    x0: Tensor,
    *,
    reduce: str = "mean",
    generator: torch.Generator | None = None,
    per_sample: bool = False,
) -> Tensor:
    """DDPM's simple loss (Ho et al. 2020): batch mean of ‖ε̂(√ᾱ_i x₀ + √(1−ᾱ_i) ε, i) − ε‖², i ~ U{0 … N−1}.

    Args:
        eps_model: ``eps_model(x, i)`` with 0-based integer timesteps i (B,) (long), as
            DDPM code bases index them; index i is the level ᾱ_{i+1} (the (i+1)-th β step),
            so a trained model plugs into :class:`~sdekit.sde.DiscreteVPSDE` samplers through
            the ``ddpm`` adapter.
        schedule: a :class:`~sdekit.sde.DiscreteVPSDE` or its β_1 … β_N (1-D tensor in (0, 1); pass the
            DiscreteVPSDE in a training loop: betas are turned into one, with its checks, at every call).
        x0: clean data (B, *event). reduce, generator, per_sample: as in :func:`dsm_loss`.
    """
    reduce = check_choice("reduce", reduce, REDUCTIONS)
    check_data("x0", x0)
    if not isinstance(schedule, DiscreteVPSDE):
        if not isinstance(schedule, Tensor):
            raise TypeError(f"schedule must be a DiscreteVPSDE or a 1-D tensor of betas, got {type(schedule).__name__}")
        schedule = DiscreteVPSDE.from_betas(schedule)
    i, noise = _level_and_noise(x0, schedule.num_timesteps, generator)
    alpha, sigma = schedule.level_kernel(i)
    x_t = batch_view(alpha, x0) * x0 + batch_view(sigma, x0) * noise
    losses = _reduce((_call(eps_model, x_t, i, "eps_model") - noise).square(), reduce)
    return losses if per_sample else losses.mean()


def smld_loss(
    score_model: LabelledModel,
    sigmas: Tensor | Sequence[float],
    x0: Tensor,
    *,
    reduce: str = "mean",
    generator: torch.Generator | None = None,
    per_sample: bool = False,
) -> Tensor:
    """NCSN's loss (Song & Ermon 2019) with λ(σ) = σ²: batch mean of ‖σ_i s(x₀ + σ_i z, i) + z‖², i ~ U{0 … L−1}.

    Args:
        score_model: ``score_model(x, i)`` with integer noise-level indices i (B,) into ``sigmas``.
        sigmas: the noise levels σ_0 … σ_{L−1} (any order; NCSN lists them decreasing), all > 0.
        x0: clean data (B, *event). reduce, generator, per_sample: as in :func:`dsm_loss`
            (the NCSN paper's ½ is not included: this is λ‖s + z/σ‖² like the other losses).
    """
    reduce = check_choice("reduce", reduce, REDUCTIONS)
    check_data("x0", x0)
    noisy = NoiseLevels(sigmas).perturb(x0, generator)
    sigma = batch_view(noisy.std, x0)
    losses = _reduce((sigma * _call(score_model, noisy.x, noisy.label) + noisy.noise).square(), reduce)
    return losses if per_sample else losses.mean()


# --- helpers -------------------------------------------------------------------------------------------------------


def _level_and_noise(x0: Tensor, levels: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """A uniform level index per sample, then standard normal noise like ``x0`` (in that draw order)."""
    i = torch.randint(0, levels, (x0.shape[0],), generator=generator, device=x0.device)
    return i, torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)


def _call(network: Callable[[Tensor, Tensor], Tensor], x: Tensor, label: Tensor, name: str = "score") -> Tensor:
    """``network(x, label)``, its output checked against x's shape, dtype and device: a clear error, not a broadcast."""
    with time_checks(False):  # the times were drawn inside [eps, T]: no host read-back per call
        out = network(x, label)
    check_score_output(out, x, name)
    return out


def _reduce(values: Tensor, how: str) -> Tensor:
    flat = values.flatten(1)
    return flat.mean(1) if how == "mean" else flat.sum(1)
