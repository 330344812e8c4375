"""Adapters: turn existing networks into ``score(x, t)`` modules for sdekit's samplers.

=============  ===========================================  =========================================
name           network                                      entry point
=============  ===========================================  =========================================
``ddpm``       ε̂(x, timestep), DDPM / iDDPM                 ``ddpm.from_betas``, ``ddpm.EpsilonScore``
``ncsn``       NCSN v1 s(x, i) / v2 output/σ                ``ncsn.from_sigmas``, ``ncsn.NCSNScore``
``x0``         data prediction x̂₀(x, t)                     ``x0.DataScore``
``v``          v-prediction v̂(x, t)                         ``v.VelocityScore``
``flow``       flow-matching velocity û(x, t)               ``flow.FlowScore``
``edm``        EDM denoiser D(x, σ)                          ``edm.DenoiserScore``
``diffusers``  ``UNet2DModel`` + DDPM/DDIM scheduler         ``diffusers.from_unet`` (extra ``diffusers``)
=============  ===========================================  =========================================

Every adapter is a ``torch.nn.Module`` holding the network (so ``.to(device)`` and
``.parameters()`` work), accepts any event shape, and evaluates schedules in float64.
Look adapters up by name with :func:`get`; :func:`available` lists them, including
third-party ones registered in the ``sdekit.adapters`` entry-point group. They use only
sdekit's public API. See docs/adapters.md for the conventions and conversion formulas.
"""

from sdekit.adapters._registry import ENTRY_POINT_GROUP, available, get, register

__all__ = ["ENTRY_POINT_GROUP", "available", "get", "register"]
