"""``SampleInfo``: what any sampler or solver did, one type for every method."""

from __future__ import annotations

from dataclasses import dataclass, fields

from torch import Tensor

from sdekit.checks import same_value

__all__ = ["SampleInfo"]


@dataclass(eq=False)
class SampleInfo:
    """What a sampler (or an adaptive solve) did.

    ``nfe``: true score (or ``func``) calls, one batched call = 1, the final denoising step
    included. ``steps``: steps taken — the grid's steps for a fixed-grid method; for an
    adaptive one, accepted per-sample steps summed over the batch (``steps / samples`` is the
    mean per sample), with ``rejected`` the rejected ones. ``grid``: the time grid used
    (float64, CPU; ``[T, eps]`` for methods that choose their own steps). Adaptive methods also
    give ``iterations`` (batched step attempts), ``evaluations`` (rows evaluated, summed over
    calls: what shrinking the active set saves) and, where the solver tracks them,
    ``sample_steps`` / ``sample_rejected``, per-sample counts of shape ``(B,)``.
    """

    nfe: int = 0
    steps: int = 0
    rejected: int = 0
    grid: Tensor | None = None
    iterations: int = 0
    evaluations: int = 0
    samples: int = 0
    sample_steps: Tensor | None = None
    sample_rejected: Tensor | None = None

    def __eq__(self, other: object) -> bool:
        """Equal counts, and equal tensors (``torch.equal``) where both have them."""
        if not isinstance(other, SampleInfo):
            return NotImplemented
        return all(same_value(getattr(self, f.name), getattr(other, f.name)) for f in fields(self))

    __hash__ = None  # type: ignore[assignment]  # mutable, like a dataclass with eq

    @property
    def accepted(self) -> int:
        """Accepted steps (the same as ``steps``)."""
        return self.steps
