"""Argument validation and batch broadcasting shared by every layer of sdekit and by adapters.

Each check raises at the call with a message that names the argument and the
allowed range, so a user sees *what* to change rather than a shape error deep
inside a solver. Public so that adapters (built-in or third-party) validate and
broadcast the same way as the library.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor


class ScoreError(TypeError, ValueError):
    """A score whose output breaks the contract ``score(x, t) -> tensor like x`` (shape, dtype, device, gradient).

    Raised at the call that broke it, whichever sampler made it. A ``TypeError`` and a
    ``ValueError`` both, so code that caught either before this class existed still does.
    """


def check_score_output(out: object, x: Tensor, name: str = "score") -> None:
    """Raise :class:`ScoreError` unless ``out`` is a tensor with ``x``'s shape, dtype and device (no host sync)."""
    if not isinstance(out, Tensor):
        raise ScoreError(f"{name} must return a torch.Tensor, got {type(out).__name__}")
    if out.shape != x.shape:
        raise ScoreError(f"{name} returned shape {tuple(out.shape)}; it must match x's shape {tuple(x.shape)}")
    if out.dtype != x.dtype:
        raise ScoreError(f"{name} returned dtype {out.dtype}; it must match x's dtype {x.dtype}")
    if out.device != x.device:
        raise ScoreError(f"{name} returned a tensor on {out.device}; x is on {x.device}")


def check_data(name: str, x: object) -> None:
    """Raise unless ``x`` is a finite floating-point tensor of shape (B, *event) with B ≥ 1 (training data)."""
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point torch.Tensor of shape (B, *event), got {type(x).__name__}")
    if x.ndim < 2 or x.shape[0] < 1:
        raise ValueError(f"{name} must have shape (B, *event) with B >= 1, got {tuple(x.shape)}")
    if not bool(torch.isfinite(x.detach()).all()):
        raise ValueError(f"{name} must be finite (it contains NaN or Inf)")


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is an int ≥ 1, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= 1, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value}")
    return value


def check_nonnegative_int(name: str, value: object) -> int:
    """Return ``value`` if it is an int ≥ 0, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= 0, got {type(value).__name__} {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value}")
    return value


def check_positive(name: str, value: object) -> float:
    """Return ``value`` as a float if it is finite and > 0, else raise naming ``name``."""
    number = _as_real(name, value)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return number


def check_open_interval(name: str, value: object, low: float, high: float) -> float:
    """Return ``value`` as a float if ``low < value < high``, else raise naming ``name``."""
    number = _as_real(name, value)
    if not (low < number < high):
        raise ValueError(f"{name} must lie in the open interval ({low:g}, {high:g}), got {value!r}")
    return number


def check_shape(name: str, shape: object) -> tuple[int, ...]:
    """Return ``shape`` as a tuple if it is a non-empty sequence of positive ints."""
    if not isinstance(shape, Sequence) or isinstance(shape, str | bytes) or len(shape) == 0:
        raise TypeError(f"{name} must be a non-empty tuple of positive ints (batch, *event), got {shape!r}")
    for size in shape:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"{name} must be a tuple of positive ints (batch, *event), got {tuple(shape)!r}")
    return tuple(shape)


def check_generator(name: str, generator: object) -> None:
    """Refuse anything but a ``torch.Generator`` or None (a NumPy generator would fail deep inside torch)."""
    if generator is not None and not isinstance(generator, torch.Generator):
        kind = f"{type(generator).__module__}.{type(generator).__qualname__}"
        raise TypeError(
            f"{name} must be a torch.Generator or None, got {kind}; e.g. {name}=torch.Generator().manual_seed(0)"
        )


def state_dtype(dtype: object, x: object = None, network: object = None, x_name: str = "x_T") -> torch.dtype:
    """A sampler's state dtype: ``dtype`` if given, else the dtype of the given state ``x`` and of ``network``
    (its first floating parameter, looking through wrappers that hold the network's score as ``.score``, as
    the guidance transforms do) — which must then agree — else float32.

    So a float64 x_T stays float64 with an exact or functional score, and a bfloat16 network gets a
    bfloat16 state without being told. A state and a network of different dtypes are refused naming
    ``dtype`` (the network could not take the state); so is a ``dtype`` that is not a floating-point one.
    """
    if dtype is not None:
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating-point torch.dtype (e.g. torch.float32), got {dtype!r}")
        return dtype
    given = x.dtype if isinstance(x, Tensor) and x.is_floating_point() else None
    own = _network_dtype(network)
    if given is not None and own is not None and given != own:
        raise TypeError(
            f"{x_name} is {given} but the network's parameters are {own}: pass dtype= (e.g. dtype={own}, the state "
            f"in the network's dtype) or convert one of them"
        )
    return given or own or torch.float32


def _network_dtype(network: object, depth: int = 4) -> torch.dtype | None:
    """The dtype of the first floating parameter of ``network`` or of the score it wraps (``.score``), if any."""
    for _ in range(depth):
        if isinstance(network, torch.nn.Module):
            for parameter in network.parameters():
                if parameter.is_floating_point():
                    return parameter.dtype
            return None
        network = getattr(network, "score", None)
        if network is None:
            return None
    return None


def available_memory() -> int | None:
    """Bytes of host memory the kernel reports available (``MemAvailable``), or None where it does not say."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None  # free pages alone (sysconf) would miss the reclaimable cache and refuse good requests


def format_bytes(n: float) -> str:
    """``n`` bytes in the largest unit that keeps it ≥ 1: ``'2.0 GB'``."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


class EstimateError(MemoryError):
    """A request refused up front because its estimated memory exceeds what is available (a user's choice)."""


#: Requests below this many bytes are not checked (every machine has it; reading the kernel's figure
#: at every sampler call would be work for nothing).
UNCHECKED_BYTES = 64 * 2**20


def check_fits(what: str, need: int, advice: str, device: torch.device | None = None) -> None:
    """Refuse up front (:class:`EstimateError`) a request whose memory ``need`` (bytes) exceeds what is free.

    Host memory (``MemAvailable``) by default; a CUDA ``device``'s free memory for a CUDA device.
    """
    if need < UNCHECKED_BYTES:
        return
    if device is not None and device.type == "cuda":
        have: int | None = torch.cuda.mem_get_info(device)[0]
        where = f"{device} memory"
    else:
        have, where = available_memory(), "host memory"
    if have is not None and need > have:
        raise EstimateError(
            f"{what} would need about {format_bytes(need)} of {where}; {format_bytes(have)} is available: {advice}"
        )


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``choices`` (names or numbers), else raise listing the valid ones."""
    valid = sorted(choices)
    if isinstance(value, bool) or type(value) not in {type(c) for c in valid} or value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(str(c) for c in valid)}")
    return value


def _as_real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    return float(value)


def batch_view(coefficient: Tensor, like: Tensor) -> Tensor:
    """View a per-sample coefficient of shape ``(B,)`` so it broadcasts against ``like``.

    The result has shape ``(B, 1, ..., 1)`` with ``like.ndim`` dimensions and
    ``like``'s dtype: works for any event shape, ``(B, d)`` or ``(B, C, H, W)``.
    A coefficient of shape ``(1,)`` (a time shared by the whole batch, as on a fixed
    grid) broadcasts over the batch without being materialised B times.
    """
    return coefficient.to(device=like.device, dtype=like.dtype).reshape(coefficient.shape[0], *([1] * (like.ndim - 1)))


def shared_time(t: Tensor) -> Tensor:
    """``t[:1]`` when ``t`` is one time expanded over the batch (stride 0), else ``t`` itself.

    Samplers on a fixed grid hand a score one time expanded to ``(B,)``; a score that
    computes schedules from ``t`` can evaluate them once instead of B times. Reads only
    the tensor's layout: no host synchronisation, no pass over the values.
    """
    return t[:1] if t.ndim == 1 and t.shape[0] > 1 and t.stride(0) == 0 else t


def sum_event(x: Tensor) -> Tensor:
    """Sum over all but the batch dimension: ``(B, *event) -> (B,)``."""
    return x.flatten(1).sum(dim=1)


def event_norm(x: Tensor) -> Tensor:
    """Euclidean norm of each sample: ``(B, *event) -> (B,)``."""
    return torch.linalg.vector_norm(x.flatten(1), dim=1)


def event_rms(x: Tensor) -> Tensor:
    """Root mean square of each sample, accumulated and returned in float64: ``(B, *event) -> (B,)``."""
    flat = x.flatten(1)
    return torch.linalg.vector_norm(flat, dim=1, dtype=torch.float64) / math.sqrt(flat.shape[1])


def batch_mask(mask: Tensor, like: Tensor) -> Tensor:
    """A per-sample boolean mask ``(B,)`` viewed to broadcast against ``like`` ``(B, *event)`` (stays boolean)."""
    return mask.reshape(mask.shape[0], *([1] * (like.ndim - 1)))


def same_value(a: object, b: object) -> bool:
    """``a == b``, with tensors compared whole (``torch.equal``: same shape and values) rather than elementwise."""
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return isinstance(a, Tensor) and isinstance(b, Tensor) and torch.equal(a, b)
    return bool(a == b)
