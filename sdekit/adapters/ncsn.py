"""NCSN score networks (Song & Ermon 2019, 2020) over a descending σ list, and their annealed Langevin sampler.

* **v1** networks return the score at level σ_i directly: ``model(x, i)``.
* **v2** networks return a σ-free output that is divided by σ: score = ``model(x, i)``/σ_i.
  (The reference NCSNv2 code divides *inside* the network; wrap such a network as version 1.)

The σ list σ_1 > … > σ_L becomes ``sdekit.VESDE(sigma_min=σ_L, sigma_max=σ_1)``, whose
σ(t) = σ_L (σ_1/σ_L)^t passes through every level of a geometric list (at t_i =
ln(σ_i/σ_L)/ln(σ_1/σ_L)); for a non-geometric list the levels are still hit at
:attr:`NCSNScore.level_times`. With ``label="index"`` the network gets the level nearest
σ(t) (in log σ); with ``label="sigma"`` it gets σ(t) itself (noise-conditional networks
with a continuous σ input).

:func:`annealed_langevin_sample` is the papers' own sampler (Algorithm 1); sdekit's
samplers (``pc_sample`` with ``predictor="reverse_diffusion"``) work on the VE SDE too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

import sdekit
from sdekit.adapters._common import (
    Network,
    PerSampleKwargs,
    call_network,
    check_inputs,
    check_model_kwargs,
    check_network,
)
from sdekit.checks import batch_view, check_choice, check_positive, check_positive_int, check_shape, state_dtype
from sdekit.per_sample import GeneratorLike, Generators, SampleGenerators, as_generators, rand, randn_like

__all__ = ["NCSNScore", "from_sigmas", "geometric_sigmas", "annealed_langevin_sample"]


def geometric_sigmas(sigma_max: float = 1.0, sigma_min: float = 0.01, num_levels: int = 10) -> Tensor:
    """NCSN's σ list: ``num_levels`` values from ``sigma_max`` down to ``sigma_min``, geometric, float64.

    The defaults are NCSN v1's (CIFAR-10: 1 → 0.01, L = 10); NCSNv2 uses σ_1 ≈ the largest
    pairwise data distance and L in the hundreds.
    """
    check_positive_int("num_levels", num_levels)
    if not (0 < sigma_min < sigma_max < math.inf):
        raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min!r}, sigma_max={sigma_max!r}")
    return torch.logspace(math.log10(sigma_max), math.log10(sigma_min), num_levels, dtype=torch.float64)


def check_sigmas(sigmas: object) -> Tensor:
    """σ_1 > … > σ_L > 0 as a float64 CPU tensor, at least two levels."""
    try:
        values = torch.as_tensor(sigmas, dtype=torch.float64).detach().cpu()
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(f"sigmas must be a 1-D sequence of noise levels, got {type(sigmas).__name__}") from error
    if values.ndim != 1 or values.numel() < 2:
        raise ValueError(f"sigmas must be a 1-D sequence of at least 2 noise levels, got shape {tuple(values.shape)}")
    if not bool((torch.isfinite(values) & (values > 0)).all()):
        raise ValueError("sigmas must all be finite and > 0")
    if not bool((values[1:] < values[:-1]).all()):
        raise ValueError("sigmas must be strictly decreasing (σ_1 > σ_2 > … > σ_L, largest first, as in NCSN)")
    return values


class NCSNScore(PerSampleKwargs, torch.nn.Module):
    """``score(x, t)`` from an NCSN network on ``sde = VESDE(σ_L, σ_1)``, a ``torch.nn.Module``.

    Args:
        model: called as ``model(x, label, **kwargs)``; ``label`` is the int64 level index
            ``(B,)`` (``label="index"``) or σ ``(B,)`` in ``x``'s dtype (``label="sigma"``).
        sigmas: the training levels σ_1 > … > σ_L (largest first).
        version: 1 (output is the score) or 2 (output / σ is the score).
        label: ``"index"`` (nearest level; σ of that level for version 2) or ``"sigma"``.
        model_kwargs: conditioning passed to every call.
    """

    def __init__(
        self,
        model: Network,
        sigmas: Tensor,
        *,
        version: int = 1,
        label: str = "index",
        model_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.model = check_network("model", model)
        self.sigmas = check_sigmas(sigmas)
        self.version: int = check_choice("version", version, (1, 2))
        self.label: str = check_choice("label", label, ("index", "sigma"))
        self.model_kwargs = check_model_kwargs(model_kwargs)
        self.sde = sdekit.VESDE(sigma_min=float(self.sigmas[-1]), sigma_max=float(self.sigmas[0]))
        log_sigmas = self.sigmas.log()
        self._midpoints = -0.5 * (log_sigmas[1:] + log_sigmas[:-1])  # ascending in −log σ
        self._device_tables: dict[torch.device, tuple[Tensor, Tensor]] = {}

    def extra_repr(self) -> str:
        return f"levels={self.sigmas.numel()}, version={self.version}, label={self.label!r}, sde={self.sde!r}"

    @property
    def level_times(self) -> Tensor:
        """sdekit times of the levels, t_i = ln(σ_i/σ_L)/ln(σ_1/σ_L): 1 for σ_1 down to 0 for σ_L (float64)."""
        log_sigmas = self.sigmas.log()
        return (log_sigmas - log_sigmas[-1]) / (log_sigmas[0] - log_sigmas[-1])

    def nearest_level(self, t: Tensor) -> Tensor:
        """Index of the level nearest σ(t) in log σ, int64 ``(B,)`` on ``t``'s device."""
        log_sigma = self.sde.std(t.detach().to(torch.float64)).log()
        return torch.bucketize(-log_sigma, self._tables(t.device)[1])

    def forward(self, x: Tensor, t: Tensor, **kwargs: Any) -> Tensor:
        """The score at ``x`` (``(B, *event)``) and times ``t`` (``(B,)``); ``kwargs`` go to the network."""
        t = check_inputs(x, t)
        self.sde.check_time(t)
        if self.label == "index":
            index = self.nearest_level(t.to(x.device))
            return self._evaluate(x, index.expand(x.shape[0]).contiguous(), self._tables(x.device)[0][index], kwargs)
        sigma = self.sde.std(t.detach().to(device=x.device, dtype=torch.float64))
        return self._evaluate(x, sigma.to(x.dtype).expand(x.shape[0]).contiguous(), sigma, kwargs)

    def at_level(self, x: Tensor, index: int, **kwargs: Any) -> Tensor:
        """The score at level ``index`` (0-based, 0 = σ_1) exactly as the network was trained: no time mapping."""
        sigma = self._tables(x.device)[0][index].expand(x.shape[0])
        label = torch.full((x.shape[0],), index, device=x.device) if self.label == "index" else sigma.to(x.dtype)
        return self._evaluate(x, label, sigma, kwargs)

    def _tables(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """(σ levels, log-σ midpoints) on ``device``, copied there once: a copy per call would be a transfer."""
        if device not in self._device_tables:
            self._device_tables[device] = (self.sigmas.to(device), self._midpoints.to(device))
        return self._device_tables[device]

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the per-device copies (a CUDA copy must not travel to a CPU-only process)."""
        return {**self.__dict__, "_device_tables": {}}

    def _evaluate(self, x: Tensor, label: Tensor, sigma: Tensor, kwargs: Mapping[str, Any]) -> Tensor:
        out = call_network("model", self.model, x, label, {**self.model_kwargs, **kwargs})
        return out if self.version == 1 else out * batch_view(1 / sigma, x)


def from_sigmas(
    model: Network,
    sigmas: Tensor,
    *,
    version: int = 1,
    label: str = "index",
    model_kwargs: Mapping[str, Any] | None = None,
) -> tuple[sdekit.VESDE, NCSNScore]:
    """``(VESDE(σ_min=σ_L, σ_max=σ_1), score)`` for an NCSN network trained on ``sigmas`` (largest first).

    ``model``: the network s(x, label); ``version``: 1 (the output is the score) or 2 (the output divided by σ
    is); ``label``: ``"index"`` (the nearest level's index, default) or ``"sigma"`` (σ(t) itself);
    ``model_kwargs``: extra keyword arguments of every call (default none).
    """
    score = NCSNScore(model, sigmas, version=version, label=label, model_kwargs=model_kwargs)
    return score.sde, score


def annealed_langevin_sample(
    model: Network,
    sigmas: Tensor,
    shape: tuple[int, ...] | None = None,
    *,
    steps_each: int = 100,
    step_lr: float = 2e-5,
    version: int = 1,
    label: str = "index",
    denoise: bool = False,
    x_init: Tensor | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    generator: GeneratorLike = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    return_info: bool = False,
) -> Tensor | tuple[Tensor, sdekit.SampleInfo]:
    """Annealed Langevin dynamics, NCSN's Algorithm 1, exactly.

    For each level i = 1..L, with α_i = ε·σ_i²/σ_L² (ε = ``step_lr``), ``steps_each`` times:
    x ← x + (α_i/2)·s(x, σ_i) + √α_i·z, z ~ N(0, I) drawn from ``generator`` (one
    ``torch.Generator``, or one per sample: a list of B generators or int seeds).

    The reference *code* (``anneal_Langevin_dynamics``) writes the same step as
    x + a·s + √(2a)·z with a = step_lr·σ_i²/σ_L², i.e. its ``step_lr`` is ε/2: to
    reproduce a config's ``step_lr``, pass twice it here. The papers' settings: ε = 2e-5,
    T = 100 (v1); NCSNv2 tunes ε per data set and adds the final ``denoise`` step
    x ← x + σ_L²·s(x, σ_L).

    ``x_init`` defaults to U(0, 1)^shape, as in the reference code; pass e.g.
    ``sigmas[0] * torch.randn(shape)`` to start from the VE prior. The device is ``device``,
    else the model's. ``callback`` gets ``{"x", "i", "sigma", "step"}`` after every move.
    Returns the samples, or ``(samples, sdekit.SampleInfo)`` with ``return_info=True``
    (``nfe`` = L·steps_each (+1 with denoise), ``grid`` = the level times).

    ``version``, ``label``, ``model_kwargs``: as for :func:`from_sigmas`; ``dtype``: the state's dtype
    (default: x_init's, else the model's, else float32).
    """
    steps_each = check_positive_int("steps_each", steps_each)
    step_lr = check_positive("step_lr", step_lr)
    score = NCSNScore(model, sigmas, version=version, label=label, model_kwargs=model_kwargs)
    if device is None:
        device = (
            x_init.device
            if isinstance(x_init, Tensor)
            else next((p.device for p in score.parameters()), torch.device("cpu"))
        )
    generators = as_generators("generator", generator, device=device)
    x = _initial_state(shape, x_init, generators, device, state_dtype(dtype, x_init, score, x_name="x_init"))
    sigma_last = float(score.sigmas[-1])
    with torch.no_grad():
        for i, sigma in enumerate(score.sigmas.tolist()):
            alpha = step_lr * (sigma / sigma_last) ** 2
            for step in range(steps_each):
                noise = randn_like(x, generators)
                x = x + (alpha / 2) * score.at_level(x, i) + math.sqrt(alpha) * noise
                if callback is not None:
                    callback({"x": x, "i": i, "sigma": sigma, "step": step})
            _check_finite(x, f"level {i} (sigma = {sigma:.6g})")
        if denoise:
            x = x + sigma_last**2 * score.at_level(x, len(score.sigmas) - 1)
            _check_finite(x, "the final denoising step")
    if not return_info:
        return x
    nfe = len(score.sigmas) * steps_each + int(denoise)
    info = sdekit.SampleInfo(nfe=nfe, steps=nfe - int(denoise), rejected=0, grid=score.level_times)
    return x, info


def _initial_state(
    shape: tuple[int, ...] | None,
    x_init: Tensor | None,
    generator: Generators | None,
    device: torch.device | str,
    dtype: torch.dtype,
) -> Tensor:
    if x_init is not None:
        if not isinstance(x_init, Tensor) or x_init.ndim < 2:
            raise TypeError("x_init must be a tensor of shape (batch, *event)")
        if shape is not None and tuple(shape) != tuple(x_init.shape):
            raise ValueError(f"shape {tuple(shape)} disagrees with x_init's shape {tuple(x_init.shape)}")
        if isinstance(generator, SampleGenerators):
            generator.check_batch(x_init.shape[0])
        return x_init.to(device=device, dtype=dtype)
    if shape is None:
        raise TypeError("give shape=(batch, *event) or x_init=")
    if len(check_shape("shape", shape)) < 2:
        raise ValueError(f"shape must be (batch, *event) with at least one event dimension, got {tuple(shape)!r}")
    return rand(tuple(shape), generator, device=device, dtype=dtype)


def _check_finite(x: Tensor, where: str) -> None:
    if not bool(torch.isfinite(x).all()):
        raise FloatingPointError(f"non-finite state after {where}: lower step_lr or check the network")
