"""Methods as configured objects: every option reachable, clear errors, one result, one callback payload."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch

import sdekit.sampling as sdekit_sampling
from sdekit import VESDE, VPSDE, ode_sample, pc_sample, sample
from sdekit.solvers import (
    PREDICTORS,
    AdaptiveODE,
    AdaptiveSDE,
    Ancestral,
    AnnealedLangevin,
    DPMSolverPP,
    DPMSolverPP3M,
    EulerMaruyama,
    Heun,
    Langevin,
    PredictorCorrector,
    SampleInfo,
    TorchSDE,
)
from sdekit.solvers.predictors import AffinePredictor

from conftest import gaussian_score

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def run(sampler, sde=None, **kwargs):  # type: ignore[no-untyped-def]
    sde = sde or VPSDE()
    return sampler(sde, gaussian_score(sde), (6, 3), generator=gen(3), dtype=F64, return_info=True, **kwargs)


def test_an_object_and_a_name_with_options_are_the_same_method() -> None:
    by_object, _ = run(ode_sample, method=DPMSolverPP(order=3, lower_order_final=False), steps=8)
    by_name, _ = run(ode_sample, method="dpmpp_3m", lower_order_final=False, steps=8)
    default, _ = run(ode_sample, method="dpmpp_3m", steps=8)
    assert torch.equal(by_object, by_name)
    assert not torch.equal(by_object, default)  # the option reached the method
    assert DPMSolverPP3M().order == 3 and DPMSolverPP(order=3).options == {"order": 3, "lower_order_final": True}
    assert torch.equal(run(ode_sample, method=DPMSolverPP(order=3), steps=8)[0], default)


def test_options_of_every_kind_are_reachable_from_the_front_doors() -> None:
    sde_stepper, _ = run(sample, method="dpmpp_2m_sde", lower_order_final=False, steps=6)
    assert torch.isfinite(sde_stepper).all()
    adaptive_named, info_named = run(sample, method="adaptive", rtol=0.02)
    adaptive_object, info_object = run(sample, method=AdaptiveSDE(rtol=0.02))
    assert torch.equal(adaptive_named, adaptive_object) and info_named == info_object
    looser, _ = run(sample, method=AdaptiveSDE(rtol=0.1))
    assert not torch.equal(adaptive_named, looser)
    flow, _ = run(ode_sample, method=AdaptiveODE(method="bosh3", rtol=1e-4))
    assert torch.equal(flow, run(ode_sample, method="bosh3", rtol=1e-4)[0])
    srk, _ = run(sample, method=TorchSDE(method="srk"), steps=4)
    assert torch.equal(srk, run(sample, method="torchsde:srk", steps=4)[0])


def test_predictor_corrector_object_is_pc_sample() -> None:
    pc = PredictorCorrector(predictor=Ancestral(), corrector=Langevin(snr=0.2), corrector_steps=2)
    by_object, info = run(sample, method=pc, steps=5)
    by_front_door, front_info = run(pc_sample, predictor="ancestral", snr=0.2, corrector_steps=2, steps=5)
    by_corrector_object, _ = run(
        pc_sample, predictor="ancestral", corrector=Langevin(snr=0.2), corrector_steps=2, steps=5
    )
    assert torch.equal(by_object, by_front_door) and torch.equal(by_object, by_corrector_object)
    assert info.nfe == front_info.nfe == 5 * (1 + 2) + 1
    with pytest.raises(TypeError, match=r"snr is an option of the corrector object.*Langevin\(snr=\.\.\.\)"):
        run(pc_sample, corrector=Langevin(), snr=0.2, steps=2)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: DPMSolverPP(ordr=3), TypeError, r"takes no option\(s\) ordr; valid options: lower_order_final, order"),
        (lambda: DPMSolverPP(order=4), ValueError, "order must be the int 1, 2 or 3"),
        (lambda: DPMSolverPP(order=2.0), ValueError, "order must be the int 1, 2 or 3"),
        (lambda: DPMSolverPP3M(order=2), TypeError, "valid options: lower_order_final$"),
        (lambda: run(sample, method="dpmpp_2m_sde", order=3), TypeError, "valid options: lower_order_final$"),
        (lambda: Ancestral(VPSDE(), None, None), TypeError, r"keywords only.*\.start\(sde, score, grid, generator\)"),
        (lambda: AdaptiveODE(max_steps=-1), ValueError, "max_steps"),
        (lambda: AdaptiveODE(h_init=-1.0), ValueError, "h_init"),
        (lambda: AdaptiveODE(sync_every=0), ValueError, "sync_every"),
        (lambda: AdaptiveODE(t_eval="x"), TypeError, "t_eval"),
        (lambda: AdaptiveODE(backend="scipy", sync_every=2), TypeError, "native backend only"),
        (lambda: TorchSDE(adaptive="yes"), TypeError, "adaptive must be a bool"),
        (lambda: TorchSDE(rtol=-1.0), ValueError, "rtol"),
        (lambda: run(ode_sample, method="euler", backend="native"), TypeError, "backend is an option of the adaptive"),
        (lambda: PREDICTORS.register("_test_fn")(lambda sde: None), TypeError, "register a Predictor subclass"),
        (lambda: DPMSolverPP(lower_order_final="yes"), TypeError, "lower_order_final must be a bool"),
        (lambda: Langevin(snr=-1.0), ValueError, "snr"),
        (lambda: AnnealedLangevin(steps=2), TypeError, "valid options: snr"),
        (lambda: AdaptiveSDE(rtol=0.0), ValueError, "rtol"),
        (lambda: AdaptiveSDE(norm="l1"), ValueError, "norm"),
        (lambda: AdaptiveODE(backend="jax"), ValueError, "backend"),
        (lambda: TorchSDE(method="heun"), ValueError, "method"),
        (lambda: PredictorCorrector(predictor="nope"), ValueError, "predictor"),
        (lambda: PredictorCorrector(corrector=Ancestral()), TypeError, "corrector must be"),
        (lambda: PredictorCorrector(corrector_steps=-1), ValueError, "corrector_steps"),
        (lambda: run(sample, method="ancestral", eta=1.0), TypeError, "method 'ancestral' takes no option.*none"),
        (lambda: run(sample, method="adaptive", rtl=0.1), TypeError, "valid options: atol, error_use_prev"),
        (lambda: run(sample, method="torchsde:srk", method_name="x"), TypeError, "valid options: adaptive, atol"),
        (lambda: run(sample, method=AdaptiveSDE(), rtol=0.1), TypeError, "pass them to its constructor"),
        (lambda: run(sample, method=Heun()), TypeError, "is a ode method; this sampler takes sde methods"),
        (lambda: run(ode_sample, method=EulerMaruyama()), TypeError, "is a sde method"),
    ],
)
def test_a_wrong_option_is_a_clear_error_at_construction(call, error, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=message):
        call()


def test_equality_and_removed_names() -> None:
    grid = torch.linspace(1.0, 0.1, 4, dtype=F64)
    assert AdaptiveODE(t_eval=grid) == AdaptiveODE(t_eval=grid.clone()) != AdaptiveODE(t_eval=grid[:3])
    assert DPMSolverPP(order=3) != DPMSolverPP3M()  # a different class, though the same method
    import sdekit.solvers

    for name in ("OdeStats", "AdaptiveStats", "StepperFactory", "Stepper"):
        with pytest.raises(AttributeError, match=f"sdekit.solvers.{name} was removed; use "):
            getattr(sdekit.solvers, name)


def test_payload_denoised_is_computed_only_when_read() -> None:
    sde, calls = VPSDE(), []
    real = sdekit_sampling._tweedie

    def counting(*args):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(*args)

    payloads: list[dict[str, Any]] = []
    try:
        sdekit_sampling._tweedie = counting
        sample(sde, gaussian_score(sde), (3, 2), method="ancestral", steps=4, callback=payloads.append,
               generator=gen(0), denoise=False)  # fmt: skip
        assert calls == []
        copied = dict(payloads[-1])  # reading through the payload computes it, once
        assert isinstance(copied["denoised"], torch.Tensor) and calls == [1]
        assert payloads[-1]["denoised"] is copied["denoised"] and calls == [1]
        torch.testing.assert_close(payloads[-1]["denoised_t"], torch.tensor([payloads[-1]["t"]], dtype=F64))
    finally:
        sdekit_sampling._tweedie = real


def test_a_configured_object_serves_many_runs_unchanged() -> None:
    method = DPMSolverPP3M()
    first, _ = run(ode_sample, method=method, steps=7)
    second, _ = run(ode_sample, method=method, steps=7)
    assert torch.equal(first, second)  # no history carried over from the first run
    assert method.options == {"lower_order_final": True} and not hasattr(method, "plan")
    assert repr(method) == "DPMSolverPP3M(lower_order_final=True)"
    started = method.start(VPSDE(), gaussian_score(VPSDE()), torch.linspace(1.0, 1e-3, 5, dtype=F64))
    assert started.start(VPSDE(), gaussian_score(VPSDE()), torch.linspace(1.0, 1e-3, 3, dtype=F64)).steps == 2


def test_registering_a_method_with_a_parameter_is_one_class() -> None:
    @PREDICTORS.register("_test_damped_euler")
    class Damped(AffinePredictor):
        """Euler–Maruyama on a linear SDE, x' = (1 − h f) x + damping·h g² s + g √h z."""

        defaults: ClassVar[dict[str, Any]] = {"damping": 1.0}
        damping: float

        def coefficients(self, sde, t, t_next):  # type: ignore[no-untyped-def]
            h, g2 = t - t_next, sde.diffusion_squared(t)
            return 1 - h * sde.drift_coeff(t), self.damping * (h * g2), (g2 * h).sqrt()

    try:
        full, _ = run(sample, method="_test_damped_euler", steps=5)
        assert torch.equal(full, run(sample, method="euler_maruyama", steps=5)[0])
        half, _ = run(sample, method="_test_damped_euler", damping=0.5, steps=5)
        assert torch.equal(half, run(sample, method=Damped(damping=0.5), steps=5)[0])
        assert not torch.equal(full, half)
    finally:
        assert PREDICTORS.unregister("_test_damped_euler") is Damped
    assert "_test_damped_euler" not in PREDICTORS


def test_adaptive_info_has_per_sample_counts() -> None:
    _, info = run(sample, method="adaptive")
    assert isinstance(info, SampleInfo) and info.samples == 6
    assert info.sample_steps is not None and info.sample_rejected is not None
    assert info.sample_steps.shape == (6,) and int(info.sample_steps.sum()) == info.steps == info.accepted
    assert int(info.sample_rejected.sum()) == info.rejected
    assert info.nfe == 2 * info.iterations + 1  # two calls per iteration, one denoising call
    assert info.evaluations <= 2 * info.iterations * 6
    _, flow = run(ode_sample, method="dopri5")
    assert flow.sample_steps is not None and int(flow.sample_steps.sum()) == flow.steps and flow.samples == 6


def test_fixed_grid_callback_payload_has_the_denoised_estimate() -> None:
    sde, payloads = VPSDE(), []
    score = gaussian_score(sde)
    x_T = torch.randn(5, 3, generator=gen(0), dtype=F64)
    sample(sde, score, x_T=x_T, method="euler_maruyama", steps=4, dtype=F64, generator=gen(1), callback=payloads.append)
    assert [p["i"] for p in payloads] == [0, 1, 2, 3]
    assert set(payloads[0]) == {"x", "i", "t", "t_next", "denoised", "denoised_t"}
    previous = x_T
    for payload in payloads:  # Euler–Maruyama calls the score once, at the step's start
        t = torch.tensor([payload["t"]], dtype=F64)
        alpha, sigma = sde.kernel(t)
        expected = (previous + sigma**2 * score(previous, t.expand(5))) / alpha
        torch.testing.assert_close(payload["denoised"], expected, rtol=1e-12, atol=1e-12)
        previous = payload["x"]


def test_adaptive_callback_payload_has_the_denoised_estimate_of_the_active_samples() -> None:
    payloads: list[dict[str, Any]] = []
    run(sample, sde=VESDE(sigma_max=5.0), method="adaptive", callback=payloads.append)
    assert payloads and all({"x", "i", "t", "denoised", "h", "index", "accepted"} <= set(p) for p in payloads)
    assert all(p["denoised"].shape == p["x"].shape for p in payloads)
    assert [p["i"] for p in payloads] == list(range(len(payloads)))


def test_adaptive_ode_callback_payload() -> None:
    payloads: list[dict[str, Any]] = []
    _, info = run(ode_sample, method="dopri5", callback=payloads.append)
    assert len(payloads) == info.iterations and [p["i"] for p in payloads] == list(range(info.iterations))
    assert all({"x", "i", "t", "h", "index", "accepted", "denoised", "denoised_t"} <= set(p) for p in payloads)
    last = payloads[-1]
    assert last["denoised"].shape == last["x"].shape and last["accepted"].dtype == torch.bool
    assert int(sum(int(p["accepted"].sum()) for p in payloads)) >= info.steps  # finished rows ride along


def test_the_denoising_refusal_comes_before_the_run() -> None:
    from conftest import GenericVP

    calls = []

    def score(x, t):  # type: ignore[no-untyped-def]
        calls.append(1)
        return -x

    with pytest.raises(TypeError, match="denoise=True needs a LinearSDE"):
        sample(GenericVP(), score, (4, 2), steps=50)
    assert calls == []  # nothing was computed and lost


def test_one_step_formula_serves_a_state_dependent_diffusion() -> None:
    """EM, reverse diffusion and Heun on an SDE with a diagonal G(x, t): one step of each equals its formula
    written with the reverse SDE / flow objects (divergence term included), to rounding."""
    import sdekit
    from sdekit import probability_flow, reverse
    from sdekit.checks import batch_view

    class Coupled(sdekit.SDE):
        state_dependent_diffusion = True

        def drift(self, x, t):  # type: ignore[no-untyped-def]
            return -batch_view(t, x) * x

        def diffusion(self, x, t):  # type: ignore[no-untyped-def]
            return batch_view(t, x) * (1 + x**2).sqrt()

        def marginal(self, x0, t):  # type: ignore[no-untyped-def]
            raise NotImplementedError

        def prior_sample(self, shape, *, generator=None, device=None, dtype=torch.float32):  # type: ignore[no-untyped-def]
            return torch.randn(shape, generator=generator, device=device, dtype=dtype)

        def prior_logp(self, z):  # type: ignore[no-untyped-def]
            raise NotImplementedError

    sde = Coupled()
    score = lambda x, t: -x / (1 + batch_view(t, x))  # noqa: E731
    x0 = torch.randn(4, 3, generator=gen(0), dtype=F64)
    grid = torch.tensor([1.0, 0.7], dtype=F64)
    t, t_next, h = grid[:1].expand(4), grid[1:].expand(4), 0.3
    z = torch.randn(4, 3, generator=gen(1), dtype=F64)  # the step's noise, drawn as the sampler draws it

    def one_step(method: str) -> torch.Tensor:
        sampler = ode_sample if method == "heun" else sample
        return sampler(sde, score, x_T=x0, method=method, grid=grid, denoise=False, dtype=F64, generator=gen(1))

    em = x0 - h * reverse(sde, score).drift(x0, t) + sde.diffusion(x0, t) * h**0.5 * z
    torch.testing.assert_close(one_step("euler_maruyama"), em, rtol=1e-13, atol=1e-13)
    f_i, G_i = sde.discretize(x0, t, t_next)
    rd = x0 - f_i + G_i**2 * score(x0, t) + G_i * z
    torch.testing.assert_close(one_step("reverse_diffusion"), rd, rtol=1e-13, atol=1e-13)
    flow = probability_flow(sde, score)
    k1 = flow.drift(x0, t)
    k2 = flow.drift(x0 - h * k1, t_next)
    torch.testing.assert_close(one_step("heun"), x0 - h * (k1 + k2) / 2, rtol=1e-13, atol=1e-13)


def test_one_tableau_type_runs_on_a_grid_and_adaptively() -> None:
    """dopri5 on a fixed grid (6 calls a step: its FSAL stage is skipped) converges at fifth order;
    Heun with Euler embedded runs adaptively; RungeKutta(tableau="heun") is the registered Heun."""
    from sdekit.solvers import RungeKutta

    sde = VPSDE()
    score = gaussian_score(sde)
    x_T = torch.randn(16, 3, generator=gen(5), dtype=F64)
    exact = ode_sample(sde, score, x_T=x_T, method="dopri5", rtol=1e-12, atol=1e-12, dtype=F64, denoise=False)

    def error(steps: int) -> float:
        x, info = ode_sample(sde, score, x_T=x_T, method=RungeKutta(tableau="dopri5"), steps=steps, grid="log_snr",
                             dtype=F64, denoise=False, return_info=True)  # fmt: skip
        assert info.nfe == 6 * steps
        return float((x - exact).abs().max())

    assert error(8) / error(16) > 2**4.5  # fifth order (2^5 = 32 asymptotically)
    heun = ode_sample(sde, score, x_T=x_T, method="heun", steps=12, dtype=F64)
    assert torch.equal(heun, ode_sample(sde, score, x_T=x_T, method=RungeKutta(tableau="heun"), steps=12, dtype=F64))
    adaptive, info = ode_sample(sde, score, x_T=x_T, method="heun_euler", rtol=1e-6, atol=1e-6, dtype=F64,
                                denoise=False, return_info=True)  # fmt: skip
    assert float((adaptive - exact).abs().max()) < 1e-4 and info.rejected >= 0 and info.steps > 0
    with pytest.raises(ValueError, match="tableau"):
        RungeKutta(tableau="nope")


def test_one_controller_interface_for_both_adaptive_solvers() -> None:
    """A controller is anything with propose(h, error, previous, accepted, k): the built-ins through it
    reproduce the solvers exactly, and a wrong object is refused at construction."""
    from sdekit.solvers import GottaGoFast, PIController

    class Delegating:
        def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
            self.inner, self.calls = inner, 0

        def propose(self, h, error, previous, accepted, k):  # type: ignore[no-untyped-def]
            self.calls += 1
            return self.inner.propose(h, error, previous, accepted, k)

    wrapped = Delegating(PIController())
    by_default, _ = run(ode_sample, method="bosh3")
    through, _ = run(ode_sample, method=AdaptiveODE(method="bosh3", controller=wrapped))
    assert torch.equal(by_default, through) and wrapped.calls > 0
    slower, _ = run(ode_sample, method=AdaptiveODE(method="bosh3", controller=PIController(max_factor=1.5)))
    assert not torch.equal(by_default, slower)
    gg = GottaGoFast()
    h, error = torch.tensor([0.1, 0.2], dtype=F64), torch.tensor([0.5, 2.0], dtype=F64)
    torch.testing.assert_close(gg.propose(h, error, error, error <= 1, 2), 0.9 * h * error**-0.9, rtol=0, atol=0)
    with pytest.raises(TypeError, match="step-size controller"):
        AdaptiveODE(controller=object())
