"""Stand-ins for what the documentation's fragments take as given: a user's networks and data.

``tests/test_docs_examples.py`` runs each Python block of ``docs/adapters.md``, ``docs/likelihood.md`` and
``docs/solvers.md`` after ``from doc_stand_ins import *``. The networks are untrained (a fixed map of the
input), so the examples are checked to run as written — names, signatures, shapes — not for sample quality.
"""

from __future__ import annotations

import types

import torch

import sdekit
from sdekit import ode_sample, pc_sample, sample
from sdekit.testing import GaussianMixture


class StandInNetwork(torch.nn.Module):
    """Any of the documented network contracts: ``net(x, label, **conditioning)`` returns x's shape."""

    def forward(self, x: torch.Tensor, label: torch.Tensor, **conditioning: object) -> torch.Tensor:
        return 0.5 * torch.tanh(x)


eps_model = model = x0_model = v_model = velocity_model = denoiser = StandInNetwork()
y = torch.zeros(64, dtype=torch.long)  # class labels
betas = sdekit.linear_betas(1000, 1e-4, 0.02)
#: a third-party adapter as a package would provide it
my_adapter = types.SimpleNamespace(name="mynet")

# The oracle stands in for data and a trained score.
g = torch.Generator().manual_seed(0)
mixture = GaussianMixture.random(dim=2, modes=3, generator=torch.Generator().manual_seed(0))
sde = sdekit.VPSDE()
score = mixture.score(sde)
shape = (256, 2)
images = torch.randint(0, 256, (8, 2), generator=g) / 255 * 2 - 1  # 8-bit levels scaled to [-1, 1]

try:  # the diffusers section needs the diffusers extra
    import diffusers

    from conftest import tiny_unet

    unet = tiny_unet(sample_size=32, in_channels=3, out_channels=3)
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=1000)
except ImportError:
    pass

__all__ = [
    "betas",
    "denoiser",
    "eps_model",
    "g",
    "images",
    "mixture",
    "model",
    "my_adapter",
    "ode_sample",
    "velocity_model",
    "pc_sample",
    "sample",
    "scheduler",
    "score",
    "sde",
    "shape",
    "torch",
    "unet",
    "v_model",
    "x0_model",
    "y",
]
