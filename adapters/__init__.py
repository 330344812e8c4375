"""Adapters that turn existing networks (DDPM ε-models, NCSN, denoisers, diffusers UNets) into
``score(x, t)`` functions for sdekit. They use only sdekit's public API (``import sdekit``).
"""
