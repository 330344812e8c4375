"""Train the embedded ``digits`` models and write their safetensors weights (deterministic, CPU).

    python scripts/train_digits.py                  # both models, the shipped configuration
    python scripts/train_digits.py --steps 500      # a quick smoke run
    python scripts/train_digits.py --only noisy     # one model (classifier, noisy or unet)

1. A tiny CNN classifier (seconds) whose features define FD-digits.
2. A noise-conditional classifier p_t(y | x_t) for classifier guidance (about a minute).
3. The ε-prediction :class:`sdekit.app.models.digits.DigitsUNet` with the DDPM ε-loss on the
   linear 1000-step schedule, AdamW, cosine learning rate, EMA of the weights (shipped).

Everything is seeded; with the same torch version and ``--threads`` the weights are
bit-identical. The shipped run takes about 15 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch.nn import functional as nnf

import sdekit
from sdekit.app.models import digits

OUT = Path(digits.__file__).parent / "weights"


def train_classifier(images: torch.Tensor, labels: torch.Tensor, epochs: int, seed: int) -> digits.DigitClassifier:
    """Adam on the first 1 500 images (light noise augmentation), accuracy reported on the other 297."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = digits.DigitClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    train_x, train_y, test_x, test_y = images[:1500], labels[:1500], images[1500:], labels[1500:]
    for _ in range(epochs):
        for batch in torch.randperm(len(train_x), generator=gen).split(64):
            x = train_x[batch] + 0.05 * torch.randn(train_x[batch].shape, generator=gen)
            loss = nnf.cross_entropy(model(x), train_y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(test_x).argmax(1) == test_y).float().mean().item()
    print(f"classifier: held-out accuracy {accuracy:.3f}", flush=True)
    return model


def train_noisy_classifier(
    images: torch.Tensor, labels: torch.Tensor, steps: int, batch: int, seed: int
) -> digits.NoisyDigitClassifier:
    """Cross-entropy on x_t = α(t) x₀ + σ(t) ε, t ~ U[1e-3, 1] of the digits SDE; Adam, cosine learning rate.

    Trained on the first 1 500 images; accuracy on the other 297 is reported at a few times.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    sde = sdekit.DiscreteVPSDE.from_betas(sdekit.linear_betas(digits.NUM_TIMESTEPS, digits.BETA_START, digits.BETA_END))
    model = digits.NoisyDigitClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    train_x, train_y, test_x, test_y = images[:1500], labels[:1500], images[1500:], labels[1500:]

    def noised(x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha, sigma = (c.to(torch.float32)[:, None, None, None] for c in sde.kernel(t.double()))
        return alpha * x0 + sigma * torch.randn(x0.shape, generator=gen)

    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = 2e-3 * 0.5 * (1 + math.cos(math.pi * step / steps))
        rows = torch.randint(0, len(train_x), (batch,), generator=gen)
        t = 1e-3 + (1 - 1e-3) * torch.rand(batch, generator=gen)
        loss = nnf.cross_entropy(model(noised(train_x[rows], t), t), train_y[rows])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        for time_ in (0.001, 0.1, 0.3, 0.5, 0.7):
            t = torch.full((len(test_x),), time_)
            accuracy = (model(noised(test_x, t), t).argmax(1) == test_y).float().mean().item()
            print(f"noisy classifier: held-out accuracy at t = {time_}: {accuracy:.3f}", flush=True)
    return model


def train_unet(images: torch.Tensor, steps: int, batch: int, lr: float, seed: int) -> digits.DigitsUNet:
    """DDPM ε-loss: i ~ U{0..N−1}, x_i = √ᾱ_i x₀ + √(1−ᾱ_i) ε, loss ‖ε̂(x_i, i) − ε‖²; returns the EMA model."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    abar = torch.cumprod(1 - sdekit.linear_betas(digits.NUM_TIMESTEPS, digits.BETA_START, digits.BETA_END), 0)
    abar = abar.to(torch.float32)
    model = digits.DigitsUNet()
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    start = time.perf_counter()
    for step in range(steps):
        for group in opt.param_groups:
            warmup = min(1.0, (step + 1) / 200)
            group["lr"] = lr * warmup * 0.5 * (1 + math.cos(math.pi * step / steps))
        x0 = images[torch.randint(0, len(images), (batch,), generator=gen)]
        i = torch.randint(0, digits.NUM_TIMESTEPS, (batch,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        a = abar[i][:, None, None, None]
        loss = nnf.mse_loss(model(a.sqrt() * x0 + (1 - a).sqrt() * noise, i), noise)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        decay = min(0.999, (1 + step) / (10 + step))
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
                p_ema.lerp_(p, 1 - decay)
        if step % 500 == 0 or step == steps - 1:
            print(
                f"unet step {step:>6}/{steps}  loss {loss.item():.4f}  {time.perf_counter() - start:6.0f} s", flush=True
            )
    return ema


def save(model: torch.nn.Module, path: Path, meta: dict[str, str]) -> None:
    """safetensors with one metadata key (JSON, sorted): several keys would be written in a random order."""
    save_file(model.state_dict(), str(path), {"training": json.dumps(meta, sort_keys=True)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6000, help="UNet optimiser steps (default 6000)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--classifier-epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads; results depend on it (default 1)")
    parser.add_argument("--noisy-steps", type=int, default=6000, help="noisy classifier steps (default 6000)")
    parser.add_argument("--out", type=Path, default=OUT, help="folder for the .safetensors files")
    parser.add_argument(
        "--only", choices=["classifier", "noisy", "unet"], action="append", help="train only these (repeatable)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    images, labels = digits.load_data()
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"seed": str(args.seed), "threads": str(args.threads), "torch": torch.__version__}
    only = set(args.only or ["classifier", "noisy", "unet"])
    start = time.perf_counter()
    if "classifier" in only:
        classifier = train_classifier(images, labels, args.classifier_epochs, args.seed)
        save(classifier, args.out / digits.CLASSIFIER_FILE, {**meta, "epochs": str(args.classifier_epochs)})
        print(f"wrote {args.out / digits.CLASSIFIER_FILE} at {time.perf_counter() - start:.0f} s", flush=True)
    if "noisy" in only:
        noisy = train_noisy_classifier(images, labels, args.noisy_steps, args.batch, args.seed)
        save(noisy, args.out / digits.NOISY_CLASSIFIER_FILE, {**meta, "steps": str(args.noisy_steps)})
        print(f"wrote {args.out / digits.NOISY_CLASSIFIER_FILE} at {time.perf_counter() - start:.0f} s", flush=True)
    if "unet" in only:
        unet = train_unet(images, args.steps, args.batch, args.lr, args.seed)
        unet_meta = {**meta, "steps": str(args.steps), "batch": str(args.batch), "lr": str(args.lr)}
        save(unet, args.out / digits.UNET_FILE, unet_meta)
        print(f"wrote {args.out / digits.UNET_FILE} at {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
