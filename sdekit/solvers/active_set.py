"""The active set of an adaptive solver: the samples still running, compacted as they finish.

Both adaptive solvers (:mod:`~sdekit.solvers.adaptive_sde`, :mod:`~sdekit.solvers.adaptive_ode`)
keep their per-sample state in an :class:`ActiveSet`: tensors whose first dimension is the
samples still running, with ``index`` their positions in the full batch, and objects that
compact with them (a Brownian tree). At a check point — where the solver reads a small status
back from the device — :meth:`ActiveSet.retire` writes what is kept of the finished samples into
full-batch results at their positions and drops them from every per-sample field at once, so
they cost neither score evaluations nor arithmetic afterwards; the solver then restricts the
score's per-sample state to the rows left (:func:`sdekit.per_sample.select_rows`).

Check points come every ``sync_every`` iterations at most, and sooner when the slowest sample
is about to finish (:func:`next_check`): reading back costs a host synchronisation on an
accelerator, while checking too seldom lets finished samples ride along. (The SDE solver checks
every iteration: its status also carries the depth its Brownian trees need.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields

from torch import Tensor

__all__ = ["ActiveSet", "next_check"]


@dataclass
class ActiveSet:
    """Per-sample state of the running samples: ``index`` (positions in the full batch) and, in a
    subclass, more fields — tensors whose first dimension is the running samples, or objects with an
    in-place ``select(rows)`` — that all compact together."""

    index: Tensor

    def select(self, rows: Tensor) -> None:
        """Keep the running samples ``rows`` (positions among them), in every field, in place."""
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, Tensor):
                setattr(self, field.name, value.index_select(0, rows))
            else:
                value.select(rows)

    def retire(self, done: Tensor, results: Mapping[str, Tensor]) -> bool:
        """Write the ``done`` samples' fields named in ``results`` into those full-batch tensors at their
        positions, and drop them. ``done`` is a boolean mask over the running samples (host or device).
        Returns whether any sample left."""
        finished = done.nonzero().squeeze(1).to(self.index.device)
        if finished.numel() == 0:
            return False
        positions = self.index.index_select(0, finished)
        for name, result in results.items():
            result.index_copy_(0, positions, getattr(self, name).index_select(0, finished))
        self.select((~done).nonzero().squeeze(1).to(self.index.device))
        return True


def next_check(iterations_to_go: float, sync_every: int) -> int:
    """Iterations until the next check point: about halfway to the slowest sample's end, within [1, sync_every]."""
    if not math.isfinite(iterations_to_go):
        return 1
    return int(min(max(iterations_to_go / 2, 1), sync_every))
