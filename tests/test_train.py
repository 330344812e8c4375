"""The training utility: a 2-D score MLP learns the oracle's 8-mode mixture and samples through every sampler."""

from __future__ import annotations

import os
import time

import pytest
import torch

from sdekit import VPSDE, ode_sample, pc_sample, sample
from sdekit.app.train import EMA, ScoreMLP, load_checkpoint, train_score_model
from sdekit.sampling import ode_methods, sde_methods
from sdekit.solvers.adaptive_ode import TABLEAUS
from sdekit.testing import GaussianMixture, mode_weight_tv

# The standard random mixture in 2-D: 8 modes, weights 0.0625 … 0.1875, anisotropic covariances
# (eigenvalues 0.05–0.3) about 5.5 apart. Hard enough that weights must be learnt at high noise and
# shapes at low noise; 4000 Adam steps of 512 fresh samples learn it (TV ≈ 0.01–0.02).
STEPS = 4000
N = 4096


@pytest.fixture(scope="module")
def trained():
    mixture = GaussianMixture.random(dim=2, modes=8, generator=torch.Generator().manual_seed(0))
    sde = VPSDE()
    torch.manual_seed(0)
    model = ScoreMLP(sde, dim=2, data_std=5.0)
    start = time.perf_counter()
    result = train_score_model(
        model, sde, lambda n, g: mixture.sample(n, generator=g), steps=STEPS, generator=torch.Generator().manual_seed(1)
    )
    return mixture, sde, result, time.perf_counter() - start


@pytest.mark.slow
def test_trained_mlp_samples_the_mixture(trained):
    mixture, sde, result, seconds = trained
    x = ode_sample(sde, result.ema, shape=(N, 2), method="dopri5", generator=torch.Generator().manual_seed(2))
    tv = mode_weight_tv(x, mixture)
    print(f"\ntrained {result.steps} steps in {seconds:.1f} s; dopri5 TV {tv:.4f}")
    assert tv <= 0.05


SAMPLERS = [("sde", m) for m in sde_methods()] + [("ode", m) for m in ode_methods()] + [("pc", "langevin")]


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "method"), SAMPLERS, ids=[f"{k}:{m}" for k, m in SAMPLERS])
def test_trained_mlp_through_every_sampler(trained, kind, method):
    mixture, sde, result, _ = trained
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        if kind == "sde":
            steps = {"adaptive": {}, "dpmpp_2m_sde": {"steps": 100}}.get(method, {"steps": 200})
            x = sample(sde, result.ema, shape=(N, 2), method=method, generator=generator, **steps)
        elif kind == "ode":
            # The adaptive pairs choose their own steps. Euler is first order: at 50 steps of the default
            # log-SNR grid its TV is 0.056 with this model and 0.069 with the exact score (discretisation,
            # not the model; 0.036 / 0.045 on the uniform grid, which suits this mixture's broad modes).
            steps = {} if method in TABLEAUS else {"steps": 100 if method == "euler" else 50}
            x = ode_sample(sde, result.ema, shape=(N, 2), method=method, generator=generator, **steps)
        else:
            x = pc_sample(sde, result.ema, shape=(N, 2), steps=200, generator=generator)
    tv = mode_weight_tv(x, mixture)
    print(f" {kind}:{method} TV {tv:.4f}", end="")
    assert torch.isfinite(x).all()
    assert tv <= 0.05


def test_resume_after_a_crash_is_bit_identical(tmp_path):
    sde, data = VPSDE(), torch.randn(256, 2, generator=torch.Generator().manual_seed(0))
    path = tmp_path / "run.safetensors"

    class CrashError(Exception):
        pass

    def batches(crash_at: int | None):
        calls = []

        def draw(n, generator):
            calls.append(n)
            if crash_at is not None and len(calls) > crash_at:
                raise CrashError
            return data[torch.randint(0, 256, (n,), generator=generator)]

        return draw

    def run(draw, **options):
        torch.manual_seed(0)
        model = ScoreMLP(sde, dim=2, hidden=16, depth=2)
        return train_score_model(model, sde, draw, steps=20, batch_size=32, **options)

    reference = run(batches(None), generator=torch.Generator().manual_seed(1))
    with pytest.raises(CrashError):
        run(batches(12), generator=torch.Generator().manual_seed(1), checkpoint=path, checkpoint_every=5)
    assert load_checkpoint(path, ScoreMLP(sde, dim=2, hidden=16, depth=2)) == 10
    resumed = run(batches(None), generator=torch.Generator().manual_seed(99), checkpoint=path)
    assert resumed.steps == 20 and len(resumed.losses) == 10
    assert resumed.losses == reference.losses[10:]
    for mine, theirs in ((resumed.model, reference.model), (resumed.ema, reference.ema)):
        for name, value in theirs.state_dict().items():
            assert torch.equal(value, mine.state_dict()[name]), name
    assert not [p for p in os.listdir(tmp_path) if p != "run.safetensors"]  # no temp files left behind


def test_ema_average():
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # decay min(0.5, 2/11) = 2/11
    assert abs(float(ema.module.weight) - 9 / 11) < 1e-6
