"""Per-sample state follows the active set: per-sample ``model_kwargs`` under the adaptive solvers and the likelihood.

A class-conditional ε-network (exact for Gaussian data with a mean per class) is wrapped by the
DDPM adapter with ``model_kwargs={"class_labels": y}``, one label per sample. The adaptive solvers
drop finished samples from the batch; the labels must follow, or the network sees the wrong
labels (or crashes on a shape mismatch).
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

import sdekit
from sdekit import VPSDE
from sdekit.adapters import ddpm

F64 = torch.float64
MEANS = torch.tensor([-3.0, 3.0], dtype=F64)
VAR = 0.25


class ClassConditional(torch.nn.Module):
    """ε̂(x, label, class_labels) exact for data N(MEANS[y], VAR I) under VP, continuous labels t·999."""

    def __init__(self) -> None:
        super().__init__()
        self.sde = VPSDE()
        self.batches: list[int] = []

    def forward(self, x: Tensor, label: Tensor, class_labels: Tensor) -> Tensor:
        assert class_labels.shape == (x.shape[0],), (class_labels.shape, x.shape)  # the labels follow the rows
        self.batches.append(x.shape[0])
        t = (label.double() / 999).expand(x.shape[0])
        alpha, sigma = self.sde.kernel(t)
        mean = MEANS.to(x.device)[class_labels][:, None] * alpha[:, None]
        score = -(x.double() - mean) / (alpha[:, None] ** 2 * VAR + sigma[:, None] ** 2)
        return (-sigma[:, None] * score).to(x.dtype)


def conditional_score(labels: Tensor) -> tuple[ClassConditional, ddpm.EpsilonScore]:
    network = ClassConditional()
    return network, ddpm.EpsilonScore(network, VPSDE(), time_label="continuous", model_kwargs={"class_labels": labels})


LABELS = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])


def test_select_indexes_only_per_sample_tensors() -> None:
    shared = torch.ones(1, 3)
    _, score = conditional_score(LABELS)
    score.model_kwargs["shared"] = shared
    selected = score.select(torch.tensor([1, 3]), batch_size=8)
    assert torch.equal(selected.model_kwargs["class_labels"], torch.tensor([1, 0]))
    assert selected.model_kwargs["shared"] is shared and selected.model is score.model
    assert torch.equal(score.model_kwargs["class_labels"], LABELS)  # the original is untouched


def test_adaptive_sde_with_per_sample_labels() -> None:
    network, score = conditional_score(LABELS)
    x, info = sdekit.sample(VPSDE(), score, (8, 2), method="adaptive", generator=torch.Generator().manual_seed(0),
                            dtype=F64, return_info=True)  # fmt: skip
    assert min(network.batches) < 8  # the active set did shrink, so the labels had to follow it
    assert info.sample_steps is not None and len(set(info.sample_steps.tolist())) > 1
    # each sample sits at its own class's mean (±3, data sd 0.5)
    assert torch.equal((x.mean(dim=1) > 0).long(), LABELS)


def test_adaptive_ode_with_per_sample_labels_is_each_sample_on_its_own() -> None:
    """Per-sample error control: a sample's solution depends on its own label only."""
    x_T = torch.randn(8, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    network, score = conditional_score(LABELS)
    mixed = sdekit.ode_sample(VPSDE(), score, x_T=x_T, method="dopri5", rtol=1e-6, atol=1e-6, dtype=F64)
    assert min(network.batches) < 8
    for label in (0, 1):
        _, alone = conditional_score(torch.full((8,), label))
        rows = label == LABELS
        same = sdekit.ode_sample(VPSDE(), alone, x_T=x_T, method="dopri5", rtol=1e-6, atol=1e-6, dtype=F64)
        torch.testing.assert_close(mixed[rows], same[rows], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("divergence", ["exact", "hutchinson_rademacher"])
def test_likelihood_with_per_sample_labels(divergence: str) -> None:
    x = MEANS[LABELS][:, None] + 0.5 * torch.randn(8, 2, generator=torch.Generator().manual_seed(2), dtype=F64)
    network, score = conditional_score(LABELS)
    mixed = sdekit.log_likelihood(VPSDE(), score, x, divergence=divergence, generator=torch.Generator().manual_seed(3))
    assert min(network.batches) < 8
    for label in (0, 1):
        _, alone = conditional_score(torch.full((8,), label))
        rows = label == LABELS
        same = sdekit.log_likelihood(
            VPSDE(), alone, x, divergence=divergence, generator=torch.Generator().manual_seed(3)
        )
        torch.testing.assert_close(mixed[rows], same[rows], rtol=1e-10, atol=1e-10)


def _every_adapter(model_kwargs: dict[str, Tensor]) -> list[object]:
    from sdekit.adapters import edm, ncsn, v, x0

    def network(x: Tensor, label: Tensor, **kwargs: Tensor) -> Tensor:
        return x

    sde = VPSDE()
    return [
        ddpm.EpsilonScore(network, sde, model_kwargs=model_kwargs),
        x0.DataScore(network, sde, model_kwargs=model_kwargs),
        v.VelocityScore(network, sde, model_kwargs=model_kwargs),
        edm.DenoiserScore(network, sde, model_kwargs=model_kwargs),
        ncsn.NCSNScore(network, torch.tensor([1.0, 0.1]), model_kwargs=model_kwargs),
    ]


@pytest.mark.parametrize("index", range(5), ids=["ddpm", "x0", "v", "edm", "ncsn"])
def test_every_adapter_carries_per_sample_kwargs_and_swaps_them(index: int) -> None:
    """Each adapter selects its per-sample model_kwargs (the adaptive solvers) and swaps them (guidance).

    The EDM adapter once had neither: per-sample labels under an adaptive solver reached its
    network with the full batch's labels.
    """
    from sdekit.guidance import ConditionalScore
    from sdekit.per_sample import SelectsRows

    score = _every_adapter({"class_labels": LABELS})[index]
    assert isinstance(score, SelectsRows) and isinstance(score, ConditionalScore)
    selected = score.select(torch.tensor([1, 3]), batch_size=8)
    assert torch.equal(selected.model_kwargs["class_labels"], torch.tensor([1, 0]))
    swapped = score.with_model_kwargs({"class_labels": torch.zeros(8, dtype=torch.long)})
    assert torch.equal(swapped.model_kwargs["class_labels"], torch.zeros(8, dtype=torch.long))
    assert torch.equal(score.model_kwargs["class_labels"], LABELS)  # the original is untouched
    with pytest.raises(TypeError, match="model_kwargs must be a mapping"):
        score.with_model_kwargs([1, 2])  # type: ignore[arg-type]
