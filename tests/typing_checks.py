"""Static checks of the samplers' return types (run by mypy in CI, never imported by pytest).

``return_info=True`` gives ``tuple[Tensor, SampleInfo]`` and the default a ``Tensor``: the
overloads make that precise, so callers need no ``cast``.
"""

from typing import assert_type

from torch import Tensor

from sdekit import VPSDE, SampleInfo, ode_sample, pc_sample, sample


def _score(x: Tensor, t: Tensor) -> Tensor:
    return -x


def check() -> None:
    sde = VPSDE()
    assert_type(pc_sample(sde, _score, (2, 2)), Tensor)
    assert_type(pc_sample(sde, _score, (2, 2), return_info=True), tuple[Tensor, SampleInfo])
    assert_type(sample(sde, _score, (2, 2), method="ancestral"), Tensor)
    assert_type(sample(sde, _score, (2, 2), return_info=True, rtol=0.1), tuple[Tensor, SampleInfo])
    assert_type(ode_sample(sde, _score, (2, 2)), Tensor)
    x, info = ode_sample(sde, _score, (2, 2), return_info=True)
    assert_type(x, Tensor)
    assert_type(info.nfe, int)
    flag: bool = bool(len(sde.__class__.__name__) % 2)
    assert_type(sample(sde, _score, (2, 2), return_info=flag), Tensor | tuple[Tensor, SampleInfo])


def check_the_short_adapters_name() -> None:
    import torch

    from adapters import ddpm

    _, score = ddpm.from_betas(lambda x, label: x, torch.ones(3) * 0.01)
    assert_type(score, ddpm.EpsilonScore)
