"""Precision by design: the state's dtype follows x_T, else the network, unless ``dtype=`` says otherwise.

A float64 x_T stays float64 (it was cast to float32 silently); a bfloat16 network gets a bfloat16
state with default arguments (it failed inside the network: "Input type (float) and bias type
(c10::BFloat16)"); an explicit ``dtype`` wins; what a dtype cannot resolve is refused naming the option.
"""

from __future__ import annotations

import pytest
import torch

from sdekit import VPSDE, ode_sample, pc_sample, sample
from sdekit.adapters import ddpm, ncsn
from sdekit.checks import state_dtype
from sdekit.testing import GaussianMixture

MIXTURE = GaussianMixture.random(dim=2, modes=3, generator=torch.Generator().manual_seed(0))


class TinyEps(torch.nn.Module):
    """ε(x, label) = W x + b(label): a network with parameters, in whatever dtype it is cast to."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(2, 2)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.linear(x) * 0.1


def bf16_score() -> ddpm.EpsilonScore:
    return ddpm.EpsilonScore(TinyEps().to(torch.bfloat16), VPSDE())


@pytest.mark.parametrize(
    ("front", "options"),
    [(sample, {"method": "ancestral", "steps": 5}), (sample, {"method": "adaptive", "rtol": 0.05}),
     (ode_sample, {"method": "dpmpp_2m", "steps": 5}), (ode_sample, {"method": "dopri5"}),
     (pc_sample, {"steps": 5})],
    ids=["ancestral", "adaptive", "dpmpp_2m", "dopri5", "pc"],
)  # fmt: skip
def test_a_float64_x_T_stays_float64_and_an_explicit_dtype_wins(front, options) -> None:  # type: ignore[no-untyped-def]
    sde = VPSDE()
    x_T = torch.randn(4, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    kept = front(sde, MIXTURE.score(sde), x_T=x_T, generator=torch.Generator().manual_seed(2), **options)
    assert kept.dtype == torch.float64
    cast = front(sde, MIXTURE.score(sde), x_T=x_T, dtype=torch.float32, generator=torch.Generator().manual_seed(2),
                 **options)  # fmt: skip
    assert cast.dtype == torch.float32
    assert front(sde, MIXTURE.score(sde), (4, 2), **options).dtype == torch.float32  # no x_T, no network: float32


def test_a_bfloat16_network_samples_with_default_arguments() -> None:
    score = bf16_score()
    x, info = sample(VPSDE(), score, (3, 2), method="ancestral", steps=8, return_info=True,
                     generator=torch.Generator().manual_seed(3))  # fmt: skip
    assert x.dtype == torch.bfloat16 and torch.isfinite(x.float()).all() and info.nfe == 9
    y = ode_sample(VPSDE(), score, (3, 2), method="dpmpp_2m", steps=8)
    assert y.dtype == torch.bfloat16
    # an adaptive flow at its default rtol = 1e-5 asks more than bfloat16 resolves: refused, naming rtol
    with pytest.raises(ValueError, match="rtol=1e-05 is finer than a bfloat16 state can resolve"):
        ode_sample(VPSDE(), score, (3, 2), method="dopri5")


def test_ncsn_annealed_langevin_follows_the_same_rule() -> None:
    sigmas = torch.tensor([1.0, 0.1])
    net = torch.nn.Linear(2, 2).double()
    model = lambda x, labels: net(x)  # noqa: E731 (a function: no parameters to read a dtype from)
    x_init = torch.rand(3, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    out = ncsn.annealed_langevin_sample(model, sigmas, x_init=x_init, steps_each=2, generator=[1, 2, 3])
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64


def test_state_dtype_order_and_refusal() -> None:
    module = TinyEps().double()
    assert state_dtype(None) == torch.float32
    assert state_dtype(None, None, module) == torch.float64
    assert state_dtype(None, torch.zeros(1, dtype=torch.float16)) == torch.float16
    assert state_dtype(torch.bfloat16, torch.zeros(1, dtype=torch.float16), module) == torch.bfloat16
    assert state_dtype(None, torch.zeros(1, dtype=torch.int64), module) == torch.float64  # not a state's dtype
    for bad in (torch.int32, "float32", float):
        with pytest.raises(TypeError, match=r"dtype must be a floating-point torch\.dtype"):
            state_dtype(bad)
    with pytest.raises(TypeError, match=r"dtype must be a floating-point torch\.dtype"):
        sample(VPSDE(), MIXTURE.score(VPSDE()), (2, 2), steps=3, dtype=torch.int64)


def test_a_state_the_network_cannot_take_is_refused_naming_dtype() -> None:
    """A float64 x_T for a float32 network crashed inside the network ("mat1 and mat2 must have the same dtype")."""
    score = ddpm.EpsilonScore(TinyEps(), VPSDE())
    x_T = torch.zeros(3, 2, dtype=torch.float64)
    with pytest.raises(
        TypeError, match=r"x_T is torch\.float64 but the network's parameters are torch\.float32: pass dtype="
    ):
        sample(VPSDE(), score, x_T=x_T, method="ancestral", steps=4)
    out = sample(VPSDE(), score, x_T=x_T, method="ancestral", steps=4, dtype=torch.float32)  # as asked
    assert out.dtype == torch.float32


def test_guidance_wrappers_pass_the_network_s_dtype_through() -> None:
    """A bfloat16 network behind classifier-free guidance gets a bfloat16 state (the wrapper is not a module)."""
    from sdekit import ClassifierFreeGuidance

    class Conditional(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(2, 2)

        def forward(self, x: torch.Tensor, labels: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return self.linear(x) * 0.1 + y[:, None].to(x.dtype) * 0.01

    score = ddpm.EpsilonScore(Conditional().to(torch.bfloat16), VPSDE(), model_kwargs={"y": torch.ones(3)})
    guided = ClassifierFreeGuidance(score, {"y": torch.zeros(3)}, scale=2.0)
    x = sample(VPSDE(), guided, (3, 2), method="ancestral", steps=4, generator=torch.Generator().manual_seed(0))
    assert x.dtype == torch.bfloat16 and torch.isfinite(x.float()).all()
