"""The ``zhenping`` command, under its earlier import path.

The root lives in :mod:`zhenping.cli`; ``from zhenping.training.cli import app`` gives the same app.
"""

from zhenping.cli import COMMAND_MODULES, app, main  # noqa: F401
