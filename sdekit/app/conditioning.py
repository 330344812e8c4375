"""Conditional runs of ``sdekit sample``: a class by classifier guidance, or inpainting of real images.

    sdekit sample --model digits --class 3 --guidance 2         # 3s, guided by the noisy classifier
    sdekit sample --model digits --inpaint bottom -n 64         # the first 64 real digits, bottom half redrawn

A :class:`Condition` is part of the run's configuration (``run.json``), so a resumed run never
mixes chunks of another condition. Class guidance wraps the model's score in
:class:`sdekit.guidance.ClassifierGuidance` with the model's noise-conditional classifier;
inpainting passes :class:`sdekit.constraints.Imputation` (optionally with RePaint's resampling)
holding real images on the known pixels: sample i completes real image i, so chunks stay
independent and resumable. Both need a model that ships what they use (``digits`` does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sdekit.constraints import Imputation
from sdekit.guidance import ClassifierGuidance
from sdekit.sde import SDE, LinearSDE

__all__ = ["MASKS", "Condition", "ConditionError", "mask_of"]

#: Masks by name over an H×W image: the *unknown* (redrawn) region; every other pixel is kept.
MASKS: dict[str, Callable[[int, int], Tensor]] = {
    "bottom": lambda h, w: torch.arange(h)[:, None].expand(h, w) >= h // 2,
    "top": lambda h, w: torch.arange(h)[:, None].expand(h, w) < h - h // 2,
    "left": lambda h, w: torch.arange(w)[None, :].expand(h, w) < w - w // 2,
    "right": lambda h, w: torch.arange(w)[None, :].expand(h, w) >= w // 2,
    "center": lambda h, w: (
        ((torch.arange(h)[:, None] - (h - 1) / 2).abs() < h / 4)
        & ((torch.arange(w)[None, :] - (w - 1) / 2).abs() < w / 4)
    ),
}


class ConditionError(ValueError):
    """A conditioning request the model or the options cannot serve (a user's mistake: one line, exit 2)."""


def mask_of(name: str, event_shape: tuple[int, ...]) -> Tensor:
    """The *known* pixels of mask ``name`` for images ``(C, H, W)``, as a bool tensor ``(1, 1, H, W)``."""
    if name not in MASKS:
        raise ConditionError(f"--inpaint {name!r}: unknown mask; valid: {', '.join(MASKS)}")
    if len(event_shape) != 3:
        raise ConditionError(f"--inpaint needs an image model (C, H, W), the model's samples are {event_shape}")
    _, h, w = event_shape
    return ~MASKS[name](h, w)[None, None]


@dataclass(frozen=True)
class Condition:
    """What a conditional run conditions on; the empty condition is an unconditional run.

    Args:
        label: the class to sample (classifier guidance), or None.
        guidance: the guidance scale w ≥ 0 (with ``label``).
        inpaint: a mask name of :data:`MASKS` (the region redrawn), or None.
        resample, jump_length: RePaint's r and j for inpainting (1, 1: the SDE paper's replacement).
    """

    label: int | None = None
    guidance: float | None = None
    inpaint: str | None = None
    resample: int = 1
    jump_length: int = 1

    def __post_init__(self) -> None:
        if self.label is not None and self.inpaint is not None:
            raise ConditionError("--class and --inpaint cannot be combined (give one)")
        if self.guidance is not None and self.label is None:
            raise ConditionError("--guidance needs --class (the class to guide towards)")
        if self.guidance is not None and not (self.guidance >= 0 and np.isfinite(self.guidance)):
            raise ConditionError(f"--guidance must be a finite scale >= 0, got {self.guidance}")
        if (self.resample, self.jump_length) != (1, 1) and self.inpaint is None:
            raise ConditionError("--resample and --jump-length are options of --inpaint")
        if self.resample < 1 or self.jump_length < 1:
            raise ConditionError(
                f"--resample and --jump-length must be >= 1, got {self.resample} and {self.jump_length}"
            )

    @property
    def active(self) -> bool:
        return self.label is not None or self.inpaint is not None

    def to_json(self) -> dict[str, Any]:
        """The set fields only (an unconditional run stores ``{}``)."""
        defaults = asdict(Condition())
        return {k: v for k, v in asdict(self).items() if v != defaults[k]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Condition:
        return cls(**data)

    def check(self, model: Any, num: int) -> None:
        """Refuse, before any sampling, a condition that ``model`` cannot serve."""
        if self.label is not None:
            if model.noisy_classifier is None:
                raise ConditionError(f"--class: model {model.name!r} has no noise-conditional classifier to guide with")
            if not 0 <= self.label < model.num_classes:
                raise ConditionError(f"--class must be in 0..{model.num_classes - 1}, got {self.label}")
        if self.inpaint is not None:
            if model.dataset is None:
                raise ConditionError(f"--inpaint: model {model.name!r} has no data set of images to complete")
            mask_of(self.inpaint, model.event_shape)
            available = len(model.dataset()[0])
            if num > available:
                raise ConditionError(
                    f"--inpaint completes the model's real images, of which there are {available}; "
                    f"--num-samples {num} is more"
                )

    def chunk_inputs(
        self, model: Any, sde: SDE, score: Any, start: int, n: int, device: torch.device, dtype: torch.dtype
    ) -> tuple[Any, dict[str, Any]]:
        """The score and the extra sampler arguments for the samples ``start .. start + n - 1``."""
        if self.label is not None:
            classifier = model.noisy_classifier(device, dtype)
            labels = torch.full((n,), self.label, dtype=torch.int64, device=device)
            scale = 1.0 if self.guidance is None else self.guidance
            return ClassifierGuidance(score, classifier, labels, scale=scale), {}
        if self.inpaint is not None:
            if not isinstance(sde, LinearSDE):
                raise ConditionError(f"--inpaint needs a model with a Gaussian kernel (LinearSDE), got {sde!r}")
            images, _ = model.dataset()
            y = images[start : start + n].to(device=device, dtype=dtype)
            known = mask_of(self.inpaint, model.event_shape).to(device)
            constraint = Imputation(sde, y, known, resample=self.resample, jump_length=self.jump_length)
            return score, {"constraint": constraint}
        return score, {}

    def describe(self) -> str:
        if self.label is not None:
            return f"class {self.label}, classifier guidance w = {1.0 if self.guidance is None else self.guidance:g}"
        if self.inpaint is not None:
            passes = f", RePaint r = {self.resample}, j = {self.jump_length}" if self.resample > 1 else ""
            return f"inpainting the {self.inpaint} of the real images{passes}"
        return "unconditional"


def inpainting_panel(originals: np.ndarray, known: Tensor, completions: np.ndarray, columns: int = 8) -> np.ndarray:
    """uint8 images in rows of ``columns`` originals | the same masked (unknown pixels grey) | completions."""
    masked = np.where(known.numpy()[0], originals, np.uint8(128))
    rows = []
    for start in range(0, len(originals), columns):
        part = slice(start, start + columns)
        group = [originals[part], masked[part], completions[part]]
        width = len(group[0])
        pad = [np.concatenate([g, np.full((columns - width, *g.shape[1:]), 96, np.uint8)]) for g in group]
        rows.append(np.concatenate(pad))
    return np.concatenate(rows)


def digits_quality(condition: Condition, images: Tensor) -> list[str]:
    """Figures of a conditional digits run (``images`` in [−1, 1], as stored): recognition, FD-digits, exactness."""
    from sdekit.app.models import digits, fd

    clean = digits.load_classifier()
    with torch.no_grad():
        predicted = clean(images.float()).argmax(1)
    real, labels = digits.load_data()
    features = fd.features(images)
    if condition.label is not None:
        k = condition.label
        hit = float((predicted == k).float().mean())
        own = fd.real_features()[(labels == k).numpy()]
        half = len(own) // 2
        m = min(len(images), half)  # FD is biased upwards at small n: both figures at m against the same reals
        distance = fd.frechet_distance(features[:m], own[half:])
        floor = fd.frechet_distance(own[:m], own[half:])
        return [
            f"{condition.describe()}: {100 * hit:.1f} % of {len(images)} recognised as {k} by the clean classifier",
            f"FD-digits of {m} samples against {len(own) - half} real {k}s {distance:.3f}; "
            f"{m} other real {k}s against them {floor:.3f}",
        ]
    n = len(images)
    agree = float((predicted == labels[:n]).float().mean())
    originals = digits.from_uint8(digits.to_uint8(real[:n]))
    unknown = ~mask_of(condition.inpaint or "", tuple(images.shape[1:])).expand_as(images)
    exact = bool(torch.equal(images[~unknown], originals[~unknown]))
    rmse = float((images - originals)[unknown].pow(2).mean().sqrt())
    value = fd.frechet_distance(features, fd.real_features())
    floor = fd.frechet_distance(fd.features(originals), fd.real_features())  # equal n: FD's small-n bias cancels
    return [
        f"{condition.describe()}: {n} completions; labels agree with the originals' for {100 * agree:.1f} % "
        f"(clean classifier); known pixels {'equal to the originals' if exact else 'DIFFER from the originals'}",
        f"RMSE on the redrawn pixels {rmse:.3f} (in [-1, 1]); FD-digits {value:.3f} against the 1797 real digits, "
        f"the {n} originals {floor:.3f}",
    ]
