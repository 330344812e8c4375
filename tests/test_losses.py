"""Training losses against their closed-form minimum on Gaussian data."""

from __future__ import annotations

import math

import pytest
import torch

from sdekit.losses import ddpm_loss, dsm_loss, likelihood_time_sampler, smld_loss
from sdekit.sde import VESDE, VPSDE, SubVPSDE, linear_betas
from sdekit.testing import Gaussian

D, C = 4, 0.5  # N(μ, C·I) data in D dimensions
DATA = Gaussian(torch.full((D,), 0.7), C * torch.eye(D))
EPS = 1e-5


def irreducible(sde, weighting: str) -> float:
    """E_t λ(t)·E‖s(x_t) − ∇log p(x_t|x_0)‖²/D = E_t λ(t)(1/σ² − 1/(α²C + σ²)), t ~ U(eps, T).

    By the trapezoidal rule on a log-spaced grid (the likelihood-weighted integrand is ~1/t near 0).
    """
    t = torch.logspace(math.log10(EPS), 0, 200_001, dtype=torch.float64)
    alpha, sigma = sde.mean_coeff(t), sde.std(t)
    lam = sigma**2 if weighting == "std2" else sde.diffusion_squared(t)
    integrand = lam * (1 / sigma**2 - 1 / (alpha**2 * C + sigma**2))
    return float(torch.trapezoid(integrand, t) / (1 - EPS))


CASES = [
    (VPSDE(), "std2", False),
    (SubVPSDE(), "std2", False),
    (VESDE(), "std2", False),
    (VPSDE(), "likelihood", True),
    (SubVPSDE(), "likelihood", True),
    (VESDE(), "likelihood", False),
]


@pytest.mark.parametrize(("sde", "weighting", "importance"), CASES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_dsm_at_exact_score_is_the_irreducible_term(sde, weighting, importance):
    x0 = DATA.sample(100_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    score = DATA.score(sde)
    kwargs = dict(weighting=weighting, importance_sampling=importance, per_sample=True, eps=EPS)
    exact = dsm_loss(sde, score, x0, generator=torch.Generator().manual_seed(1), **kwargs)
    perturbed = dsm_loss(sde, lambda x, t: 1.05 * score(x, t), x0, generator=torch.Generator().manual_seed(1), **kwargs)
    expected = irreducible(sde, weighting)
    se = float(exact.std()) / math.sqrt(exact.numel())
    print(f"\n{type(sde).__name__} {weighting}: {float(exact.mean()):.5f} ± {se:.5f}, analytic {expected:.5f}")
    assert abs(float(exact.mean()) - expected) <= 4 * se
    excess = perturbed - exact  # same t and z: a paired comparison
    assert float(excess.mean()) > 4 * float(excess.std()) / math.sqrt(excess.numel())


def test_importance_sampling_reduces_variance_without_bias():
    sde, x0 = VPSDE(), DATA.sample(50_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    kwargs = dict(weighting="likelihood", per_sample=True, generator=torch.Generator().manual_seed(1))
    plain = dsm_loss(sde, DATA.score(sde), x0, **kwargs)
    sampled = dsm_loss(sde, DATA.score(sde), x0, importance_sampling=True, **kwargs)
    assert float(sampled.std()) < 0.2 * float(plain.std())
    t, weight = likelihood_time_sampler(sde, EPS).sample(100_000, generator=torch.Generator().manual_seed(2))
    assert float(t.min()) >= EPS and float(t.max()) <= 1.0
    # q ∝ w = g²/σ², so the weight w/(q·(T − eps)) is the constant ∫w dt/(T − eps), up to the tabulation
    assert float(weight.max() - weight.min()) < 1e-2 * float(weight.mean())


def test_reduce_sum_is_dimension_times_mean():
    sde, x0 = VPSDE(), DATA.sample(64, generator=torch.Generator().manual_seed(0))
    mean = dsm_loss(sde, DATA.score(sde), x0, generator=torch.Generator().manual_seed(1))
    total = dsm_loss(sde, DATA.score(sde), x0, reduce="sum", generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(total, D * mean)


def test_ddpm_loss_at_exact_epsilon():
    betas = linear_betas(100)
    sde = VPSDE.from_betas(betas)
    score = DATA.score(sde)

    def eps_model(x, i):
        t = ((i + 1).double() / 100).to(x.dtype)
        return -sde.std(t.double()).to(x.dtype)[:, None] * score(x, t)

    x0 = DATA.sample(100_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    losses = ddpm_loss(eps_model, betas, x0, generator=torch.Generator().manual_seed(1), per_sample=True)
    abar = sde.alphas_cumprod
    expected = float((abar * C / (abar * C + 1 - abar)).mean())
    assert abs(float(losses.mean()) - expected) <= 4 * float(losses.std()) / math.sqrt(losses.numel())
    same = ddpm_loss(eps_model, sde, x0[:100], generator=torch.Generator().manual_seed(3))
    again = ddpm_loss(eps_model, betas, x0[:100], generator=torch.Generator().manual_seed(3))
    assert torch.equal(same, again)


def test_smld_loss_at_exact_score():
    sigmas = torch.logspace(1, -2, 10, dtype=torch.float64)
    x0 = DATA.sample(100_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mu = DATA.means[0]

    def score_model(x, i):
        return -(x - mu) / (C + sigmas[i] ** 2)[:, None]

    losses = smld_loss(score_model, sigmas, x0, generator=torch.Generator().manual_seed(1), per_sample=True)
    expected = float((C / (C + sigmas**2)).mean())
    assert abs(float(losses.mean()) - expected) <= 4 * float(losses.std()) / math.sqrt(losses.numel())


def test_dsm_loss_backpropagates():
    sde = VPSDE()
    net = torch.nn.Linear(D, D)
    loss = dsm_loss(sde, lambda x, t: net(x), DATA.sample(8, generator=torch.Generator().manual_seed(0)))
    loss.backward()
    assert loss.ndim == 0 and net.weight.grad is not None


# --- bad input ---------------------------------------------------------------------------------------------------


def test_errors_name_the_argument_and_valid_values():
    sde, score, x0 = VPSDE(), DATA.score(VPSDE()), DATA.sample(4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="unknown weighting 'sigma'; valid: likelihood, std2"):
        dsm_loss(sde, score, x0, weighting="sigma")
    with pytest.raises(ValueError, match="unknown reduce 'max'; valid: mean, sum"):
        dsm_loss(sde, score, x0, reduce="max")
    with pytest.raises(ValueError, match="unknown reduce 'none'; valid: mean, sum"):
        ddpm_loss(lambda x, i: x, linear_betas(10), x0, reduce="none")
    with pytest.raises(ValueError, match=r"eps must lie in the open interval \(0, 1\)"):
        dsm_loss(sde, score, x0, eps=0.0)
    with pytest.raises(ValueError, match="importance_sampling=True needs weighting='likelihood'"):
        dsm_loss(sde, score, x0, importance_sampling=True)
    bad = x0.clone()
    bad[0, 0] = float("inf")
    with pytest.raises(ValueError, match="x0 must be finite"):
        dsm_loss(sde, score, bad)
    with pytest.raises(ValueError, match="sigmas must be a non-empty 1-D sequence"):
        smld_loss(lambda x, i: x, [1.0, -0.5], x0)
    with pytest.raises(ValueError, match="shape"):
        dsm_loss(sde, score, torch.zeros(4))
