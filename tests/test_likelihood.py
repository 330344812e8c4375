"""log_likelihood through the probability-flow ODE, bits/dim and dequantisation, against exact densities."""

from __future__ import annotations

import math

import pytest
import torch

from sdekit.likelihood import DIVERGENCES, bits_per_dim, log_likelihood, uniform_dequantize
from sdekit.sde import VESDE, VPSDE, SubVPSDE
from sdekit.testing import Gaussian

from conftest import GenericVP

LN2 = math.log(2)


@pytest.fixture(scope="module")
def mixture_problem(oracle):
    mixture = oracle
    sde = VPSDE()
    x = mixture.sample(256, generator=torch.Generator().manual_seed(1))
    return mixture, sde, x, mixture.log_prob(x).double()


def _bpd_error(logp: torch.Tensor, exact: torch.Tensor, dim: int) -> torch.Tensor:
    """Signed error of −log p in bits per dimension (positive: the estimate is too low a density)."""
    return (exact - logp.double()) / (dim * LN2)


def test_exact_divergence_matches_mixture_log_density(mixture_problem):
    mixture, sde, x, exact = mixture_problem
    logp, info = log_likelihood(sde, mixture.score(sde), x, divergence="exact", return_info=True)
    error = _bpd_error(logp, exact, 16)
    print(
        f"\nexact divergence: mean |error| {error.abs().mean():.2e} bits/dim, "
        f"max {error.abs().max():.2e}, NFE {info.nfe}"
    )
    assert float(error.abs().mean()) <= 0.005
    assert float(error.abs().max()) <= 0.01
    assert info.z.shape == x.shape and info.nfe > 0


@pytest.mark.parametrize("divergence", ["hutchinson_rademacher", "hutchinson_gaussian"])
def test_hutchinson_is_unbiased_over_256_points(mixture_problem, divergence):
    mixture, sde, x, exact = mixture_problem
    logp = log_likelihood(sde, mixture.score(sde), x, divergence=divergence, generator=torch.Generator().manual_seed(2))
    error = _bpd_error(logp, exact, 16)
    standard_error = float(error.std()) / math.sqrt(error.numel())
    print(
        f"\n{divergence}: mean error {error.mean():+.4f} ± {standard_error:.4f} bits/dim (se), "
        f"per-point sd {error.std():.4f}, mean |error| {error.abs().mean():.4f}"
    )
    assert abs(float(error.mean())) <= 3 * standard_error


def test_eps_mismatch_is_negligible_for_vp(mixture_problem):
    mixture, sde, x, exact = mixture_problem
    at_eps = mixture.log_prob(x, sde=sde, t=1e-5).double()
    assert float(_bpd_error(at_eps, exact, 16).abs().max()) < 1e-4


@pytest.mark.parametrize("sde", [VPSDE(), SubVPSDE(), VESDE()], ids=["vp", "subvp", "ve"])
@pytest.mark.parametrize("divergence", ["exact", "hutchinson_rademacher"])
def test_gaussian_log_likelihood_is_exact_to_solver_tolerance(sde, divergence):
    """For N(μ, Σ) the flow map is known: log p_eps(x) − log p_T(z) + prior(z) is what the ODE must return."""
    generator = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64, generator=generator))[0]
    covariance = basis @ torch.diag(torch.tensor([0.3, 0.7, 1.2, 2.0], dtype=torch.float64)) @ basis.T
    data = Gaussian(torch.tensor([0.5, -1.0, 0.0, 1.5]), covariance)
    x = data.sample(64, generator=generator, dtype=torch.float64)
    logp, info = log_likelihood(
        sde, data.score(sde), x, divergence=divergence, eps=1e-5, generator=generator, return_info=True
    )
    z = data.flow_map(x, sde, 1e-5, sde.T)
    target = data.log_prob(x, sde=sde, t=1e-5) - data.log_prob(z, sde=sde, t=sde.T) + sde.prior_logp(z)
    tolerance = 2e-4 if divergence == "exact" else 2.0  # Rademacher: unbiased, not exact, for a rotated Σ
    assert float((info.z - z).abs().max()) < 1e-3
    assert float((logp - target).abs().max()) < tolerance
    if divergence != "exact":
        assert abs(float((logp - target).mean())) < 0.2


def test_rademacher_is_exact_for_isotropic_gaussian():
    """With a Jacobian proportional to I, εᵀJε = tr J for every ±1 probe."""
    sde, data = VPSDE(), Gaussian(torch.zeros(3), 0.5 * torch.eye(3))
    x = data.sample(32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = log_likelihood(sde, data.score(sde), x, divergence="exact")
    hutchinson = log_likelihood(sde, data.score(sde), x, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(hutchinson, exact, atol=1e-6, rtol=0)


@pytest.mark.parametrize("backend", ["scipy", "torchdiffeq"])
def test_backends_agree(backend):
    sde, data = VPSDE(), Gaussian(torch.tensor([1.0, -1.0]), torch.tensor([[1.0, 0.3], [0.3, 0.5]]))
    x = data.sample(16, generator=torch.Generator().manual_seed(0))
    native = log_likelihood(sde, data.score(sde), x, generator=torch.Generator().manual_seed(3))
    other = log_likelihood(sde, data.score(sde), x, generator=torch.Generator().manual_seed(3), backend=backend)
    torch.testing.assert_close(other, native, atol=2e-3, rtol=0)


def test_generic_sde_and_module_score_and_event_shapes():
    """A non-linear-SDE path (autograd through the whole drift), an nn.Module score, a (B, 1, 2, 2) event."""
    data = Gaussian(torch.zeros(4), 0.8 * torch.eye(4), event_shape=(1, 2, 2))
    exact_score = data.score(VPSDE())

    class Module(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))

        def forward(self, x, t):
            return self.scale * exact_score(x, t)

    x = data.sample(8, generator=torch.Generator().manual_seed(0))
    linear = log_likelihood(VPSDE(), Module(), x, divergence="exact")
    generic = log_likelihood(GenericVP(), Module(), x, divergence="exact")
    torch.testing.assert_close(generic, linear, atol=1e-3, rtol=0)
    torch.testing.assert_close(linear.double(), data.log_prob(x).double(), atol=0.02, rtol=0)


def test_hutchinson_reproducible_with_generator():
    sde, data = VESDE(), Gaussian(torch.zeros(3), torch.tensor([[1.0, 0.5, 0], [0.5, 1.0, 0], [0, 0, 0.2]]))
    x = data.sample(8, generator=torch.Generator().manual_seed(0))
    first = log_likelihood(sde, data.score(sde), x, generator=torch.Generator().manual_seed(5))
    second = log_likelihood(sde, data.score(sde), x, generator=torch.Generator().manual_seed(5))
    assert torch.equal(first, second)


# --- bad input ---------------------------------------------------------------------------------------------------


@pytest.fixture()
def small():
    data = Gaussian(torch.zeros(3))
    return VPSDE(), data.score(VPSDE()), data.sample(4, generator=torch.Generator().manual_seed(0))


def test_wrong_event_shape_is_explained(small):
    sde, score, _ = small
    with pytest.raises(ValueError, match=r"score\(x, t\) failed on x of shape \(4, 5\)"):
        log_likelihood(sde, score, torch.zeros(4, 5))


def test_non_finite_x_is_rejected(small):
    sde, score, x = small
    x = x.clone()
    x[2, 1] = float("nan")
    with pytest.raises(ValueError, match="x must be finite; sample 2"):
        log_likelihood(sde, score, x)


def test_unknown_divergence_lists_valid_ones(small):
    sde, score, x = small
    with pytest.raises(ValueError, match="unknown divergence 'hutchinson'; valid: exact, hutchinson_gaussian"):
        log_likelihood(sde, score, x, divergence="hutchinson")
    assert set(DIVERGENCES) == {"exact", "hutchinson_gaussian", "hutchinson_rademacher"}


@pytest.mark.parametrize("eps", [0.0, -1e-3, 1.0, 2.0])
def test_eps_out_of_range(small, eps):
    sde, score, x = small
    with pytest.raises(ValueError, match=r"eps must lie in the open interval \(0, 1\)"):
        log_likelihood(sde, score, x, eps=eps)


def test_x_must_be_batched_tensor(small):
    sde, score, _ = small
    with pytest.raises(ValueError, match="shape"):
        log_likelihood(sde, score, torch.zeros(3))
    with pytest.raises(TypeError, match="x must be a floating-point"):
        log_likelihood(sde, score, torch.zeros(4, 3, dtype=torch.long))


# --- bits per dimension, dequantisation --------------------------------------------------------------------------


def test_bits_per_dim_offsets():
    zero = torch.zeros(2)
    assert torch.allclose(bits_per_dim(zero, (3, 4, 4)), torch.full((2,), 7.0))
    assert torch.allclose(bits_per_dim(zero, 48, data_range=1.0), torch.full((2,), 8.0))
    assert torch.allclose(bits_per_dim(torch.tensor([-48 * LN2]), 48, bits=0, data_range=1.0), torch.ones(1))


def test_bits_per_dim_errors():
    with pytest.raises(ValueError, match="data_range must be a finite number > 0"):
        bits_per_dim(torch.zeros(1), 4, data_range=0.0)
    with pytest.raises(ValueError, match="bits must be an int >= 0"):
        bits_per_dim(torch.zeros(1), 4, bits=-1)
    with pytest.raises(ValueError, match="event_shape"):
        bits_per_dim(torch.zeros(1), (0, 3))


@pytest.mark.parametrize(("low", "data_range"), [(-1.0, 2.0), (0.0, 1.0)])
def test_uniform_dequantize_fills_each_bin(low, data_range):
    k = torch.randint(0, 256, (1000, 3), generator=torch.Generator().manual_seed(0))
    x = low + k.double() * data_range / 255
    y = uniform_dequantize(x, generator=torch.Generator().manual_seed(1), data_range=data_range, low=low)
    assert torch.equal(((y - low) / data_range * 256).floor().long(), k)
    again = uniform_dequantize(x, generator=torch.Generator().manual_seed(1), data_range=data_range, low=low)
    assert torch.equal(y, again)


def test_uniform_dequantize_rejects_off_grid_values():
    with pytest.raises(ValueError, match="8-bit levels"):
        uniform_dequantize(torch.tensor([[0.5, 0.1234567]]), data_range=1.0, low=0.0)
    with pytest.raises(ValueError, match="8-bit levels"):
        uniform_dequantize(torch.tensor([[0.0, 1.0]]))  # [0, 1] data with the [-1, 1] defaults: 0.0 is off grid
