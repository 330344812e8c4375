"""Processes derived from a forward SDE and a score: the reverse SDE and the probability-flow ODE.

For dx = f dt + g dw and a score s(x, t) ≈ ∇ log p_t(x):

* reverse SDE (Anderson 1982): dx = [f − g² s] dt + g dw̄, run from T down to 0;
* probability-flow ODE: dx/dt = f − ½ g² s, with the same marginals p_t.

With a state-dependent diagonal diffusion G(x, t) both drifts gain a divergence
term, ∇·(G Gᵀ) (reverse) and ½∇·(G Gᵀ) (flow); it is derived here by automatic
differentiation, never dropped.

Both objects step with every sdekit solver and also plug straight into the
ecosystem's integrators:

* ``torchsde.sdeint(reverse(sde, score), y0, ts)`` integrates in the reversed time
  s = T − t (so ``ts`` increases from 0 to T − eps) on flattened states ``(B, D)``;
* ``torchdiffeq.odeint(probability_flow(sde, score), x_T, torch.tensor([T, eps]))``
  integrates the flow on states of any shape. With its adaptive methods pass
  ``options={"step_t": times}``: they otherwise step past ``eps`` and interpolate
  back, evaluating the flow at t < 0 where a VP schedule is undefined (NaN).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from sdekit.checks import batch_view
from sdekit.sde import SDE, time_checks

__all__ = [
    "ScoreFn",
    "ReverseSDE",
    "ProbabilityFlow",
    "reverse",
    "probability_flow",
    "diffusion_divergence",
    "jacobian_diagonal",
]

#: ``score(x, t) -> Tensor``: x of shape (B, *event), t of shape (B,), output like x.
ScoreFn = Callable[[Tensor, Tensor], Tensor]
"""The score contract: ``score(x, t)`` with ``x`` of shape ``(B, *event)`` and ``t`` of shape ``(B,)`` in the
SDE's time units returns ≈ ∇ₓ log p_t(x), a tensor of ``x``'s shape, dtype and device."""


def diffusion_divergence(sde: SDE, x: Tensor, t: Tensor) -> Tensor:
    """∇·(G Gᵀ) for a diagonal state-dependent diffusion G(x, t): component i is ∂(G_i²)/∂x_i.

    Exact, by automatic differentiation: one evaluation of G and D vector-Jacobian
    products (:func:`jacobian_diagonal`), shape of x.
    """
    with torch.enable_grad():
        y = x.detach().requires_grad_(True)
        return jacobian_diagonal(sde.diffusion(y, t) ** 2, y).detach()


#: Basis vectors per batched backward pass of :func:`jacobian_diagonal`: bounds memory at about
#: this many copies of the function's activations.
JACOBIAN_CHUNK = 64


def jacobian_diagonal(out: Tensor, y: Tensor) -> Tensor:
    """∂out_i/∂y_i for each sample, shape of ``y``, through the graph of ``out`` (same shape, rows independent).

    D vector-Jacobian products with the basis vectors, batched ``JACOBIAN_CHUNK`` at a time
    (``is_grads_batched``); the graph is kept, so ``out`` can be differentiated again.
    """
    batch, dim = y.shape[0], y[0].numel()
    eye = torch.eye(dim, dtype=y.dtype, device=y.device)
    diagonal = y.new_empty(batch, dim)
    for start in range(0, dim, JACOBIAN_CHUNK):
        rows = eye[start : start + JACOBIAN_CHUNK]  # (chunk, D)
        basis = rows[:, None, :].expand(-1, batch, -1).reshape(-1, *y.shape)
        (grads,) = torch.autograd.grad(out, y, basis, is_grads_batched=True, retain_graph=True)
        chunk = torch.arange(rows.shape[0], device=y.device)
        diagonal[:, start : start + rows.shape[0]] = grads.reshape(rows.shape[0], batch, dim)[chunk, :, start + chunk].T
    return diagonal.reshape(y.shape)


class _Derived:
    """Shared state of the derived processes: the forward SDE, the score, the time horizon."""

    def __init__(self, sde: SDE, score: ScoreFn, event_shape: tuple[int, ...] | None = None) -> None:
        if not isinstance(sde, SDE):
            raise TypeError(f"sde must be an sdekit.SDE, got {type(sde).__name__}")
        if not callable(score):
            raise TypeError(f"score must be callable as score(x, t), got {type(score).__name__}")
        self.sde = sde
        self.score = score
        self.event_shape = event_shape

    def _diffusion_terms(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor | None]:
        """g² broadcast against x, and ∇·(GGᵀ) when the diffusion depends on the state."""
        g = self.sde.diffusion(x, t)
        if self.sde.state_dependent_diffusion:
            return g**2, diffusion_divergence(self.sde, x, t)
        return batch_view(g**2, x), None

    def _unflatten(self, y: Tensor) -> Tensor:
        return y if self.event_shape is None else y.reshape(y.shape[0], *self.event_shape)

    def _times(self, s: Tensor, y: Tensor) -> Tensor:
        """Per-sample forward time t = T − s for a scalar integrator time s."""
        return (self.sde.T - s).to(y.dtype).expand(y.shape[0])


class ReverseSDE(_Derived):
    """dx = [f − g² s] dt + g dw̄ from T to 0; also a torchsde SDE in s = T − t.

    ``sde``: the forward SDE; ``score``: ``score(x, t)`` (:data:`ScoreFn`). ``event_shape`` is needed
    only for torchsde, whose states are ``(B, D)``: it lets the score see ``(B, *event_shape)``.
    Build it with :func:`reverse`.
    """

    noise_type = "diagonal"
    sde_type = "ito"

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """f(x, t) − g² s(x, t) (− ∇·(GGᵀ) if state-dependent), in forward time."""
        g2, div = self._diffusion_terms(x, t)
        drift = self.sde.drift(x, t) - g2 * self.score(x, t)
        return drift if div is None else drift - div

    def diffusion(self, x: Tensor, t: Tensor) -> Tensor:
        """g(t) (or G(x, t)), as the forward SDE's."""
        return self.sde.diffusion(x, t)

    # torchsde contract: reversed time s = T - t, flattened states (B, D).
    def f(self, s: Tensor, y: Tensor) -> Tensor:
        x = self._unflatten(y)
        return -self.drift(x, self._times(s, y)).reshape(y.shape)

    def g(self, s: Tensor, y: Tensor) -> Tensor:
        x = self._unflatten(y)
        g = self.diffusion(x, self._times(s, y))
        return (g if g.shape == x.shape else batch_view(g, x).expand_as(x)).reshape(y.shape).to(y.dtype)


class ProbabilityFlow(_Derived):
    """dx/dt = f − ½ g² s; callable as ``flow(t, x)`` for torchdiffeq (t a scalar tensor).

    ``sde``: the forward SDE; ``score``: ``score(x, t)`` (:data:`ScoreFn`); ``event_shape``: as for
    :class:`ReverseSDE` (unused by the flow's own methods). Build it with :func:`probability_flow`.
    """

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """f(x, t) − ½ g² s(x, t) (− ½∇·(GGᵀ) if state-dependent): dx/dt."""
        g2, div = self._diffusion_terms(x, t)
        drift = self.sde.drift(x, t) - 0.5 * g2 * self.score(x, t)
        return drift if div is None else drift - 0.5 * div

    def __call__(self, t: Tensor, x: Tensor) -> Tensor:
        # torchdiffeq's step-size selection may probe slightly beyond [eps, T]: no range check here.
        # Adaptive solvers also step past the last output time and interpolate back; hold the field at
        # the boundary there, since schedules are not defined outside [0, T] (VP's σ(t) is NaN for t < 0).
        times = t.clamp(0, self.sde.T).to(x.dtype).expand(x.shape[0]) if t.ndim == 0 else t
        with time_checks(False):
            return self.drift(x, times)


def reverse(sde: SDE, score: ScoreFn, *, event_shape: tuple[int, ...] | None = None) -> ReverseSDE:
    """The reverse-time SDE of ``sde`` driven by ``score`` (a :class:`ReverseSDE`).

    ``event_shape``: the shape of one sample, needed only to hand the SDE to ``torchsde.sdeint``
    (which sees flat ``(B, D)`` states); default None.
    """
    return ReverseSDE(sde, score, event_shape)


def probability_flow(sde: SDE, score: ScoreFn) -> ProbabilityFlow:
    """The probability-flow ODE of ``sde`` driven by ``score``."""
    return ProbabilityFlow(sde, score)
