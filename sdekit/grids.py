"""Time grids for fixed-step samplers: strictly decreasing float64 tensors from T to eps.

A grid with ``steps`` steps has ``steps + 1`` points. Where the grid puts its
points matters more than the solver's order at low step counts:

* ``uniform`` in t — the SDE paper's choice; wasteful near t = 0 for VP, where the
  data's fine structure appears in the last few percent of t.
* ``log_snr`` — uniform in λ = log(α/σ): the natural grid for exponential integrators
  (DPM-Solver); a good default below ~50 steps.
* ``edm`` (alias ``karras``, k-diffusion's and diffusers' name) — Karras et al. (2022) ρ = 7
  spacing of σ/α, dense at low noise.
* ``quadratic`` — t_i = eps + (T − eps)(1 − i/N)², DDIM's quadratic spacing.

Any sampler also accepts an explicit ``grid=`` tensor; :func:`check_grid` says what
it must satisfy. A grid of noise levels σ (k-diffusion's ``get_sigmas_*``, EDM's σ_i) becomes one
through :func:`from_sigmas`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from sdekit.checks import check_choice, check_positive, check_positive_int
from sdekit.sde import SDE, LinearSDE

__all__ = ["uniform", "log_snr", "edm", "quadratic", "make_grid", "check_grid", "from_sigmas", "GRIDS"]


def uniform(sde: SDE, steps: int, eps: float) -> Tensor:
    """Uniform in t from T to eps."""
    return torch.linspace(sde.T, eps, steps + 1, dtype=torch.float64)


def quadratic(sde: SDE, steps: int, eps: float) -> Tensor:
    """t_i = eps + (T − eps)(1 − i/N)²: quadratic spacing, dense near eps."""
    u = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    return eps + (sde.T - eps) * u**2


def log_snr(sde: SDE, steps: int, eps: float) -> Tensor:
    """Uniform in λ(t) = log(α/σ) between λ(T) and λ(eps) (needs a :class:`LinearSDE`)."""
    linear = _linear("log_snr", sde)
    ends = linear.log_snr(torch.tensor([sde.T, eps], dtype=torch.float64))
    return _from_log_snr(linear, torch.linspace(float(ends[0]), float(ends[1]), steps + 1, dtype=torch.float64), eps)


def edm(sde: SDE, steps: int, eps: float, rho: float = 7.0) -> Tensor:
    """Karras et al. (2022): σ̃ = σ/α spaced uniformly in σ̃^(1/ρ), from σ̃(T) to σ̃(eps)."""
    linear = _linear("edm", sde)
    rho = check_positive("rho", rho)
    sigma_max, sigma_min = (-linear.log_snr(torch.tensor([sde.T, eps], dtype=torch.float64))).exp()
    ramp = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    sigmas = (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return _from_log_snr(linear, -sigmas.log(), eps)


def _from_log_snr(sde: LinearSDE, lam: Tensor, eps: float) -> Tensor:
    """Times for the given log-SNRs, the end points pinned to T and eps exactly (the inversion rounds)."""
    grid = sde.t_from_log_snr(lam)
    grid[0], grid[-1] = sde.T, eps
    return grid


def _linear(name: str, sde: SDE) -> LinearSDE:
    if not isinstance(sde, LinearSDE):
        raise TypeError(f"grid {name!r} needs a LinearSDE (a Gaussian kernel with log-SNR), got {type(sde).__name__}")
    return sde


GRIDS: dict[str, Callable[[SDE, int, float], Tensor]] = {
    "uniform": uniform,
    "log_snr": log_snr,
    "edm": edm,
    "karras": edm,
    "quadratic": quadratic,
}


def make_grid(kind: str, sde: SDE, steps: int, eps: float) -> Tensor:
    """A named grid with ``steps`` steps from ``sde.T`` to ``eps``: ``steps + 1`` decreasing float64 times.

    ``kind``: one of :data:`GRIDS` (``"uniform"``, ``"log_snr"``, ``"edm"`` or its alias ``"karras"``,
    ``"quadratic"``); ``sde``: the
    forward SDE (the log-SNR and EDM grids need a :class:`~sdekit.sde.LinearSDE`); ``eps``: the last time,
    in the SDE's time units.
    """
    check_choice("grid", kind, GRIDS)
    check_positive_int("steps", steps)
    return GRIDS[kind](sde, steps, eps)


def check_grid(grid: object, sde: SDE) -> Tensor:
    """Validate an explicit grid and return it as a float64 CPU tensor.

    It must be 1-D with at least two points, finite, strictly decreasing, start at
    most at T and end above 0. A first point equal to T in float32 (T = 0.999 rounds up by 1.3e-8) is T.
    """
    if not isinstance(grid, Tensor):
        try:
            grid = torch.as_tensor(grid, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as error:
            raise TypeError(f"grid must be a 1-D tensor of times, got {type(grid).__name__}") from error
    grid = grid.detach().to("cpu", torch.float64)
    if grid.ndim != 1 or grid.numel() < 2:
        raise ValueError(f"grid must be a 1-D tensor of at least 2 times, got shape {tuple(grid.shape)}")
    if not bool(torch.isfinite(grid).all()) or not bool((grid[1:] < grid[:-1]).all()):
        raise ValueError("grid must be finite and strictly decreasing (from T towards 0)")
    if sde.T < float(grid[0]) <= sde.T * (1 + 2.0**-24):  # T rounded to float32 (0.999 + 1.3e-8) is T
        grid = grid.clone()
        grid[0] = sde.T
    if float(grid[0]) > sde.T or float(grid[-1]) <= 0:
        raise ValueError(
            f"grid must run within (0, T] = (0, {sde.T:.9g}], got {float(grid[0]):.9g} ... {float(grid[-1]):.9g}"
        )
    return grid


#: How far above σ̃(T) a first noise level may lie and still mean T: σ-grids built in float32 (diffusers'
#: schedulers, k-diffusion on a float32 table) round at ~6e-8 relative.
_SIGMA_RTOL = 1e-6


def from_sigmas(sde: SDE, sigmas: Tensor | Sequence[float]) -> Tensor:
    """The times at which the noise level σ(t)/α(t) is each of ``sigmas``: a grid for ``grid=``.

    ``sigmas``: decreasing noise levels σ̃ = σ/α — the σ of EDM and k-diffusion (for a VP model
    σ̃ = √((1 − ᾱ)/ᾱ); for VE it is σ itself), e.g. ``k_diffusion.sampling.get_sigmas_karras(n,
    σ_min, σ_max)``. A last entry 0 (k-diffusion's convention, whose last step lands on the
    denoised estimate) is dropped: sdekit's final denoising step (``denoise=True``, the default)
    is that step, so the NFE is the same. ``sde``: a :class:`~sdekit.sde.LinearSDE`; every σ̃ must
    lie within its range, (σ̃(0), σ̃(T)] (a value above σ̃(T) would start before T; within 1e-6
    relative of σ̃(T) is T, for σ-grids computed in float32).

    Returns float64 times, decreasing, with ``len(sigmas)`` points (one fewer with a trailing 0);
    converting back gives ``sigmas`` to 1e-9 relative (the first to 1e-6 when pinned to T).
    """
    linear = _linear("from_sigmas", sde)
    try:
        levels = torch.as_tensor(sigmas, dtype=torch.float64).detach().cpu()
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(
            f"sigmas must be a 1-D tensor or sequence of noise levels, got {type(sigmas).__name__}"
        ) from error
    if levels.ndim != 1:
        raise ValueError(f"sigmas must be 1-D, got shape {tuple(levels.shape)}")
    if levels.numel() >= 2 and float(levels[-1]) == 0.0:
        levels = levels[:-1]  # the step to σ = 0 is the final denoising step
    if levels.numel() < 2:
        raise ValueError(f"sigmas must hold at least 2 noise levels above 0, got {levels.tolist()}")
    if (
        not bool(torch.isfinite(levels).all())
        or not bool((levels > 0).all())
        or not bool((levels[1:] < levels[:-1]).all())
    ):
        raise ValueError("sigmas must be finite, positive (but a last 0) and strictly decreasing")
    ends = (-linear.log_snr(torch.tensor([sde.T, 0.0], dtype=torch.float64))).exp()  # σ̃(T), σ̃(0)
    top, bottom = float(ends[0]), float(ends[1])
    if float(levels[0]) > top * (1 + _SIGMA_RTOL):
        raise ValueError(
            f"sigmas[0] = {float(levels[0]):.6g} is above the SDE's largest noise level σ(T)/α(T) = {top:.6g}"
        )
    if float(levels[-1]) <= bottom:
        raise ValueError(
            f"sigmas[-1] = {float(levels[-1]):.6g} is not above the SDE's smallest noise level σ(0)/α(0) = {bottom:.6g}"
        )
    times = linear.t_from_log_snr(-levels.log())
    if math.isclose(float(levels[0]), top, rel_tol=_SIGMA_RTOL):
        times[0] = sde.T
    return check_grid(times, sde)
