"""Exact tests for gaps that mutation testing found (docs/mutation.md).

Each test pins a formula or a contract that a surviving mutant broke without any
other (non-slow) test noticing. They are deterministic and fast.
"""

from __future__ import annotations

import math

import pytest
import torch
import torchsde

from sdekit import grids
from sdekit.reverse import JACOBIAN_CHUNK, jacobian_diagonal, probability_flow, reverse
from sdekit.sampling import pc_sample, sample
from sdekit.sde import SDE, VPSDE, SubVPSDE, cosine_alphas_cumprod
from sdekit.solvers.torchsde_solver import STEP_MARGIN

# --- grids -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [1, 5, 12])
def test_quadratic_grid_is_ddims_formula_in_float64(steps):
    sde, eps = VPSDE(), 1e-3
    grid = grids.quadratic(sde, steps, eps)
    i = torch.arange(steps + 1, dtype=torch.float64)
    expected = eps + (sde.T - eps) * (1 - i / steps) ** 2
    assert grid.dtype == torch.float64 and grid.shape == (steps + 1,)
    torch.testing.assert_close(grid, expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("rho", [None, 3.0])
def test_edm_grid_is_karras_rho_spacing_of_sigma_over_alpha_in_float64(rho):
    sde, eps, steps = VPSDE(), 1e-3, 6
    grid = grids.edm(sde, steps, eps) if rho is None else grids.edm(sde, steps, eps, rho=rho)
    rho = 7.0 if rho is None else rho
    assert grid.dtype == torch.float64 and grid.shape == (steps + 1,)
    assert grid[0] == sde.T and grid[-1] == eps
    sigma = lambda t: math.exp(-float(sde.log_snr(torch.tensor([t], dtype=torch.float64))))  # noqa: E731
    s_max, s_min = sigma(sde.T), sigma(eps)
    i = torch.arange(steps + 1, dtype=torch.float64)
    expected = (s_max ** (1 / rho) + i / steps * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
    torch.testing.assert_close((-sde.log_snr(grid)).exp(), expected, rtol=1e-12, atol=0)


def test_edm_grid_errors_name_the_grid_and_rho():
    with pytest.raises(TypeError, match="grid 'edm' needs a LinearSDE"):
        grids.edm(_StateDependent(), 4, 1e-3)
    with pytest.raises(ValueError, match=r"^rho must be a finite number > 0"):
        grids.edm(VPSDE(), 4, 1e-3, rho=-1.0)


# --- SDE.discretize (the generic Euler–Maruyama step) -----------------------------------------------------------------


class _StateDependent(SDE):
    """dx = −t x dt + t (1 + x²)^½ dw: a non-linear SDE with a diagonal, state-dependent diffusion."""

    state_dependent_diffusion = True

    def drift(self, x, t):
        return -t.to(x.dtype)[:, None] * x

    def diffusion(self, x, t):
        return t.to(x.dtype)[:, None] * (1 + x**2).sqrt()

    def marginal(self, x0, t):
        raise NotImplementedError

    def prior_sample(self, shape, *, generator=None, device=None, dtype=torch.float32):
        raise NotImplementedError

    def prior_logp(self, z):
        raise NotImplementedError


def test_generic_discretize_is_euler_maruyama_with_a_state_dependent_diffusion():
    x = torch.linspace(-2.0, 2.0, 6, dtype=torch.float64).reshape(3, 2)
    t = torch.tensor([0.9, 0.5, 0.3], dtype=torch.float64)
    t_next = torch.tensor([0.7, 0.45, 0.0], dtype=torch.float64)
    f_i, G_i = _StateDependent().discretize(x, t, t_next)
    h = (t - t_next)[:, None]
    torch.testing.assert_close(f_i, -t[:, None] * x * h, rtol=1e-14, atol=0)
    torch.testing.assert_close(G_i, t[:, None] * (1 + x**2).sqrt() * h.sqrt(), rtol=1e-14, atol=0)


def test_generic_discretize_is_euler_maruyama_for_sub_vp():
    sde = SubVPSDE()
    x = torch.tensor([[0.5, -1.0], [2.0, 0.25]], dtype=torch.float64)
    t = torch.tensor([0.8, 0.3], dtype=torch.float64)
    t_next = torch.tensor([0.6, 0.1], dtype=torch.float64)
    f_i, G_i = sde.discretize(x, t, t_next)
    h = t - t_next
    torch.testing.assert_close(f_i, sde.drift(x, t) * h[:, None], rtol=1e-14, atol=0)
    torch.testing.assert_close(G_i, sde.diffusion(x, t) * h.sqrt(), rtol=1e-14, atol=0)


def test_repr_lists_the_float_parameters():
    assert repr(VPSDE(0.5, 10.0)) == "VPSDE(beta_min=0.5, beta_max=10)"


# --- sample(method="torchsde:...") is sdeint on the reverse SDE with its Brownian motion -----------------------------


def _shape_aware_score(x, t):
    """A score that sees the event shape (B, 2, 3): wrong if it were handed flattened states."""
    assert x.shape[1:] == (2, 3)
    return -x + 0.1 * x.mean(dim=-1, keepdim=True) * t.to(x.dtype)[:, None, None]


def _torchsde_reference(sde, x_T, seed, method, steps, eps, **options):
    flat = x_T.reshape(x_T.shape[0], -1)
    ts = torch.tensor([0.0, sde.T - eps], dtype=torch.float64)  # time in float64 whatever the state's dtype
    bm = torchsde.BrownianInterval(
        t0=0.0,
        t1=float(ts[-1]),
        size=flat.shape,
        dtype=x_T.dtype,
        entropy=seed,
        levy_area_approximation="space-time" if method == "srk" else "none",
    )
    rsde = reverse(sde, _shape_aware_score, event_shape=(2, 3))
    # the step a hair above (T − eps)/steps, as sdekit takes it, so that `steps` of them reach the end
    dt = (sde.T - eps) / steps * (1 + STEP_MARGIN)
    path = torchsde.sdeint(rsde, flat, ts, bm=bm, method=method, dt=dt, **options)
    return path[-1].reshape(x_T.shape)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    ("method", "options"),
    [("euler", {}), ("srk", {}), ("euler", {"adaptive": True, "rtol": 0.05, "atol": 0.05})],
)
def test_torchsde_methods_are_sdeint_on_the_reverse_sde_with_the_generators_seed(dtype, method, options):
    sde, eps, steps = VPSDE(), 1e-2, 5
    x_T = torch.linspace(-1.5, 1.5, 4 * 6, dtype=dtype).reshape(4, 2, 3)
    seed = int(torch.randint(0, 2**62, (1,), generator=torch.Generator().manual_seed(11)))
    ours = sample(
        sde,
        _shape_aware_score,
        x_T=x_T,
        method=f"torchsde:{method}",
        steps=steps,
        eps=eps,
        denoise=False,
        dtype=dtype,
        generator=torch.Generator().manual_seed(11),
        **options,
    )
    theirs = _torchsde_reference(sde, x_T, seed, method, steps, eps, **options)
    assert ours.dtype == dtype
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_torchsde_method_without_a_generator_runs():
    x = sample(VPSDE(), lambda x, t: -x, (3, 2), method="torchsde:euler", steps=4)
    assert x.shape == (3, 2) and torch.isfinite(x).all()


def test_torchsde_method_names_the_run_when_the_state_is_not_finite():
    def nan_score(x, t):
        return torch.full_like(x, math.nan)

    with pytest.raises(FloatingPointError, match=r"non-finite state after step 0 of 4 \(t = 1 -> 0\.75"):
        sample(VPSDE(), nan_score, (3, 2), method="torchsde:euler", steps=4, eps=1e-3)


# --- reverse.py -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_jacobian_diagonal_over_several_chunks_keeps_the_graph(dtype):
    dim = 2 * JACOBIAN_CHUNK + 5  # three chunks, the last one short
    gen = torch.Generator().manual_seed(3)
    y = torch.randn(3, dim, generator=gen, dtype=torch.float64).to(dtype).requires_grad_()
    w = torch.randn(dim, generator=gen, dtype=torch.float64).to(dtype)
    out = y**2 * w + y.sum(dim=1, keepdim=True)  # off-diagonal terms too
    diagonal = jacobian_diagonal(out, y)
    assert diagonal.dtype == dtype and diagonal.shape == y.shape
    torch.testing.assert_close(diagonal, (2 * y * w + 1).detach())
    (again,) = torch.autograd.grad(out.sum(), y)  # the graph was kept
    torch.testing.assert_close(again, (2 * y * w + dim).detach())


def test_probability_flow_holds_a_scalar_time_at_the_boundary_and_does_not_check_times():
    sde = VPSDE()
    flow = probability_flow(sde, lambda x, t: -2 * x)  # not N(0, I)'s score: the flow is not 0
    x = torch.tensor([[0.5, -1.0], [2.0, 0.25]])
    at_T = flow(torch.tensor(sde.T), x)
    torch.testing.assert_close(flow(torch.tensor(sde.T + 0.25), x), at_T, rtol=0, atol=0)
    torch.testing.assert_close(flow(torch.tensor(-0.25), x), flow(torch.tensor(0.0), x), rtol=0, atol=0)
    beyond = torch.full((2,), sde.T + 1e-6)  # per-sample times are used as they are, unchecked
    assert torch.isfinite(flow(beyond, x)).all()


# --- pc_sample --------------------------------------------------------------------------------------------------------


def test_pc_sample_defaults_are_the_documented_ones(capsys):
    sde, score = VPSDE(), lambda x, t: -2 * x
    default = pc_sample(sde, score, (2, 2), generator=torch.Generator().manual_seed(4))
    assert capsys.readouterr().err == ""  # no progress bar by default
    explicit = pc_sample(
        sde,
        score,
        (2, 2),
        steps=1000,
        predictor="reverse_diffusion",
        corrector="langevin",
        snr=0.16,
        corrector_steps=1,
        denoise=True,
        generator=torch.Generator().manual_seed(4),
    )
    assert torch.equal(default, explicit)


def test_pc_sample_is_seeded_by_its_generator():
    sde = VPSDE()

    def run(seed):
        return pc_sample(sde, lambda x, t: -x, (4, 2), steps=3, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(1), run(1)) and not torch.equal(run(1), run(2))


def test_pc_sample_names_corrector_steps_when_it_is_invalid():
    with pytest.raises(ValueError, match=r"^corrector_steps must"):
        pc_sample(VPSDE(), lambda x, t: -x, (4, 2), steps=3, corrector_steps=-1)


# --- grids.check_grid: an explicit grid -------------------------------------------------------------------------------


def test_check_grid_takes_a_sequence_and_returns_float64_on_the_cpu():
    grid = grids.check_grid([1.0, 0.5, 0.25], VPSDE())
    assert grid.dtype == torch.float64 and grid.device.type == "cpu"
    assert torch.equal(grid, torch.tensor([1.0, 0.5, 0.25], dtype=torch.float64))
    precise = grids.check_grid(torch.tensor([1.0, 0.1], dtype=torch.float64), VPSDE())
    assert precise.dtype == torch.float64 and float(precise[1]) == 0.1  # not rounded through float32
    float32 = grids.check_grid(torch.tensor([1.0, 0.1]), VPSDE())
    assert float32.dtype == torch.float64


def test_check_grid_rejects_bad_grids_with_messages_that_say_why():
    sde = VPSDE()
    with pytest.raises(TypeError, match=r"^grid must be a 1-D tensor of times, got str$"):
        grids.check_grid("fine", sde)
    with pytest.raises(ValueError, match=r"^grid must be a 1-D tensor of at least 2 times, got shape \(1,\)$"):
        grids.check_grid([0.5], sde)
    with pytest.raises(ValueError, match=r"got shape \(2, 2\)$"):
        grids.check_grid([[1.0, 0.5], [0.4, 0.2]], sde)
    with pytest.raises(ValueError, match=r"^grid must be finite and strictly decreasing \(from T towards 0\)$"):
        grids.check_grid([1.0, 0.5, 0.5, 0.1], sde)
    with pytest.raises(ValueError, match=r"^grid must run within \(0, T\] = \(0, 1\], got 1 \.\.\. 0$"):
        grids.check_grid([1.0, 0.5, 0.0], sde)
    with pytest.raises(ValueError, match=r"got 1\.5 \.\.\. 0\.1$"):
        grids.check_grid([1.5, 0.5, 0.3, 0.1], sde)
    with pytest.raises(TypeError, match=r"^grid 'log_snr' needs a LinearSDE"):
        grids.log_snr(_StateDependent(), 4, 1e-3)


def test_cosine_schedule_defaults_are_improved_ddpms():
    torch.testing.assert_close(
        cosine_alphas_cumprod(), cosine_alphas_cumprod(1000, s=0.008, max_beta=0.999), rtol=0, atol=0
    )
    assert cosine_alphas_cumprod().shape == (1000,)
