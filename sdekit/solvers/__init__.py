"""Steppers and step-size control: predictors and correctors for the reverse SDE, Runge–Kutta
and exponential (DPM-Solver++) methods for the flow, the adaptive SDE and ODE solvers.

Each fixed-grid family has a registry (:data:`PREDICTORS`, :data:`CORRECTORS`,
:data:`ODE_METHODS`, :data:`SDE_STEPPERS`); registering a class under a new name makes it
available to every sampler in :mod:`sdekit.sampling`.
"""

from sdekit.solvers.adaptive_ode import OdeStats, solve_ivp_batched
from sdekit.solvers.adaptive_sde import AdaptiveStats, adaptive_sde_sample
from sdekit.solvers.correctors import (
    CORRECTORS,
    AnnealedLangevin,
    Corrector,
    Langevin,
    NoCorrector,
    PerSampleLangevin,
)
from sdekit.solvers.exponential import DPMSolverPP2M, DPMSolverPP3M, SDEDPMSolverPP2M
from sdekit.solvers.grid_stepper import GridStepper, weighted_sum
from sdekit.solvers.ode import ODE_METHODS, RK4, Euler, ExplicitRungeKutta, Heun
from sdekit.solvers.predictors import (
    PREDICTORS,
    SDE_STEPPERS,
    AffinePredictor,
    Ancestral,
    EulerMaruyama,
    NoPredictor,
    Predictor,
    ReverseDiffusion,
)
from sdekit.solvers.registry import Registry, Stepper, StepperFactory
from sdekit.solvers.score_calls import CountedScore, gaussian_like

__all__ = [
    "PREDICTORS",
    "SDE_STEPPERS",
    "CORRECTORS",
    "ODE_METHODS",
    "Predictor",
    "AffinePredictor",
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
    "StepperFactory",
    "GridStepper",
    "weighted_sum",
    "DPMSolverPP2M",
    "DPMSolverPP3M",
    "SDEDPMSolverPP2M",
    "solve_ivp_batched",
    "OdeStats",
    "adaptive_sde_sample",
    "AdaptiveStats",
    "CountedScore",
    "gaussian_like",
]
