"""Methods: predictors and correctors for the reverse SDE, Runge–Kutta and exponential (DPM-Solver++,
UniPC) methods for the flow, predictor–corrector pairs, and the adaptive SDE and ODE solvers.

A method is a configured object (:mod:`sdekit.solvers.method`): ``DPMSolverPP(order=3)``,
``PredictorCorrector(corrector=Langevin(snr=0.1))``, ``AdaptiveSDE(rtol=0.02)``. Each fixed-grid
family has a registry (:data:`PREDICTORS`, :data:`CORRECTORS`, :data:`ODE_METHODS`,
:data:`SDE_STEPPERS`); registering a class under a new name makes it available to every sampler
in :mod:`sdekit.sampling` by that name.
"""

from sdekit.solvers.adaptive_ode import AdaptiveODE, solve_ivp_batched
from sdekit.solvers.adaptive_sde import AdaptiveSDE, adaptive_sde_sample
from sdekit.solvers.catalog import Method, ode_method, ode_methods, sde_method, sde_methods
from sdekit.solvers.controllers import GottaGoFast, PIController, StepSizeController
from sdekit.solvers.correctors import (
    CORRECTORS,
    AnnealedLangevin,
    Corrector,
    Langevin,
    NoCorrector,
    PerSampleLangevin,
)
from sdekit.solvers.edm_stochastic import EDMStochastic
from sdekit.solvers.exponential import DPMSolverPP, DPMSolverPP2M, DPMSolverPP3M, SDEDPMSolverPP2M
from sdekit.solvers.grid_stepper import GridStepper, weighted_sum
from sdekit.solvers.info import SampleInfo
from sdekit.solvers.loop import StepLimitError
from sdekit.solvers.method import Callback, Configurable, Integrator
from sdekit.solvers.ode import ODE_METHODS, RK4, Euler, ExplicitRungeKutta, Heun, RungeKutta
from sdekit.solvers.predictor_corrector import PredictorCorrector
from sdekit.solvers.predictors import (
    DDIM,
    PREDICTORS,
    SDE_STEPPERS,
    AffinePredictor,
    Ancestral,
    DeterministicDDIM,
    EulerMaruyama,
    NoPredictor,
    Predictor,
    ReverseDiffusion,
)
from sdekit.solvers.registry import Registry
from sdekit.solvers.score_calls import CountedScore, gaussian_like
from sdekit.solvers.tableaus import ButcherTableau
from sdekit.solvers.torchsde_solver import TorchSDE
from sdekit.solvers.unipc import UniPC

__all__ = [
    "PREDICTORS",
    "SDE_STEPPERS",
    "CORRECTORS",
    "ODE_METHODS",
    "Configurable",
    "Integrator",
    "Method",
    "Callback",
    "SampleInfo",
    "StepLimitError",
    "sde_methods",
    "ode_methods",
    "sde_method",
    "ode_method",
    "Predictor",
    "AffinePredictor",
    "Corrector",
    "ExplicitRungeKutta",
    "EulerMaruyama",
    "ReverseDiffusion",
    "Ancestral",
    "DDIM",
    "DeterministicDDIM",
    "NoPredictor",
    "Langevin",
    "PerSampleLangevin",
    "AnnealedLangevin",
    "NoCorrector",
    "PredictorCorrector",
    "Euler",
    "Heun",
    "RK4",
    "RungeKutta",
    "UniPC",
    "EDMStochastic",
    "ButcherTableau",
    "Registry",
    "GridStepper",
    "weighted_sum",
    "DPMSolverPP",
    "DPMSolverPP2M",
    "DPMSolverPP3M",
    "SDEDPMSolverPP2M",
    "AdaptiveSDE",
    "AdaptiveODE",
    "StepSizeController",
    "PIController",
    "GottaGoFast",
    "TorchSDE",
    "solve_ivp_batched",
    "adaptive_sde_sample",
    "CountedScore",
    "gaussian_like",
]

#: Names of the API before methods became configured objects, and what replaced them.
_REMOVED = {
    "OdeStats": "SampleInfo (sdekit.solvers.SampleInfo), which every sampler and solver now returns",
    "AdaptiveStats": "SampleInfo (sdekit.solvers.SampleInfo), which every sampler and solver now returns",
    "StepperFactory": "a GridStepper subclass: Method(**options).start(sde, score, grid, generator)",
    "Stepper": "GridStepper: Method(**options).start(sde, score, grid, generator) returns the run",
}


def __getattr__(name: str) -> object:
    if name in _REMOVED:
        raise AttributeError(f"sdekit.solvers.{name} was removed; use {_REMOVED[name]}")
    raise AttributeError(f"module 'sdekit.solvers' has no attribute {name!r}")
