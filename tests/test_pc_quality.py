"""Sample quality on the exact oracle: a 16-D, 8-mode Gaussian mixture with unequal weights.

VP SDE (β 0.1..20), exact score, 16 384 samples, 1000 steps of the default log-SNR grid. "At floor"
means statistically indistinguishable from exact samples of the same size at false-alarm rate 0.1 %
(``QualityReport.at_floor``; here SW1 ≤ 1.26× and TV ≤ 2.15× their floors, |NLL gap| ≤ 0.090).
Measured at this seed: Euler–Maruyama +0.080 and ancestral −0.030, both at floor without an offset
(on the uniform grid, the default until 2026-12-04, +0.004 and −0.164: the ancestral step's
posterior variance loses ≈ d²/σ² per step when σ'²/σ² is far from 1, as the uniform grid's last
steps are). Reverse diffusion + Langevin carries +0.191 (+0.183 on the uniform grid), the
corrector's batch-mean step at snr 0.16, pinned with ``nll_offset`` (a regression pin: it fails
when the gap moves by more than ±0.09). The old ±0.5-nat tolerance hid both biases.
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
    ("predictor", "corrector", "nll_offset"),
    [("euler_maruyama", "none", 0.0), ("ancestral", "none", 0.0), ("reverse_diffusion", "langevin", 0.191)],
)
def test_1000_steps_reach_the_finite_sample_floor(oracle, predictor, corrector, nll_offset):
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
    assert report.at_floor(nll_offset=nll_offset), report.row()


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
