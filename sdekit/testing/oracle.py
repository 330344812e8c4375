"""The exact oracle: Gaussian and Gaussian-mixture data pushed through any linear SDE.

Gaussian and Gaussian-mixture data pushed through any :class:`~sdekit.sde.LinearSDE`
stay Gaussian mixtures: component k of p_t is N(α(t) μ_k, α(t)² Σ_k + σ(t)² I). So
the exact samples, the exact log-density and the exact score of every p_t are known
in closed form (:class:`GaussianMixture`, :class:`Gaussian`, :class:`ExactScore`), and a
sampler can be judged against the truth rather than against another sampler
(:mod:`sdekit.testing.metrics`).

Functions that draw random numbers take ``generator``; :meth:`GaussianMixture.sample`
follows torch and uses the global RNG when it is None.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from sdekit.checks import check_positive, check_positive_int, shared_time
from sdekit.sde import LinearSDE

__all__ = ["ExactScore", "Gaussian", "GaussianMixture"]

_F64 = torch.float64
_CHUNK = 4096  # rows per chunk in float64 bulk work: (chunk, K·D) temporaries stay in cache
_ENTROPY_SAMPLES = 1 << 20

TimeLike = float | Tensor | None


def _fixed_generator(tag: str, n: int = 0) -> torch.Generator:
    """A CPU generator with a seed derived from ``(tag, n)``: the metrics' reproducible default."""
    return torch.Generator().manual_seed(zlib.crc32(f"sdekit.testing/{tag}/{n}".encode()))


def _generator_device(generator: torch.Generator | None, device: torch.device | str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return generator.device if generator is not None else torch.device("cpu")


@dataclass(frozen=True)
class _Params:
    """Mixture parameters laid out for batched evaluation on one device and dtype.

    With W = [U_1 … U_K] (D × K·D), the eigen-coordinates of every component are one
    matmul: y = [x, α] @ [[W], [−m]] with m_k = U_kᵀ μ_k.
    """

    proj: Tensor  # (D + 1, K·D)
    back: Tensor  # (K·D, D): −Wᵀ, so that score = (r·z) @ back
    variances: Tensor  # (2, K·D): rows λ and 1, so that c = [α², σ²] @ variances
    blocks: Tensor  # (K, K·D): sums each component's D coordinates by one matmul
    log_weights_column: Tensor  # (K, 1) log w_k − ½ D log 2π


@dataclass(frozen=True)
class _Stats:
    entropy: float
    standard_error: float
    sd_log_prob: float  # sd of log p_0(x) under p_0
    label_freq: Tensor  # (K,) P(classify(x) = k) for x ~ p_0, float64


class GaussianMixture:
    """Data distribution p_0 = Σ_k w_k N(μ_k, Σ_k) on R^D, with exact p_t under any linear SDE.

    Args:
        weights: mixing weights, shape ``(K,)``, positive, summing to 1.
        means: component means, shape ``(K, D)``.
        covariances: ``(K, D, D)`` symmetric positive definite, or ``None`` for identity.
        event_shape: shape of one sample, e.g. ``(1, 4, 4)`` for D = 16 (default ``(D,)``).

    Parameters are stored in float64 on the CPU together with the eigendecompositions
    Σ_k = U_k diag(λ_k) U_kᵀ, which make every marginal, score and density cheap.
    For a ready-made test problem use :meth:`random`.
    """

    def __init__(
        self,
        weights: Tensor | Sequence[float],
        means: Tensor | Sequence[Sequence[float]],
        covariances: Tensor | Sequence[Any] | None = None,
        *,
        event_shape: Sequence[int] | None = None,
    ) -> None:
        w = _as_f64("weights", weights)
        mu = _as_f64("means", means)
        _check_weights(w)
        if mu.ndim != 2 or mu.shape[0] != w.shape[0] or mu.shape[1] < 1:
            raise ValueError(f"means must have shape (K, D) = ({w.shape[0]}, D), got {tuple(mu.shape)}")
        k, d = mu.shape
        cov = torch.eye(d, dtype=_F64).expand(k, d, d) if covariances is None else _as_f64("covariances", covariances)
        _check_covariances(cov, k, d)
        cov = 0.5 * (cov + cov.transpose(-1, -2))
        lam, basis = torch.linalg.eigh(cov)
        if not bool((lam > 0).all()):
            raise ValueError("covariances must be positive definite; got an eigenvalue <= 0")
        self.weights, self.means, self.covariances = w, mu, cov.contiguous()
        self.eigenvalues, self.eigenvectors = lam, basis
        self.event_shape = _check_event_shape(event_shape, d)
        self._params: dict[tuple[torch.device, torch.dtype], _Params] = {}
        self._cache: dict[tuple[Any, ...], Any] = {}

    # --- construction --------------------------------------------------------------------------------------------

    @classmethod
    def random(
        cls,
        dim: int = 16,
        modes: int = 8,
        *,
        generator: torch.Generator | None = None,
        separation: float = 10.0,
        scale: float = 1.0,
        eigenvalue_range: tuple[float, float] = (0.05, 0.3),
        event_shape: Sequence[int] | None = None,
    ) -> GaussianMixture:
        """The standard test mixture: unequal weights, well-separated modes, anisotropic covariances.

        * weights ∝ a random permutation of ``linspace(1, 3, modes)`` (largest/smallest = 3;
          for 8 modes they run from 0.0625 to 0.1875);
        * covariances U diag(λ) Uᵀ with a random rotation U and eigenvalues uniform in
          ``eigenvalue_range · scale²``;
        * means placed at random, centred, pairwise at least ``separation`` times the
          largest component standard deviation apart (10 → about 5.5·scale), so exact
          samples are classified to their mode essentially without error (≲ 1e-6).

        With the defaults, coordinates lie within a few units of 0. Deterministic given
        ``generator`` (a CPU generator; ``None`` uses the global RNG).
        """
        dim, modes = check_positive_int("dim", dim), check_positive_int("modes", modes)
        scale, separation = check_positive("scale", scale), check_positive("separation", separation)
        low, high = (check_positive("eigenvalue_range", v) for v in eigenvalue_range)
        if low > high:
            raise ValueError(f"eigenvalue_range must be (low, high) with low <= high, got {eigenvalue_range!r}")
        raw = torch.linspace(1.0, 3.0, modes, dtype=_F64)[torch.randperm(modes, generator=generator)]
        weights = raw / raw.sum()
        lam = scale**2 * (low + (high - low) * torch.rand(modes, dim, dtype=_F64, generator=generator))
        basis = _random_rotations(modes, dim, generator)
        cov = basis @ torch.diag_embed(lam) @ basis.transpose(-1, -2)
        means = _separated_points(modes, dim, separation * scale * math.sqrt(high), generator)
        return cls(weights, means, cov, event_shape=event_shape)

    # --- basic properties ----------------------------------------------------------------------------------------

    @property
    def num_components(self) -> int:
        return int(self.weights.shape[0])

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    def __repr__(self) -> str:
        name, shape = type(self).__name__, self.event_shape
        return f"{name}(components={self.num_components}, dim={self.dim}, event_shape={shape})"

    def marginal_moments(self, sde: LinearSDE | None = None, t: float | None = None) -> tuple[Tensor, Tensor]:
        """Component means ``(K, D)`` and covariances ``(K, D, D)`` of p_t (float64).

        Component k of p_t is N(α(t) μ_k, α(t)² Σ_k + σ(t)² I); the weights do not change.
        ``sde=None`` or ``t=None`` gives the clean data p_0 (no noise at all, even for VE,
        whose σ(0) = σ_min is not 0).
        """
        alpha, sigma = _schedule(sde, t, 1, torch.device("cpu"))
        a, s = float(alpha[0]), float(sigma[0])
        eye = torch.eye(self.dim, dtype=_F64)
        return a * self.means, a**2 * self.covariances + s**2 * eye

    # --- sampling ------------------------------------------------------------------------------------------------

    def sample(
        self,
        n: int,
        *,
        sde: LinearSDE | None = None,
        t: TimeLike = None,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        counts: Tensor | Sequence[int] | None = None,
    ) -> Tensor:
        """Exact samples of p_t, shape ``(n, *event_shape)`` (p_0 when ``sde`` or ``t`` is None).

        ``t`` is a float or a per-sample tensor ``(n,)``; :meth:`sample_with_labels` also
        returns each sample's component. Draws the labels, then the noise (float64 for
        float64 output, else float32), from ``generator``; the result lives on ``device``
        (default: the generator's device, else CPU).

        ``counts`` (K integers summing to n) fixes how many samples come from each component,
        in random order: exact samples conditional on the counts. :func:`evaluate` uses it to
        draw a reference with the same mode counts as the sample under test.
        """
        x, _ = self.sample_with_labels(n, sde=sde, t=t, generator=generator, dtype=dtype, device=device, counts=counts)
        return x

    def sample_with_labels(
        self,
        n: int,
        *,
        sde: LinearSDE | None = None,
        t: TimeLike = None,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        counts: Tensor | Sequence[int] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Like :meth:`sample`, plus the component index of each sample (LongTensor ``(n,)``)."""
        n = check_positive_int("n", n)
        device = _generator_device(generator, device)
        alpha, sigma = _schedule(sde, t, n, device)
        noise_dtype = _F64 if dtype == _F64 else torch.float32
        fixed = None if counts is None else _check_counts(counts, n, self.num_components)
        x, labels = self._draw(n, alpha, sigma, generator, device, noise_dtype, counts=fixed)
        return x.to(dtype).reshape(n, *self.event_shape), labels

    def _draw(
        self,
        n: int,
        alpha: Tensor,
        sigma: Tensor,
        generator: torch.Generator | None,
        device: torch.device,
        noise_dtype: torch.dtype,
        *,
        counts: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Flat float64 samples (n, D) and labels; x = α μ_k + U_k diag(√(α²λ_k + σ²)) z."""
        if counts is not None:
            order = torch.randperm(n, generator=generator, device=device)
            labels = torch.repeat_interleave(torch.arange(self.num_components, device=device), counts.to(device))[order]
        else:
            labels = torch.multinomial(self.weights.to(device), n, replacement=True, generator=generator)
        noise = torch.randn(n, self.dim, dtype=noise_dtype, device=device, generator=generator).to(_F64)
        x = torch.empty(n, self.dim, dtype=_F64, device=device)
        for k in range(self.num_components):
            rows = (labels == k).nonzero().squeeze(1)
            a = alpha if alpha.numel() == 1 else alpha[rows]
            s = sigma if sigma.numel() == 1 else sigma[rows]
            std = (a[:, None] ** 2 * self.eigenvalues[k].to(device) + s[:, None] ** 2).sqrt()
            basis = self.eigenvectors[k].to(device)
            x[rows] = a[:, None] * self.means[k].to(device) + (noise[rows] * std) @ basis.T
        return x, labels

    # --- densities -----------------------------------------------------------------------------------------------

    def log_prob(self, x: Tensor, *, sde: LinearSDE | None = None, t: TimeLike = None) -> Tensor:
        """Exact log p_t(x), shape ``(B,)``, computed in float64 and returned in ``x.dtype``.

        ``t`` is a float or a per-sample tensor ``(B,)``; ``sde=None`` or ``t=None`` gives
        log p_0. Differentiable in ``x`` (so ``torch.autograd`` of it is the score).
        """
        flat = self._flatten("x", x)
        alpha, sigma = _schedule(sde, t, flat.shape[0], flat.device)
        log_p = self._chunked(flat, alpha, sigma, lambda log_joint: torch.logsumexp(log_joint, dim=0))
        return log_p.to(x.dtype)

    def class_log_posterior(self, x: Tensor, *, sde: LinearSDE | None = None, t: TimeLike = None) -> Tensor:
        """Exact log p_t(k | x) of each component k, shape ``(B, K)``, in ``x.dtype``: the noisy classifier.

        The posterior of the component that generated x_0, given the noised x_t ~ p_t: the
        ideal noise-conditional classifier of classifier guidance (``t`` a float or ``(B,)``;
        ``sde=None`` or ``t=None`` gives the clean posterior). Differentiable in ``x``, so
        ∇ₓ log p_t(k | x) + the score is the exact score of :meth:`component` k at time t.
        """
        flat = self._flatten("x", x)
        alpha, sigma = _schedule(sde, t, flat.shape[0], flat.device)
        log_posterior = self._chunked(flat, alpha, sigma, lambda log_joint: torch.log_softmax(log_joint, dim=0).T)
        return log_posterior.to(x.dtype)

    def component(self, k: int) -> GaussianMixture:
        """Component k alone, as a one-component mixture with this mixture's event shape (for exact conditionals)."""
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < self.num_components:
            raise ValueError(f"k must be a component index in [0, {self.num_components}), got {k!r}")
        return GaussianMixture([1.0], self.means[k : k + 1], self.covariances[k : k + 1], event_shape=self.event_shape)

    def condition(self, known: Tensor, values: Tensor) -> GaussianMixture:
        """The exact conditional p_0(x_u | x_k = values) on the unknown coordinates u, as a mixture.

        ``known`` is a bool mask ``(D,)`` (or of the event shape) of the observed coordinates k,
        ``values`` their observed values, shape ``(|k|,)`` in the order of the coordinates. Each
        component conditions in closed form — mean μ_u + Σ_uk Σ_kk⁻¹ (y − μ_k), covariance
        Σ_uu − Σ_uk Σ_kk⁻¹ Σ_ku — and is reweighted by its evidence, w_k N(y; μ_k, Σ_kk)
        (normalised). The result has event shape ``(|u|,)``: the target of inpainting and imputation.
        """
        mask = torch.as_tensor(known).reshape(-1)
        if mask.dtype != torch.bool or mask.numel() != self.dim:
            raise ValueError(
                f"known must be a bool mask of {self.dim} coordinates, got {tuple(mask.shape)} {mask.dtype}"
            )
        count = int(mask.sum())
        if not 0 < count < self.dim:
            raise ValueError(f"known must observe some but not all of the {self.dim} coordinates, got {count}")
        y = _as_f64("values", values).reshape(-1)
        if y.numel() != count:
            raise ValueError(f"values must hold the {count} known coordinates, got {y.numel()}")
        k, u = mask.nonzero().reshape(-1), (~mask).nonzero().reshape(-1)
        cov_kk = self.covariances[:, k][:, :, k]
        cov_uk = self.covariances[:, u][:, :, k]
        cov_uu = self.covariances[:, u][:, :, u]
        chol = torch.linalg.cholesky(cov_kk)
        residual = (y - self.means[:, k]).unsqueeze(-1)  # (K, |k|, 1)
        gain = torch.cholesky_solve(cov_uk.transpose(-1, -2), chol).transpose(-1, -2)  # Σ_uk Σ_kk⁻¹
        means = self.means[:, u] + (gain @ residual).squeeze(-1)
        covariances = cov_uu - gain @ cov_uk.transpose(-1, -2)
        whitened = torch.linalg.solve_triangular(chol, residual, upper=False).squeeze(-1)
        log_evidence = (
            -0.5 * (whitened**2).sum(-1)
            - torch.diagonal(chol, dim1=-2, dim2=-1).log().sum(-1)
            - 0.5 * count * math.log(2 * math.pi)
        )
        weights = torch.softmax(self.weights.log() + log_evidence, dim=0)
        keep = weights > 0  # components whose evidence underflows carry no mass
        return GaussianMixture(weights[keep] / weights[keep].sum(), means[keep], covariances[keep])

    def classify(self, x: Tensor) -> Tensor:
        """Index of the component with the highest posterior responsibility under p_0, LongTensor ``(B,)``."""
        flat = self._flatten("x", x).detach()
        one, zero = _clean(flat.device)
        return self._chunked(flat, one, zero, lambda log_joint: log_joint.argmax(dim=0))

    def _chunked(self, flat: Tensor, alpha: Tensor, sigma: Tensor, reduce: Callable[[Tensor], Tensor]) -> Tensor:
        """``reduce(log joint (K, chunk))`` over chunks of rows, in float64; differentiable if ``flat`` needs grad."""
        params = self._layout(flat.device, _F64)
        out = []
        for lo in range(0, flat.shape[0], _CHUNK):
            rows = slice(lo, lo + _CHUNK)
            chunk = flat[rows].to(_F64)
            out.append(reduce(_log_joint(chunk, _rows(alpha, rows), _rows(sigma, rows), params)[0]))
        return torch.cat(out)

    def score(self, sde: LinearSDE) -> ExactScore:
        """The exact score ∇_x log p_t(x) of this data under ``sde``, as ``score(x, t)``.

        See :class:`ExactScore`: fast (a few ms for 16384 × 16 with 8 modes on two CPU
        cores), computed in float32 for float32/half inputs and float64 for float64 ones.
        """
        return ExactScore(self, sde)

    # --- entropy -------------------------------------------------------------------------------------------------

    def entropy(self, *, n: int = _ENTROPY_SAMPLES, generator: torch.Generator | None = None) -> tuple[float, float]:
        """H(p_0) = E[−log p_0(x)] by Monte Carlo over ``n`` exact samples: ``(value, standard_error)``.

        With ``generator=None`` a fixed seed is used and the result is cached per ``n``
        (the default 2^20 samples take about a second once, and give a standard error of
        roughly √(D/2)/1000 nats). A mixture has no closed-form entropy; :class:`Gaussian` has.
        """
        stats = self._statistics(n, generator)
        return stats.entropy, stats.standard_error

    def _statistics(self, n: int = _ENTROPY_SAMPLES, generator: torch.Generator | None = None) -> _Stats:
        """Entropy, its standard error, sd(log p_0) and the classified-label frequencies under p_0."""
        n = check_positive_int("n", n)
        key = ("stats", n)
        if generator is None and key in self._cache:
            return self._cache[key]
        stats = self._monte_carlo(n, generator if generator is not None else _fixed_generator("entropy", n))
        if generator is None:
            self._cache[key] = stats
        return stats

    def _monte_carlo(self, n: int, generator: torch.Generator) -> _Stats:
        device = generator.device
        params = self._layout(device, _F64)
        one, zero = _clean(device)
        log_probs, counts = [], torch.zeros(self.num_components, dtype=_F64, device=device)
        for lo in range(0, n, _CHUNK):
            x, _ = self._draw(min(_CHUNK, n - lo), one, zero, generator, device, torch.float32)
            log_joint, _, _ = _log_joint(x, one, zero, params)
            log_probs.append(torch.logsumexp(log_joint, dim=0))
            counts += torch.bincount(log_joint.argmax(dim=0), minlength=self.num_components).to(_F64)
        log_p = torch.cat(log_probs)
        sd = float(log_p.std()) if n > 1 else 0.0
        return _Stats(-float(log_p.mean()), sd / math.sqrt(n), sd, (counts / n).cpu())

    # --- internals -----------------------------------------------------------------------------------------------

    def _flatten(self, name: str, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape (B, *{self.event_shape}), got {type(x).__name__}")
        if tuple(x.shape[1:]) != self.event_shape or x.ndim < 2:
            raise ValueError(f"{name} must have shape (B, *{self.event_shape}), got {tuple(x.shape)}")
        return x.reshape(x.shape[0], self.dim)

    def _layout(self, device: torch.device, dtype: torch.dtype) -> _Params:
        """Parameters as :class:`_Params` on ``device`` in ``dtype`` (computed once, then cached)."""
        key = (torch.device(device), dtype)
        if key not in self._params:
            k, d = self.num_components, self.dim
            wide = self.eigenvectors.permute(1, 0, 2).reshape(d, k * d)  # W[:, k·D:(k+1)·D] = U_k
            shift = torch.einsum("kdj,kd->kj", self.eigenvectors, self.means).reshape(1, k * d)
            blocks = torch.kron(torch.eye(k, dtype=_F64), torch.ones(1, d, dtype=_F64))
            params = _Params(
                proj=torch.cat([wide, -shift]),
                back=-wide.T,
                variances=torch.stack([self.eigenvalues.reshape(k * d), torch.ones(k * d, dtype=_F64)]),
                blocks=blocks,
                log_weights_column=(self.weights.log() - 0.5 * d * math.log(2 * math.pi))[:, None],
            )
            self._params[key] = _Params(*(v.to(device=device, dtype=dtype).contiguous() for v in vars(params).values()))
        return self._params[key]


class Gaussian(GaussianMixture):
    """A single Gaussian N(μ, Σ): closed-form entropy and the exact probability-flow map.

    :meth:`entropy` is exact, H = ½ log det(2πe Σ), with standard error 0 (its ``n`` and
    ``generator`` are not used).

    Args:
        mean: shape ``(D,)``.
        covariance: ``(D, D)`` symmetric positive definite, or ``None`` for identity.
        event_shape: shape of one sample (default ``(D,)``).
    """

    def __init__(
        self,
        mean: Tensor | Sequence[float],
        covariance: Tensor | Sequence[Sequence[float]] | None = None,
        *,
        event_shape: Sequence[int] | None = None,
    ) -> None:
        mu = _as_f64("mean", mean)
        if mu.ndim != 1 or mu.numel() < 1:
            raise ValueError(f"mean must have shape (D,), got {tuple(mu.shape)}")
        cov = None if covariance is None else _as_f64("covariance", covariance)
        d = mu.numel()
        if cov is not None and cov.shape != (d, d):
            raise ValueError(f"covariance must have shape (D, D) = ({d}, {d}), got {tuple(cov.shape)}")
        covariances = None if cov is None else cov[None]
        super().__init__(torch.ones(1, dtype=_F64), mu[None], covariances, event_shape=event_shape)

    def _statistics(self, n: int = _ENTROPY_SAMPLES, generator: torch.Generator | None = None) -> _Stats:
        # Exact: H = ½ log det(2πe Σ); −log p_0(x) = const + ½ χ²_D, so sd(log p_0) = √(D/2).
        entropy = 0.5 * (self.dim * (1 + math.log(2 * math.pi)) + float(self.eigenvalues.log().sum()))
        return _Stats(entropy, 0.0, math.sqrt(self.dim / 2), torch.ones(1, dtype=_F64))

    def flow_map(self, x: Tensor, sde: LinearSDE, t_from: TimeLike, t_to: TimeLike) -> Tensor:
        """Exact solution of the probability-flow ODE dx/dt = f − ½g²∇log p_t from ``t_from`` to ``t_to``.

        In the eigenbasis of Σ, (x_t − α_t μ)/√(α_t² λ + σ_t²) is constant along the flow, so
        x_to = α_to μ + U diag(√(C_to / C_from)) Uᵀ (x_from − α_from μ), C = α²λ + σ².
        Times are floats or per-sample tensors ``(B,)``; either direction works, and maps
        compose exactly. Use it to check ODE solvers at any step size, and encoders
        (x_0 → x_T) against decoders. Computed in float64, returned in ``x.dtype``.
        """
        flat = self._flatten("x", x).to(_F64)
        a_from, s_from = _schedule(sde, t_from, flat.shape[0], flat.device, name="t_from")
        a_to, s_to = _schedule(sde, t_to, flat.shape[0], flat.device, name="t_to")
        lam, basis = self.eigenvalues[0].to(flat.device), self.eigenvectors[0].to(flat.device)
        mu = self.means[0].to(flat.device)
        c_from = a_from[:, None] ** 2 * lam + s_from[:, None] ** 2
        c_to = a_to[:, None] ** 2 * lam + s_to[:, None] ** 2
        coords = (flat - a_from[:, None] * mu) @ basis * (c_to / c_from).sqrt()
        return (a_to[:, None] * mu + coords @ basis.T).to(x.dtype).reshape(x.shape)


class ExactScore:
    """``score(x, t)``: the exact ∇_x log p_t(x) of a :class:`GaussianMixture` under a linear SDE.

    Follows sdekit's score contract: ``x`` of shape ``(B, *event_shape)``, ``t`` of shape
    ``(B,)`` (a float or 0-d tensor is broadcast), output with ``x``'s shape and dtype.
    ``calls`` counts invocations, so a test can check a sampler's reported NFE.

    With y_k = U_kᵀ(x − α μ_k) and c_k = α² λ_k + σ², the responsibilities r_k come from
    a log-sum-exp of the component log-densities and score = −Σ_k r_k U_k (y_k / c_k):
    two matmuls and a few elementwise passes. float32 (and half) inputs are computed in
    float32 — relative error ~1e-6 against float64 for well-conditioned covariances —
    and float64 inputs in float64; pass float64 if covariance eigenvalues are tiny
    (≲ 1e-4) and t ≈ 0. When every sample shares one time (``t`` expanded from one
    value, as fixed-grid samplers pass it; see :func:`sdekit.checks.shared_time`), the
    per-component variances are computed once per call, not once per sample.
    It is differentiable in ``x`` (e.g. for exact-trace divergence by autograd).

    ``mixture``: the :class:`GaussianMixture` at t = 0; ``sde``: the linear forward SDE (any
    :class:`~sdekit.sde.LinearSDE`). Usually built by ``mixture.score(sde)``.
    """

    def __init__(self, mixture: GaussianMixture, sde: LinearSDE) -> None:
        if not isinstance(sde, LinearSDE):
            raise TypeError(f"sde must be a sdekit.sde.LinearSDE, got {type(sde).__name__}")
        self.mixture, self.sde = mixture, sde
        self.calls = 0

    def __repr__(self) -> str:
        return f"ExactScore({self.mixture!r}, {self.sde!r})"

    def __call__(self, x: Tensor, t: Tensor | float) -> Tensor:
        log_joint, z, _ = self._evaluate(x, t)
        weighted = _weight(z, torch.softmax(log_joint, dim=0).T)
        params = self.mixture._layout(z.device, z.dtype)
        return (weighted @ params.back).to(x.dtype).reshape(x.shape)

    def divergence(self, x: Tensor, t: Tensor | float) -> Tensor:
        """Exact ∇·score = Δ log p_t(x), shape ``(B,)``: ground truth for divergence estimators.

        Δ log p = Σ_k r_k (‖s_k‖² − Σ_d 1/c_kd) − ‖s‖², with s_k the k-th component's score.
        """
        log_joint, z, inv = self._evaluate(x, t)
        r = torch.softmax(log_joint, dim=0).T
        params = self.mixture._layout(z.device, z.dtype)
        per_component = (z * z - inv) @ params.blocks.T  # (B, K)
        score = _weight(z, r) @ params.back
        return ((r * per_component).sum(1) - (score * score).sum(1)).to(x.dtype)

    def _evaluate(self, x: Tensor, t: Tensor | float) -> tuple[Tensor, Tensor, Tensor]:
        self.calls += 1
        flat = self.mixture._flatten("x", x)
        dtype = _F64 if x.dtype == _F64 else torch.float32
        alpha, sigma = _schedule(self.sde, shared_time(t) if isinstance(t, Tensor) else t, flat.shape[0], x.device)
        params = self.mixture._layout(x.device, dtype)
        return _log_joint(flat.to(dtype), alpha, sigma, params)


# --- the shared kernel -------------------------------------------------------------------------------------------


def _log_joint(flat: Tensor, alpha: Tensor, sigma: Tensor, params: _Params) -> tuple[Tensor, Tensor, Tensor]:
    """log(w_k N_k(x)) ``(K, B)``, z = C_k⁻¹ y_k ``(B, K·D)`` and 1/c ``(B or 1, K·D)`` at (α, σ).

    ``alpha``/``sigma`` are float64 of shape ``(B,)`` or ``(1,)``; work happens in ``flat.dtype``.
    The log-joint comes
    transposed, components first: reductions over K along dim 0 are fast on CPU, where
    torch's softmax over a short last dimension is not. Few, large ops: each parallel op
    is a synchronisation, which costs most when the CPU is shared.
    """
    a = alpha.to(flat.dtype)[:, None]
    y = torch.cat([flat, a.expand(flat.shape[0], 1)], dim=1) @ params.proj
    c = torch.cat([a.square(), sigma.to(flat.dtype).square()[:, None]], dim=1) @ params.variances
    log_det = params.blocks @ c.log().T  # (K, rows)
    inv = c.reciprocal()
    z = y * inv
    return torch.addmm(params.log_weights_column - 0.5 * log_det, params.blocks, (y * z).T, alpha=-0.5), z, inv


def _weight(z: Tensor, r: Tensor) -> Tensor:
    """r_k z_k for every component: ``(B, K·D)``."""
    return (z.view(z.shape[0], r.shape[1], -1) * r[:, :, None]).view(z.shape[0], -1)


def _clean(device: torch.device) -> tuple[Tensor, Tensor]:
    """(α, σ) = (1, 0): the clean data distribution p_0."""
    return torch.ones(1, dtype=_F64, device=device), torch.zeros(1, dtype=_F64, device=device)


def _schedule(
    sde: LinearSDE | None, t: TimeLike, batch: int, device: torch.device, *, name: str = "t"
) -> tuple[Tensor, Tensor]:
    """(α, σ) as float64 tensors of shape ``(1,)`` or ``(batch,)``; clean data when sde or t is None."""
    if sde is None or t is None:
        return _clean(device)
    if not isinstance(sde, LinearSDE):
        raise TypeError(f"sde must be a sdekit.sde.LinearSDE, got {type(sde).__name__}")
    times = torch.as_tensor(t, dtype=_F64, device=device)
    if times.ndim == 0:
        times = times.reshape(1)
    elif times.shape not in ((batch,), (1,)):
        raise ValueError(f"{name} must be a float or a tensor of shape ({batch},), got shape {tuple(times.shape)}")
    sde.check_time(times)
    return sde.kernel(times)


def _rows(coefficient: Tensor, rows: slice) -> Tensor:
    return coefficient if coefficient.numel() == 1 else coefficient[rows]


# --- validation helpers ------------------------------------------------------------------------------------------


def _as_f64(name: str, value: object) -> Tensor:
    try:
        tensor = torch.as_tensor(value, dtype=_F64)
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(f"{name} must be a tensor or nested sequence of numbers, got {type(value).__name__}") from error
    tensor = tensor.detach().cpu()
    if not bool(tensor.isfinite().all()):
        raise ValueError(f"{name} must be finite")
    return tensor


def _check_weights(w: Tensor) -> None:
    if w.ndim != 1 or w.numel() < 1:
        raise ValueError(f"weights must be a non-empty 1-D sequence of shape (K,), got shape {tuple(w.shape)}")
    if not bool((w > 0).all()):
        raise ValueError("weights must all be > 0 (drop components of zero weight)")
    if abs(float(w.sum()) - 1) > 1e-5:
        raise ValueError(f"weights must sum to 1, got sum {float(w.sum())!r}; normalise them first")


def _check_covariances(cov: Tensor, k: int, d: int) -> None:
    if cov.shape != (k, d, d):
        raise ValueError(f"covariances must have shape (K, D, D) = ({k}, {d}, {d}), got {tuple(cov.shape)}")
    asymmetry = (cov - cov.transpose(-1, -2)).abs().amax()
    if float(asymmetry) > 1e-6 * max(float(cov.abs().amax()), 1e-300):
        raise ValueError(f"covariances must be symmetric, got max |Σ − Σᵀ| = {float(asymmetry):.3g}")


def _check_event_shape(event_shape: Sequence[int] | None, dim: int) -> tuple[int, ...]:
    if event_shape is None:
        return (dim,)
    shape = tuple(int(s) for s in event_shape)
    if len(shape) == 0 or any(s < 1 for s in shape) or math.prod(shape) != dim:
        raise ValueError(f"event_shape must be a tuple of positive ints with product D = {dim}, got {event_shape!r}")
    return shape


def _check_counts(counts: Tensor | Sequence[int], n: int, k: int) -> Tensor:
    values = torch.as_tensor(counts).detach().cpu()
    if values.shape != (k,) or values.is_floating_point() or bool((values < 0).any()) or int(values.sum()) != n:
        raise ValueError(f"counts must be {k} non-negative integers summing to n = {n}, got {counts!r}")
    return values.long()


def _random_rotations(count: int, dim: int, generator: torch.Generator | None) -> Tensor:
    """Haar-random orthogonal matrices (QR of a Gaussian matrix with the sign fix)."""
    q, r = torch.linalg.qr(torch.randn(count, dim, dim, dtype=_F64, generator=generator))
    return q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]


def _separated_points(count: int, dim: int, min_distance: float, generator: torch.Generator | None) -> Tensor:
    """``count`` random points, pairwise ≥ ``min_distance`` apart, centred at 0 (random sequential addition)."""
    radius = min_distance / math.sqrt(2)
    points: list[Tensor] = []
    failures = 0
    while len(points) < count:
        candidate = radius * torch.randn(dim, dtype=_F64, generator=generator) / math.sqrt(dim)
        if all(float((candidate - p).norm()) >= min_distance for p in points):
            points.append(candidate)
            continue
        failures += 1
        if failures % 50 == 0:  # crowded: widen the region
            radius *= 1.1
    stacked = torch.stack(points)
    return stacked - stacked.mean(dim=0)


# --- metrics -----------------------------------------------------------------------------------------------------
