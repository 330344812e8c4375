"""UniPC: a multistep predictor with a free corrector, in log-SNR (Zhao et al. 2023, arXiv:2302.04867).

In the data-prediction form, with λ = log(α/σ), h = λ' − λ and x̂₀ = (x + σ² s)/α, every step
starts from DDIM,

    x' = (σ'/σ) x + α'(1 − e^{−h}) m₀,                 m₀ = x̂₀ at (x, λ),

and adds a combination of the divided differences D_k = (m_k − m₀)/r_k of earlier data
predictions m_k at λ_k = λ + r_k h:  x' −= α' B(h) Σ_k ρ_k D_k. The weights ρ solve the
order conditions Σ_k ρ_k r_k^{j−1} = j! φ_{j+1}(−h)(−h)/B(h), j = 1, 2, …, with
φ_j(z) = Σ_n zⁿ/(n + j)! (j! φ_{j+1}(−h)(−h) = −μ_j, the moments of
:mod:`~sdekit.solvers.exponential`); B(h) = −h (``variant="bh1"``) or e^{−h} − 1 (``"bh2"``, the default
of diffusers and of the paper's guided sampling). That is the predictor **UniP**. The corrector
**UniC** re-takes the step just made, from the previous state, with the prediction at the
point it reached included (r = 1): the network is evaluated there anyway to start the next
step, so the correction costs no score call and raises the order by one. With
``order=p`` the method is of order p + 1 at one score call per step.

sdekit's final denoising is UniPC's last step to σ = 0 (x̂₀ at the last, uncorrected state),
and with ``lower_order_final`` the order falls over the last steps counting that one, as
diffusers' ``UniPCMultistepScheduler`` does; so on the same grid the two agree step for step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from sdekit.per_sample import Generators
from sdekit.reverse import ScoreFn
from sdekit.sde import SDE, LinearSDE
from sdekit.solvers.exponential import exponential_moments
from sdekit.solvers.grid_stepper import GridStepper, weighted_sum
from sdekit.solvers.ode import ODE_METHODS

__all__ = ["UniPC"]

VARIANTS = ("bh1", "bh2")


@dataclass(frozen=True)
class _Step:
    """Step i: x̂₀ = inv_alpha·x + sigma2_over_alpha·s; the corrected state from the previous one and
    (m_i, m_{i−1}, …); then x' = decay·x + Σ_j predict_j m_{i−j}."""

    inv_alpha: float
    sigma2_over_alpha: float
    correct_decay: float
    correct_weights: tuple[float, ...]
    decay: float
    predict_weights: tuple[float, ...]


@ODE_METHODS.register("unipc")
class UniPC(GridStepper):
    """UniPC-p with its corrector (UniP-p + UniC): order ``order`` + 1 at one score call per step.

    Options: ``order`` (1, 2 or 3, default 2: third order overall), ``variant`` (``"bh2"``, default, or
    ``"bh1"``: the B(h) of the order conditions), ``corrector`` (default True; False is the predictor
    UniP alone) and ``lower_order_final`` (default True: the order falls over the last steps, counting the
    final denoising as the last). The first steps warm up (order 1, 2, …) while the history fills.

    Practical advice: a strong choice below ~20 NFE on a log-SNR grid (the default); like DPM-Solver++
    it needs a :class:`~sdekit.sde.LinearSDE`. Keep the final denoising on: it is UniPC's last step.
    """

    defaults: ClassVar[dict[str, Any]] = {"order": 2, "variant": "bh2", "corrector": True, "lower_order_final": True}
    order: int
    variant: str
    corrector: bool
    lower_order_final: bool
    kind = "ode"
    needs_linear_sde = True

    def check_options(self, options: dict[str, Any]) -> None:
        order = options["order"]
        if isinstance(order, bool) or not isinstance(order, int) or order not in (1, 2, 3):
            raise ValueError(f"order must be the int 1, 2 or 3, got {order!r}")
        if options["variant"] not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {options['variant']!r}")
        for name in ("corrector", "lower_order_final"):
            if not isinstance(options[name], bool):
                raise TypeError(f"{name} must be a bool, got {options[name]!r}")

    def order_at(self, i: int) -> int:
        """The predictor's order at step ``i``: warm-up, and with ``lower_order_final`` at most the steps left
        counting the final denoising."""
        order = min(self.order, i + 1)
        return min(order, self.steps - i + 1) if self.lower_order_final else order

    def bind(self, sde: SDE, score: ScoreFn, grid: Tensor, generator: Generators | None = None) -> None:
        super().bind(sde, score, grid, generator)
        assert isinstance(sde, LinearSDE)  # needs_linear_sde
        self.plan = self._coefficients(sde, torch.cat([self.t, self.t_next[-1:]]))
        self._history: list[Tensor] = []  # m_i, m_{i−1}, … (most recent first)
        self._previous: Tensor | None = None  # the (corrected) state the last step started from

    def _weights(self, lam: Tensor, alpha: Tensor, start: int, order: int, corrector: bool) -> Tensor:
        """For every step n ≥ ``start``: the weights of (m_new, m_n, m_{n−1}, …) in a UniC step of ``order``
        (corrector) or of (m_n, m_{n−1}, …) in a UniP step; times α at the step's end. Shape (steps − start, ·)."""
        n = torch.arange(start, self.steps)
        h = lam[n + 1] - lam[n]
        z = -h
        big_b = z if self.variant == "bh1" else torch.expm1(z)
        # nodes r_k = (λ_{n−k} − λ_n)/h of the history, k = 1 … order − 1 (and r = 1 for the new point)
        nodes = [(lam[n - k] - lam[n]) / h for k in range(1, order)]
        conditions = order if corrector else order - 1
        points = [*nodes, torch.ones_like(h)] if corrector else nodes
        if conditions == 0:
            rho = torch.zeros(len(n), 0, dtype=torch.float64)
        elif conditions == 1:  # UniP-2 and UniC-1: ρ = ½, as the paper and diffusers take it
            rho = torch.full((len(n), 1), 0.5, dtype=torch.float64)
        else:
            # j! φ_{j+1}(−h)(−h) = −μ_j, the exponential moments DPM-Solver++ uses (series for small h)
            moments = exponential_moments(h, conditions + 1)
            b = torch.stack([-moments[j] / big_b for j in range(1, conditions + 1)], 1)
            vandermonde = torch.stack([torch.stack([p**j for p in points], 1) for j in range(conditions)], 1)
            rho = torch.linalg.solve(vandermonde, b)
        scale = alpha[n + 1, None] * big_b[:, None]
        history = -scale * rho[:, : len(nodes)] / torch.stack(nodes, 1) if nodes else rho[:, :0]
        base = (alpha[n + 1] * -torch.expm1(z))[:, None] - history.sum(1, keepdim=True)
        if corrector:
            new = -scale * rho[:, -1:]
            return torch.cat([new, base - new, history], 1)
        return torch.cat([base, history], 1)

    def _coefficients(self, sde: LinearSDE, times: Tensor) -> list[_Step]:
        alpha, sigma = sde.kernel(times)
        lam = alpha.log() - sigma.log()
        orders = [self.order_at(i) for i in range(self.steps)]
        predict = {k: self._weights(lam, alpha, k - 1, k, False) for k in set(orders)}
        correct = {k: self._weights(lam, alpha, k - 1, k, True) for k in set(orders[:-1])}
        decay = (sigma[1:] / sigma[:-1]).tolist()
        inv_alpha, sigma2_over_alpha = (1 / alpha).tolist(), (sigma**2 / alpha).tolist()
        plan = []
        for i, order in enumerate(orders):
            if i > 0 and self.corrector:  # re-take step i − 1 (of order orders[i − 1]) with m_i included
                q = orders[i - 1]
                correct_weights, correct_decay = tuple(correct[q][i - 1 - (q - 1)].tolist()), decay[i - 1]
            else:
                correct_weights, correct_decay = (), 0.0
            predict_weights = tuple(predict[order][i - (order - 1)].tolist())
            plan.append(_Step(inv_alpha[i], sigma2_over_alpha[i], correct_decay, correct_weights, decay[i],
                              predict_weights))  # fmt: skip
        return plan

    def step(self, x: Tensor, i: int) -> Tensor:
        c = self.plan[i]
        m = weighted_sum([(c.inv_alpha, x), (c.sigma2_over_alpha, self.score(x, self.times[i]))])
        if c.correct_weights and self._previous is not None:
            x = weighted_sum(
                [(c.correct_decay, self._previous), *zip(c.correct_weights, [m, *self._history], strict=False)]
            )
        self._history = [m, *self._history][: self.order]
        self._previous = x
        return weighted_sum([(c.decay, x), *zip(c.predict_weights, self._history, strict=False)])
