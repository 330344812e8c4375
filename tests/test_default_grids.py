"""Every fixed-grid method's default grid: the log-SNR grid on a LinearSDE, uniform in t otherwise.

The choice was measured on the oracle suite (docs/suite.md, docs/solvers.md "Default grids");
these tests pin that the samplers use it when no grid is given, bit for bit, and that an SDE
without a Gaussian kernel (no log-SNR) still gets the uniform grid rather than an error.
"""

from __future__ import annotations

import pytest
import torch

from sdekit import VESDE, VPSDE, SubVPSDE, linear_betas, ode_sample, pc_sample, sample
from sdekit.sampling import ode_methods, sde_methods
from sdekit.solvers import PREDICTORS
from sdekit.solvers.catalog import ode_method, sde_method
from sdekit.solvers.grid_stepper import GridStepper

from conftest import GenericVP, gaussian_score

LINEAR = {"vp": VPSDE(), "subvp": SubVPSDE(), "ve": VESDE(0.01, 5.0), "ddpm": VPSDE.from_betas(linear_betas(100))}
FIXED_SDE = [m for m in sde_methods() if isinstance(sde_method(m, {}), GridStepper)]
FIXED_ODE = [m for m in ode_methods() if isinstance(ode_method(m, {}), GridStepper)]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_every_fixed_grid_method_defaults_to_log_snr_on_a_linear_sde_and_uniform_otherwise():
    methods = [sde_method(m, {}) for m in FIXED_SDE] + [ode_method(m, {}) for m in FIXED_ODE]
    assert len(methods) == len(FIXED_SDE) + len(FIXED_ODE) >= 11
    for method in methods:
        assert method.grid_for(VPSDE()) == "log_snr", method
        assert method.grid_for(GenericVP()) == "uniform", method


@pytest.mark.parametrize("sde_name", list(LINEAR))
@pytest.mark.parametrize(
    ("function", "method"), [(sample, m) for m in FIXED_SDE] + [(ode_sample, m) for m in FIXED_ODE]
)
def test_no_grid_means_the_log_snr_grid(function, method, sde_name):
    sde = LINEAR[sde_name]
    score = gaussian_score(sde)
    x_T = sde.prior_sample((5, 2), generator=_gen(0), dtype=torch.float64)
    default = function(sde, score, x_T=x_T, method=method, steps=4, generator=_gen(1))
    log_snr = function(sde, score, x_T=x_T, method=method, steps=4, grid="log_snr", generator=_gen(1))
    uniform = function(sde, score, x_T=x_T, method=method, steps=4, grid="uniform", generator=_gen(1))
    assert torch.equal(default, log_snr)
    if sde_name == "ve":  # λ = −log σ is linear in t: VE's log-SNR grid is uniform in t (geometric in σ)
        torch.testing.assert_close(default, uniform, rtol=1e-12, atol=1e-12)
    else:
        assert not torch.allclose(default, uniform)


def test_pc_sample_uses_the_log_snr_grid_and_a_generic_sde_the_uniform_one():
    sde, generic = VPSDE(), GenericVP()
    x_T = sde.prior_sample((5, 2), generator=_gen(0), dtype=torch.float64)
    kwargs = {"x_T": x_T, "predictor": "reverse_diffusion", "corrector": "langevin", "steps": 4}
    default = pc_sample(sde, gaussian_score(sde), generator=_gen(1), **kwargs)
    assert torch.equal(default, pc_sample(sde, gaussian_score(sde), generator=_gen(1), grid="log_snr", **kwargs))
    plain = {"x_T": x_T, "method": "euler_maruyama", "steps": 4, "denoise": False}
    generic_default = sample(generic, gaussian_score(generic), generator=_gen(1), **plain)
    generic_uniform = sample(generic, gaussian_score(generic), generator=_gen(1), grid="uniform", **plain)
    assert torch.equal(generic_default, generic_uniform)
    assert PREDICTORS.get("ancestral").default_grid == "log_snr"


def test_an_sde_whose_log_snr_is_infinite_at_T_falls_back_to_the_uniform_grid(monkeypatch):
    sde = VPSDE()
    pure_noise = sde.log_snr

    def log_snr(t):
        lam = pure_noise(t)
        return torch.where(t >= sde.T, torch.full_like(lam, -torch.inf), lam)  # α(T) = 0

    monkeypatch.setattr(sde, "log_snr", log_snr)
    assert sde_method("ancestral", {}).grid_for(sde) == "uniform"
    assert ode_method("heun", {}).grid_for(VPSDE()) == "log_snr"
