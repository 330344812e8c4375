"""Draw the documentation's pictures into docs/images/ (deterministic: fixed seeds, one CPU thread).

    python scripts/docs_figures.py                 # all of them (about 3 minutes on 2 CPU cores)
    python scripts/docs_figures.py quality         # only some: quality, trajectories, digits

- quality_vs_nfe.png: NLL gap and sliced W1 (over its exact-set floor) against NFE for the main
  methods on the standard 16-D, 8-mode oracle (VP, exact score, 4096 samples, one seed); the
  exact-sample limits are drawn as a band. One problem and one seed: the oracle-suite benchmark
  is the place for judgements across problems.
- trajectories_2d.png: 48 paths of the 2-D mixture oracle under the reverse SDE (ancestral) and
  under the probability-flow ODE (Heun), from the same x_T, over the true density.
- digits_samplers.png: the embedded digits model under five methods at four NFE, the same seed
  for every panel.

The inpainting and guidance panels (digits_inpaint_bottom.png, digits_class3.png) are written by
``sdekit sample`` itself: see docs/guidance.md for their commands.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

import sdekit
from sdekit.testing import GaussianMixture, evaluate

IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"

#: label -> (sampler, method, NFE -> steps). NFE counts the final denoising call.
METHODS: dict[str, tuple[Callable[..., torch.Tensor], str, Callable[[int], int]]] = {
    "ancestral": (sdekit.sample, "ancestral", lambda nfe: nfe - 1),
    "dpmpp_2m_sde": (sdekit.sample, "dpmpp_2m_sde", lambda nfe: nfe - 1),
    "dpmpp_2m (ODE)": (sdekit.ode_sample, "dpmpp_2m", lambda nfe: nfe - 1),
    "dpmpp_3m (ODE)": (sdekit.ode_sample, "dpmpp_3m", lambda nfe: nfe - 1),
    "heun (ODE)": (sdekit.ode_sample, "heun", lambda nfe: (nfe - 1) // 2),
    "euler_maruyama": (sdekit.sample, "euler_maruyama", lambda nfe: nfe - 1),
}
NFES = (11, 21, 51, 101, 201)


def quality() -> None:
    sde = sdekit.VPSDE()
    mixture = GaussianMixture.random(dim=16, modes=8, generator=torch.Generator().manual_seed(0))
    score = mixture.score(sde)
    n = 4096
    rows = {}
    for label, (sampler, method, steps_of) in METHODS.items():
        gaps, sw1 = [], []
        for nfe in NFES:
            g = torch.Generator().manual_seed(1)
            x, info = sampler(sde, score, (n, 16), method=method, steps=steps_of(nfe), generator=g, return_info=True)
            assert info.nfe == nfe, f"{label}: {steps_of(nfe)} steps made {info.nfe} score calls, not {nfe}"
            report = evaluate(x, mixture, generator=torch.Generator().manual_seed(2))
            gaps.append(report.nll_gap)
            sw1.append(report.sw1 / report.sw1_floor)
            print(f"{label:16} NFE {nfe:4}: NLL gap {report.nll_gap:+.3f}, SW1/floor {sw1[-1]:.2f}", flush=True)
        rows[label] = (gaps, sw1, report)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    for label, (gaps, sw1, _) in rows.items():
        left.plot(NFES, np.abs(gaps), marker="o", label=label)
        right.plot(NFES, sw1, marker="o", label=label)
    report = next(iter(rows.values()))[2]
    left.axhspan(0, report.nll_limit, color="0.85", label="exact samples (0.1 % limit)")
    right.axhspan(0, report.sw1_limit / report.sw1_floor, color="0.85")
    for ax, name in ((left, "|NLL gap| (nats)"), (right, "sliced W1 / exact-set floor")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("NFE (score calls, final denoising included)")
        ax.set_ylabel(name)
        ax.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)
    fig.suptitle(f"16-D, 8-mode oracle, VP, exact score, {n} samples, one seed")
    fig.tight_layout()
    fig.savefig(IMAGES / "quality_vs_nfe.png")
    plt.close(fig)


def trajectories() -> None:
    from sdekit.app.models import gmm2d

    sde, score = gmm2d.load()
    mixture = gmm2d.mixture()
    x_T = torch.randn(48, 2, generator=torch.Generator().manual_seed(3))
    paths: dict[str, list[torch.Tensor]] = {}
    for label, sampler, method, steps in (
        ("reverse SDE (ancestral, 200 steps)", sdekit.sample, "ancestral", 200),
        ("probability-flow ODE (Heun, 100 steps)", sdekit.ode_sample, "heun", 100),
    ):
        states = [x_T.clone()]
        sampler(
            sde,
            score,
            method=method,
            steps=steps,
            x_T=x_T.clone(),
            denoise=False,
            generator=torch.Generator().manual_seed(4),
            callback=lambda payload, states=states: states.append(payload["x"].clone()),
        )
        paths[label] = states
    lim = 1.1 * float(mixture.means.abs().max()) + 1.0
    grid = torch.linspace(-lim, lim, 200)
    xy = torch.stack(torch.meshgrid(grid, grid, indexing="xy"), -1).reshape(-1, 2).double()
    density = mixture.log_prob(xy).exp().reshape(200, 200).numpy()
    fig, axes = plt.subplots(1, 2, figsize=(10, 5), dpi=110)
    for ax, (label, states) in zip(axes, paths.items(), strict=True):
        ax.contourf(grid.numpy(), grid.numpy(), density, levels=20, cmap="Greys")
        path = torch.stack(states).numpy()
        for k in range(path.shape[1]):
            ax.plot(path[:, k, 0], path[:, k, 1], lw=0.6, alpha=0.8)
        ax.scatter(path[-1, :, 0], path[-1, :, 1], s=6, color="black", zorder=3)
        ax.set_title(label, fontsize=10)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
    fig.suptitle("2-D mixture oracle: the same 48 starting points x_T, paths to t = eps")
    fig.tight_layout()
    fig.savefig(IMAGES / "trajectories_2d.png")
    plt.close(fig)


def digits() -> None:
    from sdekit.app.models import digits as model
    from sdekit.app.models._plots import image_canvas

    sde, score = model.load()
    methods = ("ancestral", "dpmpp_2m_sde", "dpmpp_2m (ODE)", "heun (ODE)", "euler_maruyama")
    nfes = (11, 21, 51, 201)
    fig, axes = plt.subplots(len(methods), len(nfes), figsize=(2.2 * len(nfes), 2.3 * len(methods)), dpi=110)
    x_T = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    for i, label in enumerate(methods):
        sampler, method, steps_of = METHODS[label]
        for j, nfe in enumerate(nfes):
            with torch.no_grad():
                g = torch.Generator().manual_seed(6)
                x, info = sampler(
                    sde, score, method=method, steps=steps_of(nfe), x_T=x_T.clone(), generator=g, return_info=True
                )
            assert info.nfe == nfe, f"{label}: {info.nfe} score calls, not {nfe}"
            canvas = image_canvas(model.to_uint8(x).numpy(), columns=4, gap=0)[..., 0]
            ax = axes[i, j]
            ax.imshow(canvas, cmap="gray_r", vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"NFE {nfe}", fontsize=10)
            if j == 0:
                ax.set_ylabel(label, fontsize=9)
    fig.suptitle("digits model, the same x_T and seed in every panel")
    fig.tight_layout()
    fig.savefig(IMAGES / "digits_samplers.png")
    plt.close(fig)


FIGURES = {"quality": quality, "trajectories": trajectories, "digits": digits}

if __name__ == "__main__":
    torch.set_num_threads(1)
    chosen = sys.argv[1:] or list(FIGURES)
    unknown = [name for name in chosen if name not in FIGURES]
    if unknown:
        sys.exit(f"unknown figure {unknown[0]!r}; valid: {', '.join(FIGURES)}")
    for name in chosen:
        FIGURES[name]()
        print(f"wrote {name}", flush=True)
