"""sdekit.best_method: a method within the budget, that spends what it says, for the SDE given."""

from __future__ import annotations

import pytest
import torch

from sdekit import VPSDE, Choice, best_method
from sdekit.sampling import ode_methods, sde_methods

from conftest import GenericVP, gaussian_score


@pytest.mark.parametrize("stochastic", [False, True])
@pytest.mark.parametrize("sde", [None, VPSDE(), GenericVP()], ids=["none", "vp", "generic"])
def test_every_budget_gets_a_registered_method_within_it(stochastic, sde):
    for nfe in range(2, 1001):
        choice = best_method(nfe, stochastic=stochastic, sde=sde)
        assert isinstance(choice, Choice)
        assert choice.nfe <= nfe and choice.steps >= 1
        names = sde_methods() if choice.function == "sample" else ode_methods()
        assert choice.method in names
        assert (choice.function == "sample") == stochastic


@pytest.mark.parametrize(
    ("nfe", "stochastic", "generic", "expected"),
    [
        (2, False, False, ("ode_sample", "dpmpp_2m", 1, 2)),
        (12, False, False, ("ode_sample", "dpmpp_2m", 11, 12)),
        (29, False, False, ("ode_sample", "dpmpp_2m", 28, 29)),
        (30, False, False, ("ode_sample", "dpmpp_3m", 29, 30)),
        (50, True, False, ("sample", "dpmpp_2m_sde", 49, 50)),
        (1000, True, False, ("sample", "dpmpp_2m_sde", 999, 1000)),
        (12, False, True, ("ode_sample", "heun", 6, 12)),
        (3, False, True, ("ode_sample", "heun", 1, 2)),
        (50, True, True, ("sample", "euler_maruyama", 50, 50)),
    ],
)
def test_the_rules(nfe, stochastic, generic, expected):
    choice = best_method(nfe, stochastic=stochastic, sde=GenericVP() if generic else VPSDE())
    assert (choice.function, choice.method, choice.steps, choice.nfe) == expected
    assert choice.denoise is (not generic)  # an SDE without a kernel has no Tweedie step
    assert choice.reason


def test_deterministic_by_default():
    assert best_method(12) == best_method(12, stochastic=False, sde=None)
    assert best_method(12).function == "ode_sample"


@pytest.mark.parametrize(("nfe", "stochastic", "generic"), [(12, False, False), (7, True, False), (9, False, True)])
def test_a_choice_spends_exactly_its_nfe(nfe, stochastic, generic):
    sde = GenericVP() if generic else VPSDE()
    choice = best_method(nfe, stochastic=stochastic, sde=sde)
    x, info = choice(sde, gaussian_score(sde), (16, 2), generator=torch.Generator().manual_seed(0), return_info=True)
    assert info.nfe == choice.nfe
    assert choice.denoise is not generic  # a generic SDE has no Tweedie step
    assert torch.isfinite(x).all()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"nfe": 1}, ValueError, "nfe must be at least 2"),
        ({"nfe": 0}, ValueError, "^nfe "),
        ({"nfe": 2.5}, TypeError, "nfe"),
        ({"nfe": 10, "stochastic": "yes"}, TypeError, "stochastic"),
        ({"nfe": 10, "sde": "vp"}, TypeError, "sde must be an sdekit.SDE or None, got str"),
    ],
)
def test_bad_input_names_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        best_method(**kwargs)


def test_a_choice_refuses_to_be_given_another_method_or_step_count():
    choice = best_method(12)
    with pytest.raises(TypeError, match=r"^steps: a Choice fixes its method and steps"):
        choice(VPSDE(), gaussian_score(VPSDE()), (4, 2), steps=3)
    with pytest.raises(TypeError, match=r"^method, steps: a Choice fixes"):
        choice(VPSDE(), gaussian_score(VPSDE()), (4, 2), method="heun", steps=3)
