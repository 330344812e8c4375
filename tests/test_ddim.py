"""DDIM with η (``sample(method="ddim", eta=...)``, ``ode_sample(method="ddim")``): its step, its limits, its peers.

The step's coefficients are checked against DDIM's own formula written in ᾱ (Song et al. 2021, eq. 12
and 16), independently of the code's α/σ form; η = 1 is the ancestral step and η = 0 DPM-Solver of
order 1, on every linear SDE; and a diffusers ``DDIMScheduler`` loop with η = 0.5 is matched step
for step (when diffusers is installed).
"""

from __future__ import annotations

import itertools

import pytest
import torch

import sdekit
from sdekit import VESDE, VPSDE, DiscreteVPSDE, SubVPSDE, linear_betas, ode_sample, sample
from sdekit.solvers import DDIM, Ancestral, DPMSolverPP
from sdekit.testing import GaussianMixture

from conftest import tiny_unet

F64 = torch.float64
SDES = {
    "vp": VPSDE,
    "subvp": SubVPSDE,
    "ve": VESDE,
    "discrete_vp": lambda: DiscreteVPSDE.from_betas(linear_betas(1000)),
}
MIXTURE = GaussianMixture.random(dim=2, modes=3, generator=torch.Generator().manual_seed(0))


def affine(method: object, sde: object, grid: torch.Tensor) -> torch.Tensor:
    """The (a, b, c) of each step of ``method`` started on ``grid``: ``(N, 3)``."""
    run = method.start(sde, lambda x, t: x, grid)  # type: ignore[attr-defined]
    return torch.tensor(run.affine, dtype=F64)


@pytest.mark.parametrize("eta", [0.0, 0.3, 1.0])
def test_the_step_is_ddims_formula_in_alpha_bar(eta: float) -> None:
    """x' = √ᾱ' x̂₀ + √(1 − ᾱ' − σ_η²) ε̂ + σ_η z, σ_η = η √((1 − ᾱ')/(1 − ᾱ)) √(1 − ᾱ/ᾱ'), x̂₀ and ε̂ from s."""
    sde = VPSDE()
    grid = torch.tensor([1.0, 0.7, 0.31, 0.05, 1e-3], dtype=F64)
    t, s = grid[:-1], grid[1:]
    abar, abar_next = sde.kernel(t)[0] ** 2, sde.kernel(s)[0] ** 2
    sigma_eta = eta * ((1 - abar_next) / (1 - abar) * (1 - abar / abar_next)).sqrt()
    # x̂₀ = (x + (1 − ᾱ) s)/√ᾱ, ε̂ = −√(1 − ᾱ) s: collect the coefficients of x and s
    direction = (1 - abar_next - sigma_eta**2).sqrt()
    a = (abar_next / abar).sqrt()
    b = abar_next.sqrt() * (1 - abar) / abar.sqrt() - direction * (1 - abar).sqrt()
    expected = torch.stack([a, b, sigma_eta], dim=1)
    torch.testing.assert_close(affine(DDIM(eta=eta), sde, grid), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("sde_name", sorted(SDES))
def test_eta_one_is_ancestral_and_eta_zero_is_dpm_solver_of_order_one(sde_name: str) -> None:
    sde = SDES[sde_name]()
    grid = sdekit.make_grid("uniform", sde, 12, 1e-3 if sde_name != "ve" else 1e-5)
    torch.testing.assert_close(affine(DDIM(eta=1.0), sde, grid), affine(Ancestral(), sde, grid), rtol=1e-12, atol=0)
    score = MIXTURE.score(sde)
    x_T = sde.prior_sample((6, 2), generator=torch.Generator().manual_seed(1), dtype=F64)
    flow = ode_sample(sde, score, x_T=x_T, method="ddim", grid=grid, dtype=F64)
    order_one = ode_sample(sde, score, x_T=x_T, method=DPMSolverPP(order=1), grid=grid, dtype=F64)
    torch.testing.assert_close(flow, order_one, rtol=1e-12, atol=1e-12)
    deterministic = sample(sde, score, x_T=x_T, method="ddim", grid=grid, dtype=F64)  # η = 0 by default
    torch.testing.assert_close(deterministic, flow, rtol=0, atol=0)


def test_eta_zero_draws_nothing_and_eta_is_checked() -> None:
    sde, generator = VPSDE(), torch.Generator().manual_seed(5)
    state = generator.get_state()
    x_T = torch.zeros(3, 2, dtype=F64)
    sample(sde, MIXTURE.score(sde), x_T=x_T, method="ddim", steps=5, generator=generator, dtype=F64)
    assert torch.equal(generator.get_state(), state)  # a deterministic step consumes no noise
    for bad in (1.5, -0.1, True, "half"):
        with pytest.raises(ValueError, match="eta must be a number in \\[0, 1\\]"):
            DDIM(eta=bad)
    with pytest.raises(TypeError, match="method 'ddim' takes no option\\(s\\) eta"):
        ode_sample(sde, MIXTURE.score(sde), (3, 2), method="ddim", eta=0.5)


def test_a_diffusers_ddim_loop_with_eta_is_matched_step_for_step() -> None:
    """DDIMScheduler(eta=0.5) on a tiny UNet = sdekit's ddim on the scheduler's timesteps, noise from one generator.

    Both draw x_T and then one randn(shape) per step in the same order (diffusers also draws one at
    its last step, where the noise's scale is 0), so the same seed drives both. float64 on both sides
    with the scheduler's ᾱ in float64, so the comparison sees the formulas.
    """
    diffusers = pytest.importorskip("diffusers")
    from adapters.diffusers import from_unet, timestep_grid

    unet = tiny_unet().double()
    scheduler = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False)
    scheduler.set_timesteps(10)
    scheduler.alphas_cumprod = scheduler.alphas_cumprod.double()
    scheduler.final_alpha_cumprod = scheduler.final_alpha_cumprod.double()
    shape = (3, 2, 8, 8)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(9)
        x = torch.randn(shape, generator=gen, dtype=F64)
        reference = []
        for timestep in scheduler.timesteps:
            x = scheduler.step(unet(x, timestep).sample, timestep, x, eta=0.5, generator=gen).prev_sample
            reference.append(x)
    sde, score = from_unet(unet, scheduler)
    states: list[torch.Tensor] = []
    out = sample(
        sde,
        score,
        shape,
        method="ddim",
        eta=0.5,
        grid=timestep_grid(scheduler),
        generator=torch.Generator().manual_seed(9),
        dtype=F64,
        callback=lambda payload: states.append(payload["x"]),
    )
    assert len(states) == len(reference) - 1
    for mine, theirs in zip([*states, out], reference, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-10, atol=1e-10)


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """k-diffusion's ``get_sigmas_karras`` written out: ρ-spaced levels and a last 0."""
    ramp = torch.linspace(0, 1, steps, dtype=F64)
    levels = (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([levels, levels.new_zeros(1)])


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_on_ve_ddim_is_k_diffusions_euler_ancestral_on_its_sigmas(eta: float) -> None:
    """k-diffusion's ``sample_euler_ancestral`` (``sample_euler`` at η = 0), its step written out, on a Karras
    σ-grid through ``from_sigmas``: d = (x − D)/σ, σ_up = min(σ', η √(σ'²(σ² − σ'²)/σ²)), σ_down = √(σ'² − σ_up²),
    x ← x + d (σ_down − σ) + σ_up z; its last step, to σ = 0, lands on D: sdekit's final denoising."""
    sde = VESDE()
    sigmas = karras_sigmas(8, 0.02, sde.sigma_max)
    grid = sdekit.from_sigmas(sde, sigmas)
    assert grid.numel() == sigmas.numel() - 1 and grid[0] == sde.T
    score = MIXTURE.score(sde)
    x_T = sde.prior_sample((4, 2), generator=torch.Generator().manual_seed(3), dtype=F64)
    mine = sample(sde, score, x_T=x_T, method="ddim", eta=eta, grid=grid, generator=torch.Generator().manual_seed(4),
                  dtype=F64)  # fmt: skip
    x, gen = x_T.clone(), torch.Generator().manual_seed(4)
    levels = [*sigmas[:-1].tolist(), 0.0]
    for i, (sigma, sigma_next) in enumerate(itertools.pairwise(levels)):
        t = torch.full((4,), float(grid[i]), dtype=F64)
        denoised = x + sigma**2 * score(x, t)
        up = min(sigma_next, eta * (sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2) ** 0.5)
        down = (sigma_next**2 - up**2) ** 0.5
        x = x + (x - denoised) / sigma * (down - sigma)
        if sigma_next > 0 and up > 0:
            x = x + up * torch.randn(x.shape, generator=gen, dtype=F64)
    torch.testing.assert_close(mine, x, rtol=1e-10, atol=1e-10)


def test_from_sigmas_inverts_the_noise_level_and_names_what_it_refuses() -> None:
    from sdekit import from_sigmas

    for name, make in SDES.items():
        sde = make()
        levels = (-sde.log_snr(torch.tensor([sde.T, 0.5, 0.1, 1e-3], dtype=F64))).exp()
        times = from_sigmas(sde, levels)
        torch.testing.assert_close(times, torch.tensor([sde.T, 0.5, 0.1, 1e-3], dtype=F64), rtol=1e-9, atol=1e-12)
        torch.testing.assert_close((-sde.log_snr(times)).exp(), levels, rtol=1e-9, atol=0, msg=name)
        # the ρ = 7 grid by name ("karras" is "edm") is the Karras σ-grid through from_sigmas
        edm = sdekit.make_grid("karras", sde, 10, 1e-3)
        assert torch.equal(edm, sdekit.make_grid("edm", sde, 10, 1e-3))
        karras = karras_sigmas(11, *(-sde.log_snr(torch.tensor([1e-3, sde.T], dtype=F64))).exp().tolist())
        torch.testing.assert_close(from_sigmas(sde, karras), edm, rtol=1e-9, atol=1e-12, msg=name)
    sde = VESDE()
    refused = [
        ([10.0, 0.001], ValueError, "sigmas[-1] = 0.001 is not above the SDE's smallest noise level σ(0)/α(0) = 0.01"),
        ([10.0, 10.0, 1.0], ValueError, "strictly decreasing"),
        ([[10.0, 1.0]], ValueError, "sigmas must be 1-D, got shape (1, 2)"),
        ([10.0, 0.0], ValueError, "sigmas must hold at least 2 noise levels above 0, got [10.0]"),
        ("loud", TypeError, "sigmas must be a 1-D tensor or sequence of noise levels, got str"),
    ]
    for sigmas, error, message in refused:
        with pytest.raises(error) as caught:
            from_sigmas(sde, sigmas)  # type: ignore[arg-type]
        assert message in str(caught.value), str(caught.value)
    with pytest.raises(ValueError, match="sigmas\\[0\\] = 100 is above"):
        from_sigmas(sde, [100.0, 1.0])


def test_a_first_sigma_within_float32_rounding_of_the_top_is_t_and_beyond_it_is_refused() -> None:
    """σ-grids computed in float32 miss σ̃(T) by ~6e-8: within 1e-6 relative the first time is T exactly."""
    from sdekit import from_sigmas

    sde = VPSDE()
    top = float((-sde.log_snr(torch.tensor([1.0], dtype=F64))).exp())
    assert float(from_sigmas(sde, [top * (1 + 9e-7), 1.0])[0]) == 1.0
    assert float(from_sigmas(sde, [top * (1 - 9e-7), 1.0])[0]) == 1.0
    assert float(from_sigmas(sde, [top * (1 - 2e-6), 1.0])[0]) < 1.0
    with pytest.raises(ValueError, match="is above the SDE's largest noise level"):
        from_sigmas(sde, [top * (1 + 2e-6), 1.0])
