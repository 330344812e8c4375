"""sdekit inside other libraries' loops: ``sdekit.interop.diffusers`` (a diffusers scheduler, a pipeline helper).

Each submodule imports its library when imported itself; this package imports nothing.
"""

__all__: list[str] = []
