"""Hugging Face diffusers UNets and schedulers as sdekit scores (optional extra ``diffusers``).

:func:`from_unet` reads a DDPM/DDIM-style scheduler — its ``alphas_cumprod`` (the exact
float32 levels diffusers trains with), ``num_train_timesteps`` and ``prediction_type`` — and
returns ``(sde, score)``: the :class:`sdekit.DiscreteVPSDE` of those levels and the matching
ε / x̂₀ / v adapter around the UNet, labelling times with the nearest trained timestep.

Sampling sdekit's ``ancestral`` predictor on the scheduler's own timesteps
(``grid=timestep_grid(scheduler)``) reproduces ``DDPMScheduler`` with ``clip_sample=False``
and ``variance_type="fixed_small"`` step for step; its final Tweedie denoising step
(``denoise=True``) is DDPM's last step from timestep 0. sdekit never clips or thresholds
x̂₀: a scheduler's ``clip_sample``/``thresholding`` settings are not applied, and :func:`from_unet`
warns when they are set. A scheduler without a DDPM β schedule (flow matching, EDM's σ) is
refused with one line rather than read as a default DDPM schedule.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

import sdekit
from sdekit.adapters._common import Network, check_network
from sdekit.adapters._labels import index_times
from sdekit.adapters._prediction import PredictionScore
from sdekit.adapters.ddpm import EpsilonScore
from sdekit.adapters.v import VelocityScore
from sdekit.adapters.x0 import DataScore
from sdekit.checks import check_choice

__all__ = ["PREDICTION_TYPES", "UNetNetwork", "from_unet", "timestep_grid"]

#: diffusers ``prediction_type`` -> the sdekit adapter for it.
PREDICTION_TYPES: dict[str, type[PredictionScore]] = {
    "epsilon": EpsilonScore,
    "sample": DataScore,
    "v_prediction": VelocityScore,
}


def _import_diffusers() -> Any:
    try:
        return importlib.import_module("diffusers")
    except ImportError as error:
        raise ImportError(
            "adapters.diffusers needs the optional dependency 'diffusers': "
            "pip install 'sdekit[diffusers]' (or pip install diffusers)"
        ) from error


class UNetNetwork(torch.nn.Module):
    """Calls ``unet(x, timestep, **kwargs)`` and returns a plain tensor.

    Unwraps diffusers' output object (``.sample``) or a tuple (first entry); with a learned
    variance (``variance_type`` "learned"/"learned_range", 2C output channels) keeps the
    first C channels, the mean prediction.

    ``learned_variance``: whether the UNet outputs twice the image channels (default False); then only the
    first half, the prediction, is kept.
    """

    def __init__(self, unet: Network, *, learned_variance: bool = False) -> None:
        super().__init__()
        self.unet = check_network("unet", unet)
        self.learned_variance = learned_variance

    def forward(self, x: Tensor, timestep: Tensor, **kwargs: Any) -> Tensor:
        out = self.unet(x, timestep, **kwargs)
        out = getattr(out, "sample", out)
        if isinstance(out, tuple | list):
            out = out[0]
        if self.learned_variance and isinstance(out, Tensor) and out.ndim >= 2 and out.shape[1] == 2 * x.shape[1]:
            out = out[:, : x.shape[1]]
        return out


def _config(scheduler: Any) -> Mapping[str, Any]:
    config = getattr(scheduler, "config", scheduler)
    if not isinstance(config, Mapping):
        raise TypeError(
            f"scheduler must be a diffusers scheduler (DDPMScheduler, DDIMScheduler, ...) or its config mapping, "
            f"got {type(scheduler).__name__}"
        )
    return config


#: Config keys of a DDPM β schedule, and keys only schedulers of other kinds (flow matching, EDM σ) have.
_DDPM_KEYS = ("beta_schedule", "trained_betas", "beta_start", "beta_end")
_NOT_DDPM_KEYS = ("shift", "use_dynamic_shifting", "base_shift", "sigma_data", "sigma_min", "sigma_max")


def _check_convertible(scheduler: Any, config: Mapping[str, Any]) -> None:
    """Refuse schedulers without a DDPM β schedule (flow matching, EDM's σ); warn where diffusers would clip x̂₀."""
    if scheduler is config:  # a config mapping: DDPMScheduler fills in a missing β schedule, unless it is another kind
        name = str(config.get("_class_name", "config"))
        other_kind = [key for key in _NOT_DDPM_KEYS if key in config]
        convertible = any(key in config for key in _DDPM_KEYS) or not other_kind
    else:
        name = type(scheduler).__name__
        convertible = isinstance(getattr(scheduler, "alphas_cumprod", None), Tensor)
    if not convertible:
        raise ValueError(
            f"scheduler {name} has no DDPM noise schedule (alphas_cumprod / betas), so from_unet cannot read its "
            "levels: flow-matching, EDM σ-parameterised, continuous-time and token schedulers are not converted; it "
            "reads DDPM-style schedulers (DDPM, DDIM, DPM-Solver, PNDM, Euler on betas, ...)"
        )
    clipping = [key for key in ("clip_sample", "thresholding") if config.get(key)]
    if clipping:
        warnings.warn(
            f"scheduler {name} has {' and '.join(f'{key}=True' for key in clipping)}: sdekit does not clip or "
            "threshold x̂₀, so samples can differ from that scheduler's pipeline (by up to the clipped amount)",
            UserWarning,
            stacklevel=3,
        )


def _alphas_cumprod(scheduler: Any, config: Mapping[str, Any], diffusers: Any) -> Tensor:
    """The scheduler's own ᾱ table; for a bare config, the one a ``DDPMScheduler`` builds from it."""
    table = getattr(scheduler, "alphas_cumprod", None)
    if not isinstance(table, Tensor):
        table = diffusers.DDPMScheduler.from_config(dict(config)).alphas_cumprod
    abar = table.detach().to("cpu", torch.float64)
    if abar.numel() and float(abar[-1]) <= 0:
        raise ValueError(
            "the scheduler's alphas_cumprod reaches 0 (zero terminal SNR, rescale_betas_zero_snr=True): "
            "the VP SDE needs ᾱ_N > 0"
        )
    return abar


def from_unet(
    unet: Network,
    scheduler: Any,
    *,
    time_label: str = "index",
    model_kwargs: Mapping[str, Any] | None = None,
) -> tuple[sdekit.DiscreteVPSDE, PredictionScore]:
    """``(sde, score)`` for a diffusers UNet trained with ``scheduler`` (or a scheduler config mapping).

    Args:
        unet: a ``UNet2DModel`` (or ``UNet2DConditionModel``, or any module called as
            ``unet(x, t, **kwargs)`` returning ``.sample``, a tuple or a tensor).
        scheduler: a ``DDPMScheduler``/``DDIMScheduler``-style scheduler or its ``config``;
            ``prediction_type`` must be "epsilon", "sample" or "v_prediction".
        time_label: ``"index"`` (default: integer timesteps, as diffusers trains), ``"fractional"``
            (the real-valued timestep of σ̃(t), interpolated in log σ̃ as diffusers' σ-schedulers do:
            to sample between the trained levels, e.g. on a Karras σ-grid) or ``"continuous"``
            (t·(N − 1)) for UNets trained on continuous timesteps.
        model_kwargs: conditioning passed to every UNet call, e.g.
            ``{"class_labels": y}`` or ``{"encoder_hidden_states": emb}``.
    """
    diffusers = _import_diffusers()
    config = _config(scheduler)
    _check_convertible(scheduler, config)
    prediction_type = check_choice("prediction_type", config.get("prediction_type", "epsilon"), PREDICTION_TYPES)
    abar = _alphas_cumprod(scheduler, config, diffusers)
    num_train_timesteps = config.get("num_train_timesteps", abar.numel())
    if num_train_timesteps != abar.numel():
        raise ValueError(
            f"num_train_timesteps={num_train_timesteps!r} disagrees with the scheduler's {abar.numel()} alphas_cumprod"
        )
    sde = sdekit.DiscreteVPSDE(abar)
    learned = config.get("variance_type") in ("learned", "learned_range")
    network = UNetNetwork(unet, learned_variance=learned)
    score = PREDICTION_TYPES[prediction_type](network, sde, time_label=time_label, model_kwargs=model_kwargs)
    return sde, score


def timestep_grid(scheduler: Any) -> Tensor:
    """sdekit's time grid for the scheduler's inference ``timesteps`` (after ``set_timesteps``): (i + 1)/N.

    Pass it as ``grid=`` to an sdekit sampler to step exactly on those trained levels; the
    last point is the level of timestep 0, and ``denoise=True`` then takes DDPM's final step.
    A σ-scheduler whose timesteps are fractional (``EulerDiscreteScheduler`` with Karras σ, ...)
    gives the times of its ``sigmas`` instead (:func:`sdekit.from_sigmas`; its last σ = 0 is
    the final denoising step); sample it with ``from_unet(..., time_label="fractional")``.
    """
    timesteps = getattr(scheduler, "timesteps", None)
    if not isinstance(timesteps, Tensor):
        raise TypeError("scheduler has no timesteps tensor; call scheduler.set_timesteps(n) first")
    if bool((timesteps != timesteps.round()).any()):  # a σ-scheduler between trained levels (Karras σ, ...)
        sigmas = getattr(scheduler, "sigmas", None)
        if not isinstance(sigmas, Tensor):
            raise ValueError("scheduler has fractional timesteps but no sigmas: sdekit cannot place them")
        config = _config(scheduler)
        sde = sdekit.DiscreteVPSDE(_alphas_cumprod(scheduler, config, _import_diffusers()))
        return sdekit.from_sigmas(sde, sigmas.detach().to("cpu", torch.float64))
    return index_times(timesteps, int(_config(scheduler)["num_train_timesteps"]))
