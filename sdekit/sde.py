"""Forward SDEs dx = f(x, t) dt + g(t) dw on t ∈ [0, T].

Each class is the mathematics (docs/design.md) and nothing more: the drift, the
diffusion, the Gaussian perturbation kernel p_0t(x_t | x_0) = N(α(t) x_0, σ(t)² I),
the prior and its log-density. Schedules are evaluated in float64 whatever the
state's dtype, then cast, so long runs in float32 do not accumulate schedule error.

Built-ins are *linear* SDEs (:class:`LinearSDE`): their drift is ``f(t) x`` and
their kernel is Gaussian with a scalar mean coefficient α(t) and std σ(t). Solvers
that need the kernel (ancestral steps, exponential integrators, log-SNR grids)
accept any :class:`LinearSDE`; a custom linear SDE is a subclass defining
``log_mean_coeff``, ``std``, ``drift_coeff`` and ``diffusion_squared``.

A non-linear or state-dependent SDE subclasses :class:`SDE` directly; setting
``state_dependent_diffusion = True`` makes ``diffusion(x, t)`` return a tensor of
``x``'s shape (a diagonal G(x, t)), and :func:`sdekit.reverse` then adds the
divergence term that such a diffusion requires.
"""

from __future__ import annotations

import abc
import contextlib
import contextvars
import inspect
import math
from collections.abc import Iterator

import torch
from torch import Tensor

from sdekit.checks import batch_view, check_positive, check_positive_int, check_shape, sum_event
from sdekit.per_sample import randn

__all__ = [
    "SDE",
    "LinearSDE",
    "VPSDE",
    "SubVPSDE",
    "VESDE",
    "DiscreteVPSDE",
    "linear_betas",
    "cosine_alphas_cumprod",
    "time_checks",
]

#: Relative rounding of a float32 time (half its unit in the last place): T stored in float32 is still T.
_FLOAT32_ROUNDING = 2.0**-24

_CHECK_TIMES: contextvars.ContextVar[bool] = contextvars.ContextVar("sdekit_check_times", default=True)


@contextlib.contextmanager
def time_checks(enabled: bool) -> Iterator[None]:
    """Switch the ``t ∈ [0, T]`` check of SDE methods on or off inside a block.

    Checking reads the times back to the host, which on a GPU is a synchronisation.
    Samplers validate their whole time grid once, then run their step loop with
    ``time_checks(False)``; user code gets the check by default. ``enabled``: whether the
    methods check their times inside the block (restored on exit).
    """
    token = _CHECK_TIMES.set(enabled)
    try:
        yield
    finally:
        _CHECK_TIMES.reset(token)


class SDE(abc.ABC):
    """A forward SDE dx = f(x, t) dt + g(t) dw on [0, T].

    Times are 1-D tensors of shape ``(B,)``: one time per sample, so adaptive
    solvers can move every sample on its own clock.
    """

    T: float = 1.0
    #: The end time samplers stop at when ``eps`` is not given; None: 1e-5 if α ≡ 1 (VE-type), else 1e-3.
    default_eps: float | None = None
    #: When True, ``diffusion(x, t)`` is a diagonal G(x, t) with ``x``'s shape.
    state_dependent_diffusion: bool = False

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        # Every public function takes (x, t); an SDE written for the old diffusion(t, x) would get its
        # arguments swapped silently, so refuse it where it is defined.
        method = vars(cls).get("diffusion")
        if method is None:
            return
        function = method.__func__ if isinstance(method, staticmethod | classmethod) else method
        try:
            names = [p.name for p in inspect.signature(function).parameters.values()]  # follows __wrapped__
        except (TypeError, ValueError):
            return
        if not isinstance(method, staticmethod):
            names = names[1:]  # self (or cls)
        if names and (names[0] in ("t", "time", "t_", "times", "s") or names[1:2] == ["x"]):
            raise TypeError(
                f"{cls.__name__}.diffusion takes ({', '.join(names)}): sdekit's SDEs take diffusion(x, t), "
                "like drift(x, t)"
            )

    @abc.abstractmethod
    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """f(x, t), same shape and dtype as ``x``."""

    @abc.abstractmethod
    def diffusion(self, x: Tensor, t: Tensor) -> Tensor:
        """g(t) per sample, shape ``(B,)`` (or G(x, t) with ``x``'s shape if state-dependent), in ``x``'s dtype."""

    @abc.abstractmethod
    def marginal(self, x0: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean (``x0``'s shape) and std (``(B,)``) of the kernel p_0t(x_t | x_0)."""

    @abc.abstractmethod
    def prior_sample(
        self,
        shape: tuple[int, ...],
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """Draw x_T from the prior p_T."""

    @abc.abstractmethod
    def prior_logp(self, z: Tensor) -> Tensor:
        """log p_T(z) per sample, shape ``(B,)``."""

    def discretize(self, x: Tensor, t: Tensor, t_next: Tensor) -> tuple[Tensor, Tensor]:
        """One forward step over [t_next, t] as ``x_t = x_t' + f_i + G_i z``: returns (f_i, G_i).

        The default is Euler–Maruyama, ``f_i = f(x, t) h`` and ``G_i = g(t) √h`` with
        h = t − t_next; subclasses with an exact discrete chain (DDPM, SMLD) override it.
        Used by the reverse-diffusion predictor.
        """
        h = t.double() - t_next.double()
        f_i = self.drift(x, t) * batch_view(h, x)
        g = self.diffusion(x, t)
        root_h = h.sqrt()
        G_i = g * batch_view(root_h, x) if g.shape == x.shape else g.double() * root_h
        return f_i, G_i

    def check_time(self, t: Tensor) -> None:
        """Raise ``ValueError`` if any entry of ``t`` lies outside [0, T] (see :func:`time_checks`).

        T as a float32 time counts as T: a T such as 0.999 rounds up by up to 2⁻²⁴ relative there.
        """
        if not isinstance(t, Tensor):
            raise TypeError(f"t must be a torch.Tensor of shape (B,), got {type(t).__name__}")
        if t.ndim != 1:
            raise ValueError(f"t must be a 1-D tensor of per-sample times, shape (B,), got shape {tuple(t.shape)}")
        high = self.T * (1 + _FLOAT32_ROUNDING)
        if _CHECK_TIMES.get() and t.numel() and bool(((t < 0) | (t > high) | t.isnan()).any()):
            bad = t[(t < 0) | (t > high) | t.isnan()][0].item()
            raise ValueError(f"t must lie in [0, T] = [0, {self.T:g}], got {bad!r}")

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v:g}" for k, v in vars(self).items() if isinstance(v, float))
        return f"{type(self).__name__}({fields})"


class LinearSDE(SDE):
    """An SDE with linear drift f(t)·x, scalar diffusion g(t) and a Gaussian kernel.

    The kernel is N(α(t) x_0, σ(t)² I). Subclasses give four float64 schedule
    functions of a float64 time tensor: ``log_mean_coeff`` (log α), ``std`` (σ),
    ``drift_coeff`` (f) and ``diffusion_squared`` (g²). Everything else — drift,
    marginal, log-SNR λ = log(α/σ) and its inverse, the one-step transition — follows.
    """

    #: Standard deviation of the Gaussian prior N(0, prior_std² I).
    prior_std: float = 1.0

    @abc.abstractmethod
    def log_mean_coeff(self, t: Tensor) -> Tensor:
        """log α(t) in float64."""

    @abc.abstractmethod
    def std(self, t: Tensor) -> Tensor:
        """σ(t) in float64."""

    @abc.abstractmethod
    def drift_coeff(self, t: Tensor) -> Tensor:
        """f(t) in float64, so that f(x, t) = f(t)·x."""

    @abc.abstractmethod
    def diffusion_squared(self, t: Tensor) -> Tensor:
        """g(t)² in float64."""

    def mean_coeff(self, t: Tensor) -> Tensor:
        """α(t) in float64."""
        return self.log_mean_coeff(t).exp()

    def kernel(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(α(t), σ(t)) in float64: the kernel's mean coefficient and std in one call."""
        return self.mean_coeff(t), self.std(t)

    def kernel_derivatives(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(α̇(t), σ̇(t)) in float64: α̇ = f α and σ̇ = (½g² + f σ²)/σ (from g² = 2σσ̇ − 2fσ²); closed forms override it.

        What a flow-matching velocity α̇ x̂₀ + σ̇ ε̂ needs (:mod:`sdekit.adapters.flow`); σ̇ needs σ(t) > 0.
        """
        alpha, sigma = self.kernel(t)
        f = self.drift_coeff(t)
        return f * alpha, (0.5 * self.diffusion_squared(t) + f * sigma**2) / sigma

    def log_snr(self, t: Tensor) -> Tensor:
        """λ(t) = log(α(t)/σ(t)) in float64; strictly decreasing in t."""
        return self.log_mean_coeff(t) - self.std(t).log()

    def t_from_log_snr(self, log_snr: Tensor) -> Tensor:
        """Inverse of :meth:`log_snr` (float64), by bisection on [0, T]; closed forms override it."""
        lam = log_snr.double()
        low = torch.zeros_like(lam)
        high = torch.full_like(lam, self.T)
        for _ in range(64):  # 2^-64 of T: below float64 resolution
            mid = 0.5 * (low + high)
            above = self.log_snr(mid) > lam  # λ decreases, so the root lies later
            low = torch.where(above, mid, low)
            high = torch.where(above, high, mid)
        return 0.5 * (low + high)

    def transition(self, t: Tensor, t_next: Tensor) -> tuple[Tensor, Tensor]:
        """Kernel of x_t given x_t' (t' = t_next < t): x_t = a x_t' + √v z. Returns (a, v) in float64."""
        a = (self.log_mean_coeff(t) - self.log_mean_coeff(t_next)).exp()
        v = self.std(t) ** 2 - (a * self.std(t_next)) ** 2
        return a, v

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        self.check_time(t)
        return batch_view(self.drift_coeff(t.double()), x) * x

    def diffusion(self, x: Tensor, t: Tensor) -> Tensor:
        self.check_time(t)
        # In x's dtype, like marginal's std: no silent float64 promotion of the state.
        return self.diffusion_squared(t.double()).sqrt().to(x.dtype)

    def marginal(self, x0: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        self.check_time(t)
        t64 = t.double()
        return batch_view(self.mean_coeff(t64), x0) * x0, self.std(t64).to(x0.dtype)

    def prior_sample(
        self,
        shape: tuple[int, ...],
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        shape = check_shape("shape", shape)
        where = torch.device(device) if device is not None else torch.empty(0).device  # the default device
        # drawn on the generator's device and moved: a CPU generator seeds CUDA samples, as in diffusers
        return self.prior_std * randn(shape, generator, device=where, dtype=dtype)

    def prior_logp(self, z: Tensor) -> Tensor:
        dim = z[0].numel()
        log_norm = -0.5 * dim * math.log(2 * math.pi * self.prior_std**2)
        return log_norm - sum_event(z.double() ** 2).to(z.dtype) / (2 * self.prior_std**2)


def _check_range(low_name: str, low: float, high_name: str, high: float) -> None:
    check_positive(low_name, low)
    check_positive(high_name, high)
    if low >= high:
        raise ValueError(f"{low_name} must be < {high_name}, got {low_name}={low!r}, {high_name}={high!r}")


class VPSDE(LinearSDE):
    """Variance preserving SDE (DDPM's continuous limit): dx = −½β(t)x dt + √β(t) dw.

    β(t) = β_min + t(β_max − β_min); α(t) = exp(−¼t²(β_max − β_min) − ½tβ_min),
    σ(t) = √(1 − α²). The defaults (0.1, 20) are the continuous form of the linear
    DDPM schedule with 1000 steps. For a network trained on a discrete schedule use
    :meth:`from_alphas_cumprod` or :meth:`from_betas`: it is exact at the trained levels.

    ``beta_min``, ``beta_max``: β at t = 0 and t = T = 1, per unit time (default 0.1 and 20);
    0 < beta_min < beta_max.
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0) -> None:
        _check_range("beta_min", beta_min, "beta_max", beta_max)
        self.beta_min = float(beta_min)
        self.beta_max = float(beta_max)

    @staticmethod
    def from_alphas_cumprod(alphas_cumprod: Tensor) -> DiscreteVPSDE:
        """The VP SDE of a DDPM trained on ᾱ_1..ᾱ_N (see :class:`DiscreteVPSDE`)."""
        return DiscreteVPSDE(alphas_cumprod)

    @staticmethod
    def from_betas(betas: Tensor) -> DiscreteVPSDE:
        """The VP SDE of a DDPM trained on β_1..β_N, each in (0, 1)."""
        return DiscreteVPSDE.from_betas(betas)

    def beta(self, t: Tensor) -> Tensor:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def log_mean_coeff(self, t: Tensor) -> Tensor:
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def std(self, t: Tensor) -> Tensor:
        return self._std_from_log_mean(self.log_mean_coeff(t))

    def kernel(self, t: Tensor) -> tuple[Tensor, Tensor]:
        log_mean = self.log_mean_coeff(t)  # once: σ is a function of α
        return log_mean.exp(), self._std_from_log_mean(log_mean)

    def _std_from_log_mean(self, log_mean: Tensor) -> Tensor:
        """σ = √(1 − α²)."""
        return (-torch.expm1(2 * log_mean)).sqrt()

    def drift_coeff(self, t: Tensor) -> Tensor:
        return -0.5 * self.beta(t)

    def diffusion_squared(self, t: Tensor) -> Tensor:
        return self.beta(t)

    def t_from_log_snr(self, log_snr: Tensor) -> Tensor:
        """Closed form for the built-in schedules: λ gives log α² (:meth:`_log_abar_from_log_snr`),
        which gives t; a subclass with a schedule of its own gets the generic bisection."""
        if not self._closed_form_inverse():
            return LinearSDE.t_from_log_snr(self, log_snr)
        log_abar = self._log_abar_from_log_snr(log_snr.double())
        floor = 2 * float(self.log_mean_coeff(torch.tensor([self.T], dtype=torch.float64))) - 1.0
        return self._t_from_log_abar(log_abar.clamp_min(floor)).clamp(0.0, self.T)  # λ = −∞ → T, not NaN

    def _closed_form_inverse(self) -> bool:
        """Whether this class's α and σ are one of the pairs the closed forms invert."""
        cls = type(self)
        pairs = {
            (VPSDE.log_mean_coeff, VPSDE._std_from_log_mean),
            (VPSDE.log_mean_coeff, SubVPSDE._std_from_log_mean),
            (DiscreteVPSDE.log_mean_coeff, VPSDE._std_from_log_mean),
        }
        return cls.std is VPSDE.std and (cls.log_mean_coeff, cls._std_from_log_mean) in pairs

    def _log_abar_from_log_snr(self, lam: Tensor) -> Tensor:
        """log α² from λ = ½ log(α²/(1 − α²)): α² = sigmoid(2λ), so log α² = −log(1 + e^{−2λ}), stably."""
        z = 2 * lam
        return -(torch.log1p(torch.exp(-z.abs())) + (-z).clamp_min(0))

    def _t_from_log_abar(self, log_abar: Tensor) -> Tensor:
        """Root of ½Δβ t² + β_min t + log α² = 0, in the form that does not cancel."""
        delta = self.beta_max - self.beta_min
        return -2 * log_abar / (self.beta_min + (self.beta_min**2 - 2 * delta * log_abar).sqrt())

    def transition(self, t: Tensor, t_next: Tensor) -> tuple[Tensor, Tensor]:
        """(a, v) with v = β_step = 1 − ᾱ(t)/ᾱ(t') computed by expm1: in (0, 1) for t > t'."""
        two_delta = 2 * (self.log_mean_coeff(t) - self.log_mean_coeff(t_next))
        return (0.5 * two_delta).exp(), -torch.expm1(two_delta)

    def discretize(self, x: Tensor, t: Tensor, t_next: Tensor) -> tuple[Tensor, Tensor]:
        """DDPM's chain with the step's own β: f_i = (√(1−β) − 1)x, G_i = √β."""
        a, beta = self.transition(t.double(), t_next.double())
        return batch_view(a - 1, x) * x, beta.sqrt()


class SubVPSDE(VPSDE):
    """Sub-VP SDE: the VP drift with g(t)² = β(t)(1 − α(t)⁴); std σ(t) = 1 − α(t)² (no square root).

    ``beta_min``, ``beta_max``: as for :class:`VPSDE` (default 0.1 and 20). Its σ is smaller than VP's
    at every t, which gave the SDE paper its best likelihoods.
    """

    def _std_from_log_mean(self, log_mean: Tensor) -> Tensor:
        """σ = 1 − α²."""
        return -torch.expm1(2 * log_mean)

    def diffusion_squared(self, t: Tensor) -> Tensor:
        return self.beta(t) * -torch.expm1(4 * self.log_mean_coeff(t))

    def transition(self, t: Tensor, t_next: Tensor) -> tuple[Tensor, Tensor]:
        return LinearSDE.transition(self, t, t_next)

    def _log_abar_from_log_snr(self, lam: Tensor) -> Tensor:
        """λ = log(α/(1 − α²)): α is the positive root of e^λ α² + α − e^λ = 0.

        For λ > 0, with w = e^{−λ}: 1/α = 1 + (w + w²/(√(w² + 4) + 2))/2 (no cancellation as α → 1);
        for λ ≤ 0, with v = e^λ: α = 2v/(1 + √(1 + 4v²)).
        """
        w = torch.exp(-lam.clamp_min(0))
        positive = -2 * torch.log1p((w + w**2 / ((w**2 + 4).sqrt() + 2)) / 2)
        v = torch.exp(lam.clamp_max(0))
        negative = 2 * (math.log(2) + lam.clamp_max(0) - torch.log1p((1 + 4 * v**2).sqrt()))
        return torch.where(lam > 0, positive, negative)

    def discretize(self, x: Tensor, t: Tensor, t_next: Tensor) -> tuple[Tensor, Tensor]:
        return SDE.discretize(self, x, t, t_next)


class VESDE(LinearSDE):
    """Variance exploding SDE (SMLD/NCSN): dx = σ(t)√(2 ln(σ_max/σ_min)) dw, σ(t) = σ_min(σ_max/σ_min)^t.

    The kernel std is σ(t) (so data at t = 0 carry σ_min of noise, as in NCSN);
    the prior is N(0, σ_max² I). Choose σ_max about the largest pairwise distance
    in the data set, σ_min below the data's resolution.

    ``sigma_min``, ``sigma_max``: the noise std at t = 0 and t = T = 1, in the data's units
    (default 0.01 and 50); 0 < sigma_min < sigma_max.
    """

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0) -> None:
        _check_range("sigma_min", sigma_min, "sigma_max", sigma_max)
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self.prior_std = self.sigma_max

    @property
    def _log_ratio(self) -> float:
        return math.log(self.sigma_max / self.sigma_min)

    def log_mean_coeff(self, t: Tensor) -> Tensor:
        return torch.zeros_like(t)

    def std(self, t: Tensor) -> Tensor:
        return self.sigma_min * torch.exp(t * self._log_ratio)

    def drift_coeff(self, t: Tensor) -> Tensor:
        return torch.zeros_like(t)

    def diffusion_squared(self, t: Tensor) -> Tensor:
        return self.std(t) ** 2 * (2 * self._log_ratio)

    def t_from_log_snr(self, log_snr: Tensor) -> Tensor:
        return (-log_snr.double() - math.log(self.sigma_min)) / self._log_ratio

    def discretize(self, x: Tensor, t: Tensor, t_next: Tensor) -> tuple[Tensor, Tensor]:
        """SMLD's chain: f_i = 0, G_i = √(σ(t)² − σ(t')²)."""
        _, v = self.transition(t.double(), t_next.double())
        return torch.zeros_like(x), v.sqrt()


class DiscreteVPSDE(VPSDE):
    """The continuous VP SDE of a DDPM trained on ᾱ_1..ᾱ_N, exact at the trained levels.

    log α(t)² interpolates log ᾱ piecewise-linearly on t_i = i/N (with ᾱ_0 = 1 at
    t = 0), so σ(i/N) = √(1 − ᾱ_i) exactly and β(t) is piecewise constant,
    β = −N log(1 − β_i) on the i-th interval. A network trained at timestep index
    i (0-based, i = 0..N−1) saw the level of t = (i + 1)/N.

    ``alphas_cumprod``: ᾱ_1..ᾱ_N, shape ``(N,)``, strictly decreasing in (0, 1) (a diffusers
    scheduler's ``alphas_cumprod``); :meth:`from_betas` takes β_1..β_N instead.
    """

    def __init__(self, alphas_cumprod: Tensor) -> None:
        abar = torch.as_tensor(alphas_cumprod, dtype=torch.float64).detach().cpu()
        if abar.ndim != 1 or abar.numel() < 1:
            raise ValueError(f"alphas_cumprod must be a non-empty 1-D sequence, got shape {tuple(abar.shape)}")
        if not bool(((abar > 0) & (abar < 1)).all()):
            raise ValueError("alphas_cumprod must lie in the open interval (0, 1)")
        log_abar = torch.cat([torch.zeros(1, dtype=torch.float64), abar.log()])
        if not bool((log_abar[1:] < log_abar[:-1]).all()):
            raise ValueError("alphas_cumprod must be strictly decreasing")
        self.num_timesteps = abar.numel()
        self._log_abar = log_abar
        self._device_tables: dict[tuple[str, torch.device], Tensor] = {}
        self.beta_min = float(self._betas_continuous().min())
        self.beta_max = float(self._betas_continuous().max())

    @classmethod
    def from_betas(cls, betas: Tensor) -> DiscreteVPSDE:
        """Build from β_1..β_N ∈ (0, 1): ᾱ_i = ∏_{j≤i}(1 − β_j)."""
        b = torch.as_tensor(betas, dtype=torch.float64)
        if b.ndim != 1 or not bool(((b > 0) & (b < 1)).all()):
            raise ValueError("betas must be a 1-D sequence with every entry in the open interval (0, 1)")
        return cls(torch.cumsum(torch.log1p(-b), 0).exp())

    @property
    def alphas_cumprod(self) -> Tensor:
        """ᾱ_1..ᾱ_N (float64, CPU)."""
        return self._log_abar[1:].exp()

    def level_kernel(self, index: Tensor) -> tuple[Tensor, Tensor]:
        """(√ᾱ, √(1 − ᾱ)) of the trained level at 0-based timestep ``index`` (ᾱ_{index+1}), float64, on its device.

        Exact table values, without a time: what a DDPM training step needs (:func:`sdekit.losses.ddpm_loss`).
        """
        log_mean = 0.5 * self._table("log_abar", index.device)[index + 1]
        return log_mean.exp(), self._std_from_log_mean(log_mean)

    def _betas_continuous(self) -> Tensor:
        return -self.num_timesteps * torch.diff(self._log_abar)

    def _interval(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """Index of the interval holding t and the fraction of the way through it."""
        pos = t * self.num_timesteps
        index = pos.floor().clamp(0, self.num_timesteps - 1)
        return index.long(), pos - index

    def beta(self, t: Tensor) -> Tensor:
        index, _ = self._interval(t)
        return self._table("betas", t.device)[index]

    def log_mean_coeff(self, t: Tensor) -> Tensor:
        index, frac = self._interval(t)
        log_abar = self._table("log_abar", t.device)
        return 0.5 * torch.lerp(log_abar[index], log_abar[index + 1], frac)

    def _t_from_log_abar(self, log_abar: Tensor) -> Tensor:
        """Invert the piecewise-linear log ᾱ(t): find its interval in the table, then interpolate."""
        table = self._table("log_abar", log_abar.device)
        index = torch.searchsorted(-table, -log_abar).clamp(1, self.num_timesteps) - 1
        low, high = table[index], table[index + 1]
        return (index + (log_abar - low) / (high - low)) / self.num_timesteps

    def _table(self, name: str, device: torch.device) -> Tensor:
        """The schedule table on ``device``, copied there once (a copy per call would cost a transfer)."""
        key = (name, device)
        cache = self.__dict__.setdefault("_device_tables", {})
        if key not in cache:
            cache[key] = (self._log_abar if name == "log_abar" else self._betas_continuous()).to(device)
        return cache[key]

    def __getstate__(self) -> dict[str, object]:
        """Pickle without the per-device copies (a CUDA copy must not travel to a CPU-only process)."""
        return {key: value for key, value in self.__dict__.items() if key != "_device_tables"}

    def __repr__(self) -> str:
        return f"DiscreteVPSDE(num_timesteps={self.num_timesteps})"


def linear_betas(num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """DDPM's linear schedule β_1..β_N (Ho et al. 2020), float64, shape ``(num_timesteps,)``.

    ``num_timesteps``: N (default 1000); ``beta_start``, ``beta_end``: β_1 and β_N (default 1e-4 and
    0.02, the DDPM paper's), 0 < beta_start < beta_end < 1.
    """
    check_positive_int("num_timesteps", num_timesteps)
    _check_range("beta_start", beta_start, "beta_end", beta_end)
    if beta_end >= 1:
        raise ValueError(f"beta_end must be < 1, got {beta_end!r}")
    return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)


def cosine_alphas_cumprod(num_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """The cosine schedule of improved DDPM (Nichol & Dhariwal 2021) as ᾱ_1..ᾱ_N, float64.

    β_i is clipped at ``max_beta`` as in that paper, which keeps ᾱ_N > 0. ``num_timesteps``: N
    (default 1000); ``s``: the offset that keeps β_1 from vanishing (default 0.008, the paper's).
    Shape ``(num_timesteps,)``.
    """
    check_positive_int("num_timesteps", num_timesteps)
    steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=max_beta)
    return torch.cumsum(torch.log1p(-betas), 0).exp()
