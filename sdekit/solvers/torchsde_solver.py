"""torchsde's solvers for the reverse SDE: ``sample(method="torchsde:srk")`` or ``method=TorchSDE(method="srk")``.

The reverse SDE (:func:`sdekit.reverse`) is a torchsde SDE in the reversed time s = T − t on
flattened states; ``torchsde.sdeint`` integrates it with dt = (T − eps)/steps (the first step,
with ``adaptive=True``, of torchsde's own step-size control). The Brownian motion is a
``torchsde.BrownianInterval`` seeded from the sampler's ``generator``, so results are
reproducible from it. A cross-check and baseline more than a fast path: torchsde steps on one
clock for the batch and makes one Python call per drift and diffusion evaluation.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torchsde
from torch import Tensor

from sdekit.checks import check_choice, check_positive
from sdekit.per_sample import Generators, SampleGenerators
from sdekit.reverse import ScoreFn, reverse
from sdekit.sde import SDE, time_checks
from sdekit.solvers.info import SampleInfo
from sdekit.solvers.method import Callback, Integrator

#: The fixed step is (T − eps)/steps·(1 + STEP_MARGIN): see the call of ``torchsde.sdeint`` below.
STEP_MARGIN = 1e-10

__all__ = ["STEP_MARGIN", "TORCHSDE_METHODS", "TorchSDE"]

#: torchsde's methods for Itô SDEs with diagonal noise.
TORCHSDE_METHODS = ("euler", "milstein", "srk")


class TorchSDE(Integrator):
    """``torchsde.sdeint`` on the reverse SDE; options ``method``, ``adaptive``, ``rtol``, ``atol`` (torchsde's)."""

    kind = "sde"

    @property
    def takes_callback(self) -> bool:
        return False  # torchsde.sdeint runs the steps

    uses_steps = True
    defaults: ClassVar[dict[str, Any]] = {"method": "euler", "adaptive": False, "rtol": 1e-5, "atol": 1e-4}
    method: str
    adaptive: bool
    rtol: float
    atol: float

    def check_options(self, options: dict[str, Any]) -> None:
        check_choice("method", options["method"], TORCHSDE_METHODS)
        if not isinstance(options["adaptive"], bool):
            raise TypeError(f"adaptive must be a bool, got {options['adaptive']!r}")
        check_positive("rtol", options["rtol"])
        check_positive("atol", options["atol"])

    def integrate(
        self,
        sde: SDE,
        score: ScoreFn,
        x: Tensor,
        *,
        eps: float,
        steps: int,
        generator: Generators | None,
        progress: bool,
        callback: Callback | None,
    ) -> tuple[Tensor, SampleInfo]:
        if isinstance(generator, SampleGenerators):
            raise ValueError(
                f"generator: method 'torchsde:{self.method}' is torchsde's sdeint, which draws one Brownian path "
                "for the whole batch; per-sample generators need one of sdekit's own SDE methods (e.g. "
                "'euler_maruyama', 'adaptive'), or pass one torch.Generator"
            )
        length = sde.T - eps
        device = generator.device if generator is not None else "cpu"
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=device))
        flat = x.reshape(x.shape[0], -1)
        # time in float64 whatever the state dtype: in bfloat16, t + dt rounds to t near t = 0.5 and sdeint never ends
        time_dtype = torch.float32 if x.device.type == "mps" else torch.float64  # MPS has no float64
        ts = torch.tensor([0.0, length], dtype=time_dtype, device=x.device)
        bm = torchsde.BrownianInterval(
            t0=0.0,
            t1=float(ts[-1]),
            size=flat.shape,
            dtype=x.dtype,
            device=x.device,
            entropy=seed,
            levy_area_approximation="space-time" if self.method == "srk" else "none",  # SRK needs the Lévy area
        )
        rsde = reverse(sde, score, event_shape=tuple(x.shape[1:]))
        with torch.no_grad(), time_checks(False):
            path = torchsde.sdeint(
                rsde,
                flat,
                ts,
                bm=bm,
                method=self.method,
                # a hair above length/steps, so the steps' float64 sum reaches ts[-1] in `steps` steps: at exactly
                # length/steps it can fall short by an ulp, and sdeint then takes a last step of ~1e-16 (an extra
                # score call; torchsde's BrownianInterval hangs building its tree for it: T − eps = 0.996, measured)
                dt=length / steps * (1 + STEP_MARGIN),
                adaptive=self.adaptive,
                rtol=self.rtol,
                atol=self.atol,
            )
        return path[-1].reshape(x.shape), SampleInfo(steps=steps, samples=x.shape[0])
