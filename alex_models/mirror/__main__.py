"""``python -m alex_models.mirror --root DIR [--host H] [--port N]``: ``alex-models mirror serve``."""

from alex_models.cli.mirror import main_standalone

main_standalone()
