"""Safe weight loading: safetensors, or ``torch.load(weights_only=True)`` for a ``.pt`` a user names.

Nothing here unpickles arbitrary objects: safetensors files hold raw tensors only, and
``weights_only=True`` restricts ``torch.load`` to tensors and plain containers.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

__all__ = ["WeightsError", "load_weights", "load_into"]


class WeightsError(ValueError):
    """A weights file that is missing, not safetensors, or not a plain state dict."""


def load_weights(path: str | Path) -> dict[str, Tensor]:
    """A state dict from ``path``: ``.safetensors`` (preferred), or ``.pt``/``.pth`` via ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {str(path)!r} does not exist")
    if path.suffix in (".pt", ".pth"):
        return _load_torch(path)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise WeightsError(f"{str(path)!r} is not a valid safetensors file ({error})") from error


def _load_torch(path: Path) -> dict[str, Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any failure means "not a safe state dict"
        raise WeightsError(
            f"{str(path)!r} is not a plain tensor state dict loadable with weights_only=True ({error})"
        ) from error
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightsError(f"{str(path)!r} does not hold a state dict of tensors")
    return state


def load_into(model: torch.nn.Module, path: str | Path) -> None:
    """Load the state dict in ``path`` into ``model``; :class:`WeightsError` in one line if it does not fit."""
    state = load_weights(path)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    reshaped = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or reshaped:
        problems = [
            f"{len(keys)} {what} (e.g. {keys[0]!r})"
            for keys, what in ((missing, "missing"), (unexpected, "unexpected"), (reshaped, "of another shape"))
            if keys
        ]
        raise WeightsError(
            f"{str(path)!r} holds weights of another architecture than {type(model).__name__}: "
            f"{', '.join(problems)} tensors"
        )
    model.load_state_dict(state)
