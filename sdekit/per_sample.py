"""Per-sample state that follows an adaptive solver's active set.

The adaptive solvers evaluate the score on the samples still running only, so its batch
shrinks as samples finish. A score that carries per-sample state — class labels, masks,
observations, guidance scales in its ``model_kwargs`` — must shrink with it. Such a score
implements ``select(rows, batch_size)``: the score restricted to ``rows`` (a long tensor of
positions in the full batch of ``batch_size`` samples it was built for), its own per-sample
tensors indexed by ``rows``. The solvers call it each time the active set changes, always with
positions in the *full* batch, on the score they were given. sdekit's adapters implement it
(a ``model_kwargs`` tensor whose first dimension is the batch size is per-sample; a shared one
should have a first dimension of 1 or none). A score without ``select`` is taken to be the same
for every sample.

Randomness can be per-sample state too. ``generator=`` of every sampler takes one
``torch.Generator`` for the batch, or one per sample (a list of B generators, or a list of
B integer seeds): :class:`SampleGenerators`. Then row b of every draw — the prior sample x_T,
the noise of each step, a constraint's noise, the Brownian path of the adaptive SDE solver —
comes from generator b alone, in the same order whatever the other rows do, so a sample
depends only on its own seed: the same seed gives the same sample at any batch size and
position (up to the network's own batch effects, e.g. a different matrix-multiply kernel for
another batch size). It follows the active set like any per-sample state. The cost is one
``torch.randn`` call per sample per draw: negligible beside a network, noticeable for
thousands of tiny samples (use one generator there).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

import torch
from torch import Tensor

__all__ = [
    "SelectsRows",
    "select_rows",
    "index_per_sample",
    "SampleGenerators",
    "Generators",
    "GeneratorLike",
    "as_generators",
    "randn_like",
    "randn",
    "rand",
]

F = TypeVar("F")


@runtime_checkable
class SelectsRows(Protocol):
    """A callable with per-sample state: ``select(rows, batch_size)`` returns it restricted to ``rows``."""

    def select(self, rows: Tensor, batch_size: int) -> Any: ...


def select_rows(func: F, rows: Tensor, batch_size: int) -> F:
    """``func.select(rows, batch_size)`` if ``func`` carries per-sample state, else ``func`` itself."""
    select = getattr(func, "select", None)
    return select(rows, batch_size) if callable(select) else func


def index_per_sample(values: dict[str, Any], rows: Tensor, batch_size: int) -> dict[str, Any]:
    """``values`` with every tensor whose first dimension is ``batch_size`` indexed by ``rows``; the rest kept."""
    return {
        key: value.index_select(0, rows.to(value.device))
        if isinstance(value, Tensor) and value.ndim > 0 and value.shape[0] == batch_size
        else value
        for key, value in values.items()
    }


class SampleGenerators:
    """One ``torch.Generator`` per sample: row b of every draw comes from generator b.

    Pass it (or a list of generators, or a list of integer seeds, which samplers turn into
    one) as ``generator=``. ``select(rows, batch_size)`` keeps the generators of ``rows``
    (the active set of an adaptive solver); each keeps its own state, so a sample's draws do
    not depend on which others are still running.

    Args:
        generators: B generators, all on one device (draws are made there and moved to the samples'
            device: CPU generators serve CUDA samples, as in diffusers).
    """

    def __init__(self, generators: Sequence[torch.Generator]) -> None:
        generators = list(generators)
        if not generators or not all(isinstance(g, torch.Generator) for g in generators):
            raise TypeError("SampleGenerators needs a non-empty sequence of torch.Generator")
        devices = {torch.device(g.device) for g in generators}
        if len(devices) > 1:
            raise ValueError(f"generator: the per-sample generators are on several devices {sorted(map(str, devices))}")
        self.generators = generators
        self.device = devices.pop()

    @classmethod
    def from_seeds(cls, seeds: Sequence[int], device: torch.device | str = "cpu") -> SampleGenerators:
        """One generator on ``device`` per seed, ``torch.Generator(device).manual_seed(seed)``."""
        return cls([torch.Generator(device).manual_seed(int(seed)) for seed in seeds])

    def __len__(self) -> int:
        return len(self.generators)

    def __repr__(self) -> str:
        return f"SampleGenerators({len(self)} on {self.device})"

    def check_batch(self, batch: int) -> None:
        """Raise, naming ``generator``, unless there is one generator per sample of a batch of ``batch``."""
        if batch != len(self):
            raise ValueError(f"generator: {len(self)} per-sample generators for a batch of {batch} samples")

    def draw(self, function: Any, shape: Sequence[int], device: torch.device | str, dtype: torch.dtype) -> Tensor:
        """``function`` (``torch.randn``, ``torch.rand``) of ``shape`` = (B, *event), row b from generator b."""
        shape = tuple(shape)
        self.check_batch(shape[0])
        # drawn where the generators live and moved (CPU generators for CUDA samples, as diffusers does)
        drawn = [function(shape[1:], generator=g, device=self.device, dtype=dtype) for g in self.generators]
        return torch.stack(drawn).to(device)

    def select(self, rows: Tensor, batch_size: int) -> SampleGenerators:
        """The generators of ``rows`` (positions in the batch of ``batch_size`` these were made for)."""
        self.check_batch(batch_size)
        picked = SampleGenerators.__new__(SampleGenerators)
        picked.generators = [self.generators[i] for i in rows.tolist()]
        picked.device = self.device
        return picked


#: What samplers pass to every draw: one generator for the batch, or one per sample.
Generators = torch.Generator | SampleGenerators
#: What the ``generator=`` argument of a sampler accepts (see :func:`as_generators`).
GeneratorLike = torch.Generator | SampleGenerators | Sequence[torch.Generator] | Sequence[int] | None


def _same_device(a: torch.device, b: torch.device) -> bool:
    """cuda and cuda:0 name one device (the current one) as far as a generator is concerned."""
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


def as_generators(name: str, value: object, *, device: torch.device | str = "cpu") -> Generators | None:
    """``value`` as samplers use it: None, a ``torch.Generator``, or :class:`SampleGenerators`.

    Accepts None, one ``torch.Generator``, a :class:`SampleGenerators`, or a list or tuple of B
    generators or of B integer seeds (seeded on ``device``). Anything else raises a one-line error
    naming ``name``; :meth:`SampleGenerators.check_batch` checks B against the batch.
    """
    if value is None or isinstance(value, torch.Generator):
        return value
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"{name} must be a torch.Generator or one per sample, got an empty {type(value).__name__}")
        if all(isinstance(v, torch.Generator) for v in value):
            value = SampleGenerators(value)
        elif all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value):
            bad = [int(v) for v in value if not 0 <= int(v) < 2**63]
            if bad:
                raise ValueError(f"{name}: seeds must lie in [0, 2**63), got {bad[0]}")
            value = SampleGenerators.from_seeds([int(v) for v in value], device)
        else:
            kinds = sorted({type(v).__name__ for v in value})
            raise TypeError(f"{name} as a list must hold torch.Generator or int seeds, one per sample, got {kinds}")
    if not isinstance(value, SampleGenerators):
        kind = f"{type(value).__module__}.{type(value).__qualname__}"
        raise TypeError(
            f"{name} must be a torch.Generator, a list of one per sample (generators or int seeds) or None, got "
            f"{kind}; e.g. {name}=torch.Generator().manual_seed(0)"
        )
    return value


def randn_like(x: Tensor, generator: Generators | None) -> Tensor:
    """Standard normal noise with ``x``'s shape, dtype and device from ``generator`` (one, or one per row)."""
    return randn(x.shape, generator, device=x.device, dtype=x.dtype)


def randn(
    shape: Sequence[int], generator: Generators | None, *, device: torch.device | str, dtype: torch.dtype
) -> Tensor:
    """``torch.randn(shape)`` from one generator, or row by row from per-sample ones."""
    return _draw(torch.randn, shape, generator, torch.device(device), dtype)


def rand(
    shape: Sequence[int], generator: Generators | None, *, device: torch.device | str, dtype: torch.dtype
) -> Tensor:
    """``torch.rand(shape)`` (uniform on [0, 1)) from one generator, or row by row from per-sample ones."""
    return _draw(torch.rand, shape, generator, torch.device(device), dtype)


def _draw(
    draw: Any, shape: Sequence[int], generator: Generators | None, device: torch.device, dtype: torch.dtype
) -> Tensor:
    """``draw(shape)`` from ``generator``: per-sample rows, or drawn on the generator's device and moved."""
    if generator is None:  # the global RNG: the common case of every step, kept direct
        return draw(tuple(shape), device=device, dtype=dtype)
    if isinstance(generator, SampleGenerators):
        return generator.draw(draw, shape, device, dtype)
    if not _same_device(generator.device, device):
        return draw(tuple(shape), generator=generator, device=generator.device, dtype=dtype).to(device)
    return draw(tuple(shape), generator=generator, device=device, dtype=dtype)
