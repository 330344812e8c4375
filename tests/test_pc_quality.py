"""Sample quality on the exact oracle: a 16-D, 8-mode Gaussian mixture with unequal weights.

VP SDE (β 0.1..20), exact score, 16 384 samples, 1000 uniform steps. "At floor" means
statistically indistinguishable from exact samples of the same size: sliced W1 ≤ 1.3×
its finite-sample floor, mode-weight TV ≤ 1.5× its floor, |NLL − entropy| ≤ 0.5 nats.
The full table over every predictor/corrector pair and step count is produced by
``benchmarks/pc_quality_table.py`` and committed in docs/benchmarks.md.
"""

from __future__ import annotations

import pytest
import torch

from sdekit import VPSDE, pc_sample
from sdekit.testing import evaluate

NUM = 16384


@pytest.mark.slow
@pytest.mark.parametrize(
    ("predictor", "corrector"),
    [("euler_maruyama", "none"), ("ancestral", "none"), ("reverse_diffusion", "langevin")],
)
def test_1000_steps_reach_the_finite_sample_floor(oracle, predictor, corrector):
    sde = VPSDE()
    x, info = pc_sample(
        sde,
        oracle.score(sde),
        (NUM, 16),
        steps=1000,
        predictor=predictor,
        corrector=corrector,
        generator=torch.Generator().manual_seed(1),
        return_info=True,
    )
    report = evaluate(x, oracle)
    print(f"{predictor}+{corrector}: NFE {info.nfe}  {report.row()}")
    assert report.sw1 <= 1.3 * report.sw1_floor, report.row()
    assert report.tv <= 1.5 * report.tv_floor, report.row()
    assert abs(report.nll_gap) <= 0.5, report.row()


def test_a_wrong_sampler_is_caught(oracle):
    """The same criteria reject samples that are visibly off (20-step Euler–Maruyama)."""
    sde = VPSDE()
    x = pc_sample(
        sde,
        oracle.score(sde),
        (NUM, 16),
        steps=20,
        predictor="euler_maruyama",
        corrector="none",
        generator=torch.Generator().manual_seed(1),
    )
    assert not evaluate(x, oracle).at_floor()
