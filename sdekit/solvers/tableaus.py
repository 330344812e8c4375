"""Butcher tableaus as data: one type for the fixed-grid Runge–Kutta steppers and the embedded pairs.

The fixed-grid steppers of :mod:`sdekit.solvers.ode` are EULER, HEUN and RK4 (and any tableau
through :class:`~sdekit.solvers.ode.RungeKutta`, dopri5 included); the adaptive solver of
:mod:`sdekit.solvers.adaptive_ode` runs the embedded pairs DOPRI5, BOSH3 and HEUN_EULER (Heun's
method with Euler embedded).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["ButcherTableau", "fsal_hermite_dense", "EULER", "HEUN", "RK4", "DOPRI5", "BOSH3", "HEUN_EULER"]


@dataclass(frozen=True)
class ButcherTableau:
    """An explicit Runge–Kutta method as data; with ``b_err`` (and ``dense``) also an embedded pair.

    ``a[i]`` are the coefficients of stage i on the earlier stages, ``b`` the solution weights,
    ``c`` the nodes, ``order`` the order of the solution. An embedded pair adds
    ``b_err = b − b̂`` (the error-estimate weights against the embedded solution b̂) with its
    ``error_order``; the adaptive solver also needs the last stage to be the new point
    (first-same-as-last, FSAL: ``a[-1] == b``) and ``dense``, where ``dense[i][p]`` is the
    coefficient of θ^(p+1) in the continuous weight b_i(θ), y(t + θh) = y + h Σ_i b_i(θ) k_i.
    The fixed-grid stepper (:class:`~sdekit.solvers.ode.ExplicitRungeKutta`) takes any tableau;
    it skips a last stage that no weight uses (an FSAL pair's), so dopri5 on a grid costs 6 calls.
    """

    name: str
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    c: tuple[float, ...]
    order: int
    b_err: tuple[float, ...] | None = None
    error_order: int | None = None
    dense: tuple[tuple[float, ...], ...] | None = None

    def __post_init__(self) -> None:
        if not (len(self.a) == len(self.b) == len(self.c)) or any(len(row) != i for i, row in enumerate(self.a)):
            raise ValueError(f"tableau {self.name!r}: a must be lower triangular with one row per stage of b and c")
        if (self.b_err is None) != (self.error_order is None):
            raise ValueError(f"tableau {self.name!r}: an embedded pair gives both b_err and error_order")

    @property
    def stages(self) -> int:
        return len(self.b)

    @property
    def embedded(self) -> bool:
        """Whether the tableau carries an error estimate (it can then run adaptively)."""
        return self.b_err is not None

    @property
    def fsal(self) -> bool:
        """Whether the last stage is evaluated at the new point (first same as last)."""
        return self.stages > 1 and tuple(self.a[-1]) == tuple(self.b[:-1]) and self.b[-1] == 0.0

    @property
    def solution_stages(self) -> int:
        """The stages a fixed-grid step needs: all but a trailing FSAL stage, whose weight is 0."""
        return self.stages - 1 if self.fsal else self.stages


def fsal_hermite_dense(b: Sequence[float], correction: Sequence[float] | None = None) -> tuple[tuple[float, ...], ...]:
    """Continuous weights of the cubic Hermite interpolant on (y, f(y), y_new, f(y_new)), plus θ²(1−θ)² Σ d_i k_i.

    With FSAL, f(y) = k_1 and f(y_new) = k_s. The Hermite part alone is 3rd order
    (bosh3's dense output); Shampine's correction ``d`` makes it 4th order for dopri5.
    """
    s = len(b)
    d = correction or [0.0] * s
    rows = []
    for i in range(s):
        first, last = float(i == 0), float(i == s - 1)
        rows.append(
            (first, 3 * b[i] - 2 * first - last + d[i], -2 * b[i] + first + last - 2 * d[i], d[i])
            if correction
            else (first, 3 * b[i] - 2 * first - last, -2 * b[i] + first + last)
        )
    return tuple(rows)


def _tableau(
    name: str,
    a: Sequence[Sequence[float]],
    b_hat: Sequence[float],
    c: Sequence[float],
    order: int,
    dense_correction: Sequence[float] | None = None,
) -> ButcherTableau:
    b = (*a[-1], 0.0)
    return ButcherTableau(
        name=name,
        a=((), *(tuple(row) for row in a)),
        b=b,
        c=tuple(c),
        order=order,
        b_err=tuple(bi - bh for bi, bh in zip(b, b_hat, strict=True)),
        error_order=order - 1,
        dense=fsal_hermite_dense(b, dense_correction),
    )


#: Dormand & Prince (1980) 5(4); dense output of Hairer, Nørsett & Wanner I §II.6 (Shampine 1986).
DOPRI5 = _tableau(
    "dopri5",
    a=(
        (1 / 5,),
        (3 / 40, 9 / 40),
        (44 / 45, -56 / 15, 32 / 9),
        (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
        (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
        (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
    ),
    b_hat=(5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40),
    c=(0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0),
    order=5,
    dense_correction=(
        -12715105075 / 11282082432,
        0.0,
        87487479700 / 32700410799,
        -10690763975 / 1880347072,
        701980252875 / 199316789632,
        -1453857185 / 822651844,
        69997945 / 29380423,
    ),
)

#: Bogacki & Shampine (1989) 3(2); cubic Hermite dense output.
BOSH3 = _tableau(
    "bosh3",
    a=((1 / 2,), (0.0, 3 / 4), (2 / 9, 1 / 3, 4 / 9)),
    b_hat=(7 / 24, 1 / 4, 1 / 3, 1 / 8),
    c=(0.0, 1 / 2, 3 / 4, 1.0),
    order=3,
)

#: Heun's method (second order, EDM's sampler) with Euler embedded, made FSAL by a stage at the new point.
HEUN_EULER = _tableau("heun_euler", a=((1.0,), (0.5, 0.5)), b_hat=(1.0, 0.0, 0.0), c=(0.0, 1.0, 1.0), order=2)

#: First order: x' = x + Δ v(x, t).
EULER = ButcherTableau("euler", a=((),), b=(1.0,), c=(0.0,), order=1)
#: Second order (explicit trapezoid), EDM's sampler: an Euler step, then the average slope.
HEUN = ButcherTableau("heun", a=((), (1.0,)), b=(0.5, 0.5), c=(0.0, 1.0), order=2)
#: The classical fourth-order Runge–Kutta method.
RK4 = ButcherTableau(
    "rk4", a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)), b=(1 / 6, 1 / 3, 1 / 3, 1 / 6), c=(0.0, 0.5, 0.5, 1.0), order=4
)
