"""Exponential integrators in log-SNR: DPM-Solver++(2M), (3M) and SDE-DPM-Solver++(2M) (Lu et al. 2022).

For a linear SDE with kernel N(α x₀, σ² I), let λ = log(α/σ) and let x̂₀ = (x + σ² s)/α be the
data prediction made from the score. In these variables the probability-flow ODE (η = 0) and
the reverse SDE (η = 1) are linear in x, with x̂₀ their only non-linear input, and their exact
solution over a step λ → λ' = λ + h is (Lu et al. 2022, "DPM-Solver++", arXiv:2211.01095)

    x' = (σ'/σ) e^{−ηh} x + α' ∫₀¹ H e^{−H(1−u)} x̂₀(λ + u h) du + σ' √(1 − e^{−2ηh}) z,   H = (1 + η) h.

A k-step method replaces x̂₀ by the polynomial through its last k values (in λ) and integrates
it exactly, so a step is ``x' = A x + Σ_j b_j x̂₀[n−j] (+ noise)`` with b_j the integral of the
j-th Lagrange basis polynomial against the step's exponential weight. One score call per step;
with α ≡ 1 (VE) λ = −log σ and the same update is the σ-space method (k-diffusion's form), so
every :class:`~sdekit.sde.LinearSDE` is served by this one implementation. Coefficients are
computed in float64 for the whole grid before the first step.

Which to use: ``dpmpp_2m`` on a log-SNR grid is the robust choice below ~15 steps; ``dpmpp_3m``
overtakes it from ~20 steps (its third-order extrapolation overshoots where x̂₀ changes fast,
at few steps). On the 16-D, 8-mode test mixture (VP, exact score) the log-SNR grid reaches the
finite-sample floor at 16 steps (2M) / 19 steps (3M) with eps = 1e-2, and at 30 / 22 steps with
the default eps = 1e-3, whose last steps in λ do little. ``dpmpp_2m_sde`` (a stochastic sampler
for :func:`sdekit.sample`) needs more steps (40–80) but forgets early errors, which helps with an
imperfect score network. Keep the final denoising step on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from sdekit.per_sample import Generators
from sdekit.reverse import ScoreFn
from sdekit.sde import SDE, LinearSDE
from sdekit.solvers.grid_stepper import GridStepper, weighted_sum
from sdekit.solvers.ode import ODE_METHODS
from sdekit.solvers.predictors import SDE_STEPPERS
from sdekit.solvers.score_calls import gaussian_like

__all__ = [
    "ExponentialMultistep",
    "DPMSolverPP",
    "DPMSolverPP2M",
    "DPMSolverPP3M",
    "SDEDPMSolverPP2M",
    "exponential_moments",
    "lagrange_weights",
]

_SERIES_BELOW = 1.0  # H below which the moments come from their power series (no cancellation)
_SERIES_TERMS = 18  # truncation error < H^18/18! < 1.6e-16 for H < 1


def exponential_moments(H: Tensor, count: int) -> list[Tensor]:
    """μ_k = ∫₀¹ H e^{−H(1−u)} u^k du for k < ``count``: the moments of one step's exponential weight.

    μ₀ = 1 − e^{−H} and μ_k = 1 − k μ_{k−1}/H (by parts). That recursion cancels for small H,
    so there the series μ_k = H Σ_j (−H)^j k!/(k + j + 1)! is used instead.
    """
    closed = [-torch.expm1(-H)]
    for k in range(1, count):
        closed.append(1 - k * closed[-1] / H)
    small = H.abs() < _SERIES_BELOW
    moments = []
    for k, exact in enumerate(closed):
        series = sum((-H) ** j * (math.factorial(k) / math.factorial(k + j + 1)) for j in range(_SERIES_TERMS))
        moments.append(torch.where(small, H * series, exact))
    return moments


def lagrange_weights(nodes: Sequence[Tensor], moments: Sequence[Tensor]) -> list[Tensor]:
    """∫ ℓ_j dμ for each Lagrange basis polynomial ℓ_j of ``nodes``, given the moments ∫ u^k dμ (k < len(nodes)).

    The integral of the interpolating polynomial of values y_j is then Σ_j weight_j y_j.
    """
    weights = []
    for j, node_j in enumerate(nodes):
        coefficients = [torch.ones_like(node_j)]  # of ℓ_j in powers of u, constant term first
        for m, node_m in enumerate(nodes):
            if m == j:
                continue
            scale = 1 / (node_j - node_m)  # multiply ℓ_j by (u − node_m)/(node_j − node_m)
            zero = torch.zeros_like(node_j)
            times_u, padded = [zero, *coefficients], [*coefficients, zero]
            coefficients = [(cu - node_m * c) * scale for cu, c in zip(times_u, padded, strict=True)]
        weights.append(
            sum((c * mu for c, mu in zip(coefficients, moments, strict=True)), start=torch.zeros_like(node_j))
        )
    return weights


class ExponentialMultistep(GridStepper):
    """Multistep exponential integrator of order ``order`` in λ = log(α/σ), stochastic when ``eta`` = 1.

    Started for one run over a grid, it computes every step's coefficients (A, the history
    weights b_j and the noise scale) in float64, vectorised over the grid, before the first step.
    Step i uses order min(``order``, i + 1) — the first steps warm up while the history of
    x̂₀ fills — and, with ``lower_order_final`` (the default), the last step uses
    ``order − 1`` (at least 1): the final step is usually the largest relative change of
    x̂₀, and lowering it by one order keeps the method's convergence order while making
    few-step runs more robust.
    """

    #: ``order``: 1 (DDIM), 2 or 3; ``lower_order_final``: lower the last step's order by one.
    defaults: ClassVar[dict[str, Any]] = {"order": 2, "lower_order_final": True}
    order: int
    lower_order_final: bool
    kind = "ode"
    #: 0: probability-flow ODE; 1: reverse SDE (adds fresh noise every step).
    eta: ClassVar[float] = 0.0
    needs_linear_sde = True

    def check_options(self, options: dict[str, Any]) -> None:
        order = options.get("order", getattr(type(self), "order", None))  # fixed on the registered forms
        if isinstance(order, bool) or not isinstance(order, int) or order not in (1, 2, 3):
            raise ValueError(f"order must be the int 1, 2 or 3, got {order!r}")
        if not isinstance(options["lower_order_final"], bool):
            raise TypeError(f"lower_order_final must be a bool, got {options['lower_order_final']!r}")

    @property
    def midpoint(self) -> bool:
        """The second-order method takes the DPM-Solver++ paper's midpoint rule for its linear term
        (μ₁ ≈ μ₀/2) rather than the exact moment, as the paper and k-diffusion do."""
        return self.order == 2

    def bind(self, sde: SDE, score: ScoreFn, grid: Tensor, generator: Generators | None = None) -> None:
        super().bind(sde, score, grid, generator)
        assert isinstance(sde, LinearSDE)  # needs_linear_sde
        self.plan = self._coefficients(sde, torch.cat([self.t, self.t_next[-1:]]))
        self._history: list[Tensor] = []  # x̂₀ at the latest grid times, most recent first

    def order_at(self, i: int) -> int:
        """The order of step ``i`` (0-based): warm-up at the start, one lower at the end."""
        order = min(self.order, i + 1)
        if self.lower_order_final and i == self.steps - 1:
            order = min(order, max(self.order - 1, 1))
        return order

    def moments(self, H: Tensor, count: int) -> list[Tensor]:
        """The first ``count`` moments of the step's weight: exact, or the paper's midpoint rule for 2M."""
        moments = exponential_moments(H, count)
        if self.midpoint and count == 2:
            moments[1] = moments[0] / 2
        return moments

    def _coefficients(self, sde: LinearSDE, times: Tensor) -> list[_StepCoefficients]:
        """Every step's coefficients from the grid's (λ, α, σ), float64, as Python floats."""
        alpha, sigma = sde.kernel(times)
        lam = alpha.log() - sigma.log()
        h = lam[1:] - lam[:-1]
        # weights[k][i − k + 1]: the order-k history weights of step i (for every i ≥ k − 1), times α'.
        weights = {}
        for k in range(1, min(self.order, self.steps) + 1):
            n = torch.arange(k - 1, self.steps)  # the steps that can use order k
            nodes = [(lam[n - j] - lam[n]) / h[n] for j in range(k)]  # 0, −r₀, −(r₀ + r₁), … in units of h
            weights[k] = torch.stack(lagrange_weights(nodes, self.moments((1 + self.eta) * h[n], k)), 1)
            weights[k] *= alpha[n + 1, None]
        decay = (sigma[1:] / sigma[:-1] * torch.exp(-self.eta * h)).tolist()
        noise_std = (sigma[1:] * (-torch.expm1(-2 * self.eta * h)).sqrt()).tolist()
        inv_alpha, sigma2_over_alpha = (1 / alpha).tolist(), (sigma**2 / alpha).tolist()
        plan = []
        for i in range(self.steps):
            order = self.order_at(i)
            history_weights = tuple(weights[order][i - order + 1].tolist())
            plan.append(_StepCoefficients(inv_alpha[i], sigma2_over_alpha[i], decay[i], history_weights, noise_std[i]))
        return plan

    def step(self, x: Tensor, i: int) -> Tensor:
        c = self.plan[i]
        x0 = weighted_sum([(c.inv_alpha, x), (c.sigma2_over_alpha, self.score(x, self.times[i]))])
        self._history = [x0, *self._history][: self.order]
        terms = [(c.decay, x), *zip(c.history_weights, self._history, strict=False)]
        if self.eta:
            return weighted_sum(terms, into=(c.noise_std, gaussian_like(x, self.generator)))
        return weighted_sum(terms)


@dataclass(frozen=True)
class _StepCoefficients:
    """One step: x̂₀ = inv_alpha·x + sigma2_over_alpha·s, x' = decay·x + Σ_j w_j x̂₀[n−j] + noise_std·z."""

    inv_alpha: float
    sigma2_over_alpha: float
    decay: float
    history_weights: tuple[float, ...]
    noise_std: float


class DPMSolverPP(ExponentialMultistep):
    """DPM-Solver++ for the probability-flow ODE: ``DPMSolverPP(order=3, lower_order_final=False)``.

    The registered names are its second- and third-order forms, :class:`DPMSolverPP2M` and
    :class:`DPMSolverPP3M` (whose order is fixed); ``order=1`` is DDIM (η = 0).
    """


@ODE_METHODS.register("dpmpp_2m")
class DPMSolverPP2M(DPMSolverPP):
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2): second order, one score call per step.

    x' = (σ'/σ) x + α'(1 − e^{−h}) D with D = (1 + 1/(2r)) x̂₀[n] − 1/(2r) x̂₀[n−1], r = h_prev/h:
    the paper's formula, identical to k-diffusion's ``sample_dpmpp_2m``. First and last step
    are first order (DDIM). The best general-purpose choice below ~50 NFE; use it on a log-SNR
    (default) or EDM grid — on a grid uniform in t, VP's last steps are far too large in λ.
    """

    fixed_options: ClassVar[dict[str, Any]] = {"order": 2}


@ODE_METHODS.register("dpmpp_3m")
class DPMSolverPP3M(DPMSolverPP):
    """DPM-Solver++(3M): third order, one score call per step; orders 1, 2, 3, …, 3, 2 along the grid.

    Integrates the quadratic through the last three x̂₀ exactly. The widely used
    reference formula (DPM-Solver's ``multistep_dpm_solver_third_update``, diffusers,
    k-diffusion's ``sample_dpmpp_3m_sde``: ``… + φ₂ D₁ − φ₃ D₂``) gives the quadratic term half
    its exact weight (−φ₃ where −2φ₃ is exact), which makes that method second order; this one
    is third order. It pays off from ~20 steps; below that prefer 2M. The first step is first
    order (no history yet), which costs nothing when x̂₀ is nearly constant at T (VP, or VE with
    σ_max well above the data's scale) but caps the order at 2 otherwise (e.g. VE with σ_max = 5
    for data of unit scale).
    """

    fixed_options: ClassVar[dict[str, Any]] = {"order": 3}


@SDE_STEPPERS.register("dpmpp_2m_sde")
class SDEDPMSolverPP2M(ExponentialMultistep):
    """SDE-DPM-Solver++(2M): the reverse SDE integrated exactly but for x̂₀, linear in λ (Lu et al. 2022).

    x' = (σ'/σ) e^{−h} x + α'(1 − e^{−2h}) D + σ' √(1 − e^{−2h}) z, with D as in
    :class:`DPMSolverPP2M` — the same midpoint rule for the linear term, i.e. k-diffusion's
    ``sample_dpmpp_2m_sde(solver_type="midpoint")`` with η = 1 (its ``"heun"`` variant is the
    exact moment, 1 − (1 − e^{−2h})/(2h), in place of (1 − e^{−2h})/2). Stochastic sampling
    contracts errors made early, so it tolerates an imprecise score better than the ODE
    methods but needs more steps (≈ 50–100 NFE to reach their quality); draws its noise from
    the sampler's ``generator``.
    """

    kind = "sde"
    eta = 1.0
    fixed_options: ClassVar[dict[str, Any]] = {"order": 2}
