"""The best-known sampler for a budget of score calls, as measured on the oracle suite.

    >>> from sdekit import best_method
    >>> choice = best_method(12)                  # deterministic, at most 12 score calls
    >>> x = choice(sde, score, shape=(64, 3, 32, 32))
    >>> choice = best_method(50, stochastic=True)

The rules come from the sweep of every method at its defaults over the 24 problems of
:mod:`sdekit.testing.suite` (docs/suite.md, ``python benchmarks/suite_quality_table.py``, n = 4096):
counting the problems where a method is at floor and the median |NLL gap| at each budget,
DPM-Solver++(2M) on the log-SNR grid was the best deterministic method below 30 NFE (6 of 24 at
floor at 20 NFE, median 0.13 nats; no method reaches the floor on more than 3 problems below 20),
DPM-Solver++(3M) from 30 (19 / 24 at 30 NFE against 2M's 12, 23 / 24 at 50); SDE-DPM-Solver++(2M)
the best stochastic method at every budget from 15 to 200 NFE (11 / 24 at 50 NFE, 23 / 24 at
200) and, on the 16 cheaper problems at 500 and 1000 NFE (``--budgets 500 1000 --no-cap``), as
good as Euler–Maruyama and reverse diffusion (13 / 16 at floor, median 0.035 nats at 1000).
Below ≈ 15 NFE nothing is at floor on most problems: the choice is the least bad. For an SDE
without a Gaussian kernel the choice is Heun or Euler–Maruyama, which need none (not measured on
the suite, whose SDEs all have one). The budget counts the final denoising call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from sdekit.checks import check_positive_int
from sdekit.reverse import ScoreFn
from sdekit.sampling import ode_sample, sample
from sdekit.sde import SDE, LinearSDE

__all__ = ["Choice", "best_method"]


@dataclass(frozen=True)
class Choice:
    """A sampler for a budget: ``function`` (``"ode_sample"`` or ``"sample"``), ``method``, ``steps``.

    ``nfe`` is the number of score calls it makes (steps × calls per step, + 1 for the final
    denoising on a LinearSDE), never more than the budget; ``denoise`` is False for an SDE without
    a Gaussian kernel (it has no Tweedie step); ``reason`` says which measurement chose it. Call it
    like the sampler: ``choice(sde, score, shape, **kwargs)`` with any other argument of
    :func:`~sdekit.sample` / :func:`~sdekit.ode_sample` (``x_T``, ``generator``, ``eps``, ...).
    """

    function: str
    method: str
    steps: int
    nfe: int
    reason: str
    denoise: bool = True

    def __call__(self, sde: SDE, score: ScoreFn, shape: tuple[int, ...] | None = None, **kwargs: Any) -> Any:
        fixed = sorted({"method", "steps"} & set(kwargs))
        if fixed:
            raise TypeError(f"{', '.join(fixed)}: a Choice fixes its method and steps; call {self.function} yourself")
        run = ode_sample if self.function == "ode_sample" else sample
        kwargs.setdefault("denoise", self.denoise)
        result: Tensor | tuple[Tensor, Any] = run(sde, score, shape, method=self.method, steps=self.steps, **kwargs)
        return result


def best_method(nfe: int, *, stochastic: bool = False, sde: SDE | None = None) -> Choice:
    """The best-known method within ``nfe`` score calls (at least 2: one step and the final denoising).

    ``stochastic``: a reverse-SDE sampler (fresh noise every step, for :func:`~sdekit.sample`)
    rather than the probability flow. ``sde``: the forward SDE the choice is for; when it is not
    a :class:`~sdekit.sde.LinearSDE` (no Gaussian kernel), a method that needs none is chosen
    (Heun, Euler–Maruyama), without the final denoising. See the module docstring for the measurement behind each
    rule.
    """
    nfe = check_positive_int("nfe", nfe)
    if nfe < 2:
        raise ValueError(f"nfe must be at least 2 (one step and the final denoising), got {nfe}")
    if not isinstance(stochastic, bool):
        raise TypeError(f"stochastic must be a bool, got {stochastic!r}")
    if sde is not None and not isinstance(sde, SDE):
        raise TypeError(f"sde must be an sdekit.SDE or None, got {type(sde).__name__}")
    linear = sde is None or isinstance(sde, LinearSDE)
    if not linear:  # no Gaussian kernel: no Tweedie step, every call is a step's
        if stochastic:
            return Choice("sample", "euler_maruyama", nfe, nfe, "needs no Gaussian kernel", denoise=False)
        return Choice("ode_sample", "heun", nfe // 2, nfe // 2 * 2, "second order without a Gaussian kernel",
                      denoise=False)  # fmt: skip
    if stochastic:
        return Choice("sample", "dpmpp_2m_sde", nfe - 1, nfe, "the suite's best stochastic method at every budget")
    if nfe >= 30:
        return Choice("ode_sample", "dpmpp_3m", nfe - 1, nfe, "the suite's best deterministic method from 30 NFE")
    return Choice("ode_sample", "dpmpp_2m", nfe - 1, nfe, "the suite's best deterministic method below 30 NFE")
