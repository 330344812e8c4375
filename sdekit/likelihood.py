"""Exact likelihoods through the probability-flow ODE (instantaneous change of variables).

Along the flow dx/dt = F̃(x, t) = f(x, t) − ½ g(t)² s(x, t) the density of x_t obeys
d log p_t(x_t)/dt = −∇·F̃(x_t, t). Integrating forward from ``eps`` (the data end) to T,

    log p_eps(x) = log p_T(x_T) + ∫_eps^T ∇·F̃(x_t, t) dt,

so :func:`log_likelihood` solves the augmented ODE d/dt [x, ℓ] = [F̃, ∇·F̃] with ℓ(eps) = 0
and returns ``prior_logp(x_T) + ℓ(T)``. The state handed to the adaptive solver is the
flattened x with one extra column for ℓ, shape (B, D + 1).

Divergence estimators (``divergence=``):

* ``"exact"``: the trace of the Jacobian by automatic differentiation, D vector-Jacobian
  products per call (batched over the basis vectors). Exact to round-off; use for small
  D (≲ 100) or to validate an estimator.
* ``"hutchinson_rademacher"`` (default) and ``"hutchinson_gaussian"``: the
  Hutchinson–Skilling estimator εᵀ(∂F̃/∂x)ε, one vector-Jacobian product per call. The
  probe ε is drawn once per sample and held fixed through the solve, so the augmented
  field is a smooth ODE and the result is an unbiased estimate of log p_eps(x) for each
  x. Rademacher probes have the smaller variance (the diagonal of the Jacobian adds none);
  Gaussian probes are the textbook choice. Average a few solves (different generators)
  when one point's value matters; the mean over a data set needs only one.

For a :class:`~sdekit.sde.LinearSDE` the drift's divergence D·f(t) is added in closed
form and only the score is differentiated, so the estimator's noise comes from the score
alone. Other SDEs differentiate the whole flow drift; state-dependent diffusions are not
supported (the divergence of their ½∇·(GGᵀ) term is a third derivative).

Choosing the tolerances: rtol = atol = 1e-5 (the default) reproduces the exact flow's
log-density to ~3e-4 bits/dim on average (max ~1e-3) on the 16-D test mixture in float32;
1e-3 is about half the NFE and still ≲ 0.01 bits/dim. Error control is per sample and
includes the log-density column, stored as ℓ/D (nats per dimension): its tolerance then
means what a bits/dim figure measures, and it weighs in the RMS error norm like one more
coordinate of x (weight 1/(D + 1)). Leaving it out would save a few steps but lose the
guard on steps where the divergence changes quickly while x does not (t ≈ eps); storing ℓ
in plain nats would tighten it D-fold for nothing (measured: +8 % NFE at D = 16, same
error). With Hutchinson probes the state carries one more, constant column (the sample's
row, so its fixed probe follows it when the solver drops finished samples), which dilutes
the error norm by √((D + 1)/(D + 2)).

``eps``: data live at t = 0, the flow starts at ``eps`` (default 1e-5) where the SDE's
schedules are well conditioned. The value returned is log p_eps(x), the density of the
model's data slightly blurred by the kernel at eps (std σ(eps): ≈ 1e-3 for VP with the
default β, 1e-2·(5000)^eps ≈ 0.01 for VE). For data with structure at scales ≫ σ(eps)
the difference to log p_0 is negligible (1.7e-5 nats on the 16-D test mixture with
VP, see docs/likelihood.md); for quantised data it is what dequantisation makes
well defined anyway.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from sdekit.checks import (
    ScoreError,
    batch_view,
    check_choice,
    check_generator,
    check_nonnegative_int,
    check_open_interval,
    check_positive,
    check_positive_int,
)
from sdekit.reverse import ScoreFn, jacobian_diagonal, probability_flow
from sdekit.sde import SDE, LinearSDE
from sdekit.solvers.adaptive_ode import solve_ivp_batched
from sdekit.solvers.info import SampleInfo
from sdekit.solvers.score_calls import CountedScore

__all__ = ["DIVERGENCES", "LikelihoodInfo", "log_likelihood", "bits_per_dim", "uniform_dequantize"]

DIVERGENCES = ("hutchinson_rademacher", "hutchinson_gaussian", "exact")

Field = Callable[[Tensor], Tensor]
#: (x, t, probe) -> (velocity, divergence)
Flow = Callable[[Tensor, Tensor, Tensor | None], tuple[Tensor, Tensor]]


@dataclass
class LikelihoodInfo:
    """What :func:`log_likelihood` computed besides the log-density.

    ``nfe``: batched score calls (each with one backward pass for Hutchinson, D for
    "exact"); ``steps`` / ``rejected``: accepted / rejected solver steps summed over
    samples; ``z``: the latent x_T, shape of x; ``prior_logp``: log p_T(z) under the
    SDE's prior, ``delta_logp``: ∫_eps^T ∇·F̃ dt (both (B,)); ``stats``: the solver's
    :class:`~sdekit.solvers.info.SampleInfo` (per-sample step counts among them).
    """

    nfe: int
    steps: int
    rejected: int
    z: Tensor
    prior_logp: Tensor
    delta_logp: Tensor
    stats: SampleInfo


def log_likelihood(
    sde: SDE,
    score: ScoreFn,
    x: Tensor,
    *,
    divergence: str = "hutchinson_rademacher",
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    eps: float = 1e-5,
    backend: str = "native",
    generator: torch.Generator | None = None,
    return_info: bool = False,
) -> Tensor | tuple[Tensor, LikelihoodInfo]:
    """log p(x) in nats per sample, shape (B,), through the probability-flow ODE of ``sde`` and ``score``.

    Args:
        sde: the forward SDE the score was trained for.
        score: ``score(x, t)`` (a function or an ``nn.Module``; put modules in ``eval()``
            mode: dropout would make the flow random). It is differentiated with respect to
            x under ``torch.enable_grad``; no graph is kept from one solver step to the next.
        x: data, shape (B, *event_shape), finite, in the dtype the score expects.
        divergence: ``"hutchinson_rademacher"``, ``"hutchinson_gaussian"`` or ``"exact"``
            (see the module docstring for the trade-off).
        method, rtol, atol, backend: the adaptive solver
            (:func:`~sdekit.solvers.adaptive_ode.solve_ivp_batched`): ``"dopri5"`` or
            ``"bosh3"``; tolerances of the per-sample error norm over [x, ℓ]; ``"native"``
            (batched, per-sample steps), ``"torchdiffeq"`` or ``"scipy"`` (the reference
            implementation's path, float64 on the host, one error norm for the batch).
        eps: start time in (0, T); the result is log p_eps(x) (module docstring).
        generator: draws the Hutchinson probes (one per sample, fixed during the solve).
        return_info: also return a :class:`LikelihoodInfo` (NFE, latent z, the two terms).

    Returns:
        log-densities (B,) in x's dtype, or ``(logp, info)``.

    Convert to bits per dimension with :func:`bits_per_dim`.
    """
    _check_inputs(sde, score, x)
    check_choice("divergence", divergence, DIVERGENCES)
    check_generator("generator", generator)
    eps = check_open_interval("eps", eps, 0.0, sde.T)
    counted = CountedScore(score)
    probes = None if divergence == "exact" else _probe(divergence, x, generator)
    state = _AugmentedState(x, probes)

    field = _AugmentedField(state, lambda score: _flow_with_divergence(sde, _explained(score, tuple(x.shape))), counted)
    with torch.no_grad():
        y_T, stats = solve_ivp_batched(
            field, state.initial(), eps, sde.T, method=method, rtol=rtol, atol=atol, backend=backend
        )
    z, delta_logp = state.unpack(y_T)[0], state.logp_change(y_T)
    prior_logp = sde.prior_logp(z)
    logp = prior_logp + delta_logp
    if not return_info:
        return logp
    return logp, LikelihoodInfo(counted.nfe, stats.steps, stats.rejected, z, prior_logp, delta_logp, stats)


class _AugmentedField:
    """d/dt of the augmented state; the score's per-sample state follows the solver's active set."""

    def __init__(self, state: _AugmentedState, make_flow: Callable[[CountedScore], Flow], score: CountedScore) -> None:
        self.state, self.make_flow, self.score = state, make_flow, score
        self.flow = make_flow(score)

    def select(self, rows: Tensor, batch_size: int) -> _AugmentedField:
        return _AugmentedField(self.state, self.make_flow, self.score.select(rows, batch_size))

    def __call__(self, t: Tensor, y: Tensor) -> Tensor:
        x_t, probe = self.state.unpack(y)
        velocity, div = self.flow(x_t, t, probe)
        return self.state.pack(velocity, div)


class _AugmentedState:
    """The solver's state (B, D + 1): flattened x, then ℓ/D; with Hutchinson probes one more constant column, the row.

    The log-density column holds ℓ/D, nats per dimension: its tolerance then means what a
    bits/dim figure measures, and it weighs in the error norm like one coordinate of x.

    The native solver drops finished samples from the batch, so ``func`` sees a subset of
    the rows; the constant row-index column lets each row find its own fixed probe. Its
    derivative and error are 0 (it only dilutes the RMS error norm by √((D + 1)/(D + 2))).
    """

    def __init__(self, x: Tensor, probes: Tensor | None) -> None:
        self.x, self.probes = x, probes
        self.event_shape, self.dim = tuple(x.shape[1:]), x[0].numel()

    def initial(self) -> Tensor:
        columns = [self.x.detach().reshape(-1, self.dim), self.x.new_zeros(self.x.shape[0], 1)]
        if self.probes is not None:
            columns.append(torch.arange(self.x.shape[0], device=self.x.device, dtype=self.x.dtype)[:, None])
        return torch.cat(columns, dim=1)

    def unpack(self, y: Tensor) -> tuple[Tensor, Tensor | None]:
        x = y[:, : self.dim].reshape(-1, *self.event_shape)
        if self.probes is None:
            return x, None
        return x, self.probes.index_select(0, y[:, -1].round().long())

    def logp_change(self, y: Tensor) -> Tensor:
        return y[:, self.dim] * self.dim

    def pack(self, velocity: Tensor, div: Tensor) -> Tensor:
        columns = [velocity.reshape(-1, self.dim), (div / self.dim)[:, None].to(velocity.dtype)]
        if self.probes is not None:
            columns.append(velocity.new_zeros(velocity.shape[0], 1))
        return torch.cat(columns, dim=1)


# --- the divergence of the flow ------------------------------------------------------------------------------------


def _flow_with_divergence(sde: SDE, score: ScoreFn) -> Callable[[Tensor, Tensor, Tensor | None], tuple[Tensor, Tensor]]:
    """``(x, t, probe) -> (F̃(x, t), ∇·F̃(x, t))``: exact divergence when ``probe`` is None, else εᵀ(∂F̃/∂x)ε.

    For a linear SDE F̃ = f(t)·x − ½g(t)²·s: ∇·F̃ = D·f(t) − ½g(t)²·∇·s, and only s is differentiated.
    """
    if isinstance(sde, LinearSDE):

        def linear_flow(x: Tensor, t: Tensor, probe: Tensor | None) -> tuple[Tensor, Tensor]:
            s, div_s = _value_and_divergence(lambda v: score(v, t), x, probe)
            f, half_g2 = sde.drift_coeff(t), 0.5 * sde.diffusion_squared(t)
            velocity = batch_view(f, x) * x - batch_view(half_g2, x) * s
            return velocity, (x[0].numel() * f - half_g2 * div_s.double()).to(x.dtype)

        return linear_flow
    if sde.state_dependent_diffusion:
        raise TypeError(
            f"log_likelihood supports SDEs whose diffusion does not depend on the state; {type(sde).__name__} "
            "declares state_dependent_diffusion (the flow's divergence would need second derivatives of G(x, t)²)"
        )
    flow = probability_flow(sde, score)

    def general_flow(x: Tensor, t: Tensor, probe: Tensor | None) -> tuple[Tensor, Tensor]:
        return _value_and_divergence(lambda v: flow.drift(v, t), x, probe)

    return general_flow


def _probe(kind: str, x: Tensor, generator: torch.Generator | None) -> Tensor:
    """The Hutchinson probe for every sample, with x's shape: Rademacher ±1 or standard normal."""
    if kind == "hutchinson_gaussian":
        return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    signs = torch.randint(0, 2, x.shape, generator=generator, device=x.device)
    return (2 * signs - 1).to(x.dtype)


def _value_and_divergence(fn: Field, y: Tensor, probe: Tensor | None) -> tuple[Tensor, Tensor]:
    """``fn(y)`` and its divergence Σ_i ∂fn_i/∂y_i per sample: exact (probe None) or εᵀ(∂fn/∂y)ε."""
    with torch.enable_grad():
        y = y.detach().requires_grad_(True)
        out = fn(y)
        if probe is None:
            div = jacobian_diagonal(out, y).flatten(1).sum(1)
        else:
            (vjp,) = torch.autograd.grad(out, y, probe)
            div = (vjp * probe).flatten(1).sum(1)
    return out.detach(), div.detach()


# --- bits per dimension and dequantisation ---------------------------------------------------------------------


def bits_per_dim(
    logp: Tensor, event_shape: int | tuple[int, ...] | torch.Size, *, data_range: float = 2.0, bits: int = 8
) -> Tensor:
    """Bits per dimension of discrete ``bits``-bit data from the density ``logp`` (nats) of its dequantised version.

        bpd = −log p / (D ln 2) + log₂(2^bits / data_range)

    The offset is the log-volume of one quantisation bin of width data_range / 2^bits per
    dimension: with uniformly dequantised data (:func:`uniform_dequantize`), −log₂ P(bin) ≤
    −log₂ p(x) − D log₂(bin width) in expectation, the number image papers report. For 8-bit
    data scaled to [−1, 1] the offset is 7 bits, for [0, 1] it is 8. To get the plain
    −log p / (D ln 2) of continuous data, pass ``bits=0, data_range=1``.

    Args:
        logp: log-densities in nats, any shape (typically (B,) from :func:`log_likelihood`).
        event_shape: the shape of one sample (or D itself).
        data_range: width of the interval the 2^bits levels span after scaling (> 0).
        bits: bit depth of the original data (>= 0).
    """
    dims = (event_shape,) if isinstance(event_shape, int) else tuple(event_shape)
    if not dims or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dims):
        raise ValueError(f"event_shape must be a positive int or a tuple of positive ints, got {event_shape!r}")
    data_range = check_positive("data_range", data_range)
    bits = check_nonnegative_int("bits", bits)
    dim = math.prod(dims)
    return -logp / (dim * math.log(2)) + (bits - math.log2(data_range))


def uniform_dequantize(
    x: Tensor,
    bits: int = 8,
    generator: torch.Generator | None = None,
    data_range: float = 2.0,
    low: float = -1.0,
) -> Tensor:
    """Spread quantised data uniformly over their bins: level k ↦ low + (k + u)·data_range / 2^bits, u ~ U[0, 1).

    ``x`` holds the usual scaled levels ``low + k·data_range/(2^bits − 1)``, k = 0 … 2^bits − 1
    (``ToTensor()`` gives low = 0, data_range = 1; ``2·ToTensor() − 1`` the defaults
    low = −1, data_range = 2). The result lies in [low, low + data_range) and its density
    converts to bits per dimension with :func:`bits_per_dim` and the same ``data_range``
    and ``bits``. Raises ``ValueError`` if x is not on that grid (wrong ``low``/``data_range``).

    ``generator``: the ``torch.Generator`` of the uniform draws (default None: the global RNG).
    """
    bits = check_positive_int("bits", bits)
    data_range = check_positive("data_range", data_range)
    check_generator("generator", generator)
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point torch.Tensor, got {type(x).__name__}")
    levels = 2**bits
    position = (x.double() - low) / data_range * (levels - 1)
    k = position.round()
    if not bool(torch.isfinite(position).all()):
        raise ValueError("x must be finite: got NaN or Inf among the data to dequantise")
    if bool(((position - k).abs() > 1e-3).any()) or bool(((k < 0) | (k > levels - 1)).any()):
        raise ValueError(
            f"x must hold {bits}-bit levels low + k·data_range/{levels - 1} with low={low!r}, "
            f"data_range={data_range!r}; got values off that grid (range {float(x.min()):.4g}..{float(x.max()):.4g})"
        )
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=torch.float64)
    return (low + (k + u) * (data_range / levels)).to(x.dtype)


# --- validation -------------------------------------------------------------------------------------------------


def _check_inputs(sde: object, score: object, x: object) -> None:
    if not isinstance(sde, SDE):
        raise TypeError(f"sde must be an sdekit.SDE, got {type(sde).__name__}")
    if not callable(score):
        raise TypeError(f"score must be callable as score(x, t), got {type(score).__name__}")
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point torch.Tensor of shape (B, *event_shape), got {x!r:.80}")
    if x.ndim < 2 or x.shape[0] < 1 or x[0].numel() < 1:
        raise ValueError(f"x must have shape (B, *event_shape) with B >= 1, got {tuple(x.shape)}")
    finite = torch.isfinite(x.detach()).flatten(1).all(1)
    if not bool(finite.all()):
        bad = int((~finite).nonzero()[0, 0])
        raise ValueError(f"x must be finite; sample {bad} (of {x.shape[0]}) contains NaN or Inf")


def _explained(score: CountedScore, shape: tuple[int, ...]) -> ScoreFn:
    """``score`` whose first call turns a failure into a ValueError naming x's shape (the usual cause)."""

    def call(x: Tensor, t: Tensor) -> Tensor:
        if score.nfe > 0:
            out = score(x, t)
        else:
            try:
                out = score(x, t)
            except ScoreError:
                raise
            except (RuntimeError, ValueError, TypeError) as error:
                raise ValueError(
                    f"score(x, t) failed on x of shape {shape} (event shape {shape[1:]}): does the score expect "
                    f"this event shape and dtype? The score said: {error}"
                ) from error
        if x.requires_grad and not out.requires_grad:  # the divergence would silently be that of a constant
            raise ScoreError(
                "log_likelihood differentiates the score with respect to x, but score(x, t) returned a tensor with "
                "no gradient path to x (detached, computed under torch.no_grad(), or through NumPy); return a "
                "differentiable function of x"
            )
        return out

    return call
