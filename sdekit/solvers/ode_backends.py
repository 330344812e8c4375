"""The cross-check backends of :func:`~sdekit.solvers.adaptive_ode.solve_ivp_batched`: torchdiffeq and scipy.

Both integrate the whole batch on one clock with one error norm (a batch RMS), as the SDE
paper's reference code does with scipy (which also copies every evaluation to host memory, in
float64). They are here to check the native solver against and to reproduce that behaviour,
not for speed. Only their public APIs are used: ``torchdiffeq.odeint`` and
``scipy.integrate.solve_ivp``, with the method names their documentation lists.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from sdekit.checks import check_choice

__all__ = [
    "SCIPY_METHODS",
    "TORCHDIFFEQ_ADAPTIVE",
    "TORCHDIFFEQ_FIXED",
    "check_backend_method",
    "solve_scipy",
    "solve_torchdiffeq",
]

OdeFn = Callable[[Tensor, Tensor], Tensor]

#: torchdiffeq's adaptive-step methods (its documentation's list); they take ``step_t`` and ``first_step``.
TORCHDIFFEQ_ADAPTIVE = ("dopri8", "dopri5", "bosh3", "fehlberg2", "adaptive_heun")
#: torchdiffeq's fixed-step methods; they need ``h_init`` (their ``step_size``).
TORCHDIFFEQ_FIXED = ("euler", "midpoint", "heun2", "heun3", "rk4", "explicit_adams", "implicit_adams", "fixed_adams")
#: sdekit's pair names mapped to scipy's, and scipy's own ``solve_ivp`` methods.
_SCIPY_ALIASES = {"dopri5": "RK45", "bosh3": "RK23"}
SCIPY_METHODS = (*_SCIPY_ALIASES, "RK45", "RK23", "DOP853", "Radau", "BDF", "LSODA")


def check_backend_method(backend: str, method: str) -> None:
    """``ValueError`` listing the valid names when ``method`` is not one of ``backend``'s."""
    if backend == "scipy":
        check_choice("method", method, SCIPY_METHODS)
    else:
        check_choice("method", method, (*TORCHDIFFEQ_ADAPTIVE, *TORCHDIFFEQ_FIXED))


def _output_times(t0: float, t1: float, t_eval: Tensor | None) -> Tensor:
    """The times a reference backend integrates to: t0 first, then t_eval (or t1)."""
    if t_eval is None:
        return torch.tensor([t0, t1], dtype=torch.float64)
    return t_eval if float(t_eval[0]) == t0 else torch.cat([torch.tensor([t0], dtype=torch.float64), t_eval])


def solve_torchdiffeq(
    func: OdeFn,
    y0: Tensor,
    t0: float,
    t1: float,
    method: str,
    rtol: float,
    atol: float,
    t_eval: Tensor | None,
    h_init: float | None,
) -> Tensor:
    """``torchdiffeq.odeint`` on ``func``, returning y at t1 (or at the ``t_eval`` times)."""
    import torchdiffeq  # imported when used: importing sdekit stays quick

    times = _output_times(t0, t1, t_eval).to(y0.device)

    def scalar_time_func(t: Tensor, y: Tensor) -> Tensor:
        return func(t.to(torch.float64).expand(y.shape[0]), y)

    if method in TORCHDIFFEQ_ADAPTIVE:
        # Otherwise it steps past the last time and interpolates back (VP schedules are NaN at t < 0).
        options: dict[str, Any] = {"step_t": times}
        if h_init is not None:
            options["first_step"] = h_init
    elif h_init is not None:
        options = {"step_size": h_init}
    else:
        raise ValueError(f"torchdiffeq's fixed-grid method {method!r} needs h_init= (its step size)")
    path = torchdiffeq.odeint(scalar_time_func, y0, times, rtol=rtol, atol=atol, method=method, options=options)
    return path[-1] if t_eval is None else path[-t_eval.numel() :]


def solve_scipy(
    func: OdeFn,
    y0: Tensor,
    t0: float,
    t1: float,
    method: str,
    rtol: float,
    atol: float,
    t_eval: Tensor | None,
    h_init: float | None,
) -> tuple[Tensor, int]:
    """``scipy.integrate.solve_ivp`` on the flattened float64 state in host memory: (y at t1 or t_eval, steps)."""
    from scipy.integrate import solve_ivp  # imported when used: importing sdekit stays quick

    shape, batch = y0.shape, y0.shape[0]

    def flat_func(t: float, y: Any) -> Any:
        state = torch.from_numpy(y).reshape(shape).to(y0.device, y0.dtype)
        times = torch.full((batch,), t, dtype=torch.float64, device=y0.device)
        return func(times, state).to("cpu", torch.float64).flatten().numpy()

    result = solve_ivp(
        flat_func,
        (t0, t1),
        y0.detach().to("cpu", torch.float64).flatten().numpy(),
        method=_SCIPY_ALIASES.get(method, method),
        rtol=rtol,
        atol=atol,
        t_eval=None if t_eval is None else t_eval.numpy(),
        first_step=h_init,
    )
    if not result.success:
        raise FloatingPointError(f"scipy.integrate.solve_ivp failed near t = {result.t[-1]:.6g}: {result.message}")
    steps = int(result.t.size - 1) if t_eval is None else 0
    path = torch.from_numpy(result.y.T.copy()).to(y0.device, y0.dtype)
    return (path[-1].reshape(shape) if t_eval is None else path.reshape(-1, *shape)), steps
