"""sdekit: numerical SDE and ODE solvers for score-based generative models.

    >>> from sdekit import VPSDE, pc_sample
    >>> x = pc_sample(VPSDE(), score, shape=(64, 3, 32, 32), steps=1000)

See docs/design.md for the layout and the conventions every public function keeps.
"""

from sdekit.budget import Choice, best_method
from sdekit.checks import ScoreError
from sdekit.grids import from_sigmas, make_grid
from sdekit.guidance import ClassifierFreeGuidance, ClassifierGuidance, PosteriorSampling
from sdekit.interpolants import EDMSDE, InterpolantSDE, RectifiedFlowSDE
from sdekit.likelihood import LikelihoodInfo, bits_per_dim, log_likelihood, uniform_dequantize
from sdekit.losses import ddpm_loss, dsm_loss, smld_loss
from sdekit.per_sample import SampleGenerators
from sdekit.reverse import ProbabilityFlow, ReverseSDE, ScoreFn, probability_flow, reverse
from sdekit.sampling import SampleInfo, ode_sample, pc_sample, sample
from sdekit.score_matching import esm_loss, ism_loss, ssm_loss
from sdekit.sde import (
    SDE,
    VESDE,
    VPSDE,
    DiscreteVPSDE,
    LinearSDE,
    SubVPSDE,
    cosine_alphas_cumprod,
    linear_betas,
    time_checks,
)

__version__ = "0.1.0"

__all__ = [
    "SDE",
    "LinearSDE",
    "VPSDE",
    "SubVPSDE",
    "VESDE",
    "DiscreteVPSDE",
    "InterpolantSDE",
    "RectifiedFlowSDE",
    "EDMSDE",
    "linear_betas",
    "cosine_alphas_cumprod",
    "time_checks",
    "ScoreFn",
    "ScoreError",
    "ReverseSDE",
    "ProbabilityFlow",
    "reverse",
    "probability_flow",
    "make_grid",
    "from_sigmas",
    "SampleInfo",
    "best_method",
    "Choice",
    "SampleGenerators",
    "pc_sample",
    "sample",
    "ode_sample",
    "LikelihoodInfo",
    "log_likelihood",
    "bits_per_dim",
    "uniform_dequantize",
    "dsm_loss",
    "ddpm_loss",
    "smld_loss",
    "esm_loss",
    "ism_loss",
    "ssm_loss",
    "ClassifierGuidance",
    "ClassifierFreeGuidance",
    "PosteriorSampling",
    "__version__",
]
