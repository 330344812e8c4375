"""Analytic ground truth for testing samplers, likelihoods and score code.

Gaussian and Gaussian-mixture data pushed through any :class:`~sdekit.sde.LinearSDE`
stay Gaussian mixtures: component k of p_t is N(α(t) μ_k, α(t)² Σ_k + σ(t)² I). So
the exact samples, the exact log-density and the exact score of every p_t are known
in closed form, and a sampler can be judged against the truth rather than against
another sampler.

Typical use::

    from sdekit.testing import GaussianMixture, evaluate

    mixture = GaussianMixture.random(dim=16, modes=8, generator=torch.Generator().manual_seed(0))
    score = mixture.score(sde)                      # exact ∇ log p_t, fast enough for 10⁴ calls
    x = my_sampler(sde, score, shape=(16384, 16))
    report = evaluate(x, mixture)                   # metrics and their finite-sample floors
    print(report)
    assert report.at_floor()

The package has three parts: :mod:`sdekit.testing.oracle` (the exact distributions),
:mod:`sdekit.testing.metrics` (the metrics, their finite-sample floors and the calibrated rule
of :meth:`QualityReport.at_floor`), importable from here, and :mod:`sdekit.testing.suite` (named
problems — narrow, anisotropic, imbalanced, image-shaped, 256-D, ring — under each SDE family).
"""

from sdekit.testing.metrics import (
    FALSE_ALARM,
    Floors,
    QualityReport,
    evaluate,
    finite_sample_floors,
    mode_weight_tv,
    nll_gap,
    sliced_wasserstein,
)
from sdekit.testing.oracle import ExactScore, Gaussian, GaussianMixture

__all__ = [
    "FALSE_ALARM",
    "ExactScore",
    "Floors",
    "Gaussian",
    "GaussianMixture",
    "QualityReport",
    "evaluate",
    "finite_sample_floors",
    "mode_weight_tv",
    "nll_gap",
    "sliced_wasserstein",
]
