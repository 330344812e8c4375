"""Linear SDEs given by their kernel: flow matching's interpolants and EDM's σ-parameterisation.

Flow-matching and rectified-flow models are trained on an *interpolant*
x_t = α(t) x₀ + σ(t) ε rather than on an SDE; EDM (Karras et al. 2022) on x = x₀ + σ n with the
time equal to the noise level. Each is a :class:`~sdekit.sde.LinearSDE` whose kernel is that
interpolant, so its forward SDE, reverse SDE and probability flow follow, with
f(t) = α̇/α and g(t)² = 2σσ̇ − 2(α̇/α)σ² = −2σ² dλ/dt (λ = log(α/σ), the log-SNR), and every
sampler, the likelihood and the oracle work on it unchanged. On the rectified flow the
probability flow's velocity f x − ½g² s is the flow-matching velocity α̇ x̂₀ + σ̇ ε̂ = ε̂ − x̂₀,
so DDIM on it is diffusers' ``FlowMatchEulerDiscreteScheduler`` step.

The rectified flow stops short of t = 1, where α = 0: there the score is −x whatever the
network predicts (it carries no velocity), and f and g² are infinite. ``T`` is therefore below 1
(default 1 − 10⁻³, λ(T) = −6.9, about VP's −5.0), and the prior N(0, (α(T)² + σ(T)²) I) is the
marginal at T of unit-variance data, as VP's N(0, I) is.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
from torch import Tensor

from sdekit.sde import LinearSDE

__all__ = ["InterpolantSDE", "RectifiedFlowSDE", "EDMSDE"]

Schedule = Callable[[Tensor], Tensor]


def _derivative(function: Schedule, t: Tensor) -> Tensor:
    """d/dt of an elementwise schedule, by autograd in float64 (also under ``no_grad`` and ``inference_mode``)."""
    with torch.inference_mode(False), torch.enable_grad():
        times = t.detach().double().clone().requires_grad_(True)  # a normal tensor, even from inference mode
        values = function(times)
        if not values.requires_grad:  # no graph from t: the schedule does not depend on t (torch.ones_like(t))
            return torch.zeros_like(times, requires_grad=False)
        (grad,) = torch.autograd.grad(values.sum(), times)
    return grad.detach()


# The rectified flow's schedules, at module level so that the SDE pickles (lambdas would not).
def _one_minus(t: Tensor) -> Tensor:
    return 1 - t


def _identity(t: Tensor) -> Tensor:
    return t


def _minus_ones(t: Tensor) -> Tensor:
    return -torch.ones_like(t)


class InterpolantSDE(LinearSDE):
    """The linear SDE whose kernel is the interpolant x_t = α(t) x₀ + σ(t) ε, for any schedules α, σ.

    Args:
        alpha: α(t), elementwise on a float64 tensor of times; α(0) = 1 normally, decreasing, α(T) > 0.
        sigma: σ(t), elementwise; increasing, σ(t) > 0 for t > 0 (σ(0) = 0 normally).
        T: the end of time (default 1); λ(T) must be finite.
        d_alpha, d_sigma: α̇ and σ̇ in closed form; by default autograd differentiates ``alpha`` and ``sigma``.
        prior_std: the prior's std (default √(α(T)² + σ(T)²): the marginal std at T of unit-variance data).

    The log-SNR must decrease strictly on (0, T] (g² > 0): checked at 257 points on construction.
    Example: the cosine interpolant, ``InterpolantSDE(lambda t: torch.cos(t * math.pi / 2),
    lambda t: torch.sin(t * math.pi / 2), T=0.999)``.
    """

    def __init__(
        self,
        alpha: Schedule,
        sigma: Schedule,
        *,
        T: float = 1.0,
        d_alpha: Schedule | None = None,
        d_sigma: Schedule | None = None,
        prior_std: float | None = None,
    ) -> None:
        for name, value in (("alpha", alpha), ("sigma", sigma), ("d_alpha", d_alpha), ("d_sigma", d_sigma)):
            if value is not None and not callable(value):
                raise TypeError(f"{name} must be a function of a float64 time tensor, got {type(value).__name__}")
        if isinstance(T, bool) or not isinstance(T, int | float) or not math.isfinite(T) or T <= 0:
            raise ValueError(f"T must be a positive finite number, got {T!r}")
        self.T = float(T)
        self._alpha, self._sigma = alpha, sigma
        self._d_alpha = d_alpha or functools.partial(_derivative, alpha)
        self._d_sigma = d_sigma or functools.partial(_derivative, sigma)
        self._check_schedules()
        end = torch.tensor([self.T], dtype=torch.float64)
        if prior_std is None:
            prior_std = float((self._alpha(end) ** 2 + self._sigma(end) ** 2).sqrt())
        if not (math.isfinite(prior_std) and prior_std > 0):
            raise ValueError(f"prior_std must be positive and finite, got {prior_std!r}")
        self.prior_std = float(prior_std)

    def _check_schedules(self) -> None:
        t = torch.linspace(0.0, self.T, 257, dtype=torch.float64)[1:]
        alpha, sigma = self._alpha(t), self._sigma(t)
        if alpha.shape != t.shape or sigma.shape != t.shape:
            raise ValueError("alpha and sigma must be elementwise: a time tensor of shape (B,) gives shape (B,)")
        if not bool((alpha > 0).all() & torch.isfinite(alpha).all()):
            raise ValueError(
                f"alpha must be positive and finite on (0, T]; α(T) = {float(alpha[-1]):g} at T = {self.T:g} "
                "(at α = 0 the score carries no information about the data: end time before it)"
            )
        if not bool((sigma > 0).all() & torch.isfinite(sigma).all()):
            raise ValueError("sigma must be positive and finite on (0, T]")
        if not bool((self.diffusion_squared(t) > 0).all()):
            raise ValueError("the log-SNR log(alpha/sigma) must decrease strictly on (0, T] (g² > 0)")

    def log_mean_coeff(self, t: Tensor) -> Tensor:
        return self._alpha(t).log()

    def mean_coeff(self, t: Tensor) -> Tensor:
        return self._alpha(t)

    def std(self, t: Tensor) -> Tensor:
        return self._sigma(t)

    def kernel_derivatives(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return self._d_alpha(t), self._d_sigma(t)

    def drift_coeff(self, t: Tensor) -> Tensor:
        return self._d_alpha(t) / self._alpha(t)

    def diffusion_squared(self, t: Tensor) -> Tensor:
        sigma = self._sigma(t)
        return 2 * sigma * (self._d_sigma(t) - self.drift_coeff(t) * sigma)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(T={self.T:g})"


class RectifiedFlowSDE(InterpolantSDE):
    """Rectified flow / flow matching's linear interpolant x_t = (1 − t) x₀ + t ε (Liu et al. 2022; Lipman et al. 2022).

    f(t) = −1/(1 − t), g(t)² = 2t/(1 − t), λ(t) = log((1 − t)/t). Its probability flow is the
    flow-matching ODE dx/dt = ε̂ − x̂₀; wrap a velocity network with :mod:`sdekit.adapters.flow`.

    ``T``: where sampling starts, in (0, 1) (default 1 − 10⁻³). At t = 1 the data's weight α is 0 and the
    score −x says nothing about the velocity, so the process stops before it; diffusers'
    ``FlowMatchEulerDiscreteScheduler`` starts at σ = 1 instead, a difference of about 1 − T in the
    first step. The prior is N(0, ((1 − T)² + T²) I).

    Samplers stop at t = 3·10⁻³ by default (noise level σ/α = 0.003), chosen on the oracle suite: against
    10⁻³ (diffusers' last σ, 1/N) it is far better at 12–30 NFE (dpmpp_2m at 12 NFE on the narrow modes
    +0.02 nats against +1.07) and within the noise at 1000; 10⁻² biases narrow modes at high NFE (−0.2 nats).
    """

    default_eps = 3e-3

    def __init__(self, T: float = 1 - 1e-3) -> None:
        if isinstance(T, bool) or not isinstance(T, int | float) or not 0 < T < 1:
            raise ValueError(
                f"T must lie in (0, 1), got {T!r}: at T = 1 the data's weight 1 − t is 0 and the score carries no "
                "velocity (the default 0.999 is the usual start)"
            )
        super().__init__(_one_minus, _identity, T=T, d_alpha=_minus_ones, d_sigma=torch.ones_like)

    def log_mean_coeff(self, t: Tensor) -> Tensor:
        return torch.log1p(-t)

    def drift_coeff(self, t: Tensor) -> Tensor:
        return -1 / (1 - t)

    def diffusion_squared(self, t: Tensor) -> Tensor:
        return 2 * t / (1 - t)

    def log_snr(self, t: Tensor) -> Tensor:
        return torch.log1p(-t) - t.log()

    def t_from_log_snr(self, log_snr: Tensor) -> Tensor:
        """t = 1/(1 + e^λ) = sigmoid(−λ)."""
        return torch.sigmoid(-log_snr.double())


class EDMSDE(LinearSDE):
    """EDM's process (Karras et al. 2022): x = x₀ + σ n with time equal to the noise level, σ(t) = t.

    α ≡ 1, f = 0, g(t)² = 2t; t runs over [0, σ_max], and samplers stop at σ_min by default,
    EDM's lowest noise level (its samplers then step to σ = 0, which is sdekit's final denoising).
    Grids in λ = −log t are uniform in log σ; ``grid="edm"`` (alias ``"karras"``) is EDM's ρ = 7 grid.

    ``sigma_min``, ``sigma_max``: EDM's noise range in the data's units (default 0.002 and 80, the paper's
    for images in [−1, 1]); 0 < sigma_min < sigma_max. The prior is N(0, σ_max² I).

    The likelihood and the training losses keep their own ``eps=1e-5`` (σ = 1e-5 here): for a network
    trained from σ_min up, pass ``eps=sde.default_eps``.

    sdekit's methods step on a log-SNR grid by default, uniform in log σ here. torchsde's methods
    (``"torchsde:euler"``, ...) step uniformly in t, which here is uniform in σ and far off (+21 nats on a
    2-D Gaussian at 100 steps, measured): use :class:`~sdekit.VESDE` with the same range for them.
    """

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0) -> None:
        for name, value in (("sigma_min", sigma_min), ("sigma_max", sigma_max)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        if sigma_min >= sigma_max:
            raise ValueError(f"sigma_min must be < sigma_max, got sigma_min={sigma_min!r}, sigma_max={sigma_max!r}")
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self.T = self.sigma_max
        self.prior_std = self.sigma_max
        self.default_eps = self.sigma_min

    def log_mean_coeff(self, t: Tensor) -> Tensor:
        return torch.zeros_like(t)

    def std(self, t: Tensor) -> Tensor:
        return t

    def kernel_derivatives(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return torch.zeros_like(t), torch.ones_like(t)

    def drift_coeff(self, t: Tensor) -> Tensor:
        return torch.zeros_like(t)

    def diffusion_squared(self, t: Tensor) -> Tensor:
        return 2 * t

    def t_from_log_snr(self, log_snr: Tensor) -> Tensor:
        return torch.exp(-log_snr.double())

    def __repr__(self) -> str:
        return f"EDMSDE(sigma_min={self.sigma_min:g}, sigma_max={self.sigma_max:g})"
