"""Flow matching's rectified flow, the general interpolant and EDM's σ(t) = t as sdekit SDEs, and their adapters.

Closed forms against the generic interpolant (autograd derivatives) and hand values; the velocity adapter
against an analytic Gaussian velocity; sampling at floor on the oracle suite under the rectified flow and EDM;
diffusers' FlowMatchEuler and EDMEuler loops matched step for step through ``from_unet``.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

import sdekit
from adapters import flow
from sdekit.testing import Gaussian, evaluate
from sdekit.testing.suite import distribution

from conftest import tiny_unet

F64 = torch.float64
TIMES = torch.tensor([1e-3, 0.1, 0.25, 0.5, 0.9, 0.999], dtype=F64)


def cosine() -> sdekit.InterpolantSDE:
    return sdekit.InterpolantSDE(lambda t: torch.cos(t * math.pi / 2), lambda t: torch.sin(t * math.pi / 2), T=0.999)


def test_rectified_flow_closed_forms_by_hand_and_against_the_generic_interpolant():
    rf = sdekit.RectifiedFlowSDE()
    generic = sdekit.InterpolantSDE(lambda t: 1 - t, lambda t: t, T=0.999)  # derivatives by autograd
    half = torch.tensor([0.5], dtype=F64)
    assert float(rf.drift_coeff(half)) == -2.0 and float(rf.diffusion_squared(half)) == 2.0  # −1/(1−t), 2t/(1−t)
    assert float(rf.log_snr(torch.tensor([0.25], dtype=F64))) == pytest.approx(math.log(3), rel=1e-15)
    for name in ("log_mean_coeff", "std", "drift_coeff", "diffusion_squared", "log_snr"):
        torch.testing.assert_close(getattr(rf, name)(TIMES), getattr(generic, name)(TIMES), rtol=1e-13, atol=0)
    for a, b in zip(rf.kernel_derivatives(TIMES), generic.kernel_derivatives(TIMES), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(rf.t_from_log_snr(rf.log_snr(TIMES)), TIMES, rtol=1e-13, atol=0)
    torch.testing.assert_close(generic.t_from_log_snr(generic.log_snr(TIMES)), TIMES, rtol=1e-12, atol=0)
    assert rf.T == 0.999 and rf.prior_std == pytest.approx(math.sqrt(0.001**2 + 0.999**2), rel=1e-15)
    assert rf.default_eps == 3e-3 and sdekit.sampling.default_eps(rf) == 3e-3


@pytest.mark.parametrize("sde", [sdekit.VPSDE(), sdekit.SubVPSDE(), sdekit.VESDE(), cosine()], ids=repr)
def test_kernel_derivatives_are_the_derivatives_of_the_kernel(sde):
    """g² = 2σσ̇ − 2fσ², f = α̇/α: the defaults from (f, g²) equal autograd's α̇, σ̇ (and the interpolant's own)."""
    t = TIMES.clamp(max=0.99)
    d_alpha, d_sigma = sde.kernel_derivatives(t)
    times = t.clone().requires_grad_(True)
    (auto_alpha,) = torch.autograd.grad((sde.mean_coeff(times) + 0 * times).sum(), times)  # VE: α ≡ 1
    (auto_sigma,) = torch.autograd.grad(sde.std(times).sum(), times)
    torch.testing.assert_close(d_alpha, auto_alpha, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(d_sigma, auto_sigma, rtol=1e-10, atol=1e-12)
    # g² = −2σ² dλ/dt (λ decreasing): the interpolant's diffusion from its schedules
    (d_lam,) = torch.autograd.grad(sde.log_snr(times).sum(), times)
    torch.testing.assert_close(sde.diffusion_squared(t), -2 * sde.std(t) ** 2 * d_lam, rtol=1e-10, atol=0)


def test_interpolant_and_rectified_flow_refuse_what_has_no_score():
    with pytest.raises(ValueError, match=r"T must lie in \(0, 1\), got 1.0: at T = 1 the data's weight"):
        sdekit.RectifiedFlowSDE(1.0)
    with pytest.raises(ValueError, match=r"alpha must be positive and finite on \(0, T\]; α\(T\) = 0 at T = 1"):
        sdekit.InterpolantSDE(lambda t: 1 - t, lambda t: t)
    with pytest.raises(ValueError, match="must decrease strictly"):
        sdekit.InterpolantSDE(lambda t: 1 + t, lambda t: 0.1 + 0 * t, T=1.0)
    with pytest.raises(TypeError, match="alpha must be a function"):
        sdekit.InterpolantSDE(0.5, lambda t: t)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="T must be a positive finite number"):
        sdekit.InterpolantSDE(lambda t: 1 - t, lambda t: t, T=0)
    with pytest.raises(ValueError, match="elementwise"):
        sdekit.InterpolantSDE(lambda t: 1 - t.sum() * 0 - t, lambda t: t.sum() + 0 * t[:1], T=0.5)
    with pytest.raises(ValueError, match="sigma_min must be < sigma_max"):
        sdekit.EDMSDE(1.0, 0.5)
    with pytest.raises(ValueError, match="sigma_max must be a positive finite number"):
        sdekit.EDMSDE(0.002, math.inf)


def test_edm_sde_is_time_equal_to_the_noise_level_and_stops_at_sigma_min():
    edm = sdekit.EDMSDE(0.002, 80.0)
    assert edm.T == 80.0 and edm.prior_std == 80.0 and repr(edm) == "EDMSDE(sigma_min=0.002, sigma_max=80)"
    torch.testing.assert_close(edm.std(TIMES), TIMES, rtol=0, atol=0)
    torch.testing.assert_close(edm.diffusion_squared(TIMES), 2 * TIMES, rtol=0, atol=0)
    assert float(edm.log_mean_coeff(TIMES).abs().max()) == 0.0
    torch.testing.assert_close(edm.t_from_log_snr(edm.log_snr(TIMES)), TIMES, rtol=1e-15, atol=0)
    _, info = sdekit.ode_sample(
        edm, Gaussian(torch.zeros(2), torch.eye(2)).score(edm), shape=(3, 2), steps=4, return_info=True,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert float(info.grid[0]) == 80.0 and float(info.grid[-1]) == pytest.approx(0.002, rel=1e-12)


def _gaussian_velocity(sde: sdekit.LinearSDE, mean: float, var: float):
    """The exact flow-matching velocity of N(mean, var·I) data: α̇ E[x₀|x] + σ̇ E[ε|x], written out."""

    def velocity(x, t):
        alpha, sigma = (c.reshape(-1, 1) for c in sde.kernel(t.double()))
        d_alpha, d_sigma = (c.reshape(-1, 1) for c in sde.kernel_derivatives(t.double()))
        x0 = mean + alpha * var / (alpha**2 * var + sigma**2) * (x - alpha * mean)  # E[x₀ | x_t]
        return d_alpha * x0 + d_sigma * (x - alpha * x0) / sigma

    return velocity


@pytest.mark.parametrize("sde", [sdekit.RectifiedFlowSDE(), sdekit.VPSDE(), cosine(), sdekit.EDMSDE()], ids=repr)
def test_flow_score_of_the_exact_velocity_is_the_exact_score(sde):
    data = Gaussian(torch.full((3,), 0.7, dtype=F64), 0.3 * torch.eye(3, dtype=F64))
    score = flow.FlowScore(_gaussian_velocity(sde, 0.7, 0.3), sde)
    t = (TIMES * sde.T).clamp(min=1e-3)
    x = torch.randn(t.numel(), 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    # 1e-9: at t = 1e-3 the reference velocity itself loses six digits (x − α E[x₀|x] is O(σ²) of O(1) terms)
    torch.testing.assert_close(score(x, t), data.score(sde)(x, t), rtol=1e-9, atol=0)


def test_flow_score_labels_scaled_time_and_rectified_flow_form():
    seen = []

    def velocity_model(x, label):
        seen.append(label)
        return torch.ones_like(x)

    rf = sdekit.RectifiedFlowSDE()
    score = flow.FlowScore(velocity_model, rf, time_label="scaled", num_timesteps=1000)
    x = torch.full((2, 2), 0.5, dtype=F64)
    t = torch.tensor([0.25, 0.75], dtype=F64)
    out = score(x, t)
    torch.testing.assert_close(seen[0], torch.tensor([250.0, 750.0], dtype=F64), rtol=0, atol=0)
    expected = -(x + (1 - t)[:, None] * 1.0) / t[:, None]  # −(x + (1 − t) u)/t
    torch.testing.assert_close(out, expected, rtol=1e-14, atol=0)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["rf", "edm"])
@pytest.mark.parametrize("name", ["narrow", "anisotropic", "imbalanced", "ring"])
def test_samplers_reach_floor_on_the_suite_under_the_rectified_flow_and_edm(family, name):
    """Measured at these budgets in the suite sweep (docs/suite.md); one exact set's false alarm is 0.1 % a check."""
    sde = sdekit.RectifiedFlowSDE() if family == "rf" else sdekit.EDMSDE()
    data = distribution(name)
    for function, method, steps in ((sdekit.sample, "dpmpp_2m_sde", 99), (sdekit.ode_sample, "heun", 99)):
        x = function(sde, data.score(sde), shape=(4096, data.dim), method=method, steps=steps,
                     generator=torch.Generator().manual_seed(5))  # fmt: skip
        report = evaluate(x.double(), data)
        assert report.at_floor(), (method, report)


def _flow_match_loop(unet, scheduler, x):
    states = []
    with torch.no_grad():
        for timestep in scheduler.timesteps:
            velocity = unet(x, timestep.expand(x.shape[0])).sample
            x = scheduler.step(velocity, timestep, x).prev_sample
            states.append(x)
    return states


def test_flow_match_euler_scheduler_loop_is_sdekit_ddim_step_for_step():
    """FlowMatchEulerDiscreteScheduler's step x + (σ' − σ) û is DDIM on the rectified flow; from_unet reads the
    model as a velocity network fed σ·1000, timestep_grid its sigmas (set to start at T).

    In float64, so that what is compared is the arithmetic: 1.8e-7 measured, the scheduler's float32 σ's. In
    float32 the x̂₀ that DDIM forms from the score divides round-off by α(T) = 10⁻³ (1e-5 measured; Euler 5e-6)."""
    diffusers = pytest.importorskip("diffusers")
    from adapters.diffusers import from_unet, timestep_grid

    unet = tiny_unet().double()
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler()  # a shift would move these sigmas (above T)
    scheduler.set_timesteps(sigmas=np.linspace(0.999, 0.01, 8))
    x_T = torch.randn(3, 2, 8, 8, generator=torch.Generator().manual_seed(0), dtype=F64)
    reference = _flow_match_loop(unet, scheduler, x_T)
    sde, score = from_unet(unet, scheduler)
    assert isinstance(sde, sdekit.RectifiedFlowSDE) and isinstance(score, flow.FlowScore)
    grid = timestep_grid(scheduler)
    assert float(grid[0]) == sde.T  # its float32 σ = 0.999 + 1.3e-8, pinned to T
    torch.testing.assert_close(grid[1:], scheduler.sigmas[1:-1].double(), rtol=1e-12, atol=0)
    states: list[torch.Tensor] = []
    with torch.no_grad():
        out = sdekit.ode_sample(sde, score, x_T=x_T, method="ddim", grid=grid,
                                callback=lambda payload: states.append(payload["x"]))  # fmt: skip
    assert out.dtype == F64
    for a, b in zip([*states, out], reference, strict=True):
        assert float((a - b).abs().max() / b.abs().max()) <= 1e-6
    scheduler.set_timesteps(8)  # diffusers' default grid starts at σ = 1, above T: refused with the remedy
    with pytest.raises(ValueError, match=r"first σ = 1 is above the rectified flow's T = 0.999.*set_timesteps\("):
        timestep_grid(scheduler)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_edm_euler_scheduler_loop_is_sdekit_ddim_step_for_step(prediction_type):
    """EDMEulerScheduler preconditions the UNet (c_in, ¼ log σ, c_skip, c_out) and steps Euler in σ: DDIM on
    EDMSDE through from_unet's EDMPreconditioned denoiser, on the scheduler's own σ grid."""
    diffusers = pytest.importorskip("diffusers")
    from adapters.diffusers import EDMPreconditioned, from_unet, timestep_grid

    unet = tiny_unet()
    scheduler = diffusers.EDMEulerScheduler(prediction_type=prediction_type, sigma_max=20.0)
    scheduler.set_timesteps(8)
    x_T = torch.randn(3, 2, 8, 8, generator=torch.Generator().manual_seed(0)) * 20.0
    x, reference = x_T, []
    with torch.no_grad():
        for timestep in scheduler.timesteps:
            out = unet(scheduler.scale_model_input(x, timestep), timestep.expand(3)).sample
            x = scheduler.step(out, timestep, x).prev_sample
            reference.append(x)
    sde, score = from_unet(unet, scheduler)
    assert isinstance(sde, sdekit.EDMSDE) and (sde.sigma_min, sde.sigma_max) == (0.002, 20.0)
    assert isinstance(score.denoiser, EDMPreconditioned)
    states: list[torch.Tensor] = []
    with torch.no_grad():
        out = sdekit.ode_sample(sde, score, x_T=x_T, method="ddim", grid=timestep_grid(scheduler),
                                callback=lambda payload: states.append(payload["x"]))  # fmt: skip
    for a, b in zip([*states, out], reference, strict=True):
        assert float((a - b).abs().max() / b.abs().max()) <= 1e-5


_FIRST_ORDER = {"ancestral", "ddim", "euler", "euler_maruyama", "reverse_diffusion"}


def _every_method() -> list[tuple[str, str]]:
    from sdekit.sampling import ode_methods, sde_methods

    return [("sample", m) for m in sde_methods()] + [("ode_sample", m) for m in ode_methods()]


@pytest.mark.slow
@pytest.mark.parametrize("family", ["rf", "edm"])
@pytest.mark.parametrize(("front", "method"), _every_method())
def test_every_method_samples_a_gaussian_at_floor_under_the_new_families(family, front, method):
    """Every sampler runs on both families and converges: at floor on an anisotropic 2-D Gaussian at 400 steps
    (first order), 100 (higher order) or its default tolerances (adaptive). torchsde's methods step uniformly in t,
    which on EDMSDE (t = σ) is uniform in σ: they are measured there to be far off (+21 nats at 100 steps) and are
    only checked to finish; use VESDE(0.002, 80), whose σ(t) is geometric, with them."""
    sde = sdekit.RectifiedFlowSDE() if family == "rf" else sdekit.EDMSDE()
    data = Gaussian(torch.tensor([0.5, -0.3], dtype=F64), torch.tensor([[0.2, 0.05], [0.05, 0.1]], dtype=F64))
    adaptive = method in ("adaptive", "dopri5", "bosh3", "heun_euler")
    steps = {} if adaptive else {"steps": 400 if method.split(":")[-1] in _FIRST_ORDER else 100}
    x, info = getattr(sdekit, front)(sde, data.score(sde), shape=(4096, 2), method=method, return_info=True,
                                     generator=torch.Generator().manual_seed(0), **steps)  # fmt: skip
    assert bool(torch.isfinite(x).all())
    if not adaptive:  # the honest count: one call a step (more for multi-stage steps), and the final denoising
        assert int(info.nfe) >= steps["steps"] + 1
    if family == "edm" and method.startswith("torchsde:"):
        return
    report = evaluate(x.double(), data)
    assert report.at_floor(), report


def test_torchsde_takes_exactly_the_steps_asked_whatever_the_length():
    """With dt = (T − eps)/steps exactly, the float64 sum of the steps can fall an ulp short of the end: sdeint then
    took one more step of ~1e-16, an extra score call, and at T − eps = 0.996 (the rectified flow's) hung in
    torchsde's BrownianInterval (at 20 steps it only cost the extra call, 23 NFE: what this checks). Now the count
    is the same on every SDE: steps, one call torchsde makes to start, and the final denoising."""
    data = Gaussian(torch.zeros(2, dtype=F64), torch.eye(2, dtype=F64))
    for sde in (sdekit.VPSDE(), sdekit.RectifiedFlowSDE(), sdekit.EDMSDE()):
        _, info = sdekit.sample(sde, data.score(sde), shape=(8, 2), method="torchsde:euler", steps=20,
                                generator=torch.Generator().manual_seed(0), return_info=True)  # fmt: skip
        assert int(info.nfe) == 22, sde


def test_a_float32_end_time_is_the_end_time():
    rf = sdekit.RectifiedFlowSDE()
    rf.check_time(torch.tensor([0.999], dtype=torch.float32).double())  # 0.999 + 1.3e-8: T, as float32 holds it
    with pytest.raises(ValueError, match=r"t must lie in \[0, T\] = \[0, 0.999\], got 0.99900011"):
        rf.check_time(torch.tensor([0.999 * (1 + 1.2e-7)], dtype=F64))
    with pytest.raises(ValueError, match=r"\[0, 1\], got 1.0000001"):
        sdekit.VPSDE().check_time(torch.tensor([1 + 1e-7], dtype=F64))


@pytest.mark.parametrize("kind", ["FlowMatchEulerDiscreteScheduler", "EDMEulerScheduler"])
def test_pipeline_sample_runs_flow_matching_and_edm_pipelines_through_any_method(kind):
    """A pixel pipeline holding a flow-matching or EDM scheduler: its UNet through sdekit's methods, the adaptive
    SDE solver included, equal to from_unet plus the sampler on the same seeds."""
    diffusers = pytest.importorskip("diffusers")
    from adapters.diffusers import from_unet
    from sdekit.interop.diffusers import pipeline_sample

    unet = tiny_unet()
    pipeline = diffusers.DDPMPipeline(unet=unet, scheduler=getattr(diffusers, kind)())
    images = pipeline_sample(pipeline, 3, method="dpmpp_2m", steps=4, generator=[1, 2, 3])
    assert images.shape == (3, 2, 8, 8) and 0 <= float(images.min()) <= float(images.max()) <= 1
    sde, score = from_unet(unet, pipeline.scheduler)
    with torch.no_grad():
        x = sdekit.ode_sample(sde, score, (3, 2, 8, 8), method="dpmpp_2m", steps=4, generator=[1, 2, 3])
    torch.testing.assert_close(images, (x / 2 + 0.5).clamp(0, 1), rtol=0, atol=0)
    adaptive = pipeline_sample(pipeline, 2, method="adaptive", generator=[4, 5], rtol=0.05)
    assert bool(torch.isfinite(adaptive).all())


def _cosine_alpha(t: torch.Tensor) -> torch.Tensor:
    return torch.cos(t * math.pi / 2)


def _cosine_sigma(t: torch.Tensor) -> torch.Tensor:
    return torch.sin(t * math.pi / 2)


def test_autograd_derivatives_hold_under_inference_mode_and_for_constant_schedules():
    """Under torch.inference_mode autograd records nothing: the derivatives were silently 0 there (f = g² = 0, a
    process that does not move). A schedule with no dependence on t (α ≡ 1) has derivative 0, not an error."""
    sde = sdekit.InterpolantSDE(_cosine_alpha, _cosine_sigma, T=0.999)
    t = torch.tensor([0.5], dtype=F64)
    expected = (sde.drift_coeff(t), sde.diffusion_squared(t))
    torch.testing.assert_close(expected[0], torch.tensor([-math.pi / 2], dtype=F64), rtol=1e-14, atol=0)
    with torch.inference_mode():
        inside = sdekit.InterpolantSDE(_cosine_alpha, _cosine_sigma, T=0.999)  # its construction checks g² > 0
        half = torch.tensor([0.5], dtype=F64)
        got = (inside.drift_coeff(half), sde.diffusion_squared(half))
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    ve_like = sdekit.InterpolantSDE(torch.ones_like, _identity_schedule, T=2.0)
    assert float(ve_like.drift_coeff(t)) == 0.0 and float(ve_like.diffusion_squared(t)) == 1.0  # g² = 2σσ̇ = 2t


def _identity_schedule(t: torch.Tensor) -> torch.Tensor:
    return t


def test_the_new_families_pickle():
    import pickle

    for sde in (sdekit.RectifiedFlowSDE(0.99), sdekit.EDMSDE(0.01, 20.0),
                sdekit.InterpolantSDE(_cosine_alpha, _cosine_sigma, T=0.999)):  # fmt: skip
        again = pickle.loads(pickle.dumps(sde))
        torch.testing.assert_close(again.diffusion_squared(TIMES * 0.9), sde.diffusion_squared(TIMES * 0.9))
        assert again.T == sde.T and again.default_eps == sde.default_eps


def test_an_explicit_float32_grid_may_start_at_the_float32_t():
    rf = sdekit.RectifiedFlowSDE()
    grid = sdekit.make_grid("log_snr", rf, 10, 3e-3).float()  # its first point: 0.999 + 1.3e-8
    data = Gaussian(torch.zeros(2, dtype=F64), torch.eye(2, dtype=F64))
    _, info = sdekit.ode_sample(rf, data.score(rf), (4, 2), grid=grid, method="ddim", return_info=True)
    assert float(info.grid[0]) == rf.T
    with pytest.raises(ValueError, match=r"grid must run within \(0, T\] = \(0, 0.999\], got 0.9991 \.\.\. 0.01"):
        sdekit.ode_sample(rf, data.score(rf), (4, 2), grid=torch.tensor([0.9991, 0.5, 0.01], dtype=F64), method="ddim")


def test_timestep_grid_names_the_remedy_for_shifted_flow_grids_and_edm_s_sigma_min_end():
    diffusers = pytest.importorskip("diffusers")
    from adapters.diffusers import from_unet, timestep_grid

    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    scheduler.set_timesteps(sigmas=np.linspace(0.999, 0.01, 6))  # shifted to 0.99967: above T
    with pytest.raises(ValueError, match=r"a first σ of at most 0.997006 \(the scheduler's shift = 3 maps it to T\)"):
        timestep_grid(scheduler)
    scheduler.set_timesteps(sigmas=np.linspace(0.999 / (3 - 2 * 0.999), 0.01, 6))
    assert float(timestep_grid(scheduler)[0]) == 0.999
    edm = diffusers.EDMEulerScheduler(final_sigmas_type="sigma_min")
    edm.set_timesteps(5)
    with pytest.raises(ValueError, match=r"final_sigmas_type='sigma_min': its last step has length 0"):
        timestep_grid(edm)
    with pytest.raises(ValueError, match=r"only num_train_timesteps and shift.*pass the scheduler itself"):
        from_unet(tiny_unet(), diffusers.FlowMatchHeunDiscreteScheduler().config)


def _rf_like_alpha(t: torch.Tensor) -> torch.Tensor:
    return 1 - t / 2


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: sdekit.InterpolantSDE(_rf_like_alpha, "t"), TypeError,
         "sigma must be a function of a float64 time tensor, got str"),
        (lambda: sdekit.InterpolantSDE(_rf_like_alpha, _identity_schedule, d_alpha=2.0), TypeError,
         "d_alpha must be a function of a float64 time tensor, got float"),
        (lambda: sdekit.InterpolantSDE(_rf_like_alpha, _identity_schedule, d_sigma=[1]), TypeError,
         "d_sigma must be a function of a float64 time tensor, got list"),
        (lambda: sdekit.InterpolantSDE(_rf_like_alpha, _identity_schedule, T=True), ValueError,
         "T must be a positive finite number, got True"),
        (lambda: sdekit.InterpolantSDE(_rf_like_alpha, _identity_schedule, T=math.inf), ValueError,
         "T must be a positive finite number, got inf"),
        (lambda: sdekit.InterpolantSDE(_rf_like_alpha, _identity_schedule, prior_std=0.0), ValueError,
         "prior_std must be positive and finite, got 0.0"),
        (lambda: sdekit.InterpolantSDE(_rf_like_alpha, _identity_schedule, prior_std=math.inf), ValueError,
         "prior_std must be positive and finite, got inf"),
        # σ < 0 only just after 0 (at the first checked point, t = T/256): the check starts there
        (lambda: sdekit.InterpolantSDE(_rf_like_alpha, lambda t: t - 0.005), ValueError,
         "sigma must be positive and finite on (0, T]"),
        (lambda: sdekit.InterpolantSDE(_rf_like_alpha, lambda t: t / (t - 0.5)), ValueError,
         "sigma must be positive and finite on (0, T]"),
        (lambda: sdekit.InterpolantSDE(torch.ones_like, lambda t: 0.5 + 0 * t), ValueError,
         "the log-SNR log(alpha/sigma) must decrease strictly on (0, T] (g² > 0)"),  # λ constant: g² = 0
        (lambda: sdekit.InterpolantSDE(_rf_like_alpha, lambda t: t.sum() + 0 * t[:1]), ValueError,
         "alpha and sigma must be elementwise: a time tensor of shape (B,) gives shape (B,)"),
        (lambda: sdekit.RectifiedFlowSDE(0.0), ValueError, "T must lie in (0, 1), got 0.0: at T = 1"),
        (lambda: sdekit.RectifiedFlowSDE(True), ValueError, "T must lie in (0, 1), got True"),
        (lambda: sdekit.EDMSDE(0.0, 80.0), ValueError, "sigma_min must be a positive finite number, got 0.0"),
        (lambda: sdekit.EDMSDE(True, 80.0), ValueError, "sigma_min must be a positive finite number, got True"),
        (lambda: sdekit.EDMSDE(0.5, 0.5), ValueError, "sigma_min must be < sigma_max, got sigma_min=0.5"),
    ],
)  # fmt: skip
def test_bad_schedules_and_ranges_are_one_line_errors_naming_the_argument(build, error, message):
    with pytest.raises(error, match=re.escape(message)) as raised:
        build()
    assert "\n" not in str(raised.value)


def test_a_subclass_s_repr_names_it_and_edm_defaults():
    class Cosine(sdekit.InterpolantSDE):
        def __init__(self) -> None:
            super().__init__(_cosine_alpha, _cosine_sigma, T=0.999)

    assert repr(Cosine()) == "Cosine(T=0.999)" and repr(sdekit.RectifiedFlowSDE()) == "RectifiedFlowSDE(T=0.999)"
    assert repr(sdekit.EDMSDE()) == "EDMSDE(sigma_min=0.002, sigma_max=80)"


def test_unipc_orders_along_the_grid_and_its_bool_options():
    from sdekit.solvers import UniPC

    sde, grid = sdekit.VPSDE(), torch.linspace(1.0, 1e-3, 7, dtype=F64)  # 6 steps and the final denoising
    score = Gaussian(torch.zeros(2, dtype=F64), torch.eye(2, dtype=F64)).score(sde)
    lowered = UniPC(order=3).start(sde, score, grid)
    assert [lowered.order_at(i) for i in range(6)] == [1, 2, 3, 3, 3, 2]  # the final denoising counts as a step
    kept = UniPC(order=3, lower_order_final=False).start(sde, score, grid)
    assert [kept.order_at(i) for i in range(6)] == [1, 2, 3, 3, 3, 3]
    with pytest.raises(ValueError, match="order must be the int 1, 2 or 3, got True"):
        UniPC(order=True)
    with pytest.raises(TypeError, match="lower_order_final must be a bool, got 'yes'"):
        UniPC(lower_order_final="yes")
