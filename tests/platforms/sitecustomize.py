"""Run at start-up by every Python that has this folder on its ``PYTHONPATH`` (Python imports a
``sitecustomize`` module if it finds one): with ``ALEX_MODELS_SIMULATE`` set to ``macos`` or
``windows``, that Python lacks what the named platform's Python lacks (see ``simulated_platform``).
Child processes inherit both variables, so a CLI and the mirror it talks to are simulated alike."""

import os

if os.environ.get("ALEX_MODELS_SIMULATE"):
    import simulated_platform

    simulated_platform.apply(os.environ["ALEX_MODELS_SIMULATE"])
