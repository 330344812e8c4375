"""The forward SDE's coefficients at a run's times: the one place every fixed-grid stepper takes them from.

A stepper writes its step once, as a weighted sum (:func:`~sdekit.solvers.grid_stepper.weighted_sum`)
of the state, the score and the noise, with the SDE's coefficients — the drift f(x, t), the
diffusion g(t)², the forward chain of one step (f_i, G_i) and the corrector's α-ratio — taken
from a :class:`SDECoefficients` built for the run's times:

* on a :class:`~sdekit.sde.LinearSDE` (:class:`LinearCoefficients`) they are computed once for all
  times, vectorised in float64, and kept as Python floats; f(x, t) = f(t)·x is then a float on
  the state itself, which ``weighted_sum`` folds into the state's own coefficient;
* on any other SDE (:class:`GeneralCoefficients`) the same quantities are evaluated from the SDE
  at each call, as per-sample tensors (or tensors of the state's shape for a state-dependent
  diffusion, with the divergence term it brings).

So a stepper has one code path for every SDE; only where its coefficients come from differs.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import torch
from torch import Tensor

from sdekit.checks import batch_view
from sdekit.reverse import diffusion_divergence
from sdekit.sde import SDE, LinearSDE

__all__ = ["Coefficient", "Terms", "SDECoefficients", "LinearCoefficients", "GeneralCoefficients", "coefficients"]

#: A coefficient of a weighted sum: a Python float, or a tensor broadcastable against the state.
Coefficient = float | Tensor
#: Σ c_k v_k as a list of (c_k, v_k).
Terms = list[tuple[Coefficient, Tensor]]


class SDECoefficients(abc.ABC):
    """The SDE's coefficients at the times ``times`` (float64, CPU, any shape; indexed by position).

    ``self.time(j)`` is time j as a ``(1,)`` tensor on the state's device, as the score receives it.
    """

    def __init__(self, sde: SDE, times: Tensor, device: torch.device | str) -> None:
        self.sde = sde
        self.shape = tuple(times.shape)
        flat = times.detach().double().cpu().reshape(-1)
        self._times = flat.to(device).split(1)

    def _flat(self, index: int | tuple[int, ...]) -> int:
        """The position of ``index`` (an int, or a tuple into the times' shape) among the flattened times."""
        if isinstance(index, int):
            return index
        position = 0
        for i, size in zip(index, self.shape, strict=True):
            position = position * size + i
        return position

    def time(self, index: int | tuple[int, ...]) -> Tensor:
        return self._times[self._flat(index)]

    @abc.abstractmethod
    def drift(self, x: Tensor, index: int | tuple[int, ...]) -> Terms:
        """f(x, t) at the time ``index`` as weighted terms."""

    @abc.abstractmethod
    def g2(self, x: Tensor, index: int | tuple[int, ...]) -> Coefficient:
        """g(t)² at the time ``index`` (the state's shape if the diffusion depends on the state)."""

    @abc.abstractmethod
    def divergence(self, x: Tensor, index: int | tuple[int, ...]) -> Tensor | None:
        """∇·(G Gᵀ) at the time ``index`` for a state-dependent diffusion, else None."""


class LinearCoefficients(SDECoefficients):
    """A LinearSDE's f(t) and g(t)² at every time, computed once in float64 and kept as floats."""

    def __init__(self, sde: LinearSDE, times: Tensor, device: torch.device | str) -> None:
        super().__init__(sde, times, device)
        flat = times.detach().double().cpu().reshape(-1)
        self._f = sde.drift_coeff(flat).tolist()
        self._g2 = sde.diffusion_squared(flat).tolist()

    def drift(self, x: Tensor, index: int | tuple[int, ...]) -> Terms:
        return [(self._f[self._flat(index)], x)]

    def g2(self, x: Tensor, index: int | tuple[int, ...]) -> Coefficient:
        return self._g2[self._flat(index)]

    def divergence(self, x: Tensor, index: int | tuple[int, ...]) -> Tensor | None:
        return None


class GeneralCoefficients(SDECoefficients):
    """Any SDE's f(x, t), g(t)² and ∇·(GGᵀ), evaluated at each call."""

    def drift(self, x: Tensor, index: int | tuple[int, ...]) -> Terms:
        return [(1.0, self.sde.drift(x, self.time(index)))]

    def g2(self, x: Tensor, index: int | tuple[int, ...]) -> Coefficient:
        g = self.sde.diffusion(x, self.time(index))
        return g**2 if g.shape == x.shape else batch_view(g**2, x)

    def divergence(self, x: Tensor, index: int | tuple[int, ...]) -> Tensor | None:
        if not self.sde.state_dependent_diffusion:
            return None
        return diffusion_divergence(self.sde, x, self.time(index))


def coefficients(sde: SDE, times: Tensor, device: torch.device | str) -> SDECoefficients:
    """The coefficients of ``sde`` at ``times``: precomputed floats for a LinearSDE, evaluated otherwise."""
    if isinstance(sde, LinearSDE):
        return LinearCoefficients(sde, times, device)
    return GeneralCoefficients(sde, times, device)


class ForwardChain(abc.ABC):
    """One forward step per grid interval, x_t = x_t' + f_i + G_i z (``SDE.discretize``), for reverse diffusion."""

    @abc.abstractmethod
    def step(self, x: Tensor, i: int) -> tuple[Terms, Coefficient, Coefficient]:
        """(f_i as weighted terms, G_i, G_i²) for interval i."""


class LinearForwardChain(ForwardChain):
    """A LinearSDE's chain: f_i is linear in x, so discretising x = 1 gives its coefficient; floats."""

    def __init__(self, sde: LinearSDE, t: Tensor, t_next: Tensor) -> None:
        f_i, G_i = sde.discretize(torch.ones(t.shape[0], 1, dtype=torch.float64), t, t_next)
        self._f, self._G, self._G2 = f_i[:, 0].tolist(), G_i.tolist(), (G_i**2).tolist()

    def step(self, x: Tensor, i: int) -> tuple[Terms, Coefficient, Coefficient]:
        return [(self._f[i], x)], self._G[i], self._G2[i]


class GeneralForwardChain(ForwardChain):
    """Any SDE's chain, from ``sde.discretize`` at each step."""

    def __init__(self, sde: SDE, times: Sequence[Tensor]) -> None:
        self.sde, self.times = sde, times

    def step(self, x: Tensor, i: int) -> tuple[Terms, Coefficient, Coefficient]:
        f_i, G_i = self.sde.discretize(x, self.times[i], self.times[i + 1])
        G = G_i.to(x.dtype) if G_i.shape == x.shape else batch_view(G_i, x)
        return [(1.0, f_i)], G, G**2


def forward_chain(sde: SDE, t: Tensor, t_next: Tensor, times: Sequence[Tensor]) -> ForwardChain:
    """The forward chain over the grid: precomputed for a LinearSDE, from ``discretize`` per step otherwise."""
    if isinstance(sde, LinearSDE):
        return LinearForwardChain(sde, t, t_next)
    return GeneralForwardChain(sde, times)


def mean_ratio_squared(sde: SDE, t: Tensor, t_next: Tensor) -> list[float]:
    """a_i = α(t_i)²/α(t_{i+1})² per step (the corrector's step factor), 1 for an SDE without a kernel."""
    if isinstance(sde, LinearSDE):
        return (2 * (sde.log_mean_coeff(t) - sde.log_mean_coeff(t_next))).exp().tolist()
    return torch.ones_like(t).tolist()
