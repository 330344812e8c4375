"""The oracle suite: named exact problems that stress a sampler in different ways, under each SDE family.

One problem is not enough to judge a sampler: a default tuned on the standard 16-D mixture can fail
on narrow modes. Each distribution here is a :class:`~sdekit.testing.GaussianMixture` (or
:class:`~sdekit.testing.Gaussian`), so its samples, density and the score of every p_t are exact
under any linear SDE, and :func:`~sdekit.testing.evaluate` judges samples against it. Every problem
is deterministic (fixed seeds).

========================  ==========================================================================
distribution              what it stresses
========================  ==========================================================================
``narrow``                8 isotropic modes of std 0.05 in 8-D, 2 apart: the last steps near eps,
                          where the score changes on the scale of 0.05
``anisotropic``           4 modes in 8-D with covariance eigenvalues from 1e-3 to 1 (condition
                          number 1e3): stiff directions
``imbalanced``            3 modes in 4-D with weights 1 : 10 : 100: the light mode is easy to lose
``image``                 one Gaussian on 1×16×16 "images", covariance diagonal in the 2-D DCT basis
                          with a power-law spectrum λ(f) ∝ 1/(1 + |f|²): natural-image-like
                          correlations, 256 dimensions
``high_dim``              the standard random mixture in 256-D, 4 modes
``ring``                  16 modes of std 0.1 on a circle of radius 2 in 2-D: many close modes
========================  ==========================================================================

The SDE families (:data:`SDES`): ``vp`` (VPSDE), ``subvp`` (SubVPSDE), ``ve`` (VESDE with σ from
0.01 to 50), ``ddpm`` (the discrete VP of DDPM's linear 1000-step schedule), ``rf`` (the rectified
flow of flow matching, :class:`~sdekit.RectifiedFlowSDE`) and ``edm`` (EDM's σ(t) = t from 0.002 to 80,
:class:`~sdekit.EDMSDE`). :func:`problems`
gives every combination, or a chosen few.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from sdekit.checks import check_choice
from sdekit.interpolants import EDMSDE, RectifiedFlowSDE
from sdekit.sde import VESDE, VPSDE, LinearSDE, SubVPSDE, linear_betas
from sdekit.testing.oracle import Gaussian, GaussianMixture

__all__ = ["DISTRIBUTIONS", "SDES", "Problem", "problems", "distribution"]

_F64 = torch.float64


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def narrow() -> GaussianMixture:
    """8 isotropic modes of std 0.05 in 8-D, means on a scaled random ±1 pattern at least 2 apart."""
    means = _separated_corners(8, 8, _generator(11))
    covariances = torch.eye(8, dtype=_F64).expand(8, 8, 8) * 0.05**2
    return GaussianMixture(torch.full((8,), 1 / 8, dtype=_F64), means, covariances)


def anisotropic() -> GaussianMixture:
    """4 modes in 8-D, each with eigenvalues log-spaced from 1e-3 to 1 in a random rotation (condition 1e3)."""
    generator = _generator(12)
    eigenvalues = torch.logspace(-3, 0, 8, dtype=_F64)
    covariances = []
    for _ in range(4):
        basis, _ = torch.linalg.qr(torch.randn(8, 8, dtype=_F64, generator=generator))
        covariances.append(basis @ torch.diag(eigenvalues) @ basis.T)
    means = 4.0 * torch.randn(4, 8, dtype=_F64, generator=generator)
    return GaussianMixture(torch.full((4,), 0.25, dtype=_F64), means, torch.stack(covariances))


def imbalanced() -> GaussianMixture:
    """3 modes in 4-D with weights ∝ 1 : 10 : 100 and covariance 0.1 I, 4 apart."""
    weights = torch.tensor([1.0, 10.0, 100.0], dtype=_F64)
    means = torch.tensor([[4.0, 0, 0, 0], [0, 4.0, 0, 0], [0, 0, 4.0, 0]], dtype=_F64)
    covariances = torch.eye(4, dtype=_F64).expand(3, 4, 4) * 0.1
    return GaussianMixture(weights / weights.sum(), means, covariances)


def image(size: int = 16) -> Gaussian:
    """N(0, Σ) on (1, size, size) images, Σ = B diag(λ) Bᵀ with B the orthonormal 2-D DCT-II basis and
    λ(f) = 1/(1 + f_x² + f_y²) (f in cycles per image), scaled so the pixel variance averages 0.25."""
    n = size
    k = torch.arange(n, dtype=_F64)
    dct = torch.cos(math.pi * (k[None, :] + 0.5) * k[:, None] / n) * math.sqrt(2 / n)  # rows: frequencies
    dct[0] /= math.sqrt(2)
    basis = torch.kron(dct, dct).T  # columns: 2-D basis images, orthonormal
    fy, fx = torch.meshgrid(k / 2, k / 2, indexing="ij")  # DCT index k is k/2 cycles per image
    spectrum = (1 / (1 + fx**2 + fy**2)).reshape(-1)
    spectrum = spectrum * (0.25 * n * n / spectrum.sum())  # trace = 0.25 per pixel
    covariance = basis @ torch.diag(spectrum) @ basis.T
    return Gaussian(torch.zeros(n * n, dtype=_F64), covariance, event_shape=(1, n, n))


def high_dim() -> GaussianMixture:
    """The standard random test mixture (:meth:`GaussianMixture.random`) in 256-D with 4 modes."""
    return GaussianMixture.random(dim=256, modes=4, generator=_generator(13))


def ring(modes: int = 16, radius: float = 2.0, std: float = 0.1) -> GaussianMixture:
    """``modes`` equal modes of std ``std`` at equal angles on a circle of ``radius`` in 2-D."""
    angles = torch.arange(modes, dtype=_F64) * (2 * math.pi / modes)
    means = radius * torch.stack([angles.cos(), angles.sin()], dim=1)
    covariances = torch.eye(2, dtype=_F64).expand(modes, 2, 2) * std**2
    return GaussianMixture(torch.full((modes,), 1 / modes, dtype=_F64), means, covariances)


def _separated_corners(count: int, dim: int, generator: torch.Generator) -> Tensor:
    """``count`` distinct random ±1 corners of the cube (pairwise ≥ 2 apart), rejection-sampled."""
    chosen: list[Tensor] = []
    while len(chosen) < count:
        corner = torch.randint(0, 2, (dim,), generator=generator).to(_F64) * 2 - 1
        if all(not torch.equal(corner, other) for other in chosen):
            chosen.append(corner)
    return torch.stack(chosen)


#: The suite's distributions by name (each call builds it afresh; they are deterministic).
DISTRIBUTIONS: dict[str, Callable[[], GaussianMixture]] = {
    "narrow": narrow,
    "anisotropic": anisotropic,
    "imbalanced": imbalanced,
    "image": image,
    "high_dim": high_dim,
    "ring": ring,
}

#: The SDE families each distribution is run under.
SDES: dict[str, Callable[[], LinearSDE]] = {
    "vp": VPSDE,
    "subvp": SubVPSDE,
    "ve": lambda: VESDE(0.01, 50.0),
    "ddpm": lambda: VPSDE.from_betas(linear_betas(1000)),
    "rf": RectifiedFlowSDE,
    "edm": EDMSDE,
}


@dataclass(frozen=True)
class Problem:
    """One problem of the suite: a named exact distribution under a named SDE.

    ``data`` is the distribution p_0; ``data.score(sde)`` the exact score of every p_t;
    ``evaluate(x, data)`` judges samples. ``name`` is ``"distribution/sde"``.
    """

    distribution: str
    sde_name: str
    data: GaussianMixture
    sde: LinearSDE

    @property
    def name(self) -> str:
        return f"{self.distribution}/{self.sde_name}"

    def shape(self, n: int) -> tuple[int, ...]:
        """The sampler's ``shape`` for n samples: ``(n, *event_shape)``."""
        return (n, *self.data.event_shape)


_BUILT: dict[str, GaussianMixture] = {}


def distribution(name: str) -> GaussianMixture:
    """The suite's distribution ``name`` (one of :data:`DISTRIBUTIONS`), built once per process."""
    check_choice("distribution", name, DISTRIBUTIONS)
    if name not in _BUILT:
        _BUILT[name] = DISTRIBUTIONS[name]()
    return _BUILT[name]


def problems(distributions: Sequence[str] | None = None, sdes: Sequence[str] | None = None) -> list[Problem]:
    """Every (distribution, SDE) pair of the suite, or those of the names given (default: all of each)."""
    names = list(DISTRIBUTIONS) if distributions is None else [check_choice("distribution", d, DISTRIBUTIONS)
                                                               for d in distributions]  # fmt: skip
    families = list(SDES) if sdes is None else [check_choice("sde", s, SDES) for s in sdes]
    return [Problem(d, s, distribution(d), SDES[s]()) for d in names for s in families]
