"""Peers installed from PyPI, loaded for the benchmarks: k-diffusion's samplers and model wrappers.

``pip install k-diffusion`` pulls torchvision (which would replace torch), so install it with
``pip install --no-deps k-diffusion``; its package ``__init__`` then fails to import (skimage,
torchvision, …), and ``k_diffusion/sampling.py`` and ``external.py`` are loaded by file path
with a one-function stand-in for ``k_diffusion.utils``. With a full install the normal
imports are used.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
import types

import torch
from torch import Tensor

from sdekit import LinearSDE
from sdekit.reverse import ScoreFn

_NAME = "_sdekit_bench_k_diffusion"


@functools.cache
def k_diffusion_sampling() -> tuple[types.ModuleType | None, str]:
    """k_diffusion.sampling, imported normally or by file path; (None, reason) when impossible."""
    try:
        import k_diffusion.sampling as module

        return module, "package import"
    except ImportError as error:
        package_error = f"{type(error).__name__}: {error}"
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        return None, "k-diffusion is not installed (pip install --no-deps k-diffusion)"
    name = _NAME
    package = types.ModuleType(name)
    package.__path__ = list(spec.submodule_search_locations)
    utils = types.ModuleType(f"{name}.utils")

    def append_dims(x: Tensor, target_dims: int) -> Tensor:
        return x[(...,) + (None,) * (target_dims - x.ndim)]

    utils.append_dims = append_dims  # the only k_diffusion.utils function sampling.py uses
    package.utils = utils
    sys.modules[name], sys.modules[f"{name}.utils"] = package, utils
    module, error = _load_by_path(package, "sampling")
    if module is None:
        return None, f"k_diffusion.sampling failed to load by path ({error}); package import: {package_error}"
    return module, f"sampling.py by file path (package import: {package_error})"


@functools.cache
def k_diffusion_external() -> tuple[types.ModuleType | None, str]:
    """k_diffusion.external (model wrappers such as ``DiscreteEpsDDPMDenoiser``); (None, reason) if impossible."""
    try:
        import k_diffusion.external as module

        return module, "package import"
    except ImportError:
        pass
    sampling, why = k_diffusion_sampling()
    if sampling is None:
        return None, why
    package = sys.modules[_NAME]
    package.sampling = sampling  # type: ignore[attr-defined]
    module, error = _load_by_path(package, "external")
    if module is None:
        return None, f"k_diffusion.external failed to load by path ({error})"
    return module, "external.py by file path"


def _load_by_path(package: types.ModuleType, name: str) -> tuple[types.ModuleType | None, Exception | None]:
    """Execute ``<package dir>/<name>.py`` as the submodule ``package.name``."""
    path = f"{package.__path__[0]}/{name}.py"
    loader_spec = importlib.util.spec_from_file_location(f"{package.__name__}.{name}", path)
    assert loader_spec is not None and loader_spec.loader is not None
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[loader_spec.name] = module
    try:
        loader_spec.loader.exec_module(module)
    except Exception as error:
        return None, error
    return module, None


class KDenoiser:
    """k-diffusion's model contract D(x, σ̃) in the VE frame, built from an exact score; counts its calls.

    For a LinearSDE with kernel N(α x₀, σ²): x_ve = x/α and σ̃ = σ/α (so −log σ̃ is sdekit's λ), the
    time t = ``sde.t_from_log_snr(−log σ̃)`` and D(x, σ̃) = x + σ̃² α s(α x, t); for VE (α ≡ 1)
    that is x + σ² s(x, t).
    """

    def __init__(self, sde: LinearSDE, score: ScoreFn) -> None:
        self.sde, self.score, self.calls = sde, score, 0

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        self.calls += 1
        sigma64 = sigma.reshape(-1)[:1].double().cpu()
        t = self.sde.t_from_log_snr(-sigma64.log())  # −log σ̃ = λ = log(α/σ)
        alpha = float(self.sde.mean_coeff(t))
        return x + float(sigma64) ** 2 * alpha * self.score(alpha * x, t.to(x.device, x.dtype).expand(x.shape[0]))

    def sigma(self, t: float) -> float:
        """σ̃ = σ/α at sdekit time t."""
        tt = torch.full((1,), t, dtype=torch.float64)
        return float(self.sde.std(tt) / self.sde.mean_coeff(tt))
