"""The ``zhenping`` command: the root that gathers each package's subcommands.

Each command module keeps its subcommands on a Typer app of its own
(``training/commands.py``, ``api/commands.py``, ``model/commands.py``, ...);
this module creates the root and adds them. The packages never import the
command line, so imports read ``api → model ← training``.
"""

from __future__ import annotations

import typer

from zhenping.api import commands as api_commands
from zhenping.model import commands as model_commands
from zhenping.training import behaviour_commands, feedback_commands, pack_commands
from zhenping.training import commands as training_commands
from zhenping.training import model_commands as training_model_commands

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


# Modules whose `app` holds subcommands, in the order `zhenping --help` lists them.
COMMAND_MODULES = (
    training_commands,
    training_model_commands,
    api_commands,
    model_commands,
    feedback_commands,
    behaviour_commands,
    pack_commands,
)

for _module in COMMAND_MODULES:
    app.add_typer(_module.app)  # no name: its commands become the root's own


def main() -> None:  # pragma: no cover - console entry point
    app()
