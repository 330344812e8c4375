"""Guidance (sdekit.guidance) against the oracle's exact conditionals.

A Gaussian mixture makes guidance exact: the noisy class posterior p_t(k | x) is closed-form
(``GaussianMixture.class_log_posterior``), and by Bayes' rule the unconditional score plus
∇ₓ log p_t(k | x) is the score of component k. A class-conditional "network" built from the
component scores (label K = the unconditional mixture) gives classifier-free guidance an exact
conditional and unconditional half.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor

import sdekit
from adapters import ddpm
from sdekit import VESDE, VPSDE, ClassifierFreeGuidance, ClassifierGuidance, PosteriorSampling, SubVPSDE
from sdekit.solvers.adaptive_ode import TABLEAUS
from sdekit.testing import Gaussian, GaussianMixture, evaluate

from conftest import tiny_unet

F64 = torch.float64


def mixture2d() -> GaussianMixture:
    return GaussianMixture.random(dim=2, modes=3, generator=torch.Generator().manual_seed(3))


class ExactConditionalNetwork(torch.nn.Module):
    """ε-network of the mixture's components: ``class_labels`` k < K is component k, K the whole mixture.

    Counts its calls and the rows each call held (what classifier-free guidance must batch).
    """

    def __init__(self, mixture: GaussianMixture, sde: sdekit.LinearSDE) -> None:
        super().__init__()
        self.sde = sde
        self.scores = [mixture.component(k).score(sde) for k in range(mixture.num_components)]
        self.scores.append(mixture.score(sde))
        self.rows: list[int] = []

    def forward(self, x: Tensor, t: Tensor, class_labels: Tensor) -> Tensor:
        self.rows.append(x.shape[0])
        assert class_labels.shape == (x.shape[0],)
        every = torch.stack([score(x, t) for score in self.scores])  # (K + 1, B, D)
        chosen = every.gather(0, class_labels.to(x.device)[None, :, None].expand(1, *x.shape))[0]
        _, sigma = self.sde.kernel(t.double())
        return -chosen * sigma.to(x.dtype)[:, None]


def conditional_score(mixture: GaussianMixture, sde: sdekit.LinearSDE, labels: Tensor) -> Any:
    network = ExactConditionalNetwork(mixture, sde)
    return ddpm.EpsilonScore(network, sde, time_label="time", model_kwargs={"class_labels": labels}), network


def exact_classifier(mixture: GaussianMixture, sde: sdekit.LinearSDE) -> Any:
    return lambda x, t: mixture.class_log_posterior(x, sde=sde, t=t)


def points(n: int, seed: int = 0, dtype: torch.dtype = F64) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = 2.0 * torch.randn(n, 2, generator=generator, dtype=dtype)
    t = 0.05 + 0.9 * torch.rand(n, generator=generator, dtype=dtype)
    return x, t


# --- classifier guidance --------------------------------------------------------------------------------------


@pytest.mark.parametrize("sde", [VPSDE(), SubVPSDE(), VESDE(sigma_min=0.01, sigma_max=10.0)], ids=repr)
def test_classifier_guidance_with_the_exact_posterior_is_the_component_score(sde):
    """Bayes: ∇ log p_t(x) + ∇ log p_t(k | x) = ∇ log p_t(x | k), per sample with its own label and time."""
    mixture = mixture2d()
    x, t = points(6)
    labels = torch.tensor([0, 1, 2, 2, 1, 0])
    guided = ClassifierGuidance(mixture.score(sde), exact_classifier(mixture, sde), labels)(x, t)
    expected = torch.stack([mixture.component(int(k)).score(sde)(x[i : i + 1], t[i : i + 1])[0] for i, k in
                            enumerate(labels)])  # fmt: skip
    torch.testing.assert_close(guided, expected, rtol=1e-10, atol=1e-12)


def test_classifier_guidance_adds_the_scaled_gradient_per_sample():
    """s + w_i (s_k − s) for each sample's own scale w_i (the gradient is exactly s_k − s here)."""
    mixture, sde = mixture2d(), VPSDE()
    x, t = points(4)
    labels, scale = torch.tensor([2, 0, 1, 2]), torch.tensor([0.0, 0.5, 1.0, 3.0], dtype=F64)
    guide = ClassifierGuidance(mixture.score(sde), exact_classifier(mixture, sde), labels, scale=scale)
    s = mixture.score(sde)(x, t)
    component = torch.stack([mixture.component(int(k)).score(sde)(x[i : i + 1], t[i : i + 1])[0]
                             for i, k in enumerate(labels)])  # fmt: skip
    torch.testing.assert_close(guide(x, t), s + scale[:, None] * (component - s), rtol=1e-10, atol=1e-12)
    assert guide.classifier_calls == 1


def test_classifier_guidance_normalises_the_logits():
    """log softmax of the logits, not the logits: a per-row shift of every logit changes nothing."""
    mixture, sde = mixture2d(), VPSDE()
    x, t = points(4)
    labels = torch.tensor([0, 1, 2, 1])
    exact = ClassifierGuidance(mixture.score(sde), exact_classifier(mixture, sde), labels, scale=2.0)(x, t)

    def shifted(x, t):
        return mixture.class_log_posterior(x, sde=sde, t=t) + 3.0 * x.square().sum(1, keepdim=True)

    torch.testing.assert_close(
        ClassifierGuidance(mixture.score(sde), shifted, labels, scale=2.0)(x, t), exact, rtol=1e-10, atol=1e-10
    )


def test_classifier_guidance_explains_a_missing_gradient():
    mixture, sde = mixture2d(), VPSDE()
    x, t = points(2)
    guide = ClassifierGuidance(mixture.score(sde), exact_classifier(mixture, sde), torch.tensor([0, 1]))
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        guide(x, t)
    detached = ClassifierGuidance(mixture.score(sde), lambda x, t: exact_classifier(mixture, sde)(x.detach(), t),
                                  torch.tensor([0, 1]))  # fmt: skip
    with pytest.raises(ValueError, match="do not depend on x through autograd"):
        detached(x, t)


def test_classifier_guidance_works_inside_no_grad_and_leaves_no_graph():
    mixture, sde = mixture2d(), VPSDE()
    x, t = points(3)
    guide = ClassifierGuidance(mixture.score(sde), exact_classifier(mixture, sde), torch.tensor([0, 1, 2]), scale=2.0)
    with torch.no_grad():
        out = guide(x, t)
    assert not out.requires_grad
    torch.testing.assert_close(out, guide(x, t))


# --- classifier-free guidance ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_cfg_is_one_network_call_of_2B_rows_equal_to_the_two_call_formula(dtype):
    mixture, sde = mixture2d(), VPSDE()
    x, t = points(5, dtype=dtype)
    labels = torch.tensor([0, 1, 2, 0, 1])
    null = torch.full((5,), 3)
    scale = torch.tensor([0.0, 1.0, 2.5, 7.5, 0.3], dtype=dtype)
    score, network = conditional_score(mixture, sde, labels)
    guide = ClassifierFreeGuidance(score, {"class_labels": null}, scale=scale)
    out = guide(x, t)
    assert network.rows == [10] and guide.network_calls == 1 and guide.network_rows == 10
    conditional = score(x, t)
    unconditional = score.with_model_kwargs({"class_labels": null})(x, t)
    expected = unconditional + scale[:, None] * (conditional - unconditional)
    tolerance = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(out, expected, rtol=tolerance, atol=tolerance)
    # w = 1 is the conditional score, w = 0 the unconditional one, row by row
    torch.testing.assert_close(out[1], conditional[1], rtol=tolerance, atol=tolerance)
    torch.testing.assert_close(out[0], unconditional[0], rtol=tolerance, atol=tolerance)


def test_cfg_shared_unconditional_input_and_shared_scale():
    """A null label of first dimension 1 is shared by every row; a number is every sample's scale."""
    mixture, sde = mixture2d(), VPSDE()
    x, t = points(4)
    score, network = conditional_score(mixture, sde, torch.tensor([2, 2, 0, 1]))
    guide = ClassifierFreeGuidance(score, {"class_labels": torch.tensor([3])}, scale=2.0)
    conditional, unconditional = score(x, t), score.with_model_kwargs({"class_labels": torch.full((4,), 3)})(x, t)
    network.rows.clear()
    torch.testing.assert_close(guide(x, t), unconditional + 2.0 * (conditional - unconditional), rtol=1e-12, atol=0)
    assert network.rows == [8]


class LabelShift(torch.nn.Module):
    """ε = sin(x) + label: the two halves differ at every time (so guided ≠ conditional ≠ unconditional)."""

    def forward(self, x: Tensor, t: Tensor, class_labels: Tensor) -> Tensor:
        return torch.sin(x) + class_labels.to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))


def test_cfg_interval_guides_inside_and_is_conditional_outside():
    sde = VPSDE()
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    t = torch.tensor([0.1, 0.3, 0.6, 0.9], dtype=F64)
    labels, null = torch.tensor([0, 1, 2, 0]), torch.full((4,), 3)
    score = ddpm.EpsilonScore(LabelShift(), sde, time_label="time", model_kwargs={"class_labels": labels})
    guide = ClassifierFreeGuidance(score, {"class_labels": null}, scale=4.0, interval=(0.3, 0.6))
    conditional, unconditional = score(x, t), score.with_model_kwargs({"class_labels": null})(x, t)
    guided = unconditional + 4.0 * (conditional - unconditional)
    out = guide(x, t)
    assert (guided - conditional).abs().min() > 0.1  # every row tells guided from conditional
    torch.testing.assert_close(out[[0, 3]], conditional[[0, 3]], rtol=1e-12, atol=0)
    torch.testing.assert_close(out[[1, 2]], guided[[1, 2]], rtol=1e-12, atol=0)  # the ends are inside


def test_cfg_rescale_matches_the_conditional_standard_deviation_per_sample():
    sde = VPSDE()
    x, t = torch.randn(3, 2, 4, generator=torch.Generator().manual_seed(2), dtype=F64), torch.full((3,), 0.5, dtype=F64)

    class Images(torch.nn.Module):  # a (B, 2, 4) event: std over every element of a sample
        def forward(self, x: Tensor, t: Tensor, class_labels: Tensor) -> Tensor:
            return torch.sin(x * (1.0 + class_labels.to(x.dtype))[:, None, None]) + 0.1 * t[:, None, None]

    null = torch.zeros(3, dtype=torch.long)
    score = ddpm.EpsilonScore(Images(), sde, time_label="time", model_kwargs={"class_labels": torch.tensor([1, 2, 3])})
    plain = ClassifierFreeGuidance(score, {"class_labels": null}, scale=5.0)(x, t)
    full = ClassifierFreeGuidance(score, {"class_labels": null}, scale=5.0, rescale=1.0)(x, t)
    half = ClassifierFreeGuidance(score, {"class_labels": null}, scale=5.0, rescale=0.7)(x, t)
    conditional = score(x, t)
    dims = (1, 2)
    torch.testing.assert_close(full.std(dim=dims), conditional.std(dim=dims), rtol=1e-12, atol=0)
    torch.testing.assert_close(full / full.std(dim=dims, keepdim=True), plain / plain.std(dim=dims, keepdim=True))
    torch.testing.assert_close(half, 0.7 * full + 0.3 * plain, rtol=1e-12, atol=1e-14)
    little = ClassifierFreeGuidance(score, {"class_labels": null}, scale=5.0, rescale=0.3)(x, t)
    torch.testing.assert_close(little, 0.3 * full + 0.7 * plain, rtol=1e-12, atol=1e-14)


def test_cfg_rescale_on_an_epsilon_network_is_lin_et_al_rescale_of_epsilon():
    """Lin et al.'s rescale acts on ε: ε̂ = φ ε_cfg std(ε_c)/std(ε_cfg) + (1 − φ) ε_cfg; the score is −ε̂/σ."""
    sde = VPSDE()
    x, t = torch.randn(3, 2, 4, generator=torch.Generator().manual_seed(3), dtype=F64), torch.full((3,), 0.4, dtype=F64)
    labels, null = torch.tensor([1, 2, 3]), torch.zeros(3, dtype=torch.long)
    network = LabelShift()
    score = ddpm.EpsilonScore(network, sde, time_label="time", model_kwargs={"class_labels": labels})
    out = ClassifierFreeGuidance(score, {"class_labels": null}, scale=7.5, rescale=0.7)(x, t)
    eps_c, eps_u = network(x, t, labels), network(x, t, null)
    eps_cfg = eps_u + 7.5 * (eps_c - eps_u)
    std = lambda v: v.std(dim=(1, 2), keepdim=True)  # noqa: E731
    eps = 0.7 * eps_cfg * std(eps_c) / std(eps_cfg) + 0.3 * eps_cfg
    _, sigma = sde.kernel(t)
    torch.testing.assert_close(out, -eps / sigma[:, None, None], rtol=1e-12, atol=1e-12)


def test_cfg_rescale_needs_two_elements_per_sample():
    score = ddpm.EpsilonScore(LabelShift(), VPSDE(), time_label="time", model_kwargs={"class_labels": torch.ones(3)})
    guide = ClassifierFreeGuidance(score, {"class_labels": torch.zeros(3)}, scale=2.0, rescale=0.7)
    with pytest.raises(ValueError, match=r"rescale needs samples of at least 2 elements.*\(3, 1\)"):
        guide(torch.zeros(3, 1), torch.full((3,), 0.5))


class Embedded(torch.nn.Module):
    """Text-conditioning stand-in: per-sample float embeddings and weights, a shared table without a batch dimension."""

    def forward(self, x: Tensor, t: Tensor, encoder_hidden_states: Tensor, table: Tensor, weight: Tensor) -> Tensor:
        assert table.shape == (5,) and weight.shape == (x.shape[0],)
        return torch.tanh(x * encoder_hidden_states.sum(1, keepdim=True)) * weight[:, None] + table.sum() * 0.01


def test_cfg_with_per_sample_float_embeddings_and_shared_arguments():
    sde = VPSDE()
    x, t = points(4)
    embeddings = torch.randn(4, 3, generator=torch.Generator().manual_seed(11), dtype=F64)
    empty, table = torch.zeros(1, 3, dtype=F64), torch.arange(5.0, dtype=F64)
    weight = torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=F64)  # per-sample, the same in both halves
    kwargs = {"encoder_hidden_states": embeddings, "table": table, "weight": weight}
    score = ddpm.EpsilonScore(Embedded(), sde, time_label="time", model_kwargs=kwargs)
    out = ClassifierFreeGuidance(score, {"encoder_hidden_states": empty}, scale=3.0)(x, t)
    conditional = score(x, t)
    unconditional = score.with_model_kwargs({**kwargs, "encoder_hidden_states": empty.expand(4, 3)})(x, t)
    torch.testing.assert_close(out, unconditional + 3.0 * (conditional - unconditional), rtol=1e-12, atol=1e-12)
    assert (conditional - unconditional).abs().min() > 1e-3  # every row's embedding matters


def test_cfg_takes_a_0d_null_label_and_a_shared_time():
    mixture, sde = mixture2d(), VPSDE()
    x, _ = points(3)
    score, network = conditional_score(mixture, sde, torch.tensor([0, 1, 2]))
    zero_d = ClassifierFreeGuidance(score, {"class_labels": torch.tensor(3)}, scale=2.0)
    one_d = ClassifierFreeGuidance(score, {"class_labels": torch.full((3,), 3)}, scale=2.0)
    shared = torch.tensor([0.5], dtype=F64)
    torch.testing.assert_close(zero_d(x, shared), one_d(x, shared.expand(3)), rtol=0, atol=0)
    assert network.rows == [6, 6]


def test_guidance_keeps_a_float32_state_with_float64_scales():
    mixture, sde = mixture2d(), VPSDE()
    x, t = points(3, dtype=torch.float32)
    labels, scale = torch.tensor([0, 1, 2]), torch.tensor([0.5, 1.0, 2.0], dtype=F64)
    score, _ = conditional_score(mixture, sde, labels)
    cfg = ClassifierFreeGuidance(score, {"class_labels": torch.tensor([3])}, scale=scale)(x, t)
    classifier = ClassifierGuidance(mixture.score(sde), exact_classifier(mixture, sde), labels, scale=scale)(x, t)
    assert cfg.dtype == classifier.dtype == torch.float32
    conditional, unconditional = score(x, t), score.with_model_kwargs({"class_labels": torch.full((3,), 3)})(x, t)
    torch.testing.assert_close(cfg, unconditional + scale.float()[:, None] * (conditional - unconditional))


# --- per-sample state through the adaptive solvers ----------------------------------------------------------


def _guides(mixture: GaussianMixture, sde: sdekit.LinearSDE, rows: slice | None = None) -> dict[str, Any]:
    labels = torch.tensor([0, 1, 2, 1, 0, 2])
    scales = torch.tensor([1.0, 2.0, 0.5, 3.0, 1.5, 1.0], dtype=F64)
    if rows is not None:
        labels, scales = labels[rows], scales[rows]
    score, _ = conditional_score(mixture, sde, labels)
    observations = torch.linspace(-2.0, 2.0, 6, dtype=F64)[:, None]
    if rows is not None:
        observations = observations[rows]
    return {
        "cfg": ClassifierFreeGuidance(score, {"class_labels": torch.full((len(labels),), 3)}, scale=scales),
        "classifier": ClassifierGuidance(mixture.score(sde), exact_classifier(mixture, sde), labels, scale=scales),
        "posterior": PosteriorSampling(
            mixture.score(sde), sde, lambda x0: x0[:, :1] - x0[:, 1:], observations, noise_std=2.0, scale=scales
        ),
    }


@pytest.mark.parametrize("guide", ["cfg", "classifier", "posterior"])
@pytest.mark.parametrize("method", sorted(TABLEAUS))
def test_adaptive_ode_with_per_sample_guidance_equals_each_sample_drawn_alone(method, guide):
    """Samples finish at different times and leave the active set; their labels and scales must follow."""
    mixture, sde = mixture2d(), VPSDE()
    x_T = torch.randn(6, 2, generator=torch.Generator().manual_seed(4), dtype=F64)
    tol = 3e-3 if method == "heun_euler" else 1e-3  # loose: the property holds at any tolerance
    options = {"method": method, "rtol": tol, "atol": tol}
    together, info = sdekit.ode_sample(sde, _guides(mixture, sde)[guide], x_T=x_T, return_info=True, **options)
    assert info.nfe > 0
    for i in range(6):
        alone = sdekit.ode_sample(sde, _guides(mixture, sde, slice(i, i + 1))[guide], x_T=x_T[i : i + 1], **options)
        torch.testing.assert_close(together[i : i + 1], alone, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("guide", ["cfg", "classifier", "posterior"])
def test_likelihood_with_per_sample_guidance_equals_each_sample_alone(guide):
    mixture, sde = mixture2d(), VPSDE()
    data = mixture.sample(6, generator=torch.Generator().manual_seed(5), dtype=F64)
    options = {"divergence": "exact", "rtol": 1e-3, "atol": 1e-3}  # the property holds at any tolerance
    together = sdekit.log_likelihood(sde, _guides(mixture, sde)[guide], data, **options)
    for i in range(6):
        alone = sdekit.log_likelihood(sde, _guides(mixture, sde, slice(i, i + 1))[guide], data[i : i + 1], **options)
        torch.testing.assert_close(together[i : i + 1], alone, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("guide", ["cfg", "classifier"])
def test_adaptive_sde_with_per_sample_guidance_runs_and_counts_network_calls(guide):
    mixture, sde = mixture2d(), VPSDE()
    guided = _guides(mixture, sde)[guide]
    x, info = sdekit.sample(
        sde, guided, shape=(6, 2), method="adaptive", generator=torch.Generator().manual_seed(6), dtype=F64,
        return_info=True,
    )  # fmt: skip
    assert torch.isfinite(x).all() and info.evaluations < 6 * info.iterations * 2  # the active set shrank
    if guide == "cfg":
        assert guided.network_calls == info.nfe and guided.network_rows == 2 * (info.evaluations + x.shape[0])
    else:
        assert guided.classifier_calls == info.nfe


def test_likelihood_of_the_exactly_guided_flow_is_the_component_density():
    """w = 1, exact posterior: the flow is p_t(x | k)'s; its density change is log p_eps(x | k) − log p_T(z | k).

    (The classifier's gradient must stay differentiable inside the likelihood's autograd divergence.)
    """
    mixture, sde = mixture2d(), VPSDE()
    labels = torch.tensor([0, 1, 2, 0])
    data = torch.cat([mixture.component(int(k)).sample(1, generator=torch.Generator().manual_seed(i), dtype=F64)
                      for i, k in enumerate(labels)])  # fmt: skip
    guide = ClassifierGuidance(mixture.score(sde), exact_classifier(mixture, sde), labels)
    _, info = sdekit.log_likelihood(sde, guide, data, divergence="exact", rtol=1e-7, atol=1e-7, return_info=True)
    for i, k in enumerate(labels):  # the flow of p_t(x | k): log p_eps(x | k) = log p_T(z | k) + ∫ ∇·F̃ dt
        component = mixture.component(int(k))
        got = info.delta_logp[i] + component.log_prob(info.z[i : i + 1], sde=sde, t=1.0)[0]
        expected = component.log_prob(data[i : i + 1], sde=sde, t=1e-5)[0]
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)


# --- diffusion posterior sampling ------------------------------------------------------------------------------


def test_posterior_sampling_is_the_gaussian_likelihood_gradient_through_tweedie():
    """Gaussian prior N(μ, diag d), A linear: x̂₀ is linear in x with Jacobian diag(α d/(α² d + σ²)), so
    the guided score is s + (w/σ_y²) Jᵀ Aᵀ (y − A x̂₀) in closed form."""
    mean, d = torch.tensor([0.5, -1.0, 2.0], dtype=F64), torch.tensor([0.3, 1.0, 2.0], dtype=F64)
    data, sde = Gaussian(mean, torch.diag(d)), VPSDE()
    A = torch.tensor([[1.0, -2.0, 0.5], [0.0, 1.0, 1.0]], dtype=F64)
    x, t = torch.randn(4, 3, generator=torch.Generator().manual_seed(9), dtype=F64), torch.tensor([0.1, 0.3, 0.6, 0.9])
    t = t.double()
    y = torch.tensor([[1.0, 2.0]], dtype=F64)
    scale = torch.tensor([1.0, 0.5, 2.0, 0.0], dtype=F64)
    guide = PosteriorSampling(data.score(sde), sde, lambda x0: x0 @ A.T, y, noise_std=0.3, scale=scale)
    alpha, sigma = (v[:, None] for v in sde.kernel(t))
    c = alpha**2 * d + sigma**2
    s = -(x - alpha * mean) / c
    x0 = (x + sigma**2 * s) / alpha
    jacobian = alpha * d / c
    expected = s + scale[:, None] * jacobian * ((y - x0 @ A.T) @ A) / 0.3**2
    torch.testing.assert_close(guide(x, t), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_posterior_sampling_bias_on_a_linear_gaussian_problem():
    """x ~ N(0, I₂), y = x₀ + x₁ + 0.1 n = 1: exact posterior of A x: mean 0.9950, std 0.0998; along (1, −1) N(0, 1).

    Measured (8192 samples, Euler–Maruyama 1000 steps, seed 0): A x mean 1.0005, std 0.0703 —
    over-confident (DPS treats x̂₀ as certain), the unobserved direction right. Pinned here.
    """
    data, sde, n = Gaussian([0.0, 0.0]), VPSDE(), 8192
    A = torch.tensor([[1.0, 1.0]], dtype=F64)
    guide = PosteriorSampling(
        data.score(sde), sde, lambda x0: x0 @ A.T, torch.tensor([[1.0]], dtype=F64), noise_std=0.1
    )
    x = sdekit.sample(sde, guide, shape=(n, 2), method="euler_maruyama", steps=1000, dtype=F64,
                      generator=torch.Generator().manual_seed(0))  # fmt: skip
    observed, free = (x @ A.T)[:, 0], (x[:, 0] - x[:, 1]) / 2**0.5
    print(
        f"A x: mean {float(observed.mean()):.4f} std {float(observed.std()):.4f}; "
        f"free direction std {float(free.std()):.4f}"
    )
    assert abs(float(free.mean())) < 5 / n**0.5 and abs(float(free.var()) - 1) < 5 * (2 / n) ** 0.5  # exact there
    assert 0.997 < float(observed.mean()) < 1.004 and 0.066 < float(observed.std()) < 0.075  # the measured bias


# --- sampling the exact class-conditional distribution -------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("method", "steps"), [("adaptive", None), ("dpmpp_2m", 200)])
def test_classifier_guidance_at_scale_one_samples_the_component_at_floor_level(oracle, method, steps):
    """Exact posterior, w = 1: the samples are those of component k (16-D oracle, 8192 samples)."""
    sde, k, n = VPSDE(), 5, 8192
    guide = ClassifierGuidance(oracle.score(sde), exact_classifier(oracle, sde), torch.full((n,), k))
    sampler = sdekit.sample if method == "adaptive" else sdekit.ode_sample
    options = {} if steps is None else {"steps": steps}
    x = sampler(sde, guide, shape=(n, 16), method=method, generator=torch.Generator().manual_seed(7), **options)
    report = evaluate(x, oracle.component(k))
    print(f"{method}: {report.row()}")
    assert report.at_floor(), report.row()
    assert (oracle.classify(x) == k).float().mean() > 0.999


@pytest.mark.slow
def test_a_scale_ten_percent_off_is_caught(oracle):
    """The same check rejects w = 1.1 (measured: SW1 2.1x its floor, NLL gap −0.15 against a ±0.11 limit)."""
    sde, k, n = VPSDE(), 5, 8192
    guide = ClassifierGuidance(oracle.score(sde), exact_classifier(oracle, sde), torch.full((n,), k), scale=1.1)
    x = sdekit.ode_sample(
        sde, guide, shape=(n, 16), method="dpmpp_2m", steps=200, generator=torch.Generator().manual_seed(7)
    )
    assert not evaluate(x, oracle.component(k)).at_floor()


def _tempered_cdf(mixture: GaussianMixture, k: int, w: float) -> Any:
    """The CDF of the tempered target ∝ p(x) p(k | x)^w of a 1-D mixture, by quadrature on a fine grid."""
    import numpy as np

    xs = torch.linspace(-6, 6, 24001, dtype=F64)[:, None]
    log_density = mixture.log_prob(xs) + w * mixture.class_log_posterior(xs)[:, k]
    cdf = torch.cumsum(torch.exp(log_density - log_density.max()), 0)
    grid, values = xs[:, 0].numpy(), (cdf / cdf[-1]).numpy()
    return lambda q: np.interp(q, grid, values)


@pytest.mark.slow
def test_guidance_away_from_scale_one_does_not_sample_the_tempered_target():
    """Two overlapping 1-D modes N(∓1, 0.5²), k = 0, exact noisy posterior, 8192 samples, KS against the CDF.

    w = 1: the reverse SDE and the flow both sample the component (KS below the 0.1 % critical value,
    1.95/√n = 0.0215). w = 2 and 4: neither samples ∝ p(x) p(0 | x)^w, and the two disagree, because the
    guided score is not the score of the noised tempered law (measured: KS 0.11 / 0.29 at w = 2 and
    0.20 / 0.64 at w = 4 for the adaptive SDE / dopri5; both sharper than the target, the flow more so).
    The module docstring says so; this pins it.
    """
    from scipy import stats

    mixture = GaussianMixture([0.5, 0.5], [[-1.0], [1.0]], torch.full((2, 1, 1), 0.25, dtype=F64))
    sde, n = VPSDE(), 8192
    critical = 1.95 / n**0.5  # Kolmogorov's distribution: P(√n D > 1.95) = 0.001
    for w in (1.0, 2.0, 4.0):
        guide = ClassifierGuidance(mixture.score(sde), exact_classifier(mixture, sde), torch.zeros(n, dtype=torch.long),
                                   scale=w)  # fmt: skip
        generator = torch.Generator().manual_seed(0)
        sde_x = sdekit.sample(sde, guide, (n, 1), method="adaptive", dtype=F64, generator=generator)
        ode_x = sdekit.ode_sample(sde, guide, (n, 1), method="dopri5", rtol=1e-6, atol=1e-6, dtype=F64,
                                  generator=torch.Generator().manual_seed(0))  # fmt: skip
        cdf = _tempered_cdf(mixture, 0, w)
        ks_sde = stats.kstest(sde_x[:, 0].numpy(), cdf).statistic
        ks_ode = stats.kstest(ode_x[:, 0].numpy(), cdf).statistic
        print(f"w = {w}: KS to the tempered target: reverse SDE {ks_sde:.4f}, flow {ks_ode:.4f}")
        if w == 1.0:
            assert ks_sde < critical and ks_ode < critical
        else:
            assert ks_sde > 4 * critical and ks_ode > 2 * ks_sde
            assert float(sde_x.std()) < 0.49 and float(ode_x.std()) < float(sde_x.std())  # sharper than the target


# --- bad input ------------------------------------------------------------------------------------------------


def test_bad_guidance_arguments_are_refused_at_the_call():
    mixture, sde = mixture2d(), VPSDE()
    score, classifier = mixture.score(sde), exact_classifier(mixture, sde)
    labels = torch.tensor([0, 1])
    with pytest.raises(ValueError, match="scale must be finite and >= 0"):
        ClassifierGuidance(score, classifier, labels, scale=-1.0)
    with pytest.raises(ValueError, match="scale must be finite and >= 0"):
        ClassifierGuidance(score, classifier, labels, scale=torch.tensor([1.0, -0.5]))
    with pytest.raises(ValueError, match=r"scale must be a number or a tensor of shape \(2,\)"):
        ClassifierGuidance(score, classifier, labels, scale=torch.ones(3))
    with pytest.raises(ValueError, match="labels must be an integer tensor"):
        ClassifierGuidance(score, classifier, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="labels must be class indices >= 0"):
        ClassifierGuidance(score, classifier, torch.tensor([0, -1]))
    with pytest.raises(TypeError, match="classifier must be callable"):
        ClassifierGuidance(score, "classifier", labels)  # type: ignore[arg-type]
    x, t = points(2)
    with pytest.raises(ValueError, match=r"labels must be < K = 3"):
        ClassifierGuidance(score, classifier, torch.tensor([0, 3]))(x, t)
    with pytest.raises(ValueError, match=r"classifier must return logits of shape \(B, K\) = \(2, K\), got \(1, 3\)"):
        ClassifierGuidance(score, lambda x, t: classifier(x, t)[:1], labels)(x, t)
    with pytest.raises(ValueError, match="labels hold 2 samples but x holds 3"):
        ClassifierGuidance(score, classifier, labels)(*points(3))


def test_bad_posterior_sampling_arguments_are_refused_at_the_call():
    data, sde = Gaussian([0.0, 0.0]), VPSDE()
    score, y = data.score(sde), torch.tensor([[1.0]])
    with pytest.raises(ValueError, match="noise_std must be a positive number"):
        PosteriorSampling(score, sde, lambda x0: x0[:, :1], y, noise_std=0.0)
    with pytest.raises(ValueError, match="y must be a finite tensor"):
        PosteriorSampling(score, sde, lambda x0: x0[:, :1], torch.tensor([[float("inf")]]), noise_std=0.1)
    with pytest.raises(TypeError, match="Tweedie's formula needs its kernel"):
        PosteriorSampling(score, object(), lambda x0: x0[:, :1], y, noise_std=0.1)  # type: ignore[arg-type]
    x, t = points(3)
    with pytest.raises(ValueError, match=r"operator returned \(3, 2\); y has shape \(1, 3\) and x holds 3 samples"):
        PosteriorSampling(score, sde, lambda x0: x0, torch.zeros(1, 3), noise_std=0.1)(x, t)
    with pytest.raises(ValueError, match=r"operator returned \(1, 1\); y has shape \(1, 1\) and x holds 3"):
        PosteriorSampling(score, sde, lambda x0: x0[:1, :1], y, noise_std=0.1)(x, t)
    with pytest.raises(ValueError, match=r"operator returned \(3, 1\); y has shape \(2, 1\)"):
        PosteriorSampling(score, sde, lambda x0: x0[:, :1], torch.zeros(2, 1), noise_std=0.1)(x, t)


def test_bad_classifier_free_guidance_arguments_are_refused_at_the_call():
    mixture, sde = mixture2d(), VPSDE()
    score, _ = conditional_score(mixture, sde, torch.tensor([0, 1]))
    null = {"class_labels": torch.tensor([3])}
    with pytest.raises(TypeError, match="score must be a conditional score with model_kwargs"):
        ClassifierFreeGuidance(mixture.score(sde), null, scale=2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scale must be finite and >= 0"):
        ClassifierFreeGuidance(score, null, scale=float("nan"))
    with pytest.raises(ValueError, match="interval must be a pair"):
        ClassifierFreeGuidance(score, null, scale=2.0, interval=(0.6, 0.3))
    with pytest.raises(ValueError, match=r"rescale must be a number in \[0, 1\]"):
        ClassifierFreeGuidance(score, null, scale=2.0, rescale=1.5)
    with pytest.raises(ValueError, match="unconditional must name at least one"):
        ClassifierFreeGuidance(score, {}, scale=2.0)
    x, t = points(2)
    with pytest.raises(ValueError, match=r"unconditional names \['prompt'\]"):
        ClassifierFreeGuidance(score, {"prompt": torch.zeros(2)}, scale=2.0)(x, t)
    with pytest.raises(ValueError, match=r"model_kwargs\['class_labels'\] has first dimension 3; the batch holds 2"):
        ClassifierFreeGuidance(score, {"class_labels": torch.tensor([3, 3, 3])}, scale=2.0)(x, t)
    with pytest.raises(ValueError, match="scale holds 3 per-sample values but x holds 2"):
        ClassifierFreeGuidance(score, null, scale=torch.ones(3))(x, t)


# --- interop ---------------------------------------------------------------------------------------------------


def test_cfg_matches_a_diffusers_ddim_cfg_loop_step_for_step():
    """A class-conditional UNet2DModel under DDIMScheduler (eta 0) with the usual CFG loop = sdekit's DDIM + CFG.

    DDIM is DPM-Solver++ of order 1 on the scheduler's timesteps (``timestep_grid``); CFG on ε
    and on the score agree because both halves share σ. Per-sample scales, one 2B-row call a step.
    In float64 on both sides, so the comparison sees the formulas (agreement to 1e-12 asserted).
    """
    diffusers = pytest.importorskip("diffusers")
    from adapters.diffusers import from_unet, timestep_grid
    from sdekit.solvers import DPMSolverPP

    # float64 both sides: the comparison sees the formulas, not float32 rounding
    unet = tiny_unet(num_class_embeds=4).double()
    scheduler = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False)
    scheduler.set_timesteps(10)
    # diffusers keeps ᾱ in float32 and forms its step's coefficients from it in float32; with the same
    # ᾱ values in float64 the two loops agree to 5e-14 (measured), with float32 coefficients to 4e-6.
    scheduler.alphas_cumprod = scheduler.alphas_cumprod.double()
    scheduler.final_alpha_cumprod = scheduler.final_alpha_cumprod.double()
    labels, null = torch.tensor([0, 1, 2]), torch.full((3,), 3)
    scale = torch.tensor([1.5, 3.0, 7.5], dtype=F64)
    x_T = torch.randn(3, 2, 8, 8, generator=torch.Generator().manual_seed(8), dtype=F64)
    reference, x = [], x_T
    with torch.no_grad():
        for timestep in scheduler.timesteps:
            eps = unet(torch.cat([x, x]), timestep, class_labels=torch.cat([labels, null])).sample
            conditional, unconditional = eps.chunk(2)
            guided = unconditional + scale[:, None, None, None] * (conditional - unconditional)
            x = scheduler.step(guided, timestep, x, eta=0.0).prev_sample
            reference.append(x)

    sde, score = from_unet(unet, scheduler, model_kwargs={"class_labels": labels})
    guide = ClassifierFreeGuidance(score, {"class_labels": null}, scale=scale)
    states: list[Tensor] = []
    out, info = sdekit.ode_sample(
        sde,
        guide,
        x_T=x_T,
        method=DPMSolverPP(order=1),
        grid=timestep_grid(scheduler),
        callback=lambda payload: states.append(payload["x"]),
        return_info=True,
        dtype=F64,
    )
    assert info.nfe == guide.network_calls == len(reference) and guide.network_rows == 6 * len(reference)
    assert len(states) == len(reference) - 1
    for mine, theirs in zip([*states, out], reference, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-12, atol=1e-12)
