"""EDM's stochastic sampler (Karras et al. 2022, Algorithm 2): Heun steps in σ with "churn".

In the frame of EDM, x̃ = x/α with noise level σ̃ = σ/α, the probability flow is
dx̃/dσ̃ = (x̃ − D(x̃, σ̃))/σ̃ with D the denoiser (x̂₀). Each step first *churns*: it raises the
noise level from σ̃_i to σ̂ = (1 + γ) σ̃_i by adding fresh noise of variance σ̂² − σ̃_i²
(γ = min(S_churn/N, √2 − 1) where S_tmin ≤ σ̃_i ≤ S_tmax, else 0; the noise scaled by S_noise),
then takes a Heun step of the flow from σ̂ to σ̃_{i+1}. Churn forgets part of the error made so far,
like a stochastic sampler, at two score calls a step; γ = 0 everywhere is EDM's deterministic
Heun sampler (k-diffusion's ``sample_heun``). sdekit runs it on any linear SDE, through the score:
D = (x + σ² s)/α at the time whose level is σ̂. σ̂ is held at or below σ̃(T), where the SDE ends.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from sdekit.per_sample import Generators
from sdekit.reverse import ScoreFn
from sdekit.sde import SDE, LinearSDE
from sdekit.solvers.grid_stepper import GridStepper, weighted_sum
from sdekit.solvers.predictors import SDE_STEPPERS
from sdekit.solvers.score_calls import gaussian_like

__all__ = ["EDMStochastic"]


@SDE_STEPPERS.register("edm_stochastic")
class EDMStochastic(GridStepper):
    """EDM's Algorithm 2: churn to σ̂ = (1 + γ)σ̃, then a Heun step in σ̃; two score calls a step.

    Options (EDM's names): ``s_churn`` (total churn S_churn; γ = min(S_churn/steps, √2 − 1), default 40),
    ``s_tmin`` and ``s_tmax`` (the σ̃ range that churns, default 0.05 and 50), ``s_noise`` (the new
    noise's scale, default 1.003) — the paper's ImageNet-64 settings, in the data's units (σ̃ = σ/α).
    ``s_churn=0`` is the deterministic Heun sampler in σ. Noise is drawn every step, as EDM and
    k-diffusion do, from the sampler's ``generator``.

    Practical advice: the paper tunes these per data set; churn helps an imperfect network more than
    an exact score. Use it on an EDM (``grid="edm"``) or log-SNR grid with the final denoising on.
    """

    defaults: ClassVar[dict[str, Any]] = {"s_churn": 40.0, "s_tmin": 0.05, "s_tmax": 50.0, "s_noise": 1.003}
    s_churn: float
    s_tmin: float
    s_tmax: float
    s_noise: float
    nfe_per_step = 2
    kind = "sde"
    needs_linear_sde = True

    def check_options(self, options: dict[str, Any]) -> None:
        for name in ("s_churn", "s_tmin", "s_tmax", "s_noise"):
            value = options[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value) or value < 0:
                raise ValueError(f"{name} must be a number ≥ 0, got {value!r}")
        if options["s_tmin"] > options["s_tmax"]:
            raise ValueError(f"s_tmin must be ≤ s_tmax, got s_tmin={options['s_tmin']!r}, s_tmax={options['s_tmax']!r}")

    def bind(self, sde: SDE, score: ScoreFn, grid: Tensor, generator: Generators | None = None) -> None:
        super().bind(sde, score, grid, generator)
        assert isinstance(sde, LinearSDE)  # needs_linear_sde
        times = torch.cat([self.t, self.t_next[-1:]])
        alpha, sigma = sde.kernel(times)
        level = sigma / alpha  # σ̃ at the grid points
        top = float((-sde.log_snr(torch.tensor([sde.T], dtype=torch.float64))).exp())  # σ̃(T): σ̂ stays below
        gamma = min(self.s_churn / self.steps, math.sqrt(2) - 1)
        churns = (level[:-1] >= self.s_tmin) & (level[:-1] <= self.s_tmax)
        hat = torch.where(churns, (level[:-1] * (1 + gamma)).clamp(max=top), level[:-1])
        hat_times = torch.where(hat > level[:-1], sde.t_from_log_snr(-hat.log()), self.t)
        hat_alpha, hat_sigma = sde.kernel(hat_times)
        self.hat_times = hat_times.to(grid.device).split(1)
        # In x̃ = x/α the flow's slope (x̃ − x̂₀)/σ̃ is −σ s (σ of the state, s the score), so a step needs only
        # the scores: x̃' = x̃ + h(d + d')/2 with d = −σ(t̂) s(α̂ x̃, t̂), d' = −σ' s(α' x̃_Euler, t'), h = σ̃' − σ̂.
        h = level[1:] - hat
        self._plan = list(
            zip(
                (1 / alpha[:-1]).tolist(),
                (self.s_noise * (hat**2 - level[:-1] ** 2).clamp(min=0).sqrt()).tolist(),  # the churn's noise std
                hat_alpha.tolist(),
                (-h * hat_sigma).tolist(),  # the Euler step's weight on s(x̂, t̂)
                alpha[1:].tolist(),
                (-0.5 * h * hat_sigma).tolist(),  # Heun's weights on the two scores
                (-0.5 * h * sigma[1:]).tolist(),
                strict=True,
            )
        )

    def step(self, x: Tensor, i: int) -> Tensor:
        inv_alpha, noise_std, hat_alpha, euler_weight, next_alpha, weight_hat, weight_next = self._plan[i]
        x_tilde = weighted_sum([(inv_alpha, x)], into=(noise_std, gaussian_like(x, self.generator)))
        score_hat = self.score(x_tilde * hat_alpha, self.hat_times[i])
        euler = weighted_sum([(1.0, x_tilde), (euler_weight, score_hat)])
        score_next = self.score(euler * next_alpha, self.times[i + 1])
        return weighted_sum(
            [(next_alpha, x_tilde), (next_alpha * weight_hat, score_hat), (next_alpha * weight_next, score_next)]
        )
