"""``python -m alex_models`` runs the CLI."""

from alex_models.cli import main

main()
