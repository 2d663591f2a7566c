"""Data subcommands of `zhenping`: corpora, prepare, evaluate, baselines."""

from training.cli import app  # noqa: F401
