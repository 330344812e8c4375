"""The embedded ``digits`` model: a small ε-prediction UNet on scikit-learn's 8×8 handwritten digits.

The network is a DDPM (Ho et al. 2020) trained with the ε-loss on the linear 1000-step
schedule (β ∈ [1e-4, 0.02], the discretisation of VP(0.1, 20)); :func:`load` turns it
into ``(sde, score)`` through :func:`sdekit.adapters.ddpm.from_betas`, so sampling it exercises
the full path ε-network → adapter → SDE → solver. Data live in [−1, 1] (pixel/8 − 1; the
raw digits take the 17 values 0..16).

:class:`DigitClassifier` is a tiny CNN trained on the same images; its 64-d penultimate
features define the "FD-digits" Fréchet distance (:mod:`sdekit.app.models.fd`).

Both weight files ship inside the package as safetensors and are rebuilt,
deterministically, by ``python scripts/train_digits.py``.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as nnf

from sdekit.app.models._weights import load_into

__all__ = [
    "DigitsUNet",
    "DigitClassifier",
    "NoisyDigitClassifier",
    "load",
    "load_classifier",
    "load_noisy_classifier",
    "load_data",
    "NUM_TIMESTEPS",
    "to_uint8",
]

NUM_TIMESTEPS = 1000
BETA_START, BETA_END = 1e-4, 0.02
UNET_FILE = "digits_unet.safetensors"
CLASSIFIER_FILE = "digits_classifier.safetensors"
NOISY_CLASSIFIER_FILE = "digits_noisy_classifier.safetensors"


def weights_path(name: str) -> Path:
    """Path of a weights file shipped in ``sdekit/app/models/weights``."""
    return Path(str(resources.files("sdekit.app.models").joinpath("weights", name)))


def load_data() -> tuple[Tensor, Tensor]:
    """The 1 797 digits as float32 ``(N, 1, 8, 8)`` in [−1, 1] and their int64 labels (needs scikit-learn)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("the digits data set needs scikit-learn: pip install scikit-learn") from error
    digits = load_digits()
    images = torch.as_tensor(digits.images, dtype=torch.float32).reshape(-1, 1, 8, 8) / 8 - 1
    return images, torch.as_tensor(digits.target, dtype=torch.int64)


def to_uint8(x: Tensor) -> Tensor:
    """Map samples in [−1, 1] to uint8 pixels 0..255 (clamped): the format of ``samples.npz``."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def from_uint8(x: Tensor) -> Tensor:
    """Inverse of :func:`to_uint8`, back to float32 in [−1, 1]."""
    return x.float() / 127.5 - 1


def timestep_embedding(labels: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding (Vaswani et al.) of timestep labels, shape ``(B,) -> (B, dim)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float32, device=labels.device) / half)
    angles = labels.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class ResBlock(nn.Module):
    """GroupNorm–SiLU–conv ×2 with the time embedding added in between; 1×1 skip when widths differ."""

    def __init__(self, channels_in: int, channels_out: int, embed_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(8, channels_in)
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, padding=1)
        self.embed = nn.Linear(embed_dim, channels_out)
        self.norm2 = nn.GroupNorm(8, channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1)
        self.skip = nn.Conv2d(channels_in, channels_out, 1) if channels_in != channels_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(nnf.silu(self.norm1(x)))
        h = h + self.embed(emb)[:, :, None, None]
        h = self.conv2(nnf.silu(self.norm2(h)))
        return self.skip(x) + h


class DigitsUNet(nn.Module):
    """ε(x, timestep) for 1×8×8 images: two levels (8×8 at ``width``, 4×4 at ``2·width``), two res blocks each.

    ``timestep`` is the 0-based DDPM index (int64 or float, shape ``(B,)``), as
    :class:`sdekit.adapters.ddpm.EpsilonScore` passes it with ``time_label="index"``.
    """

    def __init__(self, width: int = 32, embed_dim: int = 128) -> None:
        super().__init__()
        self.width, self.embed_dim = width, embed_dim
        w1, w2 = width, 2 * width
        self.time_mlp = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim))
        self.conv_in = nn.Conv2d(1, w1, 3, padding=1)
        self.down1 = nn.ModuleList([ResBlock(w1, w1, embed_dim), ResBlock(w1, w1, embed_dim)])
        self.downsample = nn.Conv2d(w1, w2, 3, stride=2, padding=1)
        self.mid = nn.ModuleList([ResBlock(w2, w2, embed_dim), ResBlock(w2, w2, embed_dim)])
        self.upsample = nn.ConvTranspose2d(w2, w1, 4, stride=2, padding=1)
        self.up1 = nn.ModuleList([ResBlock(2 * w1, w1, embed_dim), ResBlock(w1, w1, embed_dim)])
        self.norm_out = nn.GroupNorm(8, w1)
        self.conv_out = nn.Conv2d(w1, 1, 3, padding=1)

    def forward(self, x: Tensor, timestep: Tensor) -> Tensor:
        emb = self.time_mlp(timestep_embedding(timestep, self.embed_dim).to(x.dtype))
        h = self.conv_in(x)
        for block in self.down1:
            h = block(h, emb)
        skip = h
        h = self.downsample(h)
        for block in self.mid:
            h = block(h, emb)
        h = torch.cat([self.upsample(h), skip], dim=1)
        for block in self.up1:
            h = block(h, emb)
        return self.conv_out(nnf.silu(self.norm_out(h)))


class DigitClassifier(nn.Module):
    """Tiny CNN digit classifier; :meth:`features` (64-d, before the last layer) is the FD-digits space."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.SiLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.SiLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 4, 64),
            nn.SiLU(),
        )
        self.head = nn.Linear(64, 10)

    def features(self, x: Tensor) -> Tensor:
        """64-d features of images in [−1, 1], shape ``(B, 1, 8, 8) -> (B, 64)``."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class NoisyDigitClassifier(nn.Module):
    """Noise-conditional digit classifier ``logits = model(x_t, t)`` for classifier guidance.

    ``t`` is the continuous time of the digits model's :class:`sdekit.DiscreteVPSDE` (t ∈ (0, 1],
    shape ``(B,)`` or ``(1,)``, level i/1000 at t = i/1000), as sdekit's samplers pass it to a score;
    ``x_t`` a draw of the forward kernel at t. Trained with cross-entropy on x_t ~ p_t(x | x₀) for t
    uniform on [1e-3, 1] (``scripts/train_digits.py``), so softmax(logits) estimates p_t(y | x_t).
    Two 3×3 conv blocks at 8×8 and one at 4×4, each shifted by a learned projection of the time
    embedding (of 1000·t, the DDPM timestep scale), then a linear head; 46k parameters.
    """

    def __init__(self, width: int = 32, embed_dim: int = 64) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.time_mlp = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.SiLU())
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.conv3 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.shift = nn.ModuleList([nn.Linear(embed_dim, c) for c in (width, width, 2 * width)])
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * 4, 64), nn.SiLU(), nn.Linear(64, 10))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        t = t.reshape(-1).expand(x.shape[0]) if t.numel() == 1 else t.reshape(-1)
        emb = self.time_mlp(timestep_embedding(NUM_TIMESTEPS * t.to(torch.float32), self.embed_dim).to(x.dtype))
        h = nnf.silu(self.conv1(x) + self.shift[0](emb)[:, :, None, None])
        h = nnf.silu(self.conv2(h) + self.shift[1](emb)[:, :, None, None])
        h = nnf.max_pool2d(h, 2)
        h = nnf.silu(self.conv3(h) + self.shift[2](emb)[:, :, None, None])
        return self.head(nnf.max_pool2d(h, 2))


def load_unet(path: str | Path | None = None, device: torch.device | str = "cpu") -> DigitsUNet:
    """The trained UNet (shipped weights unless ``path``), in eval mode with gradients off."""
    model = DigitsUNet()
    load_into(model, path or weights_path(UNET_FILE))
    return model.to(device).eval().requires_grad_(False)


def load_classifier(path: str | Path | None = None, device: torch.device | str = "cpu") -> DigitClassifier:
    """The trained feature classifier of FD-digits, in eval mode with gradients off."""
    model = DigitClassifier()
    load_into(model, path or weights_path(CLASSIFIER_FILE))
    return model.to(device).eval().requires_grad_(False)


def load_noisy_classifier(path: str | Path | None = None, device: torch.device | str = "cpu") -> NoisyDigitClassifier:
    """The trained noise-conditional classifier of classifier guidance, in eval mode with gradients off.

    Its parameters need no gradient: guidance differentiates the logits with respect to the input.
    """
    model = NoisyDigitClassifier()
    load_into(model, path or weights_path(NOISY_CLASSIFIER_FILE))
    return model.to(device).eval().requires_grad_(False)


def load(
    device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, path: str | Path | None = None
) -> tuple[Any, Any]:
    """``(sde, score)`` of the digits model via :func:`sdekit.adapters.ddpm.from_betas` (index labels)."""
    import sdekit
    from sdekit.adapters import ddpm

    unet = load_unet(path, device).to(dtype)
    return ddpm.from_betas(unet, sdekit.linear_betas(NUM_TIMESTEPS, BETA_START, BETA_END))
