"""Steppers: predictors and correctors for the reverse SDE, Runge–Kutta methods for the flow.

Each family has a registry (:data:`PREDICTORS`, :data:`CORRECTORS`,
:data:`ODE_METHODS`); registering a class under a new name makes it available to
every sampler in :mod:`sdekit.sampling`.
"""

from sdekit.solvers import exponential as _exponential  # noqa: F401  (registers dpmpp_2m, dpmpp_3m, dpmpp_2m_sde)
from sdekit.solvers.correctors import (
    CORRECTORS,
    AnnealedLangevin,
    Corrector,
    Langevin,
    NoCorrector,
    PerSampleLangevin,
)
from sdekit.solvers.ode import ODE_METHODS, RK4, Euler, ExplicitRungeKutta, Heun
from sdekit.solvers.predictors import (
    PREDICTORS,
    SDE_STEPPERS,
    Ancestral,
    EulerMaruyama,
    NoPredictor,
    Predictor,
    ReverseDiffusion,
)
from sdekit.solvers.registry import ODEStepperFactory, Registry, SDEStepperFactory, Stepper
from sdekit.solvers.score_calls import CountedScore, gaussian_like

__all__ = [
    "PREDICTORS",
    "SDE_STEPPERS",
    "CORRECTORS",
    "ODE_METHODS",
    "Predictor",
    "Corrector",
    "ExplicitRungeKutta",
    "EulerMaruyama",
    "ReverseDiffusion",
    "Ancestral",
    "NoPredictor",
    "Langevin",
    "PerSampleLangevin",
    "AnnealedLangevin",
    "NoCorrector",
    "Euler",
    "Heun",
    "RK4",
    "Registry",
    "Stepper",
    "ODEStepperFactory",
    "SDEStepperFactory",
    "CountedScore",
    "gaussian_like",
]
