"""Exact tests for the gaps that mutation testing found in likelihood.py and losses.py (docs/mutation.md).

Each test pins a formula or a contract that a surviving mutant broke without any other
(non-slow) test noticing: the Gaussian Hutchinson probe, the solver options and info
fields of log_likelihood, the argument checks of bits_per_dim, uniform_dequantize and
log_likelihood, the seeded draws and dtypes of the loss perturbations, NoiseLevels'
checks, and the inverse-CDF sampler of likelihood-weighted times. All run on the CPU,
draw only from seeded generators and are fast.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sdekit.likelihood import bits_per_dim, log_likelihood, uniform_dequantize
from sdekit.losses import ContinuousTime, ImportanceTimes, NoiseLevels, dsm_loss, smld_loss
from sdekit.sde import VPSDE
from sdekit.solvers.info import SampleInfo
from sdekit.testing import Gaussian

from conftest import GenericVP

F64 = torch.float64


def _small():
    """A 3-D standard normal, the VP SDE and its exact score, four float32 samples."""
    data = Gaussian(torch.zeros(3))
    return VPSDE(), data.score(VPSDE()), data.sample(4, generator=torch.Generator().manual_seed(0))


# --- log_likelihood --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sde", [VPSDE(), GenericVP()], ids=["linear", "generic"])
def test_gaussian_probe_delta_logp_is_the_probe_quadratic_form_of_an_isotropic_jacobian(sde):
    """hutchinson_gaussian: εᵀJε with ε ~ N(0, I) drawn from ``generator`` in x's dtype, held fixed during the solve.

    For isotropic Gaussian data every Jacobian is a multiple of I. Generic SDEs differentiate
    the whole flow: ∇·F̃ = κ(t)·D is estimated by κ(t)·‖ε‖². Linear SDEs add the drift's
    D·f(t) in closed form and estimate only the score part: D·∫f + ‖ε‖²·(exact/D − ∫f),
    with ∫_eps^T f dt = log α(T) − log α(eps).
    """
    vp, dim, eps = VPSDE(), 4, 1e-5
    data = Gaussian(torch.zeros(dim), 0.5 * torch.eye(dim))
    score = data.score(vp)
    x = data.sample(8, generator=torch.Generator().manual_seed(0), dtype=F64)  # 32 numbers: float32 draws differ
    torch.manual_seed(123)  # the global RNG is not the probes' source
    seeded = torch.Generator().manual_seed(7)
    _, gaussian = log_likelihood(
        sde, score, x, divergence="hutchinson_gaussian", eps=eps, generator=seeded, return_info=True
    )
    _, exact = log_likelihood(sde, score, x, divergence="exact", eps=eps, return_info=True)
    probe = torch.randn(x.shape, generator=torch.Generator().manual_seed(7), dtype=F64)
    norm2 = probe.square().sum(1)
    assert float((norm2 - dim).abs().min()) > 0.1  # the estimate differs from the exact trace for every sample
    if isinstance(sde, GenericVP):
        expected = exact.delta_logp * norm2 / dim
    else:
        drift = math.log(
            float(vp.mean_coeff(torch.tensor(vp.T, dtype=F64)) / vp.mean_coeff(torch.tensor(eps, dtype=F64)))
        )
        expected = dim * drift + norm2 * (exact.delta_logp / dim - drift)
    assert gaussian.delta_logp.dtype == F64
    torch.testing.assert_close(gaussian.delta_logp, expected, rtol=1e-4, atol=0)
    torch.testing.assert_close(gaussian.z, exact.z, rtol=0, atol=1e-4)


def test_solver_options_reach_the_solver():
    """method, rtol, atol and backend are handed to solve_ivp_batched: its checks reject bad values."""
    sde, score, x = _small()
    with pytest.raises(ValueError, match=r"^unknown method 'euler'; valid: bosh3, dopri5"):
        log_likelihood(sde, score, x, method="euler")
    with pytest.raises(ValueError, match=r"^rtol must be a finite number > 0, got 0\.0$"):
        log_likelihood(sde, score, x, rtol=0.0)
    with pytest.raises(ValueError, match=r"^atol must be a finite number > 0, got 0\.0$"):
        log_likelihood(sde, score, x, atol=0.0)
    with pytest.raises(ValueError, match=r"^unknown backend 'nope'"):
        log_likelihood(sde, score, x, backend="nope")


def test_likelihood_info_fields_are_the_solvers():
    """LikelihoodInfo: steps / rejected are the solver's, logp = prior_logp(z) + delta_logp."""
    sde, score, x = _small()
    logp, info = log_likelihood(sde, score, x, generator=torch.Generator().manual_seed(1), return_info=True)
    assert isinstance(info.stats, SampleInfo)
    assert isinstance(info.steps, int) and info.steps == info.stats.steps > 0
    assert isinstance(info.rejected, int) and info.rejected == info.stats.rejected
    assert torch.equal(info.prior_logp, sde.prior_logp(info.z))
    assert torch.equal(logp, info.prior_logp + info.delta_logp)


def test_x_with_an_empty_batch_or_event_is_a_value_error():
    """_check_inputs: B >= 1 and a non-empty event, checked before anything indexes x."""
    sde, score, _ = _small()
    with pytest.raises(ValueError, match=r"^x must have shape \(B, \*event_shape\) with B >= 1, got \(0, 3\)$"):
        log_likelihood(sde, score, torch.zeros(0, 3))
    with pytest.raises(ValueError, match=r"^x must have shape \(B, \*event_shape\) with B >= 1, got \(4, 0\)$"):
        log_likelihood(sde, score, torch.zeros(4, 0))


def test_one_dimensional_events():
    """Events of one number, x of shape (B, 1), are valid: the exact flow-map target holds to solver tolerance."""
    sde, eps = VPSDE(), 1e-5
    data = Gaussian(torch.zeros(1), 0.5 * torch.eye(1))
    x = data.sample(16, generator=torch.Generator().manual_seed(0), dtype=F64)
    assert x.shape == (16, 1)
    logp = log_likelihood(sde, data.score(sde), x, divergence="exact", eps=eps)
    z = data.flow_map(x, sde, eps, sde.T)
    target = data.log_prob(x, sde=sde, t=eps) - data.log_prob(z, sde=sde, t=sde.T) + sde.prior_logp(z)
    assert float((logp - target).abs().max()) < 2e-4


def test_only_the_first_score_call_is_explained():
    """_explained turns a failure of the first score call into a shape ValueError; later failures pass through."""
    data = Gaussian(torch.zeros(3))
    sde, exact = VPSDE(), data.score(VPSDE())
    calls = []

    def score(x, t):
        calls.append(x.shape)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return exact(x, t)

    x = data.sample(4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(RuntimeError, match=r"^boom$"):
        log_likelihood(sde, score, x, generator=torch.Generator().manual_seed(1))
    assert len(calls) == 2


# --- bits_per_dim and uniform_dequantize -----------------------------------------------------------------------------


def test_bits_per_dim_event_shape_accepts_ones_and_rejects_non_ints():
    """event_shape: positive ints, 1 included (bpd = −log p/(D ln 2) + 7 at logp = 0); bools and floats rejected."""
    zero = torch.zeros(2)
    assert torch.equal(bits_per_dim(zero, 1), torch.full((2,), 7.0))
    assert torch.equal(bits_per_dim(zero, (1, 4)), torch.full((2,), 7.0))
    for bad in (True, (2.5,), (2.0, 3)):  # a bare float is a TypeError: not a tuple
        with pytest.raises(ValueError, match=r"^event_shape must be a positive int or a tuple of positive ints"):
            bits_per_dim(zero, bad)


@pytest.mark.parametrize("k", [256, -1])
def test_uniform_dequantize_rejects_levels_outside_the_range(k):
    """On the grid low + k·data_range/255 but with k outside 0 … 255: not 8-bit data."""
    x = torch.tensor([[-1.0 + k * 2 / 255]], dtype=F64)
    with pytest.raises(ValueError, match="8-bit levels"):
        uniform_dequantize(x)


def test_uniform_dequantize_rejects_integer_and_non_tensor_x():
    """x must be a floating-point tensor, even when its values lie on the grid."""
    with pytest.raises(TypeError, match=r"^x must be a floating-point torch\.Tensor, got Tensor$"):
        uniform_dequantize(torch.zeros(2, 3, dtype=torch.long), low=0.0, data_range=255.0)
    with pytest.raises(TypeError, match=r"^x must be a floating-point torch\.Tensor, got list$"):
        uniform_dequantize([[0.0]])


def test_uniform_dequantize_is_one_float64_draw_returned_in_x_dtype():
    """y = low + (k + u)·data_range/2^bits, u ~ U[0, 1) drawn in float64 from ``generator``, returned in x's dtype."""
    k = torch.randint(0, 256, (4, 3), generator=torch.Generator().manual_seed(0))
    x = (-1 + k.double() * 2 / 255).float()
    y = uniform_dequantize(x, generator=torch.Generator().manual_seed(1))
    u = torch.rand(x.shape, generator=torch.Generator().manual_seed(1), dtype=F64)
    assert y.dtype == torch.float32
    assert torch.equal(y, (-1 + (k + u) * (2 / 256)).float())


# --- losses: ContinuousTime and dsm_loss -----------------------------------------------------------------------------


def test_continuous_time_defaults_are_the_documented_ones():
    """ContinuousTime(sde): eps = 1e-5, weighting 'std2' (weight_over_std2 None), no importance sampling."""
    ct = ContinuousTime(VPSDE())
    assert ct.eps == 1e-5 and ct.weighting == "std2" and ct.importance_sampling is False
    assert ct.perturb(torch.zeros(4, 2), torch.Generator().manual_seed(0)).weight_over_std2 is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_continuous_time_draws_t_then_noise_from_the_generator(dtype):
    """t = eps + (T − eps)·u, u drawn first in float64, label t in x's dtype; then z ~ N(0, I) in x's dtype."""
    x0 = torch.zeros(6, 3, dtype=dtype)
    p = ContinuousTime(VPSDE(), eps=0.5).perturb(x0, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    t = 0.5 + 0.5 * torch.rand(6, generator=g, dtype=F64)
    z = torch.randn(x0.shape, generator=g, dtype=dtype)
    assert p.label.dtype == dtype and torch.equal(p.label, t.to(dtype))
    assert bool((p.label <= 1).all())
    assert p.noise.dtype == dtype and torch.equal(p.noise, z)


def test_dsm_loss_keeps_x_dtype_under_likelihood_weighting():
    """weighting='likelihood': the float64 weight λ/σ² is cast to x's dtype before it multiplies the losses."""
    x0 = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    kwargs = {"weighting": "likelihood", "generator": torch.Generator().manual_seed(1)}
    assert dsm_loss(VPSDE(), lambda x, t: -x, x0, **kwargs).dtype == torch.float32
    kwargs["generator"] = torch.Generator().manual_seed(1)
    per_sample = dsm_loss(VPSDE(), lambda x, t: -x, x0, per_sample=True, **kwargs)
    assert per_sample.dtype == torch.float32 and per_sample.shape == (5,)


# --- losses: NoiseLevels and smld_loss -------------------------------------------------------------------------------


def test_noise_levels_validates_and_keeps_float64_sigmas():
    """sigmas: a non-empty 1-D sequence of finite numbers > 0, kept in float64 (not rounded through float32)."""
    levels = NoiseLevels([0.1, 0.3]).sigmas
    assert levels.dtype == F64 and torch.equal(levels, torch.tensor([0.1, 0.3], dtype=F64))
    for bad in ([], [[0.1, 0.2]], [0.0, 1.0]):
        with pytest.raises(ValueError, match=r"^sigmas must be a non-empty 1-D sequence of finite numbers > 0"):
            NoiseLevels(bad)


def test_noise_levels_sigma_label_is_sigma_in_x_dtype():
    """label='sigma': the network gets σ_i (i drawn first from the generator) in x's dtype."""
    nl = NoiseLevels([0.5, 2.0], label="sigma")  # built here, not at import: mutants are switched on per test
    x0 = torch.zeros(8, 3)
    p = nl.perturb(x0, torch.Generator().manual_seed(0))
    i = torch.randint(0, 2, (8,), generator=torch.Generator().manual_seed(0))
    assert p.label.dtype == torch.float32
    assert torch.equal(p.label, torch.tensor([0.5, 2.0])[i])


def test_noise_levels_repr():
    """repr names the number of levels and the largest and smallest σ."""
    assert repr(NoiseLevels([1.0, 0.01])) == "NoiseLevels(2 levels 1 … 0.01)"


def test_smld_loss_is_zero_at_the_conditional_score():
    """smld_loss residual σ·s + z vanishes at s = −(x − x₀)/σ², the score of the perturbation kernel."""
    sigmas = torch.tensor([0.5, 2.0], dtype=F64)
    x0 = torch.randn(8, 3, generator=torch.Generator().manual_seed(2), dtype=F64)

    def model(x, i):
        return -(x - x0) / sigmas[i][:, None] ** 2

    losses = smld_loss(model, sigmas, x0, generator=torch.Generator().manual_seed(0), per_sample=True)
    assert losses.shape == (8,) and float(losses.max()) < 1e-24


# --- losses: ImportanceTimes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("eps", [1e-5, 0.5])
def test_importance_times_inverts_its_tabulated_cdf_with_exact_weights(eps):
    """t = exp(inverse of the piecewise-linear CDF in log t); weight = w(t)/(q(t)(T − eps)), q the tabulated density.

    One float64 uniform per draw, scaled by the total mass cdf[-1] = ∫_eps^T g²/σ² dt, which
    for VP is log(e^{B(T)} − 1) − log(e^{B(eps)} − 1), B = ∫β.
    """
    sde, n = VPSDE(), 100_000
    sampler = ImportanceTimes(sde, eps)  # not the lru-cached likelihood_time_sampler
    cdf, log_t = sampler.cdf, sampler.log_t
    assert len(cdf) == len(log_t)
    u = torch.rand(n, generator=torch.Generator().manual_seed(3), dtype=F64) * cdf[-1]
    t, weight = sampler.sample(n, generator=torch.Generator().manual_seed(3))
    assert t.dtype == F64 and weight.dtype == F64
    inverse = torch.from_numpy(np.interp(u.numpy(), cdf.numpy(), log_t.numpy()))
    torch.testing.assert_close(t.log(), inverse, rtol=0, atol=1e-12)
    j = torch.searchsorted(cdf, u, right=True).clamp(1, len(cdf) - 1)
    assert int((j == 1).sum()) > 0  # some draws fall in the first cell
    density = (cdf[j] - cdf[j - 1]) / (log_t[j] - log_t[j - 1]) / t / cdf[-1]
    torch.testing.assert_close(weight, sampler._w(t) / (density * (sde.T - eps)), rtol=1e-12, atol=0)
    b = -2 * sde.mean_coeff(torch.tensor([sde.T, eps], dtype=F64)).log()  # B(t) = ∫_0^t β
    total = math.log(math.expm1(float(b[0]))) - math.log(math.expm1(float(b[1])))
    assert math.isclose(float(cdf[-1]), total, rel_tol=1e-5)
