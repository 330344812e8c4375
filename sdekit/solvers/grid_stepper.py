"""The base of every fixed-grid stepper, and the fused update its steps are written with.

A stepper is a configured method (its options given at construction, see
:mod:`sdekit.solvers.method`); :meth:`GridStepper.start` binds it to one run over one time grid
T = t_0 > t_1 > … > t_N = eps, and the run's ``step(x, i)`` returns the state at t_{i+1} from the
state ``x`` at t_i. Knowing the
whole grid up front is what makes the steps cheap: every coefficient a method needs
(for a :class:`~sdekit.sde.LinearSDE`, all of them) is computed once, vectorised over
the grid in float64, and kept as Python floats. A step is then one score call plus a
few elementwise passes over the state (:func:`weighted_sum`), with no per-step scalar
tensor arithmetic and no host synchronisation.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import ClassVar, TypeVar

import torch
from torch import Tensor

from sdekit.per_sample import Generators, SampleGenerators
from sdekit.reverse import ScoreFn
from sdekit.sde import SDE, LinearSDE
from sdekit.solvers.method import Configurable

__all__ = ["GridStepper", "weighted_sum"]

_Stepper = TypeVar("_Stepper", bound="GridStepper")


class GridStepper(Configurable, abc.ABC):
    """A fixed-grid method; started for a run, it holds the SDE, the score, the grid and the generator.

    ``method.start(sde, score, grid, generator)`` returns a new object with the same options, bound
    to the run (the configured object itself is never modified, so one object serves many runs);
    a subclass computes its per-run coefficients in :meth:`bind`. ``grid`` is float64 on the
    state's device. ``self.times[i]`` is t_i as a ``(1,)`` tensor
    (the time shared by the batch, as the score receives it), ``self.t`` and ``self.t_next``
    the step's start and end times on the CPU, float64 ``(N,)``, for computing coefficients.
    ``nfe_per_step`` is the number of score calls a step makes; ``needs_linear_sde`` makes
    :meth:`start` refuse an SDE without a Gaussian kernel.
    """

    nfe_per_step: int = 1
    #: Methods built on the Gaussian kernel (α, σ, log-SNR) refuse other SDEs when started.
    needs_linear_sde: ClassVar[bool] = False
    #: The grid a sampler uses when the user gives none, on a :class:`~sdekit.sde.LinearSDE` (other
    #: SDEs get ``"uniform"``: the log-SNR grid needs a Gaussian kernel). Uniform in λ = log(α/σ) for
    #: every method: on the oracle suite (24 problems) a grid uniform in t makes every method's last
    #: steps too coarse in λ, e.g. Heun at 51 NFE +4.9 nats and PC at 100 steps +2.4 on narrow modes
    #: against −0.12 and −0.06 on the log-SNR grid (docs/solvers.md, "Default grids").
    default_grid: ClassVar[str] = "log_snr"
    #: "sde" (a reverse-SDE method, for ``sample``), "ode" (the flow, for ``ode_sample``) or "corrector".
    kind: ClassVar[str] = "sde"
    #: A step that mixes samples (a step size from batch means): per-sample generators are refused,
    #: naming ``per_sample_variant`` (a registered name of the same method without it) when there is one.
    couples_batch: ClassVar[bool] = False
    per_sample_variant: ClassVar[str] = ""

    def grid_for(self, sde: SDE) -> str:
        """The name of the grid a sampler uses for ``sde`` when the user gives none (:attr:`default_grid`).

        ``"uniform"`` for an SDE without a Gaussian kernel, or one whose log-SNR is not finite at T
        (α(T) = 0, as a schedule taken to pure noise has): the log-SNR grid cannot start there.
        """
        if not isinstance(sde, LinearSDE):
            return "uniform"
        start = sde.log_snr(torch.tensor([sde.T], dtype=torch.float64))
        return self.default_grid if bool(torch.isfinite(start).all()) else "uniform"

    def start(self: _Stepper, sde: SDE, score: ScoreFn, grid: Tensor, generator: Generators | None = None) -> _Stepper:
        """This method, with its options, bound to one run over ``grid``: call ``step(x, i)`` on the result.

        The run is a new object built from the options alone, so nothing of an earlier run (a
        started object passed again, a cache, a multistep history) carries over.
        """
        run = type(self)(**self.options)
        run.bind(sde, score, grid, generator)
        return run

    def bind(self, sde: SDE, score: ScoreFn, grid: Tensor, generator: Generators | None = None) -> None:
        """Take the run's SDE, score, grid and generator, and compute what the steps need (subclasses extend it)."""
        if self.needs_linear_sde and not isinstance(sde, LinearSDE):
            raise TypeError(f"{type(self).__name__} needs a LinearSDE (Gaussian kernel), got {type(sde).__name__}")
        if not isinstance(grid, Tensor):
            raise TypeError(f"grid must be a 1-D tensor of times, got {type(grid).__name__}")
        if self.couples_batch and isinstance(generator, SampleGenerators):
            raise ValueError(
                f"generator: {type(self).__name__} couples the samples of a batch (one step for all), so a sample "
                "would depend on the others; per-sample generators need "
                + (f"'{self.per_sample_variant}'" if self.per_sample_variant else "another method")
            )
        if grid.ndim != 1 or grid.shape[0] < 2:
            raise ValueError(f"grid must be a 1-D tensor of at least 2 times, got shape {tuple(grid.shape)}")
        self.sde = sde
        self.score = score
        self.generator = generator
        self.steps = int(grid.shape[0]) - 1
        self.times = grid.double().split(1)
        host = grid.detach().double().cpu()
        self.t, self.t_next = host[:-1], host[1:]

    @abc.abstractmethod
    def step(self, x: Tensor, i: int) -> Tensor:
        """The state at t_{i+1} from the state ``x`` at t_i."""


def weighted_sum(
    terms: Sequence[tuple[float | Tensor, Tensor]], *, into: tuple[float | Tensor, Tensor] | None = None
) -> Tensor:
    """Σ c_k v_k: one elementwise pass per term, no temporaries for Python-float coefficients.

    A coefficient is a Python float (a grid coefficient computed in float64 before the run) or a
    tensor broadcastable against the terms (a per-sample or elementwise coefficient evaluated at
    the step: SDEs without precomputed coefficients). Float terms on the *same* tensor object are
    merged first — x + (−h f)·x is one pass with coefficient 1 − h f — so a step written once for
    every SDE costs no more on a linear one. ``into = (c, buffer)`` starts the sum from c·buffer
    *in place*: pass a tensor the caller owns and no longer needs (fresh noise, say). Otherwise the
    first term is copied. Terms with c = 0.0 are skipped; the input tensors are never modified.
    """
    pending = [(c, v) for c, v in _merged(terms) if not _is_zero(c)]
    if into is not None:
        scale, out = into
        if isinstance(scale, Tensor) or scale != 1.0:
            out.mul_(scale)
    elif len(pending) > 1 and any(_is_one(c) for c, _ in pending):
        # x + c·v in one pass (torch.add's alpha) rather than a copy and an add.
        first = next(k for k, (c, _) in enumerate(pending) if _is_one(c))
        _, base = pending.pop(first)
        scale, other = pending.pop(0)
        out = base + other * scale if isinstance(scale, Tensor) else torch.add(base, other, alpha=scale)
    elif pending:
        scale, first_term = pending.pop(0)
        out = torch.mul(first_term, scale)
    else:
        out = torch.zeros_like(terms[0][1])
    for c, v in pending:
        if isinstance(c, Tensor):
            out.add_(v * c)
        else:
            out.add_(v, alpha=c)
    return out


def _is_zero(c: float | Tensor) -> bool:
    return not isinstance(c, Tensor) and c == 0.0


def _is_one(c: float | Tensor) -> bool:
    return not isinstance(c, Tensor) and c == 1.0


def _merged(terms: Sequence[tuple[float | Tensor, Tensor]]) -> list[tuple[float | Tensor, Tensor]]:
    """The terms with float coefficients on the same tensor object added up (at the first one's place)."""
    merged: list[tuple[float | Tensor, Tensor]] = []
    for c, v in terms:
        for k, (c0, v0) in enumerate(merged):
            if v0 is v and not isinstance(c0, Tensor) and not isinstance(c, Tensor):
                merged[k] = (c0 + c, v)
                break
        else:
            merged.append((c, v))
    return merged
