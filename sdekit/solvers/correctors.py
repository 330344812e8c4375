"""Correctors: Langevin MCMC at a fixed time t, run after each predictor step (DESIGN §5).

``step(x, t, t_prev, generator)`` moves ``x`` towards p_t; ``t_prev`` is the time
the predictor came from, used for VP's step-size factor a = ᾱ(t_prev)/ᾱ(t) (the
DDPM α of the step; 1 for VE).

The signal-to-noise ratio ``snr`` r sets the step: Langevin uses
ε = 2a(r‖z‖/‖s‖)² per sample, annealed Langevin (NCSN's Algorithm 1) ε = 2a(rσ(t))².
The SDE paper's default r = 0.16 suits CIFAR-10 sized VE models; lower it if
samples come out noisy, raise it if they stay blurry.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import torch
from torch import Tensor

from sdekit._checks import batch_view, check_positive, event_norm
from sdekit.reverse import ScoreFn
from sdekit.sde import SDE, LinearSDE
from sdekit.solvers.registry import Registry
from sdekit.solvers.score_calls import gaussian_like

__all__ = ["Corrector", "CORRECTORS", "Langevin", "AnnealedLangevin", "NoCorrector"]


class Corrector(abc.ABC):
    """An MCMC step that leaves p_t (approximately) invariant."""

    nfe_per_step: ClassVar[int] = 1

    def __init__(self, sde: SDE, score: ScoreFn, snr: float = 0.16) -> None:
        self.sde = sde
        self.score = score
        self.snr = check_positive("snr", snr)

    @abc.abstractmethod
    def step(self, x: Tensor, t: Tensor, t_prev: Tensor, generator: torch.Generator | None) -> Tensor:
        """One MCMC move of ``x`` at time ``t``."""

    def _alpha_ratio(self, t: Tensor, t_prev: Tensor) -> Tensor:
        """a = ᾱ(t_prev)/ᾱ(t) for a LinearSDE (1 for VE), 1 otherwise; float64 ``(B,)``."""
        if isinstance(self.sde, LinearSDE):
            return (2 * (self.sde.log_mean_coeff(t_prev) - self.sde.log_mean_coeff(t))).exp()
        return torch.ones_like(t)

    def _langevin_move(self, x: Tensor, score: Tensor, step_size: Tensor, noise: Tensor) -> Tensor:
        """x + ε s + √(2ε) z with a per-sample ε."""
        return x + batch_view(step_size, x) * score + batch_view((2 * step_size).sqrt(), x) * noise


CORRECTORS: Registry[type[Corrector]] = Registry("corrector")


@CORRECTORS.register("langevin")
class Langevin(Corrector):
    """Langevin MCMC with the step set per sample by the signal-to-noise ratio."""

    def step(self, x: Tensor, t: Tensor, t_prev: Tensor, generator: torch.Generator | None) -> Tensor:
        score = self.score(x, t)
        noise = gaussian_like(x, generator)
        ratio = event_norm(noise).double() / event_norm(score).double().clamp_min(torch.finfo(torch.float64).tiny)
        step_size = 2 * self._alpha_ratio(t, t_prev) * (self.snr * ratio) ** 2
        return self._langevin_move(x, score, step_size, noise)


@CORRECTORS.register("annealed_langevin")
class AnnealedLangevin(Corrector):
    """NCSN's annealed Langevin dynamics: ε = 2a(r σ(t))², independent of the score's norm."""

    def __init__(self, sde: SDE, score: ScoreFn, snr: float = 0.16) -> None:
        if not isinstance(sde, LinearSDE):
            raise TypeError(f"corrector 'annealed_langevin' needs a LinearSDE (it uses σ(t)), got {type(sde).__name__}")
        super().__init__(sde, score, snr)
        self.linear = sde

    def step(self, x: Tensor, t: Tensor, t_prev: Tensor, generator: torch.Generator | None) -> Tensor:
        score = self.score(x, t)
        step_size = 2 * self._alpha_ratio(t, t_prev) * (self.snr * self.linear.std(t)) ** 2
        return self._langevin_move(x, score, step_size, gaussian_like(x, generator))


@CORRECTORS.register("none")
class NoCorrector(Corrector):
    """No correction."""

    nfe_per_step = 0

    def step(self, x: Tensor, t: Tensor, t_prev: Tensor, generator: torch.Generator | None) -> Tensor:
        return x
