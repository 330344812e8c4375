"""Fixed-step samplers: conventions (NFE, generator, shapes, callback), robustness, errors."""

from __future__ import annotations

import math

import pytest
import torch

from sdekit import VESDE, VPSDE, SubVPSDE, ode_sample, pc_sample, sample
from sdekit.solvers import CORRECTORS, PREDICTORS

from conftest import GenericVP, gaussian_score

SDES = {"vp": VPSDE(), "subvp": SubVPSDE(), "ve": VESDE(sigma_min=0.01, sigma_max=5.0)}
PAIRS = [(p, c) for p in PREDICTORS.names() for c in CORRECTORS.names()]


class Counting:
    def __init__(self, score):
        self.score, self.calls = score, 0

    def __call__(self, x, t):
        self.calls += 1
        return self.score(x, t)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", SDES)
@pytest.mark.parametrize(("predictor", "corrector"), PAIRS)
def test_finite_at_every_step_count(name, predictor, corrector):
    sde = SDES[name]
    score = gaussian_score(sde)
    for steps in (1, 2, 3, 5, 10, 20):
        x = pc_sample(sde, score, (64, 3), steps=steps, predictor=predictor, corrector=corrector, generator=gen())
        assert torch.isfinite(x).all(), (name, predictor, corrector, steps)


@pytest.mark.parametrize(("predictor", "corrector"), PAIRS)
@pytest.mark.parametrize("denoise", [True, False])
def test_nfe_is_the_true_number_of_score_calls(predictor, corrector, denoise):
    counting = Counting(gaussian_score(SDES["vp"]))
    _, info = pc_sample(
        SDES["vp"],
        counting,
        (8, 2),
        steps=7,
        predictor=predictor,
        corrector=corrector,
        corrector_steps=2,
        denoise=denoise,
        return_info=True,
    )
    assert info.nfe == counting.calls
    expected = 7 * (PREDICTORS.get(predictor).nfe_per_step + 2 * CORRECTORS.get(corrector).nfe_per_step) + denoise
    assert info.nfe == expected
    assert info.steps == 7


@pytest.mark.parametrize(("method", "per_step"), [("euler", 1), ("heun", 2), ("rk4", 4)])
def test_ode_nfe(method, per_step):
    counting = Counting(gaussian_score(SDES["vp"]))
    _, info = ode_sample(SDES["vp"], counting, (8, 2), method=method, steps=5, return_info=True)
    assert info.nfe == counting.calls == 5 * per_step + 1


@pytest.mark.parametrize("method", ["euler_maruyama", "reverse_diffusion", "ancestral"])
def test_same_generator_state_gives_identical_samples(method):
    score = gaussian_score(SDES["vp"])
    a = sample(SDES["vp"], score, (16, 3), method=method, steps=10, generator=gen(3))
    b = sample(SDES["vp"], score, (16, 3), method=method, steps=10, generator=gen(3))
    c = sample(SDES["vp"], score, (16, 3), method=method, steps=10, generator=gen(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("shape", [(5, 2), (4, 3, 4, 4), (3, 1, 2, 3, 2)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_any_event_shape_and_dtype(shape, dtype):
    seen = []

    def score(x, t):
        seen.append(t)
        return gaussian_score(SDES["ve"])(x, t)

    x = pc_sample(SDES["ve"], score, shape, steps=3, dtype=dtype, generator=gen())
    assert x.shape == shape and x.dtype == dtype
    assert all(t.shape == (shape[0],) and t.dtype == dtype for t in seen)


def test_callback_once_per_step_with_x_t_i():
    events = []
    pc_sample(SDES["vp"], gaussian_score(SDES["vp"]), (4, 2), steps=6, callback=events.append)
    assert [e["i"] for e in events] == list(range(6))
    assert events[0]["t"] == pytest.approx(1.0) and events[-1]["t_next"] == pytest.approx(1e-3)
    assert all(e["x"].shape == (4, 2) for e in events)


def test_progress_bar_runs(capsys):
    sample(SDES["vp"], gaussian_score(SDES["vp"]), (4, 2), steps=3, progress=True)
    assert "3/3" in capsys.readouterr().err


def test_x_T_maps_given_latents_deterministically():
    score = gaussian_score(SDES["vp"])
    x_T = torch.randn(32, 2, generator=gen())
    a = ode_sample(SDES["vp"], score, x_T=x_T, steps=10)
    b = ode_sample(SDES["vp"], score, x_T=x_T.clone(), steps=10, generator=gen(99))
    assert torch.equal(a, b)


def test_explicit_grid_and_named_grids():
    score = gaussian_score(SDES["vp"])
    grid = torch.tensor([1.0, 0.5, 0.1, 0.01])
    _, info = sample(SDES["vp"], score, (4, 2), grid=grid, return_info=True)
    assert info.steps == 3 and torch.equal(info.grid, grid.double())
    for name in ("uniform", "log_snr", "edm", "quadratic"):
        _, info = ode_sample(SDES["vp"], score, (4, 2), grid=name, steps=4, eps=1e-3, return_info=True)
        assert info.grid[0] == 1.0 and info.grid[-1] == pytest.approx(1e-3)
        assert (info.grid.diff() < 0).all()


def test_nan_from_score_mid_run_raises_naming_step_and_time():
    calls = {"n": 0}

    def flaky(x, t):
        calls["n"] += 1
        return torch.full_like(x, math.nan) if calls["n"] == 5 else -x

    with pytest.raises(FloatingPointError, match=r"step 4 of 10 \(t = 0\.6\d* -> 0\.5\d*\)"):
        sample(SDES["vp"], flaky, (4, 2), steps=10, eps=0.1, grid="uniform")


def test_nan_in_final_denoise_is_caught():
    def bad_at_end(x, t):
        return torch.full_like(x, math.inf) if float(t[0]) < 0.01 else -x

    with pytest.raises(FloatingPointError, match="final denoising"):
        sample(SDES["vp"], bad_at_end, (4, 2), steps=3)


# --- bad input: a clear error naming the argument, at the call -------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"steps": 0}, ValueError, "steps"),
        ({"steps": 2.5}, TypeError, "steps"),
        ({"eps": 0.0}, ValueError, "eps"),
        ({"eps": 1.0}, ValueError, "eps"),
        ({"eps": -1e-3}, ValueError, "eps"),
        ({"snr": 0.0}, ValueError, "snr"),
        ({"snr": -0.1}, ValueError, "snr"),
        (
            {"predictor": "heun"},
            ValueError,
            "predictor 'heun'; valid: ancestral, ddim, euler_maruyama, none, reverse_diffusion",
        ),
        (
            {"corrector": "hmc"},
            ValueError,
            "corrector 'hmc'; valid: annealed_langevin, langevin, langevin_per_sample, none",
        ),
        ({"corrector_steps": -1}, ValueError, "corrector_steps"),
        ({"grid": "cosine"}, ValueError, "grid 'cosine'; valid: edm, karras, log_snr, quadratic, uniform"),
        ({"grid": torch.tensor([1.0, 0.5, 0.7])}, ValueError, "strictly decreasing"),
        ({"grid": torch.tensor([2.0, 0.5])}, ValueError, "grid must run within"),
        ({"grid": torch.tensor([1.0, 0.5]), "eps": 0.1}, ValueError, "eps"),
    ],
)
def test_bad_arguments_raise_at_the_call(kwargs, error, match):
    score = Counting(gaussian_score(SDES["vp"]))
    with pytest.raises(error, match=match):
        pc_sample(SDES["vp"], score, (4, 2), **kwargs)
    assert score.calls == 0


@pytest.mark.parametrize("shape", [(0, 2), (4, -1), [], "4,2", (4, 2.0), None])
def test_bad_shape(shape):
    with pytest.raises((ValueError, TypeError), match="shape"):
        sample(SDES["vp"], gaussian_score(SDES["vp"]), shape, steps=2)


def test_unknown_method_lists_valid_ones():
    with pytest.raises(
        ValueError,
        match="method 'dopri9'; valid: adaptive, ancestral, ddim, dpmpp_2m_sde, edm_stochastic, euler_maruyama",
    ):
        sample(SDES["vp"], gaussian_score(SDES["vp"]), (4, 2), method="dopri9")
    with pytest.raises(
        ValueError,
        match="ODE method 'rk45'; valid: bosh3, ddim, dopri5, dpmpp_2m, dpmpp_3m, euler, heun, heun_euler, rk4",
    ):
        ode_sample(SDES["vp"], gaussian_score(SDES["vp"]), (4, 2), method="rk45")


@pytest.mark.parametrize(
    ("score", "error", "match"),
    [
        (lambda x, t: x[:, :1], ValueError, r"score returned shape \(4, 1\); it must match x's shape \(4, 2\)"),
        (lambda x, t: x.double(), TypeError, "score returned dtype torch.float64"),
        (lambda x, t: x.numpy(), TypeError, "score must return a torch.Tensor"),
    ],
)
def test_score_with_wrong_output_is_caught_on_first_call(score, error, match):
    with pytest.raises(error, match=match):
        sample(SDES["vp"], score, (4, 2), steps=3)


def test_score_not_callable():
    with pytest.raises(TypeError, match="score must be callable"):
        sample(SDES["vp"], 3.0, (4, 2), steps=3)


def test_sde_not_an_sde():
    with pytest.raises(TypeError, match=r"sde must be an sdekit\.SDE"):
        sample("vp", gaussian_score(SDES["vp"]), (4, 2), steps=3)


# --- the adaptive SDE method through sample() ------------------------------------------------------------------------


def test_adaptive_through_sample_counts_nfe_and_forwards_options():
    counting = Counting(gaussian_score(SDES["vp"]))
    x, info = sample(SDES["vp"], counting, (64, 3), method="adaptive", rtol=0.1, generator=gen(), return_info=True)
    assert torch.isfinite(x).all()
    assert info.nfe == counting.calls and info.nfe % 2 == 1  # two calls per iteration + the denoising call
    assert info.steps >= 64 and info.rejected >= 0
    tighter = sample(
        SDES["vp"],
        Counting(gaussian_score(SDES["vp"])),
        (64, 3),
        method="adaptive",
        rtol=0.02,
        generator=gen(),
        return_info=True,
    )[1]
    assert tighter.nfe > info.nfe


def test_adaptive_options_are_checked():
    score = gaussian_score(SDES["vp"])
    with pytest.raises(ValueError, match="rtol"):
        sample(SDES["vp"], score, (4, 2), method="adaptive", rtol=0.0)
    with pytest.raises(TypeError, match="grid is not an option of method 'adaptive'"):
        sample(SDES["vp"], score, (4, 2), method="adaptive", grid="uniform")
    with pytest.raises(TypeError, match="grid is not an option of method 'torchsde:euler'"):
        sample(SDES["vp"], score, (4, 2), method="torchsde:euler", grid="uniform")
    with pytest.raises(TypeError, match="callback is not an option of method 'torchsde:euler'"):
        sample(SDES["vp"], score, (4, 2), method="torchsde:euler", callback=print)
    with pytest.raises(TypeError, match="method 'ancestral' takes no option"):
        sample(SDES["vp"], score, (4, 2), method="ancestral", rtol=0.1)


# --- torchsde methods through sample() -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["torchsde:euler", "torchsde:milstein", "torchsde:srk"])
def test_torchsde_methods_are_reproducible_and_count_nfe(method):
    counting = Counting(gaussian_score(SDES["vp"]))
    x, info = sample(SDES["vp"], counting, (32, 3), method=method, steps=8, generator=gen(5), return_info=True)
    again = sample(SDES["vp"], gaussian_score(SDES["vp"]), (32, 3), method=method, steps=8, generator=gen(5))
    assert torch.equal(x, again) and torch.isfinite(x).all()
    assert info.nfe == counting.calls >= 9


def test_torchsde_euler_matches_the_exact_marginal():
    sde = SDES["vp"]
    x = sample(sde, gaussian_score(sde), (4096, 2), method="torchsde:euler", steps=200, denoise=False, generator=gen())
    alpha, std = float(sde.mean_coeff(torch.tensor([1e-3]).double())), float(sde.std(torch.tensor([1e-3]).double()))
    assert abs(float(x.mean()) - 0.5 * alpha) < 0.03
    assert abs(float(x.var()) / (0.25 * alpha**2 + std**2) - 1) < 0.08


@pytest.mark.parametrize(
    ("sampler", "method"),
    [
        (sample, "euler_maruyama"),
        (sample, "reverse_diffusion"),
        (ode_sample, "euler"),
        (ode_sample, "heun"),
        (ode_sample, "rk4"),
    ],
)
def test_precomputed_linear_steps_equal_the_general_steps(sampler, method):
    """On a LinearSDE, steps run on coefficients computed once for the grid; a generic SDE with the
    same mathematics takes the general path (drift, diffusion, discretize per step). Same numbers."""
    linear, generic = VPSDE(), GenericVP()
    score = gaussian_score(linear)
    x_T = linear.prior_sample((64, 3), generator=gen(0), dtype=torch.float64)
    # The generic SDE has no log-SNR, so its default grid is uniform in t; the same grid for both.
    kwargs = {"method": method, "steps": 9, "grid": "uniform", "x_T": x_T, "dtype": torch.float64, "denoise": False}
    fast = sampler(linear, score, generator=gen(1), **kwargs)
    general = sampler(generic, score, generator=gen(1), **kwargs)
    torch.testing.assert_close(fast, general, rtol=1e-12, atol=1e-12)


class LinearScore(torch.nn.Module):
    """A small network score, s(x, t) = W x + b t, that records the dtype its layer computed in."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3, 3)
        with torch.no_grad():  # seeded weights: the global RNG's would make the bfloat16 tolerance a gamble
            weight = torch.randn(3, 3, generator=gen(11)) / 3
            self.layer.weight.copy_(weight)
            self.layer.bias.copy_(torch.randn(3, generator=gen(12)) / 3)
        self.seen: list[torch.dtype] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        hidden = self.layer(x)
        self.seen.append(hidden.dtype)
        return hidden - x * t[:, None]


def test_autocast_runs_the_network_in_bfloat16_and_keeps_a_float32_state():
    net = LinearScore().requires_grad_(False)
    kwargs = {"method": "heun", "steps": 5, "shape": (16, 3), "generator": gen(3)}
    plain = ode_sample(VPSDE(), net, **kwargs)
    mixed = ode_sample(VPSDE(), net, autocast=torch.bfloat16, **{**kwargs, "generator": gen(3)})
    assert net.seen[0] == torch.float32 and set(net.seen[len(net.seen) // 2 :]) == {torch.bfloat16}
    assert mixed.dtype == torch.float32 and torch.isfinite(mixed).all()
    assert not torch.equal(mixed, plain)
    torch.testing.assert_close(mixed, plain, rtol=0.05, atol=0.05)  # bfloat16 keeps ~3 significant digits


def test_compile_wraps_the_score_once_with_torch_compile(monkeypatch):
    compiled: list[dict] = []

    def fake_compile(function, **options):
        compiled.append(options)
        return function

    monkeypatch.setattr(torch, "compile", fake_compile)
    score = gaussian_score(VPSDE())
    plain = sample(VPSDE(), score, (8, 3), method="ancestral", steps=4, generator=gen(1))
    again = sample(VPSDE(), score, (8, 3), method="ancestral", steps=4, generator=gen(1), compile=True)
    sample(VPSDE(), score, (8, 3), steps=4, compile={"backend": "eager"})
    assert compiled == [{"mode": None}, {"backend": "eager"}]
    assert torch.equal(plain, again)


def test_compile_with_a_real_torch_compile_backend_gives_the_same_samples():
    score = gaussian_score(VPSDE())
    plain = ode_sample(VPSDE(), score, (8, 3), method="dpmpp_2m", steps=6, generator=gen(1))
    compiled = ode_sample(
        VPSDE(), score, (8, 3), method="dpmpp_2m", steps=6, generator=gen(1), compile={"backend": "eager"}
    )
    torch.testing.assert_close(compiled, plain)


@pytest.mark.parametrize(
    ("option", "value", "error"), [("autocast", torch.float32, ValueError), ("compile", "yes", TypeError)]
)
def test_bad_speed_options_raise_at_the_call(option, value, error):
    with pytest.raises(error, match=option):
        ode_sample(VPSDE(), gaussian_score(VPSDE()), (4, 3), steps=2, **{option: value})


def test_a_custom_runge_kutta_tableau_counts_one_call_per_stage():
    from sdekit.solvers import ExplicitRungeKutta

    class Ralston(ExplicitRungeKutta):
        a = ((), (2 / 3,))
        b = (1 / 4, 3 / 4)
        c = (0.0, 2 / 3)
        order = 2

    assert Ralston.nfe_per_step == 2
    with pytest.raises(TypeError, match="grid"):
        Ralston().start(VPSDE(), gaussian_score(VPSDE()), [1.0, 0.5])


@pytest.mark.parametrize("corrector", ["langevin", "annealed_langevin"])
def test_predictor_corrector_steps_by_hand(corrector):
    """pc_sample on an explicit grid equals Algorithm 1 written out: reverse-diffusion step from t_i to
    t_{i+1}, then a Langevin move at t_{i+1} with a = ᾱ(t_i)/ᾱ(t_{i+1}) — noise drawn in that order."""
    sde, grid, snr = VPSDE(), torch.tensor([1.0, 0.6, 0.3], dtype=torch.float64), 0.2
    score = gaussian_score(sde)
    x = sde.prior_sample((32, 3), generator=gen(0), dtype=torch.float64)
    ours = pc_sample(
        sde, score, x_T=x, grid=grid, corrector=corrector, snr=snr, denoise=False, generator=gen(1), dtype=torch.float64
    )
    g = gen(1)
    for i in range(len(grid) - 1):
        t, t_next = grid[i : i + 1], grid[i + 1 : i + 2]
        a, beta = sde.transition(t, t_next)  # DDPM's chain: f_i = (a − 1)x, G_i = √β
        x = (
            x
            - (a - 1) * x
            + beta * score(x, t.expand(32))
            + beta.sqrt() * torch.randn(x.shape, generator=g, dtype=x.dtype)
        )
        s, z = score(x, t_next.expand(32)), torch.randn(x.shape, generator=g, dtype=x.dtype)
        alpha_ratio = torch.exp(2 * (sde.log_mean_coeff(t) - sde.log_mean_coeff(t_next)))
        if corrector == "langevin":
            eps = 2 * alpha_ratio * (snr * z.norm(dim=1).mean() / s.norm(dim=1).mean()) ** 2
        else:
            eps = 2 * alpha_ratio * (snr * sde.std(t_next)) ** 2
        x = x + eps * s + (2 * eps).sqrt() * z
    torch.testing.assert_close(ours, x, rtol=1e-12, atol=1e-12)
