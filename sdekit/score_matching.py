"""Score matching without a denoising target: explicit, implicit (Hyvärinen) and sliced score matching.

All three estimate the Fisher divergence ½ E_p ‖s(x) − ∇log p(x)‖² between a model score s
and the data's score:

* **explicit** (:func:`esm_loss`): ½‖s(x) − ∇log p(x)‖², needs the true score (an oracle's);
* **implicit** (:func:`ism_loss`, Hyvärinen 2005): tr ∇ₓs(x) + ½‖s(x)‖². Integration by
  parts turns the unknown ∇log p into a Jacobian trace, so ISM(s) = ESM(s) − ½ E‖∇log p‖²:
  the same minimiser, a constant offset that does not depend on s;
* **sliced** (:func:`ssm_loss`, Song et al. 2019): vᵀ∇ₓs(x) v + ½ (vᵀs(x))² with random
  projections v, E[vvᵀ] = I. An unbiased estimate of ISM that needs one Jacobian-vector
  product per projection instead of D; ``variance_reduced=True`` keeps ½‖s‖² exact
  (ISM with a Hutchinson trace).

Each works on clean data (``noise=None``: ``score(x)``, data where adding noise is unwanted)
or on perturbed data, as score-based models train:

* ``noise=NoiseLevels(sigmas)``: NCSN's multi-level form, x̃ = x₀ + σ_i z at a uniformly
  drawn level per sample, ``score(x̃, i)`` (or ``score(x̃, σ_i)``), weighted λ = σ_i²;
* ``noise=ContinuousTime(sde)``: the continuous-time form for any SDE, x_t from the forward
  kernel at t ~ U(eps, T), ``score(x_t, t)``, weighted λ = σ(t)² or g(t)².

With noise, the target is the score of the *perturbed* density p_σ (or p_t), so
λ·ISM on perturbed data equals ½ :func:`~sdekit.losses.smld_loss` (or ½
:func:`~sdekit.losses.dsm_loss`) with ``reduce="sum"`` up to a constant: the same
optimum, no noise target — but a Jacobian per step, so DSM stays the cheaper choice where
noise is wanted.

Conventions as in :mod:`sdekit.losses`: the batch mean (``per_sample=True``: the (B,)
values); ``reduce="mean"`` divides each sample's value by its number of dimensions D
(``"sum"``: the textbook quantity); every draw (levels or times, noise, projections, in
that order) comes from ``generator``. The network must treat samples independently (no
batch norm in training mode): the trace is taken through the batch sum. ISM and SSM are
differentiable in the network's parameters (double backward) and build their graph even
inside ``torch.no_grad()``, which they need for the Jacobian.

Practical advice: in D ≤ ``EXACT_TRACE_MAX_DIM`` dimensions ``ism_loss`` takes the exact
trace (D backward passes); above it a Hutchinson estimate. For training in more
dimensions, ``ssm_loss(..., variance_reduced=True)`` with Gaussian projections and
``n_projections=1`` is the standard choice; Rademacher projections have lower variance
for the trace term.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from sdekit.checks import ScoreError, check_choice, check_data, check_positive_int, check_score_output
from sdekit.losses import REDUCTIONS, ContinuousTime, NoiseLevels
from sdekit.sde import time_checks

__all__ = [
    "PROJECTIONS",
    "TRACES",
    "EXACT_TRACE_MAX_DIM",
    "esm_loss",
    "ism_loss",
    "ssm_loss",
    "jacobian_quadratic",
]

PROJECTIONS = ("gaussian", "rademacher")
TRACES = ("auto", "exact", "hutchinson")
#: ``trace="auto"`` takes the exact Jacobian trace up to this many dimensions per sample.
EXACT_TRACE_MAX_DIM = 16

Noise = NoiseLevels | ContinuousTime | None
#: ``score(x)`` with ``noise=None``; ``score(x, label)`` otherwise (label: level index, σ or t).
ScoreLike = Callable[..., Tensor]


def esm_loss(
    score: ScoreLike,
    x0: Tensor,
    true_score: ScoreLike,
    *,
    noise: Noise = None,
    reduce: str = "mean",
    generator: torch.Generator | None = None,
    per_sample: bool = False,
) -> Tensor:
    """Explicit score matching: batch mean of λ·½‖s(x) − ∇log p(x)‖².

    Args:
        score: the model score, called like ``true_score``.
        x0: data (B, *event); with ``noise`` it is perturbed first.
        true_score: the data's score ∇log p (with ``noise``: of the perturbed density,
            called with the same label as ``score``), e.g. an oracle's
            :class:`~sdekit.testing.ExactScore` through a lambda.
        noise: ``None``, :class:`~sdekit.losses.NoiseLevels` or :class:`~sdekit.losses.ContinuousTime`.
        reduce, generator, per_sample: see the module docstring.
    """
    reduce = check_choice("reduce", reduce, REDUCTIONS)
    point = _point(x0, noise, generator)
    s = _score(score, point, "score")
    target = _score(true_score, point, "true_score").detach()
    return _finish(0.5 * (s - target).flatten(1).square().sum(1), point, reduce, per_sample)


def ism_loss(
    score: ScoreLike,
    x0: Tensor,
    *,
    noise: Noise = None,
    trace: str = "auto",
    n_projections: int = 1,
    projection: str = "rademacher",
    reduce: str = "mean",
    generator: torch.Generator | None = None,
    per_sample: bool = False,
) -> Tensor:
    """Implicit score matching (Hyvärinen): batch mean of λ·(tr ∇ₓs(x) + ½‖s(x)‖²).

    Args:
        score: ``score(x)`` (``noise=None``) or ``score(x, label)``; differentiable in x.
        x0: data (B, *event); with ``noise`` it is perturbed first.
        noise: ``None``, :class:`~sdekit.losses.NoiseLevels` or :class:`~sdekit.losses.ContinuousTime`.
        trace: ``"exact"`` (D backward passes, exact), ``"hutchinson"`` (``n_projections``
            random projections, unbiased) or ``"auto"`` (exact up to ``EXACT_TRACE_MAX_DIM``
            dimensions per sample).
        n_projections, projection: of the Hutchinson trace (``"rademacher"`` or ``"gaussian"``).
        reduce, generator, per_sample: see the module docstring.

    ISM(s) − ESM(s) = −½ E‖∇log p‖² for every s (that decays fast enough at infinity):
    minimising it minimises the Fisher divergence without the true score.
    """
    trace = check_choice("trace", trace, TRACES)
    n_projections = check_positive_int("n_projections", n_projections)
    projection = check_choice("projection", projection, PROJECTIONS)
    reduce = check_choice("reduce", reduce, REDUCTIONS)
    with torch.enable_grad():
        point, x, s = _differentiable_score(score, x0, noise, generator)
        dim = x[0].numel()
        if trace == "exact" or (trace == "auto" and dim <= EXACT_TRACE_MAX_DIM):
            tr = _exact_trace(s, x)
        else:
            tr = _hutchinson(s, x, n_projections, projection, generator)[0]
        return _finish(tr + 0.5 * s.flatten(1).square().sum(1), point, reduce, per_sample)


def ssm_loss(
    score: ScoreLike,
    x0: Tensor,
    *,
    noise: Noise = None,
    n_projections: int = 1,
    projection: str = "gaussian",
    variance_reduced: bool = False,
    reduce: str = "mean",
    generator: torch.Generator | None = None,
    per_sample: bool = False,
) -> Tensor:
    """Sliced score matching: batch mean of λ·mean_v(vᵀ∇ₓs(x) v + ½ (vᵀs(x))²), v ~ Gaussian or Rademacher.

    Args:
        score: ``score(x)`` (``noise=None``) or ``score(x, label)``; differentiable in x.
        x0: data (B, *event); with ``noise`` it is perturbed first.
        noise: ``None``, :class:`~sdekit.losses.NoiseLevels` or :class:`~sdekit.losses.ContinuousTime`.
        n_projections: projections per sample (≥ 1), averaged; each costs one
            Jacobian-vector product (a backward pass).
        projection: ``"gaussian"`` (the paper's) or ``"rademacher"`` (±1 entries).
        variance_reduced: replace ½(vᵀs)² by its expectation ½‖s‖² (SSM-VR): lower
            variance, the same expectation, and then the loss is ISM with a Hutchinson trace.
        reduce, generator, per_sample: see the module docstring.

    Unbiased for ISM: E_v[vᵀ∇s v] = tr ∇s and E_v[(vᵀs)²] = ‖s‖² when E[vvᵀ] = I.
    """
    n_projections = check_positive_int("n_projections", n_projections)
    projection = check_choice("projection", projection, PROJECTIONS)
    reduce = check_choice("reduce", reduce, REDUCTIONS)
    with torch.enable_grad():
        point, x, s = _differentiable_score(score, x0, noise, generator)
        trace, sliced_norm = _hutchinson(s, x, n_projections, projection, generator)
        norm = s.flatten(1).square().sum(1) if variance_reduced else sliced_norm
        return _finish(trace + 0.5 * norm, point, reduce, per_sample)


def jacobian_quadratic(s: Tensor, x: Tensor, v: Tensor) -> Tensor:
    """vᵀ (∂s/∂x) v per sample, shape (B,), by one vector-Jacobian product (differentiable: create_graph).

    ``s`` must be a function of ``x`` sample by sample (no mixing across the batch).
    """
    if not s.requires_grad:
        raise ScoreError(
            "the score returned a tensor with no gradient path to x (detached, computed under torch.no_grad() "
            "inside the score, or through NumPy); score matching differentiates it in x"
        )
    (row,) = torch.autograd.grad(s, x, grad_outputs=v, create_graph=True, allow_unused=True)
    if row is None:
        raise ScoreError("the score does not depend on x (it was computed from a detached copy or a constant)")
    return (row * v).flatten(1).sum(1)


# --- helpers -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Point:
    """Where a loss is evaluated: the data, the label the score gets (None: ``score(x)``), λ (None: 1)."""

    x: Tensor
    label: Tensor | None
    weight: Tensor | None


def _point(x0: Tensor, noise: Noise, generator: torch.Generator | None) -> _Point:
    """x0 itself (``noise=None``) or x0 perturbed by ``noise``, with its label and weight."""
    check_data("x0", x0)
    if noise is None:
        return _Point(x0, None, None)
    if not isinstance(noise, NoiseLevels | ContinuousTime):
        raise TypeError(f"noise must be None, a NoiseLevels or a ContinuousTime, got {type(noise).__name__}")
    perturbed = noise.perturb(x0, generator)
    return _Point(perturbed.x, perturbed.label, perturbed.weight())


def _score(score: ScoreLike, point: _Point, name: str, x: Tensor | None = None) -> Tensor:
    """``score(x)`` or ``score(x, label)``, its output checked; ``x`` defaults to the point's data."""
    if not callable(score):
        raise TypeError(f"{name} must be callable, got {type(score).__name__}")
    x = point.x if x is None else x
    with time_checks(False):  # perturbation times were drawn inside [eps, T]: no host read-back per call
        out = score(x) if point.label is None else score(x, point.label)
    check_score_output(out, x, name)
    return out


def _differentiable_score(
    score: ScoreLike, x0: Tensor, noise: Noise, generator: torch.Generator | None
) -> tuple[_Point, Tensor, Tensor]:
    """(point, x, s(x)) with x a leaf that requires grad, so the Jacobian of s in x can be taken (under enable_grad)."""
    point = _point(x0, noise, generator)
    x = point.x.detach().requires_grad_(True)
    return point, x, _score(score, point, "score", x)


def _exact_trace(s: Tensor, x: Tensor) -> Tensor:
    """tr ∂s/∂x per sample: one backward pass per coordinate of the event."""
    flat_s = s.flatten(1)
    total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    for d in range(flat_s.shape[1]):
        basis = torch.zeros_like(flat_s)
        basis[:, d] = 1
        total = total + jacobian_quadratic(s, x, basis.view_as(s))
    return total


def _hutchinson(
    s: Tensor, x: Tensor, n: int, projection: str, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """(mean_v vᵀ∇s v, mean_v (vᵀs)²) over ``n`` projections per sample."""
    trace = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    sliced = torch.zeros_like(trace)
    for _ in range(n):
        v = _projection(s, projection, generator)
        trace = trace + jacobian_quadratic(s, x, v)
        sliced = sliced + (v * s).flatten(1).sum(1).square()
    return trace / n, sliced / n


def _projection(like: Tensor, kind: str, generator: torch.Generator | None) -> Tensor:
    if kind == "gaussian":
        return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)
    signs = torch.randint(0, 2, like.shape, generator=generator, device=like.device)
    return (2 * signs - 1).to(like.dtype)


def _finish(values: Tensor, point: _Point, reduce: str, per_sample: bool) -> Tensor:
    """Apply λ (for perturbed data), the reduction over dimensions and the batch mean."""
    if point.weight is not None:
        values = values * point.weight.to(values.dtype)
    if reduce == "mean":
        values = values / point.x[0].numel()
    return values if per_sample else values.mean()
