"""Guidance: conditional scores built from an unconditional or a conditional model, as score transforms.

Each guide is a score ``score(x, t)`` like any other, so it composes with every sampler
(``pc_sample``, ``sample``, ``ode_sample``, ``log_likelihood``) and every adapter, and it carries
its per-sample state (labels, scales) through the adaptive solvers' active set by
``select(rows, batch_size)`` (:mod:`sdekit.per_sample`).

* :class:`ClassifierGuidance` (Dhariwal & Nichol 2021; the SDE paper's class-conditional
  sampling): s(x, t) + w ∇ₓ log p_t(y | x), with a noise-conditional classifier
  ``classifier(x, t) -> logits`` of shape ``(B, K)``. The gradient is taken by autograd inside
  the samplers' no-grad loop. At w = 1 with the exact noisy posterior this *is* the score of
  p_t(x | y) (Bayes' rule), so every sampler then samples the class-conditional distribution.
* :class:`PosteriorSampling` (diffusion posterior sampling, Chung et al. 2023): a linear (or
  any differentiable) inverse problem y = A(x₀) + σ_y n, guided by the Gaussian likelihood of
  the denoised estimate, s + w ∇ₓ[−‖y − A(x̂₀(x, t))‖² / (2σ_y²)], x̂₀ by Tweedie's formula and
  the gradient taken through the score network. An approximation: it treats x̂₀ as certain,
  so at high noise it over-weights the observation (the bias is measured in docs/guidance.md).
* :class:`ClassifierFreeGuidance` (Ho & Salimans 2022): s_u + w (s_c − s_u) from one
  conditional network, evaluated on the conditional and the unconditional inputs in **one**
  batched call of 2B rows. w = 1 is the conditional model, w = 0 the unconditional one; the
  usual "guidance scale 7.5" of text-to-image pipelines is w = 7.5 in this formula. Options:
  per-sample scales, a guidance interval (Kynkäänniemi et al. 2024: guide only for t in
  [t_lo, t_hi], the conditional model elsewhere) and guidance rescale (Lin et al. 2024:
  blend the guided score with itself rescaled to the conditional score's per-sample standard
  deviation, which counters over-saturation at large w).

Counting: a sampler's ``info.nfe`` counts calls of the score it was given, so a guided
evaluation is one NFE. What the network did is on the guide: ``network_calls`` and
``network_rows`` for classifier-free guidance (a call on 2B rows is one call of 2B rows),
``classifier_calls`` for classifier guidance (each a forward and a backward pass). Select views
share the counts.

Guidance at w ≠ 1 does not sample the "tempered" distribution ∝ p(x) p(y | x)^w: the guided
score at noise level t is not the score of the noised tempered distribution. It is a heuristic
that trades diversity for fidelity; compare scales by their samples, not by that formula.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from sdekit.checks import batch_view
from sdekit.per_sample import index_per_sample, select_rows
from sdekit.sde import LinearSDE

__all__ = ["ClassifierGuidance", "ClassifierFreeGuidance", "ConditionalScore", "PosteriorSampling"]

ScoreFn = Callable[[Tensor, Tensor], Tensor]


@runtime_checkable
class ConditionalScore(Protocol):
    """A score whose network conditioning lives in ``model_kwargs`` (every sdekit adapter).

    ``with_model_kwargs(kwargs)`` returns the same score (same network) calling the network with
    ``kwargs`` instead; classifier-free guidance uses it for its batched call.
    """

    model_kwargs: dict[str, Any]

    def with_model_kwargs(self, model_kwargs: Mapping[str, Any]) -> ConditionalScore: ...

    def __call__(self, x: Tensor, t: Tensor) -> Tensor: ...


@dataclass
class _Counts:
    """What a guide and its select views count together."""

    network_calls: int = 0
    network_rows: int = 0
    classifier_calls: int = 0


def _check_scale(scale: float | Tensor, batch_size: int | None) -> float | Tensor:
    """A guidance scale: a number ≥ 0 or a tensor of shape ``(B,)`` of them."""
    if isinstance(scale, Tensor):
        if scale.ndim != 1 or (batch_size is not None and scale.shape[0] != batch_size):
            expected = f"({batch_size},)" if batch_size is not None else "(B,)"
            raise ValueError(f"scale must be a number or a tensor of shape {expected}, got shape {tuple(scale.shape)}")
        if not scale.is_floating_point():
            scale = scale.double()
        if not bool(torch.isfinite(scale).all()) or bool((scale < 0).any()):
            raise ValueError("scale must be finite and >= 0 for every sample")
        return scale
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"scale must be a number or a tensor of shape (B,), got {type(scale).__name__}")
    if not (scale >= 0 and scale != float("inf")):
        raise ValueError(f"scale must be finite and >= 0, got {scale!r}")
    return float(scale)


def _scale_rows(scale: float | Tensor, rows: Tensor) -> float | Tensor:
    return scale.index_select(0, rows.to(scale.device)) if isinstance(scale, Tensor) else scale


def _per_row(scale: float | Tensor, like: Tensor) -> float | Tensor:
    """A scale ready to multiply ``like`` of shape ``(B, *event)``."""
    return batch_view(scale.to(device=like.device, dtype=like.dtype), like) if isinstance(scale, Tensor) else scale


class ClassifierGuidance:
    """s(x, t) + w ∇ₓ log softmax(classifier(x, t))[y]: classifier guidance through a noise-conditional classifier.

    Args:
        score: the (unconditional) score ``score(x, t)``, e.g. an adapter.
        classifier: ``classifier(x, t) -> logits`` of shape ``(B, K)``, trained on noised data
            x_t ~ p_t at the same times ``t`` as the score (an ``nn.Module`` or a function;
            it is called with gradients enabled).
        labels: the class of each sample, a long tensor ``(B,)`` with values in [0, K).
        scale: w ≥ 0, a number or a per-sample tensor ``(B,)``. w = 1 with the true noisy
            posterior samples p(x | y) exactly; larger w sharpens, w = 0 is unguided.

    Each evaluation calls the score once and the classifier once (forward and backward);
    ``classifier_calls`` counts the latter. The classifier is called with the state in the
    state's dtype (a float32 network under a float64 state needs a classifier that casts). Under
    ``torch.inference_mode()`` no gradient exists: sample under ``torch.no_grad()`` instead.
    """

    def __init__(
        self,
        score: ScoreFn,
        classifier: Callable[[Tensor, Tensor], Tensor],
        labels: Tensor,
        *,
        scale: float | Tensor = 1.0,
    ) -> None:
        if not callable(score):
            raise TypeError(f"score must be callable as score(x, t), got {type(score).__name__}")
        if not callable(classifier):
            raise TypeError(
                f"classifier must be callable as classifier(x, t) -> logits, got {type(classifier).__name__}"
            )
        if not isinstance(labels, Tensor) or labels.ndim != 1 or labels.dtype not in (torch.int32, torch.int64):
            raise ValueError("labels must be an integer tensor of shape (B,) (one class index per sample)")
        if labels.numel() and bool((labels < 0).any()):
            raise ValueError("labels must be class indices >= 0")
        self.score, self.classifier = score, classifier
        self.labels = labels.long()
        self.scale = _check_scale(scale, labels.shape[0])
        self._counts = _Counts()
        self._checked_classes = False

    @property
    def classifier_calls(self) -> int:
        """Classifier evaluations (forward and backward) so far, shared with :meth:`select` views."""
        return self._counts.classifier_calls

    def log_likelihood_gradient(self, x: Tensor, t: Tensor) -> Tensor:
        """∇ₓ log p_t(y | x) for each sample's label, with ``x``'s shape and dtype."""
        labels = self.labels.to(x.device)
        if labels.shape[0] != x.shape[0]:
            raise ValueError(f"labels hold {labels.shape[0]} samples but x holds {x.shape[0]}")
        # Inside a differentiable computation (the likelihood's exact divergence) the gradient stays
        # differentiable in x; in a sampling loop it is taken on a detached copy and leaves no graph.
        keep_graph = x.requires_grad and torch.is_grad_enabled()
        with torch.enable_grad():
            xg = x if keep_graph else x.detach().requires_grad_(True)
            if torch.is_inference_mode_enabled():
                raise RuntimeError(
                    "classifier guidance needs autograd, which torch.inference_mode() disables; sample under "
                    "torch.no_grad() (or neither) instead"
                )
            logits = self.classifier(xg, t)
            if not isinstance(logits, Tensor) or logits.ndim != 2 or logits.shape[0] != x.shape[0]:
                got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
                raise ValueError(f"classifier must return logits of shape (B, K) = ({x.shape[0]}, K), got {got}")
            if not self._checked_classes:  # one host read, at the first call
                if bool((self.labels >= logits.shape[1]).any()):
                    raise ValueError(f"labels must be < K = {logits.shape[1]}, the classifier's number of classes")
                self._checked_classes = True
            if not logits.requires_grad:
                raise ValueError(
                    "classifier returned logits that do not depend on x through autograd (does it run under "
                    "torch.no_grad() or detach its input?); guidance needs their gradient"
                )
            chosen = torch.log_softmax(logits, dim=1).gather(1, labels[:, None]).sum()
            (gradient,) = torch.autograd.grad(chosen, xg, create_graph=keep_graph)
        self._counts.classifier_calls += 1
        return gradient.to(x.dtype)

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        return self.score(x, t) + _per_row(self.scale, x) * self.log_likelihood_gradient(x, t)

    def select(self, rows: Tensor, batch_size: int) -> ClassifierGuidance:
        """This guide restricted to ``rows`` of the full batch: score, classifier, labels and scales."""
        view = copy.copy(self)
        view.score = select_rows(self.score, rows, batch_size)
        view.classifier = select_rows(self.classifier, rows, batch_size)
        view.labels = self.labels.index_select(0, rows.to(self.labels.device))
        view.scale = _scale_rows(self.scale, rows)
        return view


class ClassifierFreeGuidance:
    """s_u + w (s_c − s_u) from one conditional score, both halves in one batched network call.

    Args:
        score: a conditional score whose conditioning is in ``model_kwargs`` — an sdekit adapter
            built with the conditional inputs, e.g.
            ``ddpm.EpsilonScore(unet, sde, model_kwargs={"class_labels": y})`` (per-sample
            tensors have the batch size as first dimension; see :class:`ConditionalScore`).
        unconditional: the network's keyword arguments for the unconditional half, e.g.
            ``{"class_labels": torch.full((B,), null_class)}`` or the empty prompt's
            ``{"encoder_hidden_states": empty}`` (first dimension B or 1). Keys not named here
            take the conditional value in both halves.
        scale: w ≥ 0, a number or a per-sample tensor ``(B,)``.
        interval: ``(t_lo, t_hi)``: guide only where t_lo ≤ t ≤ t_hi (per sample) and use the
            conditional score elsewhere; ``None`` guides everywhere. On image models guiding
            only mid-range noise levels keeps diversity at little cost in fidelity.
        rescale: φ in [0, 1]: the result is φ·ŝ·std(s_c)/std(ŝ) + (1 − φ)·ŝ for the guided ŝ,
            standard deviations per sample over its elements (0 turns it off). It acts on the
            score, which for an ε-prediction network is Lin et al.'s rescale of ε exactly (the
            score is −ε/σ per sample); for a v-, x₀- or EDM-denoiser network it is not their
            formula in that network's output space (they proposed φ = 0.7 for v-prediction).

    Every evaluation is one network call on 2B rows (counted in ``network_calls`` and
    ``network_rows``), even where the interval switches guidance off: no host read-back decides
    which rows to evaluate.
    """

    def __init__(
        self,
        score: ConditionalScore,
        unconditional: Mapping[str, Any],
        *,
        scale: float | Tensor,
        interval: tuple[float, float] | None = None,
        rescale: float = 0.0,
    ) -> None:
        if not isinstance(score, ConditionalScore):
            raise TypeError(
                "score must be a conditional score with model_kwargs and with_model_kwargs (an sdekit adapter such "
                f"as ddpm.EpsilonScore(model, sde, model_kwargs={{'class_labels': y}})), got {type(score).__name__}"
            )
        if not isinstance(unconditional, Mapping):
            raise TypeError(f"unconditional must be a mapping of network keyword arguments, got {type(unconditional)}")
        if not unconditional:
            raise ValueError("unconditional must name at least one network argument that differs from the conditional")
        if interval is not None and (
            not isinstance(interval, tuple)
            or len(interval) != 2
            or not all(isinstance(v, (int, float)) for v in interval)
            or not interval[0] <= interval[1]
        ):
            raise ValueError(f"interval must be a pair (t_lo, t_hi) of times with t_lo <= t_hi, got {interval!r}")
        if isinstance(rescale, bool) or not isinstance(rescale, (int, float)) or not 0.0 <= rescale <= 1.0:
            raise ValueError(f"rescale must be a number in [0, 1], got {rescale!r}")
        self.score = score
        self.unconditional = dict(unconditional)
        self.scale = _check_scale(scale, None)
        self.interval = None if interval is None else (float(interval[0]), float(interval[1]))
        self.rescale = float(rescale)
        self._counts = _Counts()

    @property
    def network_calls(self) -> int:
        """Network calls so far (each on 2B rows), shared with :meth:`select` views."""
        return self._counts.network_calls

    @property
    def network_rows(self) -> int:
        """Rows the network evaluated so far, summed over calls (2B per call)."""
        return self._counts.network_rows

    def doubled_kwargs(self, batch: int) -> dict[str, Any]:
        """The network's keyword arguments for the 2B-row call: conditional rows first, then unconditional."""
        conditional = self.score.model_kwargs
        unknown = sorted(set(self.unconditional) - set(conditional))
        if unknown:
            raise ValueError(
                f"unconditional names {unknown}, which the conditional score's model_kwargs lack "
                f"(it has {sorted(conditional)})"
            )
        merged = {}
        for key, value in conditional.items():
            if key not in self.unconditional:  # the same in both halves
                per_sample = isinstance(value, Tensor) and value.ndim > 0 and value.shape[0] == batch
                merged[key] = torch.cat([value, value]) if per_sample else value  # shared values pass as they are
                continue
            other = self.unconditional[key]
            if isinstance(value, Tensor) and isinstance(other, Tensor):
                merged[key] = torch.cat([_rows_of(key, value, batch), _rows_of(key, other, batch).to(value.device)])
            elif not _same(value, other):
                raise ValueError(
                    f"model_kwargs[{key!r}] cannot be batched: the two halves differ and are not both tensors"
                )
            else:
                merged[key] = value
        return merged

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        batch = x.shape[0]
        _check_batch("scale", self.scale, batch)
        network = self.score.with_model_kwargs(self.doubled_kwargs(batch))
        both = network(torch.cat([x, x]), _doubled_time(t, batch))
        self._counts.network_calls += 1
        self._counts.network_rows += 2 * batch
        conditional, unconditional = both[:batch], both[batch:]
        scale = _per_row(self.scale, x)
        if self.interval is not None:  # the conditional score (w = 1) outside [t_lo, t_hi]
            inside = ((t >= self.interval[0]) & (t <= self.interval[1])).reshape(-1, *([1] * (x.ndim - 1)))
            scale = torch.where(inside, torch.as_tensor(scale, dtype=x.dtype, device=x.device), 1.0)
        guided = unconditional + scale * (conditional - unconditional)
        if self.rescale > 0.0:
            if x.ndim < 2 or x[0].numel() < 2:
                raise ValueError(
                    f"rescale needs samples of at least 2 elements (a per-sample standard deviation); "
                    f"got shape {tuple(x.shape)}"
                )
            dims = tuple(range(1, x.ndim))
            spread = guided.std(dim=dims, keepdim=True)
            ratio = torch.where(spread > 0, conditional.std(dim=dims, keepdim=True) / spread, 1.0)
            guided = self.rescale * guided * ratio + (1.0 - self.rescale) * guided
        return guided

    def select(self, rows: Tensor, batch_size: int) -> ClassifierFreeGuidance:
        """This guide restricted to ``rows`` of the full batch: the score's and the unconditional inputs, the scales."""
        view = copy.copy(self)
        view.score = select_rows(self.score, rows, batch_size)
        view.unconditional = index_per_sample(self.unconditional, rows, batch_size)
        view.scale = _scale_rows(self.scale, rows)
        return view


def _doubled_time(t: Tensor, batch: int) -> Tensor:
    """The times of the 2B-row call; a shared time (one value, or expanded: stride 0) stays an expanded view."""
    if t.numel() == 1 or (t.ndim == 1 and t.shape[0] == batch and t.stride(0) == 0):
        return t.reshape(-1)[:1].expand(2 * batch)
    return torch.cat([t, t])


def _rows_of(name: str, value: Tensor, batch: int) -> Tensor:
    """A keyword argument with ``batch`` rows: a per-sample tensor as is, a shared one (first dimension 1 or a
    0-d tensor) expanded."""
    if value.ndim == 0:
        return value.expand(batch)
    if value.shape[0] == batch:
        return value
    if value.shape[0] == 1:
        return value.expand(batch, *value.shape[1:])
    raise ValueError(
        f"model_kwargs[{name!r}] has first dimension {value.shape[0]}; the batch holds {batch} samples "
        "(give one row per sample, or 1 for a value shared by all)"
    )


def _same(a: object, b: object) -> bool:
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return isinstance(a, Tensor) and isinstance(b, Tensor) and a.shape == b.shape and bool(torch.equal(a, b))
    return a is b or a == b


def _check_batch(name: str, value: float | Tensor, batch: int) -> None:
    if isinstance(value, Tensor) and value.shape[0] != batch:
        raise ValueError(f"{name} holds {value.shape[0]} per-sample values but x holds {batch} samples")


class PosteriorSampling:
    """s + w ∇ₓ[−‖y − A(x̂₀)‖² / (2σ_y²)]: diffusion posterior sampling for y = A(x₀) + σ_y n.

    Args:
        score: the prior's score ``score(x, t)`` (differentiable: the gradient goes through it).
        sde: the :class:`~sdekit.LinearSDE` being sampled; its kernel gives Tweedie's
            x̂₀ = (x + σ(t)² s) / α(t).
        operator: A, ``operator(x0) -> (B, *observation)``, differentiable (a matrix product,
            a mask, a blur, a downsampling).
        y: the observations, shape ``(B, *observation)`` (or first dimension 1 for one shared
            observation).
        noise_std: σ_y > 0, the observation noise's standard deviation.
        scale: w ≥ 0, a number or per-sample ``(B,)``: 1 is the Gaussian-likelihood form; Chung
            et al. tune a step size instead (their ζ), which a larger w mimics.

    Each evaluation is one score call with a backward pass through it (about three times the
    cost of a plain call). Use many steps; the approximation, not the solver, sets the bias.
    """

    def __init__(
        self,
        score: ScoreFn,
        sde: LinearSDE,
        operator: Callable[[Tensor], Tensor],
        y: Tensor,
        *,
        noise_std: float,
        scale: float | Tensor = 1.0,
    ) -> None:
        if not callable(score):
            raise TypeError(f"score must be callable as score(x, t), got {type(score).__name__}")
        if not isinstance(sde, LinearSDE):
            raise TypeError(
                f"sde must be a sdekit.LinearSDE (Tweedie's formula needs its kernel), got {type(sde).__name__}"
            )
        if not callable(operator):
            raise TypeError(f"operator must be callable as operator(x0) -> observation, got {type(operator).__name__}")
        if not isinstance(y, Tensor) or y.ndim < 1 or not bool(torch.isfinite(y).all()):
            raise ValueError("y must be a finite tensor of observations of shape (B, *observation)")
        if isinstance(noise_std, bool) or not isinstance(noise_std, (int, float)) or not 0 < noise_std < float("inf"):
            raise ValueError(f"noise_std must be a positive number, got {noise_std!r}")
        self.score, self.sde, self.operator, self.y = score, sde, operator, y
        self.noise_std = float(noise_std)
        self.scale = _check_scale(scale, None)

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        _check_batch("scale", self.scale, x.shape[0])
        keep_graph = x.requires_grad and torch.is_grad_enabled()
        with torch.enable_grad():
            xg = x if keep_graph else x.detach().requires_grad_(True)
            s = self.score(xg, t)
            alpha, sigma = self.sde.kernel(t.detach().double())
            alpha, sigma = batch_view(alpha.to(x.dtype), x), batch_view(sigma.to(x.dtype), x)
            denoised = (xg + sigma**2 * s) / alpha
            predicted = self.operator(denoised)
            y = self.y.to(device=x.device, dtype=x.dtype)
            _check_observation(predicted, y, x.shape[0])
            misfit = (y - predicted).square().flatten(1).sum(1) / (2 * self.noise_std**2)
            (gradient,) = torch.autograd.grad(-misfit.sum(), xg, create_graph=keep_graph)
        s = s if keep_graph else s.detach()
        return s + _per_row(self.scale, x) * gradient.to(x.dtype)

    def select(self, rows: Tensor, batch_size: int) -> PosteriorSampling:
        """This guide restricted to ``rows``: the score, the operator, per-sample observations and scales."""
        view = copy.copy(self)
        view.score = select_rows(self.score, rows, batch_size)
        view.operator = select_rows(self.operator, rows, batch_size)
        view.y = index_per_sample({"y": self.y}, rows, batch_size)["y"]
        view.scale = _scale_rows(self.scale, rows)
        return view


def _check_observation(predicted: object, y: Tensor, batch: int) -> None:
    """A(x̂₀) must be a tensor with one row per sample that y broadcasts to."""
    fits = isinstance(predicted, Tensor) and predicted.ndim >= 1 and predicted.shape[0] == batch
    if fits:
        assert isinstance(predicted, Tensor)
        try:
            fits = torch.broadcast_shapes(predicted.shape, y.shape) == predicted.shape
        except RuntimeError:
            fits = False
    if not fits:
        got = tuple(predicted.shape) if isinstance(predicted, Tensor) else type(predicted).__name__
        raise ValueError(f"operator returned {got}; y has shape {tuple(y.shape)} and x holds {batch} samples")
