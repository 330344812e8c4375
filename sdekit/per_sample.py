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
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar, runtime_checkable

from torch import Tensor

__all__ = ["SelectsRows", "select_rows", "index_per_sample"]

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
