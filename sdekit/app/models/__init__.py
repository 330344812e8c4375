"""Built-in models and the ``module:callable`` loader behind ``sdekit sample --model``.

A model is a :class:`Model`: a name, a one-line description, the event shape, a kind
(``"image"`` samples are stored as uint8 and drawn as a grid, ``"points"`` are 2-D
samples drawn against the true density) and ``build(device, dtype) -> (sde, score)``.

Built-ins: ``digits`` (a small DDPM UNet on 8×8 handwritten digits, shipped as
safetensors and loaded through :mod:`sdekit.adapters.ddpm`) and ``gmm2d`` (the exact 2-D
mixture oracle). ``--model pkg.module:factory`` *imports and runs user code*: the
factory is called with no arguments and must return ``(sde, score)``; give the event
shape with ``--shape`` unless the score has an ``event_shape`` attribute.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sdekit.app.models._weights import WeightsError, load_weights
from sdekit.sde import SDE

__all__ = ["Model", "ModelError", "WeightsError", "builtin_models", "get_model", "load_weights"]

Builder = Callable[[torch.device, torch.dtype, "str | None"], tuple[SDE, Any]]


class ModelError(ValueError):
    """A model name or ``module:callable`` that cannot be resolved into ``(sde, score)``."""


@dataclass(frozen=True)
class Model:
    """What ``sdekit sample`` needs to know about a model."""

    name: str
    description: str
    event_shape: tuple[int, ...]
    kind: str  # "image", "points" or "tensor"
    build: Builder  # build(device, dtype, weights): weights is a user's file or None for the shipped one
    default_weights: str | None = None  # the shipped weights file, if any
    #: ``noisy_classifier(device, dtype)``: a classifier(x, t) -> logits of p_t(y | x) for ``--class``.
    noisy_classifier: Callable[[torch.device, torch.dtype], Any] | None = None
    num_classes: int = 0
    #: ``dataset()``: real samples ``(N, *event_shape)`` in the model's data space and labels, for ``--inpaint``.
    dataset: Callable[[], tuple[torch.Tensor, torch.Tensor]] | None = None

    def weights_digest(self, weights: str | None) -> str | None:
        """SHA-256 of the weights file a run uses (stored in run.json, so new weights never reuse old chunks)."""
        path = weights or self.default_weights
        if path is None or not Path(path).is_file():
            return None
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _digits(device: torch.device, dtype: torch.dtype, weights: str | None) -> tuple[SDE, Any]:
    from sdekit.app.models import digits

    return digits.load(device, dtype, weights)


def _digits_noisy_classifier(device: torch.device, dtype: torch.dtype) -> Any:
    from sdekit.app.models import digits

    return digits.load_noisy_classifier(device=device).to(dtype)


def _digits_data() -> tuple[torch.Tensor, torch.Tensor]:
    from sdekit.app.models import digits

    return digits.load_data()


def _gmm2d(device: torch.device, dtype: torch.dtype, weights: str | None) -> tuple[SDE, Any]:
    from sdekit.app.models import gmm2d

    _no_weights("gmm2d", weights)
    return gmm2d.load(device, dtype)


def _no_weights(name: str, weights: str | None) -> None:
    if weights is not None:
        raise ModelError(f"model {name!r} takes no weights file (--weights is for digits)")


def builtin_models() -> dict[str, Model]:
    """The built-in models by name."""
    from sdekit.app.models import digits

    return {
        "digits": Model(
            "digits",
            "ε-prediction UNet (352k params) on 8×8 handwritten digits, via sdekit.adapters.ddpm",
            (1, 8, 8),
            "image",
            _digits,
            str(digits.weights_path(digits.UNET_FILE)),
            noisy_classifier=_digits_noisy_classifier,
            num_classes=10,
            dataset=_digits_data,
        ),
        "gmm2d": Model("gmm2d", "exact 2-D, 8-mode Gaussian mixture oracle (exact score)", (2,), "points", _gmm2d),
    }


def get_model(spec: str, shape: Sequence[int] | None = None) -> Model:
    """A built-in name or ``module:callable`` (runs user code) as a :class:`Model`; ``shape`` sets the event shape."""
    models = builtin_models()
    if ":" not in spec:
        if spec not in models:
            raise ModelError(f"unknown model {spec!r}; valid: {', '.join(sorted(models))} or module:callable")
        model = models[spec]
        if shape is not None and tuple(shape) != model.event_shape:
            raise ModelError(
                f"model {spec!r} has event shape {model.event_shape}; --shape {tuple(shape)} does not match"
            )
        return model
    return _user_model(spec, shape)


def _user_model(spec: str, shape: Sequence[int] | None) -> Model:
    factory = _resolve(spec)

    def build(device: torch.device, dtype: torch.dtype, weights: str | None = None) -> tuple[SDE, Any]:
        _no_weights(spec, weights)
        return _call(spec, factory, device, dtype)

    event_shape = tuple(shape) if shape is not None else None
    if event_shape is None:
        _, score = build(torch.device("cpu"), torch.float32)
        event_shape = getattr(score, "event_shape", None)
        if event_shape is None:
            raise ModelError(f"model {spec!r}: give the event shape with --shape (e.g. --shape 2 or --shape 3,32,32)")
    return Model(spec, f"user factory {spec}", tuple(event_shape), "tensor", build)


def _resolve(spec: str) -> Callable[[], Any]:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ModelError(f"--model {spec!r}: expected module:callable, e.g. mypkg.models:make")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # user code: a SyntaxError or a failing import is reported in one line
        raise ModelError(
            f"--model {spec!r}: cannot import module {module_name!r} ({type(error).__name__}: {_one_line(error)})"
        ) from error
    factory = module
    for part in attr.split("."):
        if not hasattr(factory, part):
            raise ModelError(f"--model {spec!r}: module {module_name!r} has no attribute {attr!r}")
        factory = getattr(factory, part)
    if not callable(factory):
        raise ModelError(f"--model {spec!r}: {attr!r} is not callable")
    return factory


def _call(spec: str, factory: Callable[[], Any], device: torch.device, dtype: torch.dtype) -> tuple[SDE, Any]:
    try:
        result = factory()
    except Exception as error:  # user code: report it in one line
        raise ModelError(f"--model {spec!r}: calling it raised {type(error).__name__}: {_one_line(error)}") from error
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], SDE) and callable(result[1])):
        raise ModelError(
            f"--model {spec!r}: the callable must return (sde, score) with sde a sdekit SDE, got {result!r:.200}"
        )
    sde, score = result
    if isinstance(score, torch.nn.Module):
        score = score.to(device=device, dtype=dtype)
    return sde, score


def _one_line(error: BaseException) -> str:
    """An exception's message on one line (a SyntaxError's says where)."""
    if isinstance(error, SyntaxError) and error.filename:
        return f"{error.msg} ({error.filename}, line {error.lineno})"
    return " ".join(str(error).split())
