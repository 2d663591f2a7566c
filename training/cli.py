"""The ``zhenping`` command.

Each subsystem defines its subcommands in its own module, registered on the
shared :data:`app` when that module is imported; this file only lists them.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="zhenping",
    help="Score Chinese comments for warmth, substance and template-likeness.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)



@app.callback()
def _root() -> None:
    """zhenping: warmth, substance and template-likeness scores for Chinese comments."""


# Modules that add subcommands to `app` (each does `from training.cli import app`).
COMMAND_MODULES = (
    "training.commands",
    "training.model_commands",
    "api.commands",
    "model.commands",
    "training.feedback_commands",
    "training.behaviour_commands",
    "training.pack_commands",
)

for _name in COMMAND_MODULES:
    importlib.import_module(_name)


def main() -> None:  # pragma: no cover - console entry point
    app()
