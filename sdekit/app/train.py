"""A small, complete training loop for score models: DSM loss, EMA weights, atomic safetensors checkpoints.

Meant for low-dimensional problems, tests and tutorials (a 2-D mixture trains in well under
a minute on a CPU), not as a replacement for a real training framework::

    mixture = GaussianMixture.random(dim=2, modes=8, generator=torch.Generator().manual_seed(0))
    sde = VPSDE()
    torch.manual_seed(0)
    model = ScoreMLP(sde, dim=2, data_std=3.0)
    result = train_score_model(model, sde, lambda n, g: mixture.sample(n, generator=g),
                               steps=3000, generator=torch.Generator().manual_seed(1), progress=True)
    x = ode_sample(sde, result.ema, shape=(4096, 2), method="dopri5")

Sample with the EMA weights (``result.ema``): they are markedly better than the raw
weights for the same number of steps. Checkpoints hold the model, the EMA copy, the Adam
state, the step and the data generator's state, so a resumed run continues bit-identically.
"""

from __future__ import annotations

import copy
import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm.auto import tqdm

from sdekit.checks import (
    batch_view,
    check_choice,
    check_nonnegative_int,
    check_open_interval,
    check_positive,
    check_positive_int,
)
from sdekit.losses import NoiseLevels, ddpm_loss, dsm_loss, smld_loss
from sdekit.score_matching import ism_loss, ssm_loss
from sdekit.sde import VESDE, VPSDE, DiscreteVPSDE, LinearSDE, linear_betas

__all__ = [
    "ScoreMLP",
    "ImageScore",
    "EMA",
    "TrainResult",
    "Recipe",
    "LOSSES",
    "recipe",
    "train_score_model",
    "save_checkpoint",
    "load_checkpoint",
    "ema_weights",
]

#: ``data(n, generator) -> Tensor``: a fresh batch of n clean samples.
DataFn = Callable[[int, torch.Generator | None], Tensor]
#: ``loss(model, x0, generator) -> scalar``: one step's training objective (see :func:`recipe`).
LossFn = Callable[[nn.Module, Tensor, torch.Generator | None], Tensor]


class ScoreMLP(nn.Module):
    """s(x, t) = −ε̂(c_in(t)·x, t)/σ(t): an MLP predicting the noise, preconditioned by the SDE's kernel.

    The input is scaled by c_in = 1/√(α²·data_std² + σ²) so the network sees unit-scale
    inputs at every t, and the time enters through Fourier features of the log-SNR
    (normalised to [−1, 1] over [eps, T]). Predicting ε rather than s keeps the targets
    O(1) at every noise level, which is what DSM with λ = σ² regresses.

    Args:
        sde: the forward SDE (a :class:`~sdekit.sde.LinearSDE`).
        dim: data dimension (event shape (dim,)).
        hidden, depth: width and number of hidden layers (SiLU).
        features: number of Fourier frequencies of the time embedding.
        data_std: overall standard deviation of the data (per coordinate).
        eps: the smallest time the model will see (for the log-SNR normalisation).
    """

    def __init__(
        self,
        sde: LinearSDE,
        dim: int,
        *,
        hidden: int = 128,
        depth: int = 3,
        features: int = 8,
        data_std: float = 1.0,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if not isinstance(sde, LinearSDE):
            raise TypeError(f"sde must be a sdekit.LinearSDE, got {type(sde).__name__}")
        self.sde, self.data_std = sde, check_positive("data_std", data_std)
        dim, hidden, depth = (check_positive_int(n, v) for n, v in (("dim", dim), ("hidden", hidden), ("depth", depth)))
        features = check_positive_int("features", features)
        ends = sde.log_snr(torch.tensor([check_open_interval("eps", eps, 0.0, sde.T), sde.T], dtype=torch.float64))
        self.frequencies: Tensor
        self.register_buffer("frequencies", math.pi * torch.arange(1, features + 1, dtype=torch.float32))
        self.log_snr_range = (float(ends[1]), float(ends[0]))
        layers: list[nn.Module] = [nn.Linear(dim + 2 * features, hidden), nn.SiLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(hidden, hidden), nn.SiLU()]
        layers.append(nn.Linear(hidden, dim))
        self.net = nn.Sequential(*layers)

    def time_features(self, log_snr: Tensor) -> Tensor:
        """Sines and cosines of the log-SNR λ(t) scaled to [−1, 1] over the SDE's range."""
        low, high = self.log_snr_range
        u = (2 * (log_snr - low) / (high - low) - 1).to(self.frequencies.dtype)
        angles = u[:, None] * self.frequencies
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        alpha, sigma, c_in = preconditioning(self.sde, t, x, self.data_std)
        features = self.time_features(alpha.log() - sigma.log()).to(x.dtype)
        inputs = torch.cat([x * batch_view(c_in, x), features], dim=1)
        return -self.net(inputs) / batch_view(sigma, x)


def preconditioning(sde: LinearSDE, t: Tensor, x: Tensor, data_std: float) -> tuple[Tensor, Tensor, Tensor]:
    """(α, σ, c_in) per sample, float64: the kernel at t and the input scale 1/√(α²·data_std² + σ²)."""
    alpha, sigma = sde.kernel(t.double().expand(x.shape[0]))
    return alpha, sigma, (alpha**2 * data_std**2 + sigma**2).rsqrt()


class ImageScore(nn.Module):
    """s(x, t) = −ε̂(c_in(t)·x, label)/σ(t) with an ε-network on images, e.g. the digits UNet.

    The same preconditioning as :class:`ScoreMLP`, c_in = 1/√(α²·data_std² + σ²); the network
    gets the continuous label ``label_scale``·t (``label_scale`` = 999 reads t ∈ [0, 1] on a
    DDPM network's 0 … 999 index scale).
    """

    def __init__(self, network: nn.Module, sde: LinearSDE, *, data_std: float = 0.5, label_scale: float = 999.0):
        super().__init__()
        if not isinstance(sde, LinearSDE):
            raise TypeError(f"sde must be a sdekit.LinearSDE, got {type(sde).__name__}")
        self.network, self.sde = network, sde
        self.data_std = check_positive("data_std", data_std)
        self.label_scale = check_positive("label_scale", label_scale)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        _, sigma, c_in = preconditioning(self.sde, t, x, self.data_std)
        label = (self.label_scale * t.double().expand(x.shape[0])).to(x.dtype)
        return -self.network(x * batch_view(c_in, x), label) / batch_view(sigma, x)


# --- recipes: a loss, the SDE its score lives on, and how the network is called -------------------------------------

#: The losses :func:`recipe` knows: denoising (continuous, DDPM, NCSN levels) and the Jacobian-based ones.
LOSSES = ("dsm", "ddpm", "smld", "ssm", "ism")


@dataclass(frozen=True)
class Recipe:
    """A training loss as :func:`train_score_model` calls it, and the SDE to build the network on and sample with.

    Every recipe trains a continuous-time score ``model(x, t)`` of ``sde`` (a :class:`ScoreMLP`
    or :class:`ImageScore`): the discrete losses call it at the times of their levels, so the
    trained model samples with every sdekit sampler as it is. ``sigmas`` are the noise levels
    (largest first) of the multi-level losses, else None.
    """

    name: str
    sde: LinearSDE
    loss: LossFn
    sigmas: Tensor | None = None

    def at_levels(self, model: nn.Module) -> Callable[[Tensor, Tensor], Tensor]:
        """``model`` as NCSN calls a network, ``score(x, i)`` at level index i (multi-level recipes only)."""
        if self.sigmas is None:
            raise ValueError(f"loss {self.name!r} has no noise levels")
        return at_levels(model, self.sigmas)


def at_levels(model: nn.Module, sigmas: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
    """A continuous-time score of VESDE(σ_L, σ_1) called at level indices: ``score(x, i) = model(x, t_i)``."""
    times = _on_device(level_times(sigmas))
    return lambda x, i: model(x, times(x.device)[i].to(x.dtype))


def _on_device(table: Tensor) -> Callable[[torch.device], Tensor]:
    """``table`` on a device, copied there once (a copy per training step would be a transfer)."""
    copies: dict[torch.device, Tensor] = {}

    def on(device: torch.device) -> Tensor:
        if device not in copies:
            copies[device] = table.to(device)
        return copies[device]

    return on


def level_times(sigmas: Tensor) -> Tensor:
    """Times of the levels on VESDE(σ_L, σ_1): t_i = ln(σ_i/σ_L)/ln(σ_1/σ_L) (float64)."""
    logs = sigmas.double().log()
    return (logs - logs[-1]) / (logs[0] - logs[-1])


def recipe(
    name: str,
    *,
    sigma_max: float = 20.0,
    sigma_min: float = 0.01,
    levels: int = 32,
    projections: int = 1,
    eps: float = 1e-5,
    timesteps: int = 1000,
) -> Recipe:
    """The training recipe for loss ``name`` (one of :data:`LOSSES`).

    * ``"dsm"``: :func:`~sdekit.losses.dsm_loss` on VP(0.1, 20), t ~ U(eps, 1);
    * ``"ddpm"``: :func:`~sdekit.losses.ddpm_loss` on DDPM's linear β schedule with
      ``timesteps`` levels (a :class:`~sdekit.sde.DiscreteVPSDE`): ε = −σ_i·model(x, t_i);
    * ``"smld"``, ``"ssm"``, ``"ism"``: NCSN's multi-level losses on ``levels`` geometric
      σ from ``sigma_max`` to ``sigma_min`` (VESDE(σ_min, σ_max)): denoising
      (:func:`~sdekit.losses.smld_loss`), sliced score matching, variance-reduced with
      ``projections`` Gaussian projections (:func:`~sdekit.score_matching.ssm_loss`), or
      implicit score matching with the exact trace in ≤ 16 dimensions
      (:func:`~sdekit.score_matching.ism_loss`).

    Choose ``sigma_max`` about the largest distance between two data points (NCSN v2's
    advice) and ``sigma_min`` below the data's resolution.
    """
    name = check_choice("loss", name, LOSSES)
    projections = check_positive_int("projections", projections)
    if name == "dsm":
        sde = VPSDE()
        return Recipe(name, sde, lambda model, x0, g: dsm_loss(sde, model, x0, eps=eps, generator=g))
    if name == "ddpm":
        discrete = DiscreteVPSDE.from_betas(linear_betas(check_positive_int("timesteps", timesteps)))
        times = _on_device(torch.arange(1, discrete.num_timesteps + 1, dtype=torch.float64) / discrete.num_timesteps)

        def ddpm(model: nn.Module, x0: Tensor, g: torch.Generator | None) -> Tensor:
            def eps_model(x: Tensor, i: Tensor) -> Tensor:
                t = times(x.device)[i]
                return -batch_view(discrete.std(t), x) * model(x, t.to(x.dtype))

            return ddpm_loss(eps_model, discrete, x0, generator=g)

        return Recipe(name, discrete, ddpm)
    levels = check_positive_int("levels", levels)
    if levels < 2 or not 0 < sigma_min < sigma_max:
        raise ValueError(f"need levels >= 2 and 0 < sigma_min < sigma_max, got {levels}, {sigma_min}, {sigma_max}")
    sigmas = torch.logspace(math.log10(sigma_max), math.log10(sigma_min), levels, dtype=torch.float64)
    ve = VESDE(sigma_min=sigma_min, sigma_max=sigma_max)
    noise = NoiseLevels(sigmas)

    def multi_level(model: nn.Module, x0: Tensor, g: torch.Generator | None) -> Tensor:
        score = at_levels(model, sigmas)
        if name == "smld":
            return smld_loss(score, sigmas, x0, generator=g)
        if name == "ssm":
            return ssm_loss(score, x0, noise=noise, n_projections=projections, variance_reduced=True, generator=g)
        return ism_loss(score, x0, noise=noise, n_projections=projections, generator=g)

    return Recipe(name, ve, multi_level, sigmas)


class EMA:
    """Exponential moving average of a model's parameters and buffers: θ̄ ← θ̄ + (1 − d)(θ − θ̄).

    The decay ramps up as min(decay, (1 + n)/(10 + n)) over the first updates, so the
    average is not dominated by the random initialisation in short runs. ``module`` is a
    copy of the model holding the averaged weights, ready to use as a score.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        self.decay = check_open_interval("ema_decay", decay, 0.0, 1.0)
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        averaged = list(self.module.state_dict().values())
        current = list(model.state_dict().values())
        for avg, value in zip(averaged, current, strict=True):
            if avg.is_floating_point():
                avg.lerp_(value, 1 - decay)
            else:
                avg.copy_(value)


@dataclass
class TrainResult:
    """``model`` (raw weights, trained in place), ``ema`` (the averaged copy: sample with it), per-step
    ``losses``, the number of ``steps`` done in total and the wall ``seconds`` of this call."""

    model: nn.Module
    ema: nn.Module
    losses: list[float] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0


def train_score_model(
    model: nn.Module,
    sde: LinearSDE,
    data: Tensor | DataFn,
    *,
    steps: int = 2000,
    batch_size: int = 512,
    lr: float = 2e-3,
    ema_decay: float = 0.999,
    weighting: str = "std2",
    eps: float = 1e-5,
    generator: torch.Generator | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 0,
    resume: bool = True,
    progress: bool = False,
    loss: LossFn | None = None,
) -> TrainResult:
    """Train ``model`` as a score of ``sde`` with Adam and an EMA copy, by DSM or by ``loss``.

    Args:
        model: the score network ``model(x, t)`` (e.g. :class:`ScoreMLP`); trained in place.
        sde: the forward SDE.
        data: a tensor data set (N, *event) — batches are drawn from it with replacement — or
            a function ``data(n, generator)`` returning fresh samples (infinite data).
        steps: total optimiser steps (a resumed run does only the remaining ones).
        batch_size, lr: Adam batch size and learning rate; the rate decays by cosine to
            lr/20 over ``steps``, which sharpens the final score noticeably.
        ema_decay: decay of the weight average (see :class:`EMA`).
        weighting, eps: passed to :func:`~sdekit.losses.dsm_loss`.
        generator: draws batches, times and noise; with a seeded model initialisation the
            run is deterministic on a given machine and thread count.
        checkpoint: path of a safetensors file written atomically (temp file + rename) every
            ``checkpoint_every`` steps (0: only at the end), and read first when ``resume``.
        progress: show a tqdm bar with the running loss.
        loss: ``loss(model, x0, generator) -> scalar`` instead of :func:`~sdekit.losses.dsm_loss`
            on ``sde`` (``weighting`` and ``eps`` are then unused): e.g. ``recipe("ssm").loss``.
    """
    steps, batch_size = check_positive_int("steps", steps), check_positive_int("batch_size", batch_size)
    lr, every = check_positive("lr", lr), check_nonnegative_int("checkpoint_every", checkpoint_every)
    if loss is not None and not callable(loss):
        raise TypeError(f"loss must be a function loss(model, x0, generator), got {type(loss).__name__}")

    def objective(net: nn.Module, x0: Tensor, g: torch.Generator | None) -> Tensor:
        if loss is not None:
            return loss(net, x0, g)
        return dsm_loss(sde, net, x0, eps=eps, weighting=weighting, generator=g)

    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    ema = EMA(model, ema_decay)
    draw = _batches(data, batch_size)
    result = TrainResult(model, ema.module)
    if checkpoint is not None and resume and Path(checkpoint).exists():
        result.steps = load_checkpoint(checkpoint, model, ema, optimizer, generator)
    start = time.perf_counter()
    model.train()
    with tqdm(total=steps, initial=result.steps, disable=not progress, desc="training", unit="step") as bar:
        while result.steps < steps:
            value = objective(model, draw(generator), generator)
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            for group in optimizer.param_groups:
                group["lr"] = _cosine(lr, result.steps, steps)
            optimizer.step()
            ema.update(model)
            result.steps += 1
            result.losses.append(float(value.detach()))
            bar.update(1)
            bar.set_postfix(loss=f"{result.losses[-1]:.4f}", refresh=False)
            if checkpoint is not None and (result.steps == steps or (every and result.steps % every == 0)):
                save_checkpoint(checkpoint, model, ema, optimizer, result.steps, generator)
    model.eval()
    result.seconds = time.perf_counter() - start
    return result


def _cosine(lr: float, step: int, steps: int) -> float:
    """Cosine decay from lr to lr/20 over the run (a function of the step: resumes exactly)."""
    return lr / 20 + (lr - lr / 20) * 0.5 * (1 + math.cos(math.pi * step / steps))


def _batches(data: Tensor | DataFn, batch_size: int) -> Callable[[torch.Generator | None], Tensor]:
    if isinstance(data, Tensor):
        if data.ndim < 2 or data.shape[0] < 1 or not data.is_floating_point():
            raise ValueError(f"data must be a floating tensor of shape (N, *event), got {tuple(data.shape)}")

        def from_tensor(generator: torch.Generator | None) -> Tensor:
            index = torch.randint(0, data.shape[0], (batch_size,), generator=generator, device=data.device)
            return data[index]

        return from_tensor
    if not callable(data):
        raise TypeError(f"data must be a tensor or a function data(n, generator), got {type(data).__name__}")
    return lambda generator: data(batch_size, generator)


# --- checkpoints -------------------------------------------------------------------------------------------------


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    ema: EMA,
    optimizer: torch.optim.Optimizer,
    step: int,
    generator: torch.Generator | None = None,
) -> None:
    """Write model, EMA, optimiser state, step and generator state to ``path`` (safetensors), atomically.

    The file is written to a temporary file in the same directory and renamed over
    ``path``, so a crash mid-write never leaves a truncated checkpoint.
    """
    tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
    tensors |= {f"ema/{k}": v for k, v in ema.module.state_dict().items()}
    optim_state = optimizer.state_dict()
    for index, state in optim_state["state"].items():
        tensors |= {f"optimizer/{index}/{k}": torch.as_tensor(v) for k, v in state.items()}
    if generator is not None:
        tensors["generator"] = generator.get_state()
    metadata = {
        "step": str(step),
        "ema_updates": str(ema.updates),
        "param_groups": json.dumps(optim_state["param_groups"]),
    }
    target = Path(path)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, temporary, metadata=metadata)
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def load_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    ema: EMA | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    generator: torch.Generator | None = None,
) -> int:
    """Restore what :func:`save_checkpoint` wrote into the given objects; returns the step.

    ``model`` gets the raw weights; pass ``ema=None`` etc. to skip parts. To sample from a
    checkpoint, load the EMA weights into a model: ``model.load_state_dict(ema_weights(path))``.
    """
    from safetensors import safe_open

    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    model.load_state_dict(_section(tensors, "model"))
    if ema is not None:
        ema.module.load_state_dict(_section(tensors, "ema"))
        ema.updates = int(metadata.get("ema_updates", 0))
    if optimizer is not None:
        state: dict[int, dict[str, Tensor]] = {}
        for key, value in _section(tensors, "optimizer").items():
            index, name = key.split("/", 1)
            state.setdefault(int(index), {})[name] = value
        optimizer.load_state_dict({"state": state, "param_groups": json.loads(metadata["param_groups"])})
    if generator is not None and "generator" in tensors:
        generator.set_state(tensors["generator"])
    return int(metadata.get("step", 0))


def ema_weights(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """The EMA weights stored in a checkpoint, as a state dict for ``model.load_state_dict``."""
    return _section(load_file(str(path)), "ema")


def _section(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {key.removeprefix(prefix + "/"): value for key, value in tensors.items() if key.startswith(prefix + "/")}
