"""Explicit, implicit and sliced score matching against the Gaussian-mixture oracle, and their exact formulas.

The statistical checks use common random numbers (one seeded sample set for every score) and
decide with z-scores of paired per-sample differences: at |z| ≤ 4 a correct implementation
fails with probability 6e-5 per check. The formula checks are exact (float64, 1e-12).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from sdekit import VESDE, VPSDE, ScoreError, dsm_loss, smld_loss
from sdekit.losses import ContinuousTime, NoiseLevels
from sdekit.score_matching import EXACT_TRACE_MAX_DIM, esm_loss, ism_loss, jacobian_quadratic, ssm_loss
from sdekit.testing import GaussianMixture

N = 16384
Z = 4.0  # two-sided z bound: false alarm 6e-5 per check on correct code
MIXTURE = GaussianMixture.random(dim=2, modes=8, generator=torch.Generator().manual_seed(0))
SIGMAS = torch.logspace(math.log10(8.0), math.log10(0.05), 12, dtype=torch.float64)
VE = VESDE(sigma_min=float(SIGMAS[-1]), sigma_max=float(SIGMAS[0]))
LEVEL_TIMES = (SIGMAS.log() - SIGMAS[-1].log()) / (SIGMAS[0].log() - SIGMAS[-1].log())


def g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def data() -> Tensor:
    return MIXTURE.sample(N, generator=g(1)).double()


# The data score and the scores of the perturbed densities, each called as the form calls it.
DATA_SCORE = MIXTURE.score(VPSDE())  # at t = 0 the VP kernel is the identity: the data's own score
VE_SCORE, VP_SCORE = MIXTURE.score(VE), MIXTURE.score(VPSDE())
FORMS = {
    "data": (None, lambda x: DATA_SCORE(x, 0.0)),
    "levels": (NoiseLevels(SIGMAS), lambda x, i: VE_SCORE(x, LEVEL_TIMES[i].to(x.dtype))),
    "levels-sigma": (NoiseLevels(SIGMAS, label="sigma"), lambda x, s: VE_SCORE(x, _ve_time(s))),
    "continuous": (ContinuousTime(VPSDE(), eps=1e-3), lambda x, t: VP_SCORE(x, t)),
}


def _ve_time(sigma: Tensor) -> Tensor:
    return ((sigma.double().log() - math.log(VE.sigma_min)) / math.log(VE.sigma_max / VE.sigma_min)).to(sigma.dtype)


def perturbed(true, kind: str):
    """A family of wrong scores around ``true`` (each decays no slower than the true score grows)."""
    if kind == "scaled":
        return lambda x, *label: 1.25 * true(x, *label)
    if kind == "linear":
        return lambda x, *label: true(x, *label) + 0.2 * (x - 1.0)
    return lambda x, *label: true(x, *label) + 0.5 * torch.tanh(x.flip(1))  # "tanh": a non-linear, mixing error


WRONG = ("scaled", "linear", "tanh")


def z_score(values: Tensor) -> float:
    return float(values.mean() / (values.std() / math.sqrt(values.numel())))


# --- the identities that justify the estimators ----------------------------------------------------------------------


@pytest.mark.parametrize("form", FORMS)
def test_ism_minus_esm_is_one_constant_for_every_score(form, data):
    noise, true = FORMS[form]

    def offset(score):  # per-sample ISM − ESM at the same perturbed points (common random numbers)
        ism = ism_loss(score, data, noise=noise, reduce="sum", per_sample=True, generator=g(2))
        esm = esm_loss(score, data, true, noise=noise, reduce="sum", per_sample=True, generator=g(2))
        return (ism - esm).detach()

    exact = offset(true)
    for kind in WRONG:
        assert abs(z_score(offset(perturbed(true, kind)) - exact)) <= Z, kind
    if noise is None:  # the constant itself: −½ E‖∇log p‖² = ½ E[Δ log p] (integration by parts again)
        half_laplacian = 0.5 * DATA_SCORE.divergence(data, 0.0)
        assert abs(z_score(exact - half_laplacian)) <= Z
        per_point = DATA_SCORE.divergence(data, 0.0) + 0.5 * DATA_SCORE(data, 0.0).square().sum(1)  # ESM = 0 here
        torch.testing.assert_close(exact, per_point, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("form", ["levels", "continuous"])
def test_weighted_ism_is_half_the_denoising_loss_plus_a_constant(form, data):
    """λ·ISM on perturbed data = ½ smld_loss / ½ dsm_loss (reduce="sum") + a constant: the same optimum."""
    noise, true = FORMS[form]

    def gap(score):
        ism = ism_loss(score, data, noise=noise, reduce="sum", per_sample=True, generator=g(3))
        if form == "levels":
            dsm = smld_loss(score, SIGMAS, data, reduce="sum", per_sample=True, generator=g(3))
        else:
            dsm = dsm_loss(VPSDE(), score, data, eps=1e-3, reduce="sum", per_sample=True, generator=g(3))
        return (0.5 * dsm - ism).detach()

    exact = gap(true)
    for kind in WRONG:
        assert abs(z_score(gap(perturbed(true, kind)) - exact)) <= Z, kind


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("loss", ["esm", "ism", "ssm", "ssm_vr", "ism_hutchinson"])
def test_the_exact_score_minimises_each_loss(form, loss, data):
    noise, true = FORMS[form]

    def value(score):  # per-sample losses at common random numbers (one seed for every score)
        common = {"noise": noise, "generator": g(4), "per_sample": True}
        if loss == "esm":
            return esm_loss(score, data, true, **common).detach()
        if loss == "ism":
            return ism_loss(score, data, **common).detach()
        if loss == "ism_hutchinson":
            return ism_loss(score, data, trace="hutchinson", n_projections=2, **common).detach()
        return ssm_loss(score, data, variance_reduced=loss == "ssm_vr", **common).detach()

    best = value(true)
    for kind in WRONG:  # larger, and by more than Z standard errors of the paired difference
        assert z_score(value(perturbed(true, kind)) - best) > Z, kind


@pytest.mark.parametrize("projection", ["gaussian", "rademacher"])
@pytest.mark.parametrize("variance_reduced", [False, True])
def test_sliced_loss_is_an_unbiased_estimate_of_ism(projection, variance_reduced, data):
    """At 8 fixed points, the mean of 4096 single-projection losses is ISM within Z standard errors."""
    points, repeats = data[:8], 4096
    score = perturbed(FORMS["data"][1], "tanh")  # a non-symmetric Jacobian: the general case
    sliced = ssm_loss(
        score, points.repeat(repeats, 1), projection=projection, variance_reduced=variance_reduced,
        reduce="sum", per_sample=True, generator=g(5),
    ).detach().view(repeats, len(points))  # fmt: skip
    exact = ism_loss(score, points, trace="exact", reduce="sum", per_sample=True).detach()
    z = (sliced.mean(0) - exact) / (sliced.std(0) / math.sqrt(repeats))
    assert z.abs().max() <= Z, z


# --- exact formulas: the estimators term by term -------------------------------------------------------------------

A = torch.tensor([[1.0, 2.0, -0.5], [0.3, -1.5, 0.7], [-2.0, 0.4, 0.9]], dtype=torch.float64)
B = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)


def linear_score(x: Tensor) -> Tensor:
    """s(x) = A x + b: ∇s = A, tr ∇s = tr A, vᵀ∇s v = vᵀAv exactly."""
    return x @ A.T + B


@pytest.fixture
def points() -> Tensor:
    return torch.randn(5, 3, generator=g(6), dtype=torch.float64)


def test_exact_trace_is_the_jacobian_trace(points):
    s = linear_score(points)
    expected = torch.trace(A) + 0.5 * s.square().sum(1)
    torch.testing.assert_close(
        ism_loss(linear_score, points, reduce="sum", per_sample=True), expected, rtol=1e-12, atol=0
    )
    x = MIXTURE.sample(64, generator=g(7)).double()  # the mixture's Laplacian, exact from the oracle
    ism = ism_loss(lambda y: DATA_SCORE(y, 0.0), x, trace="exact", reduce="sum", per_sample=True)
    expected = DATA_SCORE.divergence(x, 0.0) + 0.5 * DATA_SCORE(x, 0.0).square().sum(1)
    torch.testing.assert_close(ism, expected, rtol=1e-10, atol=1e-10)


def _projections(shape, kind: str, n: int, seed: int) -> list[Tensor]:
    generator = g(seed)
    if kind == "gaussian":
        return [torch.randn(shape, generator=generator, dtype=torch.float64) for _ in range(n)]
    return [(2 * torch.randint(0, 2, shape, generator=generator) - 1).double() for _ in range(n)]


@pytest.mark.parametrize("projection", ["gaussian", "rademacher"])
@pytest.mark.parametrize("n", [1, 3])
def test_sliced_loss_term_by_term(points, projection, n):
    """mean_v vᵀAv + ½(vᵀs)² (and + ½‖s‖² variance-reduced), with the v the generator draws."""
    s = linear_score(points)
    vs = _projections(points.shape, projection, n, seed=8)
    quad = sum(torch.einsum("bi,ij,bj->b", v, A, v) for v in vs) / n
    sliced = sum((v * s).sum(1).square() for v in vs) / n
    for reduced, expected in ((False, quad + 0.5 * sliced), (True, quad + 0.5 * s.square().sum(1))):
        got = ssm_loss(linear_score, points, n_projections=n, projection=projection, variance_reduced=reduced,
                       reduce="sum", per_sample=True, generator=g(8))  # fmt: skip
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    hutchinson = ism_loss(linear_score, points, trace="hutchinson", n_projections=n, projection=projection,
                          reduce="sum", per_sample=True, generator=g(8))  # fmt: skip
    torch.testing.assert_close(hutchinson, quad + 0.5 * s.square().sum(1), rtol=1e-12, atol=1e-12)


def test_auto_trace_switches_to_hutchinson_above_the_limit():
    dim = EXACT_TRACE_MAX_DIM + 1
    matrix = torch.diag(torch.arange(1.0, dim + 1, dtype=torch.float64))
    x = torch.randn(4, dim, generator=g(9), dtype=torch.float64)
    score = lambda y: y @ matrix  # noqa: E731 -- diagonal: Rademacher's vᵀAv is exactly tr A
    auto = ism_loss(score, x, reduce="sum", per_sample=True, generator=g(9))
    expected = torch.trace(matrix) + 0.5 * score(x).square().sum(1)
    torch.testing.assert_close(auto, expected, rtol=1e-12, atol=0)
    gaussian = ism_loss(score, x, projection="gaussian", reduce="sum", per_sample=True, generator=g(9))
    assert not torch.allclose(gaussian, expected)  # a random estimate: it was the Hutchinson path
    small = torch.randn(4, EXACT_TRACE_MAX_DIM, generator=g(9), dtype=torch.float64)
    exact = ism_loss(lambda y: 2 * y, small, projection="gaussian", reduce="sum", per_sample=True, generator=g(9))
    torch.testing.assert_close(exact, 2.0 * EXACT_TRACE_MAX_DIM + 2 * small.square().sum(1), rtol=1e-12, atol=0)


def test_weights_reduction_and_batch_mean(points):
    """λ = σ_i² at the drawn level, reduce="mean" divides by D, the default is the batch mean."""
    noise = NoiseLevels([0.5, 2.0])
    draw = g(10)
    level = torch.randint(0, 2, (5,), generator=draw)
    z = torch.randn(points.shape, generator=draw, dtype=torch.float64)
    sigma = torch.tensor([0.5, 2.0], dtype=torch.float64)[level]
    noisy = points + sigma[:, None] * z
    score = lambda x, i: linear_score(x) / (1 + i[:, None])  # noqa: E731
    expected = sigma**2 * (torch.trace(A) / (1 + level) + 0.5 * score(noisy, level).square().sum(1))
    per = ism_loss(score, points, noise=noise, reduce="sum", per_sample=True, generator=g(10))
    torch.testing.assert_close(per, expected, rtol=1e-12, atol=0)
    mean = ism_loss(score, points, noise=noise, generator=g(10))
    torch.testing.assert_close(mean, expected.mean() / 3, rtol=1e-12, atol=0)
    esm = esm_loss(score, points, lambda x, i: torch.zeros_like(x), noise=noise, reduce="sum", per_sample=True,
                   generator=g(10))  # fmt: skip
    torch.testing.assert_close(esm, sigma**2 * 0.5 * score(noisy, level).square().sum(1), rtol=1e-12, atol=0)
    esm_mean = esm_loss(score, points, lambda x, i: torch.zeros_like(x), noise=noise, generator=g(10))
    torch.testing.assert_close(esm_mean, esm.mean() / 3, rtol=1e-12, atol=0)
    v = torch.randn(points.shape, generator=draw, dtype=torch.float64)  # SSM's projection comes after the noise
    s = score(noisy, level)
    quad = torch.einsum("bi,ij,bj->b", v, A, v) / (1 + level)
    for reduced, norm in ((False, (v * s).sum(1).square()), (True, s.square().sum(1))):
        expected = sigma**2 * (quad + 0.5 * norm)
        common = {"noise": noise, "variance_reduced": reduced}
        per = ssm_loss(score, points, reduce="sum", per_sample=True, generator=g(10), **common)
        torch.testing.assert_close(per, expected, rtol=1e-12, atol=0)
        mean = ssm_loss(score, points, generator=g(10), **common)
        torch.testing.assert_close(mean, expected.mean() / 3, rtol=1e-12, atol=0)


@pytest.mark.parametrize("importance_sampling", [False, True])
def test_continuous_time_weights_are_sigma2_or_g2(points, importance_sampling):
    """λ(t) = σ(t)² ("std2") or g(t)² ("likelihood"; importance sampled: its weight times σ²), x_t from the kernel."""
    sde = VPSDE()
    for weighting in ("std2", "likelihood") if not importance_sampling else ("likelihood",):
        noise = ContinuousTime(sde, eps=1e-3, weighting=weighting, importance_sampling=importance_sampling)
        draw = noise.perturb(points, g(12))  # the same draws the loss makes with the same seed
        t = draw.label.double()
        if importance_sampling:
            from sdekit.losses import likelihood_time_sampler

            t_is, weight = likelihood_time_sampler(sde, 1e-3).sample(5, generator=g(12))
            torch.testing.assert_close(t, t_is)
            lam = weight * sde.std(t) ** 2
        else:
            lam = sde.std(t) ** 2 if weighting == "std2" else sde.diffusion_squared(t)
        alpha, sigma = sde.kernel(t)
        z = draw.noise
        torch.testing.assert_close(draw.x, alpha[:, None] * points + sigma[:, None] * z, rtol=1e-12, atol=1e-12)
        score = lambda x, t: linear_score(x)  # noqa: E731
        got = ism_loss(score, points, noise=noise, reduce="sum", per_sample=True, generator=g(12))
        expected = lam * (torch.trace(A) + 0.5 * linear_score(draw.x).square().sum(1))
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=0)


def test_the_loss_is_differentiable_in_the_parameters_even_under_no_grad(data):
    """s_θ = θ s*: d ISM/dθ = mean(Δ log p) + θ mean ‖s*‖², exactly, also inside torch.no_grad()."""
    x = data[:256]
    theta = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        loss = ism_loss(lambda y: theta * DATA_SCORE(y, 0.0), x, reduce="sum")
    (grad,) = torch.autograd.grad(loss, theta)
    expected = DATA_SCORE.divergence(x, 0.0).mean() + 0.7 * DATA_SCORE(x, 0.0).square().sum(1).mean()
    torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-12)


def test_jacobian_quadratic_is_vT_J_v(points):
    x = points.clone().requires_grad_(True)
    v = torch.randn(points.shape, generator=g(11), dtype=torch.float64)
    torch.testing.assert_close(jacobian_quadratic(linear_score(x), x, v), torch.einsum("bi,ij,bj->b", v, A, v))


# --- bad input ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda x: ssm_loss(lambda y: y[:, :1], x), ScoreError, "shape (5, 1); it must match x's shape (5, 3)"),
        (lambda x: ism_loss(lambda y: y[:, :1], x), ScoreError, "shape"),
        (lambda x: esm_loss(lambda y: y, x, lambda y: y.float()), ScoreError, "true_score returned dtype"),
        (lambda x: ssm_loss(lambda y: y, x, n_projections=0), ValueError, "n_projections must be an int >= 1"),
        (lambda x: ism_loss(lambda y: y, x, n_projections=-1), ValueError, "n_projections"),
        (lambda x: ssm_loss(lambda y: y, x, projection="uniform"), ValueError, "projection"),
        (lambda x: ism_loss(lambda y: y, x, trace="forward"), ValueError, "trace"),
        (lambda x: ssm_loss(lambda y: y.detach(), x), ScoreError, "no gradient path to x"),
        (lambda x: ism_loss(lambda y: torch.ones_like(y).requires_grad_(), x), ScoreError, "does not depend on x"),
        (lambda x: ssm_loss(lambda y: y, x, noise=VPSDE()), TypeError, "noise must be None, a NoiseLevels"),
        (lambda x: ssm_loss(lambda y: y, x.numpy()), TypeError, "x0 must be a floating-point torch.Tensor"),
        (lambda x: ssm_loss(lambda y: y, x[0]), ValueError, "x0 must have shape (B, *event)"),
        (lambda x: ssm_loss(None, x), TypeError, "score must be callable"),
        (lambda x: ssm_loss(lambda y, i: y, x, noise=NoiseLevels([1.0, -1.0])), ValueError, "sigmas"),
        (lambda x: ssm_loss(lambda y, i: y, x, noise=NoiseLevels([1.0], label="t")), ValueError, "label"),
    ],
)
def test_bad_input_is_one_clear_error(points, call, error, words):
    with pytest.raises(error, match=None) as caught:
        call(points)
    assert words in str(caught.value), str(caught.value)
