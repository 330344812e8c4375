"""The oracle suite (``sdekit.testing.suite``): each distribution has the property it is named for, and exact
samples of each pass the calibrated rule (so the suite's judgement starts from a fair floor)."""

from __future__ import annotations

import math

import pytest
import torch

from sdekit.testing import evaluate
from sdekit.testing.suite import DISTRIBUTIONS, SDES, distribution, image, problems


def test_each_distribution_has_the_property_it_is_named_for() -> None:
    narrow = distribution("narrow")
    assert torch.allclose(narrow.eigenvalues, torch.full_like(narrow.eigenvalues, 0.05**2))
    assert float(torch.cdist(narrow.means, narrow.means).add(torch.eye(8, dtype=torch.float64) * 9).min()) >= 2
    anisotropic = distribution("anisotropic")
    condition = anisotropic.eigenvalues.max(dim=1).values / anisotropic.eigenvalues.min(dim=1).values
    assert bool((condition >= 999).all()), condition
    weights = distribution("imbalanced").weights
    assert float(weights.max() / weights.min()) == pytest.approx(100.0)
    picture = distribution("image")
    assert picture.event_shape == (1, 16, 16) and picture.num_components == 1
    assert float(torch.diagonal(picture.covariances[0]).mean()) == pytest.approx(0.25)
    assert distribution("high_dim").dim == 256 and distribution("high_dim").num_components == 4
    ring = distribution("ring")
    assert torch.allclose(ring.means.norm(dim=1), torch.full((16,), 2.0, dtype=torch.float64))
    assert torch.allclose(ring.eigenvalues, torch.full_like(ring.eigenvalues, 0.01))


def test_the_image_covariance_is_a_power_law_in_an_orthonormal_dct_basis() -> None:
    small = image(size=4)  # λ(f) = c/(1 + |f|²): the variance of basis image (kx, ky) falls with its frequency
    spectrum = torch.linalg.eigvalsh(small.covariances[0]).flip(0)
    k = torch.arange(4, dtype=torch.float64) / 2
    expected = (1 / (1 + k[:, None] ** 2 + k[None, :] ** 2)).reshape(-1).sort(descending=True).values
    torch.testing.assert_close(spectrum, expected * (0.25 * 16 / expected.sum()), rtol=1e-10, atol=1e-12)
    # low frequencies dominate: neighbouring pixels are strongly correlated, as in natural images
    covariance = distribution("image").covariances[0]
    correlation = covariance[0, 1] / math.sqrt(float(covariance[0, 0] * covariance[1, 1]))
    assert 0.3 < float(correlation) < 1


def test_problems_are_every_pair_and_refuse_unknown_names() -> None:
    every = problems()
    assert len(every) == len(DISTRIBUTIONS) * len(SDES) == 36
    assert len({p.name for p in every}) == 36 and every[0].name == "narrow/vp"
    chosen = problems(["ring"], ["ve", "ddpm"])
    assert [p.name for p in chosen] == ["ring/ve", "ring/ddpm"] and chosen[0].shape(5) == (5, 2)
    assert chosen[0].data is distribution("ring")  # built once
    with pytest.raises(ValueError, match="distribution 'spiral'; valid: "):
        problems(["spiral"])
    with pytest.raises(ValueError, match="sde 'vpp'; valid: "):
        problems(sdes=["vpp"])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_exact_samples_of_every_distribution_pass_the_rule(name: str) -> None:
    data = distribution(name)
    x = data.sample(4096, generator=torch.Generator().manual_seed(1))
    report = evaluate(x, data, generator=torch.Generator().manual_seed(2))
    assert report.at_floor(), report.row()
