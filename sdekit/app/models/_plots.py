"""Pictures of samples: an image grid for image models, a scatter over the true density for 2-D ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["image_canvas", "image_grid", "points_plot"]


def image_canvas(images: np.ndarray, columns: int = 16, gap: int = 96) -> np.ndarray:
    """uint8 images ``(n, C, H, W)`` tiled row by row into one ``(rows·(H+1)+1, columns·(W+1)+1, C)`` array,
    with 1-pixel gaps of value ``gap``."""
    n, c, h, w = images.shape
    rows = -(-n // columns)
    canvas = np.full((rows * (h + 1) + 1, columns * (w + 1) + 1, c), gap, dtype=np.uint8)
    for i, image in enumerate(images):
        r, col = divmod(i, columns)
        canvas[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + col * (w + 1) : 1 + col * (w + 1) + w] = image.transpose(
            1, 2, 0
        )
    return canvas


def image_grid(images: np.ndarray, path: Path, columns: int = 16) -> None:
    """Save uint8 images ``(n, C, H, W)`` (C = 1 or 3) as one PNG grid with 1-pixel gaps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    canvas = image_canvas(images, columns)
    c, h = images.shape[1], images.shape[2]
    scale = 8 if h <= 16 else 1
    big = canvas.repeat(scale, 0).repeat(scale, 1)
    plt.imsave(path, big[..., 0] if c == 1 else big, cmap="gray_r" if c == 1 else None, vmin=0, vmax=255, format="png")


def points_plot(points: np.ndarray, path: Path, log_density: object = None, title: str = "") -> None:
    """Scatter 2-D ``points`` over contours of ``log_density(xy) -> log p`` (a torch callable) when given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    fig, ax = plt.subplots(figsize=(6, 6), dpi=100)
    low, high = np.percentile(points, [0.5, 99.5], axis=0)
    pad = 0.2 * (high - low)
    low, high = low - pad, high + pad
    if callable(log_density):
        xs, ys = np.linspace(low[0], high[0], 200), np.linspace(low[1], high[1], 200)
        grid = torch.as_tensor(np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2), dtype=torch.float64)
        density = torch.exp(log_density(grid)).reshape(200, 200).numpy()
        ax.contourf(xs, ys, density, levels=20, cmap="Blues")
    ax.scatter(points[:, 0], points[:, 1], s=2, c="crimson", alpha=0.5, linewidths=0)
    ax.set(xlim=(low[0], high[0]), ylim=(low[1], high[1]), aspect="equal", title=title)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
