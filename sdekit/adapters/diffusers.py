"""Hugging Face diffusers UNets and schedulers as sdekit scores (optional extra ``diffusers``).

:func:`from_unet` reads the scheduler a network was trained with and returns ``(sde, score)``:

* a DDPM/DDIM-style scheduler — its ``alphas_cumprod`` (the exact float32 levels diffusers trains
  with), ``num_train_timesteps`` and ``prediction_type`` — gives the :class:`sdekit.DiscreteVPSDE` of
  those levels and the matching ε / x̂₀ / v adapter, labelling times with the nearest trained timestep;
* a flow-matching scheduler (``FlowMatchEulerDiscreteScheduler``, ``FlowMatchHeunDiscreteScheduler``)
  gives :class:`sdekit.RectifiedFlowSDE` and a :class:`~sdekit.adapters.flow.FlowScore` fed the timestep
  σ·N, as those pipelines do; the scheduler's ``shift`` moves only its sampling grid, not the model;
* an EDM scheduler (``EDMEulerScheduler``, ``EDMDPMSolverMultistepScheduler``) gives :class:`sdekit.EDMSDE`
  on its σ range and a :class:`~sdekit.adapters.edm.DenoiserScore` around the UNet with the scheduler's
  preconditioning (:class:`EDMPreconditioned`).

Sampling sdekit's ``ancestral`` predictor on the scheduler's own timesteps
(``grid=timestep_grid(scheduler)``) reproduces ``DDPMScheduler`` with ``clip_sample=False``
and ``variance_type="fixed_small"`` step for step; its final Tweedie denoising step
(``denoise=True``) is DDPM's last step from timestep 0. sdekit never clips or thresholds
x̂₀: a scheduler's ``clip_sample``/``thresholding`` settings are not applied, and :func:`from_unet`
warns when they are set. Any other scheduler (consistency models, token schedulers, VE score SDEs) is
refused with one line rather than read as a default DDPM schedule.
"""

from __future__ import annotations

import importlib
import math
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
from sdekit.adapters.edm import DenoiserScore
from sdekit.adapters.flow import FlowScore
from sdekit.adapters.v import VelocityScore
from sdekit.adapters.x0 import DataScore
from sdekit.checks import batch_view, check_choice

__all__ = ["PREDICTION_TYPES", "EDMPreconditioned", "UNetNetwork", "from_unet", "timestep_grid"]

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
#: Schedulers converted without a DDPM schedule: their model convention, by class name.
_FLOW_SCHEDULERS = ("FlowMatchEulerDiscreteScheduler", "FlowMatchHeunDiscreteScheduler")
_EDM_SCHEDULERS = ("EDMEulerScheduler", "EDMDPMSolverMultistepScheduler")


def _class_from_keys(config: Mapping[str, Any]) -> str:
    """The scheduler class of a config mapping without ``_class_name`` (``scheduler.config``), from keys only it has."""
    if "scale_factors" not in config and any(k in config for k in ("use_dynamic_shifting", "invert_sigmas")):
        return "FlowMatchEulerDiscreteScheduler"
    if "sigma_data" in config and "sigma_schedule" in config:
        return "EDMDPMSolverMultistepScheduler" if "solver_order" in config else "EDMEulerScheduler"
    return "config"


def _kind(scheduler: Any, config: Mapping[str, Any]) -> str:
    """ "ddpm", "flow" or "edm": how the scheduler's network was trained; refuse any other kind in one line."""
    if scheduler is config:  # a config mapping: DDPMScheduler fills in a missing β schedule, unless it is another kind
        name = str(config.get("_class_name", _class_from_keys(config)))
        other_kind = [key for key in _NOT_DDPM_KEYS if key in config]
        ddpm = any(key in config for key in _DDPM_KEYS) or not other_kind
    else:
        name = type(scheduler).__name__
        ddpm = isinstance(getattr(scheduler, "alphas_cumprod", None), Tensor)
    if ddpm:
        kind = "ddpm"
    elif name in _FLOW_SCHEDULERS:
        kind = "flow"
        if config.get("invert_sigmas"):
            raise ValueError(f"scheduler {name} has invert_sigmas=True (an inverting loop): from_unet cannot read it")
    elif name in _EDM_SCHEDULERS:
        kind = "edm"
    elif name == "config" and set(config) - {"_use_default_values"} == {"num_train_timesteps", "shift"}:
        raise ValueError(
            "scheduler config holds only num_train_timesteps and shift, which FlowMatchHeunDiscreteScheduler and "
            "FlowMapEulerDiscreteScheduler share: pass the scheduler itself, or the config with its _class_name"
        )
    else:
        raise ValueError(
            f"scheduler {name} has no DDPM noise schedule (alphas_cumprod / betas) and is not a flow-matching or EDM "
            f"scheduler from_unet knows ({', '.join(_FLOW_SCHEDULERS + _EDM_SCHEDULERS)}), so its levels cannot be "
            "read: consistency-model, continuous-time VE and token schedulers are not converted"
        )
    return kind


def _warn_clipping(scheduler: Any, config: Mapping[str, Any]) -> None:
    clipping = [key for key in ("clip_sample", "thresholding") if config.get(key)]
    if clipping:
        name = str(config.get("_class_name", "config")) if scheduler is config else type(scheduler).__name__
        warnings.warn(
            f"scheduler {name} has {' and '.join(f'{key}=True' for key in clipping)}: sdekit does not clip or "
            "threshold x̂₀, so samples can differ from that scheduler's pipeline (by up to the clipped amount)",
            UserWarning,
            stacklevel=3,
        )


class EDMPreconditioned(torch.nn.Module):
    """An EDM denoiser D(x, σ) = c_skip x + c_out F(c_in x, c_noise) from a UNet F, as diffusers' EDM schedulers
    precondition it (Karras et al. 2022, table 1).

    c_in = 1/√(σ² + σ_d²), c_noise = ¼ log σ, c_skip = σ_d²/(σ² + σ_d²), c_out = ±σ σ_d/√(σ² + σ_d²)
    (minus for ``prediction_type="v_prediction"``). ``unet``: called as ``unet(x, c_noise, **kwargs)``
    (a diffusers output object, tuple or tensor); ``sigma_data``: the data's std σ_d (diffusers'
    default 0.5); ``prediction_type``: "epsilon" (default) or "v_prediction". Called as
    ``D(x, sigma, **kwargs)`` with ``sigma`` of shape ``(B,)``; returns x̂₀. Wrap it with
    :class:`~sdekit.adapters.edm.DenoiserScore`.
    """

    def __init__(self, unet: Network, *, sigma_data: float = 0.5, prediction_type: str = "epsilon") -> None:
        super().__init__()
        self.unet = UNetNetwork(unet)
        if isinstance(sigma_data, bool) or not isinstance(sigma_data, int | float) or not 0 < sigma_data < math.inf:
            raise ValueError(f"sigma_data must be a positive finite number, got {sigma_data!r}")
        self.sigma_data = float(sigma_data)
        self.sign = {"epsilon": 1.0, "v_prediction": -1.0}[
            check_choice("prediction_type", prediction_type, ("epsilon", "v_prediction"))
        ]

    def forward(self, x: Tensor, sigma: Tensor, **kwargs: Any) -> Tensor:
        variance = sigma.double() ** 2 + self.sigma_data**2
        c_in = variance.rsqrt().to(x.dtype)
        c_noise = (0.25 * sigma.double().log()).to(x.dtype)
        out = self.unet(x * batch_view(c_in, x), c_noise, **kwargs)
        c_skip = self.sigma_data**2 / variance
        c_out = self.sign * sigma.double() * self.sigma_data * variance.rsqrt()
        return batch_view(c_skip.to(x.dtype), x) * x + batch_view(c_out.to(x.dtype), x) * out


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
    time_label: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> tuple[sdekit.LinearSDE, torch.nn.Module]:
    """``(sde, score)`` for a diffusers UNet (or transformer) trained with ``scheduler`` (or a scheduler config).

    Args:
        unet: a ``UNet2DModel`` (or ``UNet2DConditionModel``, a flow-matching transformer, or any module
            called as ``unet(x, t, **kwargs)`` returning ``.sample``, a tuple or a tensor).
        scheduler: the scheduler, or its ``config``: DDPM-style (``DDPMScheduler``, ``DDIMScheduler``,
            DPM-Solver, Euler on betas, ...; ``prediction_type`` "epsilon", "sample" or "v_prediction"),
            flow matching (``FlowMatchEulerDiscreteScheduler``, ``FlowMatchHeunDiscreteScheduler``) or EDM
            (``EDMEulerScheduler``, ``EDMDPMSolverMultistepScheduler``). Others are refused in one line.
        time_label: the label the network is fed. DDPM-style: ``"index"`` (default: integer timesteps, as
            diffusers trains), ``"fractional"`` (the real-valued timestep of σ̃(t), interpolated in log σ̃ as
            diffusers' σ-schedulers do: to sample between the trained levels, e.g. on a Karras σ-grid) or
            ``"continuous"`` (t·(N − 1)) for UNets trained on continuous timesteps. Flow matching:
            ``"scaled"`` (default, σ·N, what SD3-style pipelines feed) or ``"time"`` (σ itself, for a
            transformer fed timestep/1000 as Flux's pipeline does). EDM schedulers feed ¼ log σ; no choice.
        model_kwargs: conditioning passed to every UNet call, e.g.
            ``{"class_labels": y}`` or ``{"encoder_hidden_states": emb}``.

    Returns ``(sde, score)``: a :class:`sdekit.DiscreteVPSDE`, :class:`sdekit.RectifiedFlowSDE` or
    :class:`sdekit.EDMSDE`, and the score module around ``unet``.
    """
    diffusers = _import_diffusers()
    config = _config(scheduler)
    kind = _kind(scheduler, config)
    _warn_clipping(scheduler, config)
    if kind == "flow":
        sde = sdekit.RectifiedFlowSDE()
        label = check_choice("time_label", "scaled" if time_label is None else time_label, ("scaled", "time"))
        network = UNetNetwork(unet)
        num = int(config.get("num_train_timesteps", 1000))
        return sde, FlowScore(network, sde, time_label=label, num_timesteps=num, model_kwargs=model_kwargs)
    if kind == "edm":
        if time_label is not None:
            raise ValueError(f"time_label={time_label!r}: an EDM scheduler's UNet is fed ¼ log σ, there is no choice")
        edm_sde = sdekit.EDMSDE(float(config.get("sigma_min", 0.002)), float(config.get("sigma_max", 80.0)))
        denoiser = EDMPreconditioned(
            unet,
            sigma_data=float(config.get("sigma_data", 0.5)),
            prediction_type=str(config.get("prediction_type", "epsilon")),
        )
        return edm_sde, DenoiserScore(denoiser, edm_sde, model_kwargs=model_kwargs)
    prediction_type = check_choice("prediction_type", config.get("prediction_type", "epsilon"), PREDICTION_TYPES)
    abar = _alphas_cumprod(scheduler, config, diffusers)
    num_train_timesteps = config.get("num_train_timesteps", abar.numel())
    if num_train_timesteps != abar.numel():
        raise ValueError(
            f"num_train_timesteps={num_train_timesteps!r} disagrees with the scheduler's {abar.numel()} alphas_cumprod"
        )
    ddpm_sde = sdekit.DiscreteVPSDE(abar)
    learned = config.get("variance_type") in ("learned", "learned_range")
    network = UNetNetwork(unet, learned_variance=learned)
    score = PREDICTION_TYPES[prediction_type](
        network, ddpm_sde, time_label="index" if time_label is None else time_label, model_kwargs=model_kwargs
    )
    return ddpm_sde, score


def timestep_grid(scheduler: Any) -> Tensor:
    """sdekit's time grid for the scheduler's inference ``timesteps`` (after ``set_timesteps``).

    Pass it as ``grid=`` to an sdekit sampler, on the SDE :func:`from_unet` returned, to step exactly on
    the scheduler's levels; ``denoise=True`` then takes the scheduler's last step (to x̂₀).

    * DDPM-style with integer timesteps: (i + 1)/N, the trained levels; the last point is the level of
      timestep 0, and the final denoising is DDPM's last step from timestep 0.
    * A σ-scheduler with fractional timesteps (``EulerDiscreteScheduler`` with Karras σ, ...): the times of
      its ``sigmas`` (:func:`sdekit.from_sigmas`; the last σ = 0 is the final denoising step); sample it
      with ``from_unet(..., time_label="fractional")``.
    * EDM: its ``sigmas`` are the times of :class:`sdekit.EDMSDE` (the trailing 0 dropped).
    * Flow matching: its ``sigmas`` are the times of :class:`sdekit.RectifiedFlowSDE`, which must start at
      or below its T (0.999): diffusers' default grid starts at σ = 1, where the score holds no velocity, so
      pass ``set_timesteps(sigmas=...)`` a grid from T, or use sdekit's own grid.
    """
    timesteps = getattr(scheduler, "timesteps", None)
    if not isinstance(timesteps, Tensor):
        raise TypeError("scheduler has no timesteps tensor; call scheduler.set_timesteps(n) first")
    config = _config(scheduler)
    kind = _kind(scheduler, config)
    sigmas = getattr(scheduler, "sigmas", None)
    if kind != "ddpm" or bool((timesteps != timesteps.round()).any()):  # σ-grids (Karras σ, EDM, flow matching)
        if not isinstance(sigmas, Tensor):
            raise ValueError("scheduler has fractional timesteps but no sigmas: sdekit cannot place them")
        levels = sigmas.detach().to("cpu", torch.float64)
        if kind == "flow":
            sde: sdekit.LinearSDE = sdekit.RectifiedFlowSDE()
            if math.isclose(float(levels[0]), sde.T, rel_tol=1e-6):  # T as a float32 σ
                levels[0] = sde.T
            if float(levels[0]) > sde.T:
                shift = float(config.get("shift", 1.0))
                start = sde.T / (shift - (shift - 1) * sde.T)  # the σ that the scheduler's shift maps to T
                raise ValueError(
                    f"the scheduler's first σ = {float(levels[0]):.6g} is above the rectified flow's T = {sde.T:g} "
                    "(there the score no longer determines the velocity): call set_timesteps(sigmas=...) with a "
                    f"first σ of at most {start:.6g} (the scheduler's shift = {shift:g} maps it to T), e.g. "
                    f"numpy.linspace({start:.6g}, 1 / N, n), or sample on sdekit's own grid"
                )
            levels = torch.where(levels > 0, levels / (1 - levels), levels)  # t → σ̃ = t/(1 − t)
        elif kind == "edm":
            if levels.numel() >= 2 and float(levels[-1]) > 0 and float(levels[-1]) == float(levels[-2]):
                raise ValueError(
                    "the scheduler has final_sigmas_type='sigma_min': its last step has length 0 and returns the "
                    "state at σ_min, not denoised; use final_sigmas_type='zero' (its last step is sdekit's final "
                    "denoising), or this grid without its last σ and denoise=False"
                )
            sde = sdekit.EDMSDE(float(config.get("sigma_min", 0.002)), float(config.get("sigma_max", 80.0)))
        else:
            sde = sdekit.DiscreteVPSDE(_alphas_cumprod(scheduler, config, _import_diffusers()))
        return sdekit.from_sigmas(sde, levels)
    return index_times(timesteps, int(config["num_train_timesteps"]))
