"""State constraints of the solve loop: inpainting and imputation of known values.

A constraint is applied by the fixed-grid samplers and the adaptive SDE solver (``method=
"adaptive"``, at each sample's own time) after every step (``project``, with the time the
state is at and the sampler's generator) and to the output (``finish``), so known
parts of a sample are held where the data say they are. It is an argument of every sampler
(``constraint=``), not a callback trick.

:class:`Imputation` is the SDE paper's method for inpainting and imputation (Song et al. 2021,
appendix I): after each step the known coordinates are replaced by a fresh draw of the forward
kernel, α(t) y + σ(t) z, and the output holds y exactly there. It is exact when the known and
unknown coordinates are independent under the data and approximate otherwise: the replaced
coordinates are a draw of p_t(x_t | y), not the one that the unknown part's trajectory would
have produced, so correlated unknowns are pulled towards their unconditional marginal. The
measured bias on correlated Gaussian data is in ``tests/test_constraints.py`` and
``docs/guidance.md``.

RePaint's resampling (Lugmayr et al. 2022) reduces that bias: ``Imputation(..., resample=r,
jump_length=j)`` runs each block of j steps r times, noising the state back up the block by
the forward transition kernel between passes, so the unknown part has time to agree with the
known part. It costs r times the score calls. A multistep method restarts at each pass (its
history belongs to the previous pass), so it runs at first order at the start of every block.
"""

from __future__ import annotations

import copy
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from sdekit.checks import batch_view
from sdekit.per_sample import Generators, index_per_sample, randn_like
from sdekit.sde import SDE, LinearSDE

__all__ = ["COLOR_BASIS", "Constraint", "Imputation", "couple", "decouple"]

#: An orthonormal colour basis whose first channel is the grey image: (R + G + B)/√3, then two
#: colour-difference channels (the construction of the SDE paper's colorisation).
COLOR_BASIS = torch.tensor(
    [
        [3**-0.5, 3**-0.5, 3**-0.5],
        [2**-0.5, -(2**-0.5), 0.0],
        [6**-0.5, 6**-0.5, -2 * 6**-0.5],
    ],
    dtype=torch.float64,
)


def decouple(x: Tensor, basis: Tensor = COLOR_BASIS) -> Tensor:
    """x ``(B, C, ...)`` in the orthonormal channel basis ``basis`` ``(C, C)``: u_c = Σ_k basis[c, k] x_k."""
    return torch.einsum("ck,bk...->bc...", basis.to(device=x.device, dtype=x.dtype), x)


def couple(u: Tensor, basis: Tensor = COLOR_BASIS) -> Tensor:
    """The inverse of :func:`decouple` (the basis is orthonormal): x_k = Σ_c basis[c, k] u_c.

    ``u``: coordinates in the basis, shape ``(B, C, ...)``; returns ``(B, K, ...)`` (K = C for the square
    colour basis).
    """
    return torch.einsum("ck,bc...->bk...", basis.to(device=u.device, dtype=u.dtype), u)


@runtime_checkable
class Constraint(Protocol):
    """What the samplers call: ``check(x, sde)`` first, ``project(x, t, generator)`` after each step, ``finish(x)``.

    A constraint may also have integer attributes ``resample`` (r ≥ 1, passes over each block)
    and ``jump_length`` (j ≥ 1, steps per block); without them the grid is run once (r = 1).
    """

    def check(self, x: Tensor, sde: SDE) -> None: ...

    def project(self, x: Tensor, t: float | Tensor, generator: Generators | None) -> Tensor: ...

    def finish(self, x: Tensor) -> Tensor: ...


class Imputation:
    """Known values ``y`` where ``mask`` is 1, imputed by the forward kernel after every step.

    Args:
        sde: the :class:`~sdekit.LinearSDE` being sampled (its kernel α(t), σ(t) noises y).
        y: the known values, broadcastable to the samples' shape ``(B, *event)`` (entries where
            the mask is 0 are ignored, but must be finite).
        mask: 1 where y is known, 0 elsewhere; a bool or float tensor broadcastable to the same
            shape (e.g. ``(1, 1, H, W)`` for one mask over every channel and sample).
        basis: ``None`` (y and mask are in the samples' own coordinates) or an orthonormal
            ``(C, C)`` matrix over the channel dimension 1: y and mask are then in the
            decoupled coordinates :func:`decouple` gives. Because the kernel's noise is
            isotropic, imputing there is the same method.
        resample: RePaint's r, passes over each block of steps (default 1: the SDE paper's
            method). r = 10 with j = 10 on a 250-step grid is RePaint's setting; a few passes
            already remove most of the bias on smooth data (measured in docs/guidance.md).
        jump_length: RePaint's j, the steps of a block (default 1).

    Inpainting is ``mask`` over pixels; imputation of tabular data is ``mask`` over coordinates;
    colorisation (:meth:`colorization`) is the grey channel of :data:`COLOR_BASIS`. The output
    equals y exactly on the mask (in the basis: to rounding).
    """

    def __init__(
        self,
        sde: LinearSDE,
        y: Tensor,
        mask: Tensor,
        *,
        basis: Tensor | None = None,
        resample: int = 1,
        jump_length: int = 1,
    ) -> None:
        for name, value in (("resample", resample), ("jump_length", jump_length)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not isinstance(sde, LinearSDE):
            raise TypeError(f"sde must be a sdekit.LinearSDE (its Gaussian kernel noises y), got {type(sde).__name__}")
        if not isinstance(y, Tensor):
            raise TypeError(f"y must be a tensor of the known values, got {type(y).__name__}")
        if not isinstance(mask, Tensor):
            raise TypeError(f"mask must be a tensor of 0s and 1s, got {type(mask).__name__}")
        if not bool(torch.isfinite(y).all()):
            raise ValueError("y must be finite everywhere (put any finite value where the mask is 0)")
        if mask.dtype != torch.bool and not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("mask must hold only 0 and 1 (1 where y is known)")
        try:
            torch.broadcast_shapes(y.shape, mask.shape)
        except RuntimeError as error:
            raise ValueError(
                f"mask of shape {tuple(mask.shape)} does not broadcast with y of shape {tuple(y.shape)}"
            ) from error
        if basis is not None:
            if not isinstance(basis, Tensor) or basis.ndim != 2 or basis.shape[0] != basis.shape[1]:
                raise ValueError("basis must be a square (C, C) tensor: an orthonormal basis of the channels")
            identity = torch.eye(basis.shape[0], dtype=torch.float64)
            if not torch.allclose(basis.double() @ basis.double().T, identity, atol=1e-6):
                raise ValueError(
                    "basis must be orthonormal (basis @ basis.T = I): the kernel's noise must stay isotropic"
                )
        self.sde, self.y, self.mask, self.basis = sde, y, mask.bool(), basis
        self.resample, self.jump_length = resample, jump_length

    @classmethod
    def colorization(cls, sde: LinearSDE, grey: Tensor, *, resample: int = 1, jump_length: int = 1) -> Imputation:
        """Colour images ``(B, 3, H, W)`` whose channel mean is ``grey`` (``(B, 1, H, W)``), by imputation.

        In :data:`COLOR_BASIS` the first channel is (R + G + B)/√3 = √3 · grey: it is known, the
        two colour-difference channels are imputed. The output's channel mean equals ``grey``.
        """
        if not isinstance(grey, Tensor) or grey.ndim < 3 or grey.shape[1] != 1:
            got = tuple(grey.shape) if isinstance(grey, Tensor) else type(grey).__name__
            raise ValueError(f"grey must be a tensor of shape (B, 1, H, W), got {got}")
        y = torch.cat([grey * 3**0.5, torch.zeros_like(grey), torch.zeros_like(grey)], dim=1)
        mask = torch.zeros((1, 3, *([1] * (grey.ndim - 2))), dtype=torch.bool)
        mask[:, 0] = True
        return cls(sde, y, mask, basis=COLOR_BASIS, resample=resample, jump_length=jump_length)

    def check(self, x: Tensor, sde: SDE) -> None:
        """y and mask must broadcast to the samples' shape without enlarging it (and the basis fit its channels);
        the sampler's SDE must have this constraint's kernel."""
        times = torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64) * sde.T
        if not isinstance(sde, LinearSDE) or not all(
            torch.allclose(mine, theirs, rtol=1e-12, atol=0)
            for mine, theirs in zip(self.sde.kernel(times), sde.kernel(times), strict=True)
        ):
            raise ValueError(f"the constraint was built for {self.sde!r} but the sampler runs {sde!r}")
        if self.basis is not None and (x.ndim < 2 or x.shape[1] != self.basis.shape[0]):
            raise ValueError(f"basis is {tuple(self.basis.shape)} but the samples have shape {tuple(x.shape)}")
        for name, value in (("y", self.y), ("mask", self.mask)):
            try:
                shape = torch.broadcast_shapes(value.shape, x.shape)
            except RuntimeError:
                shape = None
            if shape != x.shape:
                raise ValueError(
                    f"{name} of shape {tuple(value.shape)} does not broadcast to the samples' shape {tuple(x.shape)}"
                )

    def project(self, x: Tensor, t: float | Tensor, generator: Generators | None) -> Tensor:
        """x with the known part replaced by α(t) y + σ(t) z, z a fresh standard normal draw from ``generator``.

        ``t`` is the time shared by the batch (a float) or each sample's own time, a tensor ``(B,)``
        (the adaptive SDE solver's clocks).
        """
        z = randn_like(x, generator)
        y = self.y.to(device=x.device, dtype=x.dtype)
        if isinstance(t, Tensor):
            alpha, sigma = self.sde.kernel(t.to(torch.float64).reshape(-1))
            known = batch_view(alpha.to(x.device, x.dtype), x) * y + batch_view(sigma.to(x.device, x.dtype), x) * z
        else:
            alpha, sigma = self.sde.kernel(torch.tensor([t], dtype=torch.float64))
            known = float(alpha) * y + float(sigma) * z
        return self._replace(x, known)

    def select(self, rows: Tensor, batch_size: int) -> Imputation:
        """This constraint on ``rows`` of the full batch: per-sample y and mask (first dimension B) follow them."""
        view = copy.copy(self)
        per_sample = index_per_sample({"y": self.y, "mask": self.mask}, rows, batch_size)
        view.y, view.mask = per_sample["y"], per_sample["mask"]
        return view

    def finish(self, x: Tensor) -> Tensor:
        """The output: exactly y on the mask."""
        return self._replace(x, self.y.to(device=x.device, dtype=x.dtype))

    def _replace(self, x: Tensor, known: Tensor) -> Tensor:
        if self.basis is None:
            return torch.where(self.mask.to(x.device), known, x)
        return couple(torch.where(self.mask.to(x.device), known, decouple(x, self.basis)), self.basis)
