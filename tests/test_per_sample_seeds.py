"""Per-sample seeds: ``generator=`` as one generator per sample, so a sample depends only on its own seed.

The property, for every sampler that can have it: the sample drawn with seed s is the same
whether it is drawn alone, at any position of any batch, or beside any other seeds (batches of 1,
7 and 64 here). The exact
score of a 2-D mixture computes each row on its own, so the comparison is exact up to the
rounding of batched arithmetic (1e-12 in float64; a noise draw off by one would be O(1)).
Methods that cannot have it (torchsde's one Brownian path for the batch, the batch-mean
Langevin step) refuse per-sample generators with one line naming the argument.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from sdekit import VESDE, VPSDE, DiscreteVPSDE, RectifiedFlowSDE, linear_betas, ode_sample, pc_sample, sample
from sdekit.adapters import ncsn
from sdekit.constraints import Imputation
from sdekit.per_sample import SampleGenerators, as_generators, rand, randn, randn_like
from sdekit.testing import GaussianMixture

F64 = torch.float64
SEEDS = [101, 102, 103, 104, 105]
MIXTURE = GaussianMixture.random(dim=2, modes=3, generator=torch.Generator().manual_seed(0))
SDES = {
    "vp": VPSDE,
    "ve": VESDE,
    "discrete_vp": lambda: DiscreteVPSDE.from_betas(linear_betas(1000)),
    "rectified_flow": RectifiedFlowSDE,
}

#: (front door, options) for every sampler that honours per-sample seeds; steps small, the property holds at any.
CASES: dict[str, tuple[Any, dict[str, Any]]] = {
    "ancestral": (sample, {"method": "ancestral", "steps": 12}),
    "euler_maruyama": (sample, {"method": "euler_maruyama", "steps": 12}),
    "reverse_diffusion": (sample, {"method": "reverse_diffusion", "steps": 12}),
    "dpmpp_2m_sde": (sample, {"method": "dpmpp_2m_sde", "steps": 12}),
    "edm_stochastic": (sample, {"method": "edm_stochastic", "steps": 6, "s_tmin": 0.0}),
    "pc/langevin_per_sample": (pc_sample, {"predictor": "reverse_diffusion", "corrector": "langevin_per_sample",
                                           "steps": 8}),
    "pc/annealed_langevin": (pc_sample, {"predictor": "ancestral", "corrector": "annealed_langevin", "steps": 8}),
    "heun": (ode_sample, {"method": "heun", "steps": 8}),
    "dpmpp_3m": (ode_sample, {"method": "dpmpp_3m", "steps": 8}),
    "unipc": (ode_sample, {"method": "unipc", "steps": 8}),
    "dopri5": (ode_sample, {"method": "dopri5", "rtol": 1e-4, "atol": 1e-4}),
}  # fmt: skip


def draw(sde: Any, case: str, generator: Any, batch: int, **extra: Any) -> torch.Tensor:
    front, options = CASES[case]
    return front(sde, MIXTURE.score(sde), (batch, 2), generator=generator, dtype=F64, **options, **extra)


#: Adaptive methods amplify the last-bit differences of batched arithmetic (torch rounds a batch of 7
#: and of 64 differently in the last bit) through their step-size control: dopri5 moved by 2e-11 here.
TOLERANCE = {"dopri5": 1e-9}


def same(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-12) -> None:
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


#: 64 seeds, and the positions in that batch of the 7 seeds of the smaller batch (any order, any neighbours).
SEEDS_64 = [1000 + k for k in torch.randperm(64, generator=torch.Generator().manual_seed(0)).tolist()]
POSITIONS_7 = [5, 63, 0, 17, 42, 8, 31]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("sde_name", sorted(SDES))
def test_a_sample_depends_only_on_its_own_seed(sde_name: str, case: str) -> None:
    """Sample i of a batch of 7 = the same seed's sample in a batch of 64 (elsewhere in it) and in a batch of 1."""
    sde = SDES[sde_name]()
    seven_seeds = [SEEDS_64[p] for p in POSITIONS_7]
    tol = TOLERANCE.get(case, 1e-12)
    seven = draw(sde, case, seven_seeds, 7)
    assert len(set(map(tuple, seven.tolist()))) == 7  # seven different samples
    same(seven, draw(sde, case, SEEDS_64, 64)[POSITIONS_7], tol)
    alone = draw(sde, case, [torch.Generator().manual_seed(seven_seeds[3])], 1)  # generators and seeds are one
    same(alone, seven[3:4], tol)
    # ... and a batch of one from its own single generator is the same sample: per-sample rows are its draws
    single = draw(sde, case, torch.Generator().manual_seed(seven_seeds[3]), 1)
    same(single, seven[3:4], tol)


def test_the_adaptive_sde_solver_s_samples_follow_their_own_seeds_and_leave_at_different_times() -> None:
    """At rtol 0.2 the 7 samples finish after 13-18 iterations with 5-13 rejections each, so the active set
    shrinks and each sample's Brownian tree and generator follow it; equal at batch 7, 64 and 1 to 1e-9
    (1e-13 measured: at loose tolerance the control has few steps to amplify the batch's rounding)."""
    sde, seven_seeds = VPSDE(), [SEEDS_64[p] for p in POSITIONS_7]
    options: dict[str, Any] = {"method": "adaptive", "rtol": 0.2, "atol": 0.2, "dtype": F64}
    seven, info = sample(sde, MIXTURE.score(sde), (7, 2), generator=seven_seeds, return_info=True, **options)
    assert len(set(info.sample_steps.tolist())) > 1 and int(info.sample_rejected.min()) > 0, info.sample_steps
    same(sample(sde, MIXTURE.score(sde), (64, 2), generator=SEEDS_64, **options)[POSITIONS_7], seven, 1e-9)
    for i in (0, 6):
        alone = sample(sde, MIXTURE.score(sde), (1, 2), generator=[seven_seeds[i]], **options)
        same(alone, seven[i : i + 1], 1e-9)


@pytest.mark.parametrize("sde_name", ["vp", "ve"])
def test_at_tight_tolerance_the_adaptive_sde_solver_follows_the_seeds_until_rounding_takes_over(sde_name: str) -> None:
    """At rtol 1e-2 (≈ 110 iterations) the last-bit rounding differences of a batch of 7 and of 64 (1 ulp of h
    at the first differing iteration, measured) are amplified by the step-size control until an accept/reject
    decision flips and the paths part: a different, equally valid sample (up to 0.5 apart on VP, measured). So
    across batch sizes the same seed gives the same sample only as far as the arithmetic rounds alike. Before
    that, the states agree: 1e-13 over the first 10 iterations (measured 6e-14 on VP, 2e-13 on VE); a sample
    drawing another's noise would differ by the noise itself, ~1e-2 at the first step."""
    sde, seven_seeds = SDES[sde_name](), [SEEDS_64[p] for p in POSITIONS_7]

    class EnoughError(Exception):
        """Raised by the callback after the 10th iteration: the rest of the run is not needed."""

    def states(seeds: list[int], rows: list[int]) -> dict[int, torch.Tensor]:
        seen: dict[int, torch.Tensor] = {}

        def record(payload: dict[str, Any]) -> None:
            index = payload["index"].tolist()
            seen[payload["i"]] = torch.stack([payload["x"][index.index(r)] for r in rows])
            if payload["i"] == 9:
                raise EnoughError

        with pytest.raises(EnoughError):
            sample(sde, MIXTURE.score(sde), (len(seeds), 2), method="adaptive", rtol=1e-2, atol=1e-2, dtype=F64,
                   generator=seeds, callback=record)  # fmt: skip
        return seen

    small, large = states(seven_seeds, list(range(7))), states(SEEDS_64, POSITIONS_7)
    assert sorted(small) == sorted(large) == list(range(10))
    for i in range(10):
        same(large[i], small[i], 1e-10)


@pytest.mark.parametrize("resample", [1, 3])
def test_imputation_and_repaint_draw_their_noise_per_sample(resample: int) -> None:
    sde = VPSDE()
    constraint = Imputation(sde, torch.tensor([[0.5, 0.0]], dtype=F64), torch.tensor([[1.0, 0.0]], dtype=F64),
                            resample=resample, jump_length=2)  # fmt: skip
    five = draw(sde, "ancestral", SEEDS, 5, constraint=constraint)
    same(draw(sde, "ancestral", SEEDS[1:3], 2, constraint=constraint), five[1:3])
    assert torch.all(five[:, 0] == 0.5)


def test_sdedit_from_a_given_state_uses_the_seeds_for_its_noise_only() -> None:
    sde = VPSDE()
    start = torch.linspace(-1, 1, 10, dtype=F64).reshape(5, 2)
    five = sample(sde, MIXTURE.score(sde), x_T=start, t_start=0.5, method="euler_maruyama", steps=10,
                  generator=SEEDS)  # fmt: skip
    two = sample(sde, MIXTURE.score(sde), x_T=start[[4, 0]], t_start=0.5, method="euler_maruyama", steps=10,
                 generator=[SEEDS[4], SEEDS[0]])  # fmt: skip
    same(two, five[[4, 0]])


def test_ncsn_annealed_langevin_takes_per_sample_seeds() -> None:
    sigmas = torch.tensor([10.0, 1.0, 0.1])

    def model(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:  # the score of N(0, (1 + σ²) I)
        return -x / (1 + sigmas.to(x)[labels].reshape(-1, 1) ** 2)

    options: dict[str, Any] = {"steps_each": 5, "step_lr": 1e-2, "dtype": F64}
    five = ncsn.annealed_langevin_sample(model, sigmas, (5, 2), generator=SEEDS, **options)
    two = ncsn.annealed_langevin_sample(model, sigmas, (2, 2), generator=[SEEDS[4], SEEDS[2]], **options)
    same(two, five[[4, 2]])
    assert isinstance(five, torch.Tensor) and len(set(map(tuple, five.tolist()))) == 5


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: sample(VPSDE(), MIXTURE.score(VPSDE()), (3, 2), method="torchsde:euler", generator=[1, 2, 3]),
         ValueError, "generator: method 'torchsde:euler' is torchsde's sdeint, which draws one Brownian path"),
        (lambda: pc_sample(VPSDE(), MIXTURE.score(VPSDE()), (3, 2), steps=4, corrector="langevin", generator=[1, 2, 3]),
         ValueError, "per-sample generators need 'langevin_per_sample'"),
        (lambda: sample(VPSDE(), MIXTURE.score(VPSDE()), (3, 2), steps=4, generator=[1, 2]),
         ValueError, "generator: 2 per-sample generators for a batch of 3 samples"),
        (lambda: sample(VPSDE(), MIXTURE.score(VPSDE()), x_T=torch.zeros(4, 2), steps=4, generator=[1, 2, 3]),
         ValueError, "generator: 3 per-sample generators for a batch of 4 samples"),
        (lambda: sample(VPSDE(), MIXTURE.score(VPSDE()), (2, 2), steps=4, generator=[1, torch.Generator()]),
         TypeError, "generator as a list must hold torch.Generator or int seeds, one per sample, got ['Generator', "
         "'int']"),
        (lambda: sample(VPSDE(), MIXTURE.score(VPSDE()), (2, 2), steps=4, generator=[True, False]),
         TypeError, "generator as a list must hold torch.Generator or int seeds"),
        (lambda: sample(VPSDE(), MIXTURE.score(VPSDE()), (2, 2), steps=4, generator=[1, -1]),
         ValueError, "generator: seeds must lie in [0, 2**63), got -1"),
        (lambda: sample(VPSDE(), MIXTURE.score(VPSDE()), (2, 2), steps=4, generator=[]),
         ValueError, "generator must be a torch.Generator or one per sample, got an empty list"),
        (lambda: sample(VPSDE(), MIXTURE.score(VPSDE()), (2, 2), steps=4, generator=np.random.default_rng(0)),
         TypeError, "generator must be a torch.Generator, a list of one per sample (generators or int seeds) or "
         "None, got numpy.random._generator.Generator"),
    ],
    ids=["torchsde", "batch-mean-langevin", "too-few", "too-few-for-x_T", "mixed", "bools", "negative", "empty",
         "numpy"],
)  # fmt: skip
def test_per_sample_generators_that_cannot_be_honoured_are_one_line(call, error, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error) as caught:
        call()
    assert message in str(caught.value) and "\n" not in str(caught.value), str(caught.value)


def test_the_draws_of_per_sample_generators_are_each_generator_s_own() -> None:
    generators = as_generators("generator", [7, 8, 9])
    assert isinstance(generators, SampleGenerators) and len(generators) == 3
    x = randn((3, 2, 2), generators, device="cpu", dtype=F64)
    for row, seed in zip(x, [7, 8, 9], strict=True):
        assert torch.equal(row, torch.randn((2, 2), generator=torch.Generator().manual_seed(seed), dtype=F64))
    u = rand((3, 4), as_generators("generator", [7, 8, 9]), device="cpu", dtype=F64)
    assert torch.equal(u[1], torch.rand(4, generator=torch.Generator().manual_seed(8), dtype=F64))
    # the state moves on: a second draw is each generator's second draw
    again = randn_like(x, generators)
    reference = torch.Generator().manual_seed(9)
    torch.randn((2, 2), generator=reference, dtype=F64)
    assert torch.equal(again[2], torch.randn((2, 2), generator=reference, dtype=F64))
    # selecting rows keeps those generators, in the order asked
    kept = generators.select(torch.tensor([2, 0]), 3)
    assert kept.generators == [generators.generators[2], generators.generators[0]]
    with pytest.raises(ValueError, match="3 per-sample generators for a batch of 4 samples"):
        generators.select(torch.tensor([0]), 4)
    with pytest.raises(ValueError, match="3 per-sample generators for a batch of 2 samples"):
        randn((2, 2), generators, device="cpu", dtype=F64)
    # one generator, or none, passes through untouched
    one = torch.Generator().manual_seed(0)
    assert as_generators("generator", one) is one and as_generators("generator", None) is None


def test_the_prior_is_the_generator_s_own_draw_wherever_the_samples_live() -> None:
    """x_T from one CPU generator is torch.randn of it, scaled by the prior's std; for CUDA samples it is drawn on
    the CPU and moved (a CPU generator cannot draw on CUDA), so a seed gives the same x_T on either device."""
    sde = VESDE(0.01, 50.0)
    draw = sde.prior_sample((4, 3), generator=torch.Generator().manual_seed(3))
    assert torch.equal(draw, 50.0 * torch.randn((4, 3), generator=torch.Generator().manual_seed(3)))
    if torch.cuda.is_available():
        on_cuda = sde.prior_sample((4, 3), generator=torch.Generator().manual_seed(3), device="cuda")
        assert on_cuda.device.type == "cuda" and torch.equal(on_cuda.cpu(), draw)
        x = sample(sde, sde_score_on(sde, "cuda"), shape=(4, 3), steps=3, device="cuda",
                          generator=torch.Generator().manual_seed(3))  # fmt: skip
        assert x.device.type == "cuda"


def sde_score_on(sde: VESDE, device: str):  # type: ignore[no-untyped-def]
    from sdekit.testing import Gaussian

    return Gaussian(torch.zeros(3, device=device), torch.eye(3, device=device)).score(sde)
