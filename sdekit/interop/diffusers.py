"""sdekit's methods inside diffusers pipelines (the optional extra ``diffusers``).

Two ways in:

* :class:`SdekitScheduler` is a diffusers scheduler (``set_timesteps``, ``step``,
  ``scale_model_input``, ``init_noise_sigma``, ``add_noise``, a config that round-trips) that
  steps with one of sdekit's fixed-grid methods, so an existing pipeline takes it as
  ``pipe.scheduler = SdekitScheduler.from_config(pipe.scheduler.config, method="dpmpp_2m")``.
  A pipeline calls the network once per timestep and hands the output to ``step``, so only
  methods with one network call per step fit (``ddim``, ``ancestral``, ``dpmpp_2m``,
  ``dpmpp_3m``, ``dpmpp_2m_sde``, ``euler_maruyama``, ``reverse_diffusion``, ``euler``); the
  last timestep's step is sdekit's final denoising (x̂₀ there), which is also what diffusers'
  DPM-Solver and DDIM (with ``set_alpha_to_one=True``; ``from_config`` warns otherwise) return
  at the end. A run that starts part-way (img2img pipelines step from ``timesteps[k:]``) starts
  the method afresh there, multistep methods at first order.
* :func:`pipeline_sample` runs a pipeline's UNet through any sdekit method — adaptive ones
  included, which choose their own steps and so cannot be a scheduler — and returns images in
  [0, 1] as the pipeline would.

The model's levels are the scheduler config's (``num_train_timesteps``, ``beta_*``,
``trained_betas``), its output convention ``prediction_type``; ``clip_sample`` and thresholding
are not applied (sdekit never clips x̂₀), so a config asking for them gets a warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import diffusers
import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput
from torch import Tensor

import sdekit
from sdekit.adapters._labels import index_times
from sdekit.adapters.diffusers import PREDICTION_TYPES, _kind, from_unet
from sdekit.checks import check_choice, check_positive_int, state_dtype
from sdekit.per_sample import GeneratorLike, as_generators
from sdekit.sampling import ode_methods, sde_methods
from sdekit.solvers import CountedScore, GridStepper, ode_method, sde_method

__all__ = ["SdekitScheduler", "SdekitSchedulerOutput", "pipeline_sample", "STEP_METHODS"]

SPACINGS = ("leading", "trailing", "linspace")


def _step_methods() -> list[str]:
    """The fixed-grid methods with one network call per step: what a scheduler can run."""
    names = []
    for name in sorted({*sde_methods(), *ode_methods()}):
        built = _built(name, {})
        if isinstance(built, GridStepper) and built.nfe_per_step == 1:
            names.append(name)
    return names


def _built(name: str, options: Mapping[str, Any]) -> Any:
    """The configured method ``name`` (a reverse-SDE one first: ``ddim`` takes ``eta`` there)."""
    return sde_method(name, options) if name in sde_methods() else ode_method(name, options)


#: Names :class:`SdekitScheduler` accepts as ``method``.
STEP_METHODS: list[str] = _step_methods()


@dataclass
class SdekitSchedulerOutput(BaseOutput):
    """``prev_sample``: the state at the next timestep (the denoised sample after the last);
    ``pred_original_sample``: x̂₀ from this step's model output."""

    prev_sample: Tensor
    pred_original_sample: Tensor


class _Once:
    """A value handed out once: the model output to the adapter, then the score to the method, each step."""

    def __init__(self) -> None:
        self.value: Tensor | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Tensor:
        if self.value is None:
            raise RuntimeError("the method asked for a second network call within one scheduler step")
        value, self.value = self.value, None
        return value


class SdekitScheduler(SchedulerMixin, ConfigMixin):  # type: ignore[misc]
    """A diffusers scheduler stepping with an sdekit fixed-grid method on a DDPM-trained model's timesteps.

    Args:
        num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas: the model's
            training schedule, as in ``DDPMScheduler`` (its ᾱ table is built by one, so the levels
            are the exact float32 values diffusers trained with).
        prediction_type: the network's output, ``"epsilon"``, ``"sample"`` or ``"v_prediction"``.
        timestep_spacing: ``"leading"`` (default, DDIM's), ``"trailing"`` or ``"linspace"``
            (diffusers' DDIM definitions); ``set_timesteps(timesteps=[...])`` takes any
            decreasing trained timesteps instead.
        steps_offset: added to ``"leading"`` timesteps (as diffusers does).
        method: one of :data:`STEP_METHODS` (default ``"ddim"``).
        method_options: the method's options, e.g. ``{"eta": 0.5}`` for ``ddim`` or
            ``{"lower_order_final": False}`` for ``dpmpp_2m``.

    Unknown config keys of another scheduler (``clip_sample``, ``set_alpha_to_one``, ...) are
    ignored by ``from_config``; ``clip_sample=True`` or ``thresholding=True`` in that config
    warns, since sdekit does not clip x̂₀. The noise of stochastic methods comes from the
    ``generator`` passed to ``step`` (one, or a list of one per sample, as pipelines pass it),
    else from the global RNG.
    """

    order = 1
    init_noise_sigma = 1.0
    _compatibles = [  # noqa: RUF012 (diffusers declares it an instance attribute)
        "DDPMScheduler",
        "DDIMScheduler",
        "DPMSolverMultistepScheduler",
        "PNDMScheduler",
    ]

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: Sequence[float] | np.ndarray | None = None,
        prediction_type: str = "epsilon",
        timestep_spacing: str = "leading",
        steps_offset: int = 0,
        method: str = "ddim",
        method_options: Mapping[str, Any] | None = None,
    ) -> None:
        check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
        check_choice("timestep_spacing", timestep_spacing, SPACINGS)
        check_choice("method", method, STEP_METHODS)
        self.method = _built(method, dict(method_options or {}))
        ddpm = diffusers.DDPMScheduler(
            num_train_timesteps=num_train_timesteps,
            beta_start=beta_start,
            beta_end=beta_end,
            beta_schedule=beta_schedule,
            trained_betas=trained_betas,
        )
        self.alphas_cumprod: Tensor = ddpm.alphas_cumprod  # type: ignore[attr-defined]
        self.sde = sdekit.DiscreteVPSDE(self.alphas_cumprod.double())
        self.network, self.served_score = _Once(), _Once()
        self.score = PREDICTION_TYPES[prediction_type](self.network, self.sde, time_label="index")
        self.timesteps = torch.from_numpy(np.arange(num_train_timesteps)[::-1].copy())
        self.num_inference_steps: int | None = None
        self._run: Any = None
        self._step_index = self._start = 0
        self._grid = torch.empty(0, dtype=torch.float64)

    @classmethod
    def from_config(cls, config: Any = None, return_unused_kwargs: bool = False, **kwargs: Any) -> SdekitScheduler:
        """diffusers' ``from_config``, warning when the source config clips or thresholds x̂₀."""
        source = dict(getattr(config, "config", config) or {})
        if source.get("clip_sample") or source.get("thresholding"):
            warnings.warn(
                "the scheduler config has clip_sample or thresholding set; SdekitScheduler does not clip x̂₀, so "
                "samples can differ from that scheduler's (by up to the clipped amount)",
                UserWarning,
                stacklevel=2,
            )
        if source.get("set_alpha_to_one") is False:
            warnings.warn(
                "the scheduler config has set_alpha_to_one=False: its last step keeps the noise of ᾱ_0, while "
                "SdekitScheduler's last step returns x̂₀ (the final denoising); the last state differs accordingly",
                UserWarning,
                stacklevel=2,
            )
        if source.get("variance_type") in ("learned", "learned_range"):
            raise ValueError(
                f"variance_type={source['variance_type']!r}: a UNet with a learned variance outputs 2C channels; "
                "SdekitScheduler takes the prediction only: use pipeline_sample (from_unet keeps the mean channels)"
            )
        kind = _kind(source, source) if source else "ddpm"
        if kind != "ddpm":
            family = "a flow-matching" if kind == "flow" else "an EDM"
            raise ValueError(
                f"the scheduler config is {family} one: SdekitScheduler steps DDPM-trained models; sample this "
                "model with pipeline_sample, or with from_unet and an sdekit sampler"
            )
        if return_unused_kwargs:
            raise TypeError("SdekitScheduler.from_config does not return unused kwargs; drop return_unused_kwargs")
        scheduler = super().from_config(config, **kwargs)
        assert isinstance(scheduler, SdekitScheduler)
        return scheduler

    def __len__(self) -> int:
        return int(self.config["num_train_timesteps"])

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        timesteps: Sequence[int] | None = None,
    ) -> None:
        """Choose the inference timesteps: ``num_inference_steps`` of them by ``timestep_spacing``, or ``timesteps``."""
        n_train = int(self.config["num_train_timesteps"])
        if timesteps is not None:
            chosen = np.asarray(list(timesteps), dtype=np.int64)
            if chosen.ndim != 1 or chosen.size < 1 or np.any(np.diff(chosen) >= 0):
                raise ValueError("timesteps must be a non-empty, strictly decreasing sequence of trained timesteps")
            if chosen.min() < 0 or chosen.max() >= n_train:
                raise ValueError(f"timesteps must lie in [0, {n_train - 1}], got {chosen.min()} ... {chosen.max()}")
        else:
            n = check_positive_int("num_inference_steps", num_inference_steps)
            if n > n_train:
                raise ValueError(f"num_inference_steps={n} exceeds num_train_timesteps={n_train}")
            chosen = _spaced(str(self.config["timestep_spacing"]), n, n_train, int(self.config["steps_offset"]))
        if chosen.max() >= n_train:
            raise ValueError(
                f"steps_offset={self.config['steps_offset']} puts the timesteps past the last trained one "
                f"({n_train - 1}): lower steps_offset or num_inference_steps"
            )
        self.num_inference_steps = int(chosen.size)
        self.timesteps = torch.from_numpy(chosen).to(device)
        self._grid = index_times(torch.from_numpy(chosen), n_train)  # float64 on the CPU, once per schedule
        self._run, self._step_index, self._start = None, 0, 0

    def scale_model_input(self, sample: Tensor, timestep: Any = None) -> Tensor:
        """The state as the network takes it: unchanged (the VP formulation needs no input scaling)."""
        return sample

    def add_noise(self, original_samples: Tensor, noise: Tensor, timesteps: Tensor) -> Tensor:
        """√ᾱ_t x₀ + √(1 − ᾱ_t) ε at integer ``timesteps`` (img2img pipelines start from it)."""
        abar = self.alphas_cumprod.to(original_samples.device, original_samples.dtype)[timesteps.to(torch.long)]
        shape = (-1, *([1] * (original_samples.ndim - 1)))
        return abar.sqrt().reshape(shape) * original_samples + (1 - abar).sqrt().reshape(shape) * noise

    def step(
        self,
        model_output: Tensor,
        timestep: int | Tensor,
        sample: Tensor,
        generator: GeneratorLike = None,
        return_dict: bool = True,
        **kwargs: Any,
    ) -> SdekitSchedulerOutput | tuple[Tensor, Tensor]:
        """One step of the method from ``timestep`` to the next inference timestep (x̂₀ after the last)."""
        if self.num_inference_steps is None:
            raise RuntimeError("call set_timesteps(num_inference_steps) before step")
        _check_step_options(self.config["method"], self.method, kwargs)
        i = self._step_index
        if i >= self.num_inference_steps or int(timestep) != int(self.timesteps[i]):
            i = self._index_of(timestep)
        if self._run is None or i != self._step_index:
            # a fresh run from this timestep on (img2img pipelines start part-way): multistep methods start at
            # first order there, as diffusers' do, instead of reading a history they never had
            grid = self._grid[i:].to(sample.device)
            self._run = self.method.start(self.sde, CountedScore(self.served_score), grid, None)
            self._start = i
        if isinstance(generator, list | tuple) and not all(isinstance(g, torch.Generator) for g in generator):
            raise TypeError(
                "generator of step must be a torch.Generator or a list of them (one per sample): int seeds would be "
                "seeded afresh at every step, drawing the same noise each time"
            )
        self._run.generator = as_generators("generator", generator, device=sample.device)
        level = self._grid[i : i + 1]
        self.network.value = model_output.to(sample.dtype)
        score = self.score(sample, level.to(sample.device).expand(sample.shape[0]))  # the output as a score, once
        alpha, sigma = (v.to(sample.device, sample.dtype) for v in self.sde.kernel(level))
        denoised = (sample + sigma**2 * score) / alpha
        if i == self.num_inference_steps - 1:
            prev = denoised  # the final denoising step, x̂₀ at the last timestep
        else:
            self.served_score.value = score  # the method's own score call gets it
            prev = self._run.step(sample, i - self._start)
            self.served_score.value = None
        self._step_index = i + 1
        if not return_dict:
            return prev, denoised
        return SdekitSchedulerOutput(prev_sample=prev, pred_original_sample=denoised)

    def _index_of(self, timestep: int | Tensor) -> int:
        matches = (self.timesteps == int(timestep)).nonzero()
        if matches.numel() == 0:
            raise ValueError(f"timestep {int(timestep)} is not one of the scheduler's timesteps after set_timesteps")
        return int(matches[0, 0])


def _check_step_options(name: str, method: Any, options: Mapping[str, Any]) -> None:
    """Refuse ``step`` options a pipeline passes that the method would otherwise ignore (DDIMPipeline's ``eta``)."""
    eta = options.get("eta")
    if eta is not None and float(eta) != float(getattr(method, "eta", 0.0)):
        where = "method_options={'eta': ...}" if name == "ddim" else "method='ddim' with method_options={'eta': ...}"
        raise ValueError(f"step(eta={eta!r}) differs from the scheduler's method {name!r}; configure it: {where}")
    if options.get("use_clipped_model_output"):
        raise ValueError("use_clipped_model_output=True: SdekitScheduler does not clip x̂₀")


def _spaced(spacing: str, n: int, n_train: int, offset: int) -> np.ndarray:
    """diffusers' DDIM timestep spacings (Lin et al. 2024, table 2): decreasing int64 timesteps."""
    if spacing == "linspace":
        return np.linspace(0, n_train - 1, n).round()[::-1].copy().astype(np.int64)
    if spacing == "leading":
        return (np.arange(0, n) * (n_train // n)).round()[::-1].copy().astype(np.int64) + offset
    return np.round(np.arange(n_train, 0, -n_train / n)).astype(np.int64) - 1


def pipeline_sample(
    pipeline: Any,
    batch_size: int = 1,
    *,
    method: str = "adaptive",
    generator: GeneratorLike = None,
    model_kwargs: Mapping[str, Any] | None = None,
    **options: Any,
) -> Tensor:
    """Images in [0, 1], ``(B, C, H, W)``, from ``pipeline``'s UNet and scheduler through any sdekit method.

    ``pipeline``: a diffusers pipeline with ``unet`` and ``scheduler`` (``DDPMPipeline``,
    ``DDIMPipeline``, ...); its scheduler gives the model's levels and output convention
    (:func:`sdekit.adapters.diffusers.from_unet`). ``method``: a name of ``sample`` (default
    ``"adaptive"``, the per-sample adaptive SDE solver) or of ``ode_sample``; ``options`` go to
    that sampler (``steps``, ``rtol``, ``grid``, ...). ``generator``: one, or one per sample.
    ``model_kwargs``: conditioning passed to every UNet call (``{"class_labels": y}``). The state
    is in the UNet's dtype on its device; the output is ``(x / 2 + 0.5).clamp(0, 1)``, as
    ``DDPMPipeline`` post-processes.
    """
    batch_size = check_positive_int("batch_size", batch_size)
    if getattr(pipeline, "vae", None) is not None:
        raise ValueError(
            "pipeline has a vae (a latent pipeline): pipeline_sample returns pixel-space images of pixel UNets; "
            "sample the latents with sdekit and decode them with the pipeline's vae"
        )
    unet = pipeline.unet
    sde, score = from_unet(unet, pipeline.scheduler, model_kwargs=model_kwargs)
    size = unet.config.sample_size
    shape = (batch_size, unet.config.in_channels, *((size, size) if isinstance(size, int) else size))
    device = next(unet.parameters()).device
    dtype = state_dtype(options.pop("dtype", None), None, unet)
    front = sdekit.sample if method in sde_methods() else sdekit.ode_sample
    check_choice("method", method, sorted({*sde_methods(), *ode_methods()}))
    with torch.no_grad():
        x = front(sde, score, shape, method=method, generator=generator, device=device, dtype=dtype, **options)
    return (x / 2 + 0.5).clamp(0, 1)
