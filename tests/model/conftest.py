"""Fixtures for scorer tests: a tiny checkpoint whose scores actually spread."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def make_spread_checkpoint(src: Path, dst: Path, std: float = 0.5, seed: int = 1) -> Path:
    """Copy the tiny checkpoint with large random weights.

    The tiny checkpoint keeps BERT's 0.02 initialisation, so every text scores
    about 0.5 and a comparison at 1e-4 would pass for any two texts. With
    weights of standard deviation ``std`` the scores spread over (0, 1), and
    the tests below tell different inputs apart.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from zhenping.training.export import write_model_dir

    model = AutoModelForSequenceClassification.from_pretrained(src)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * std)
    tok = AutoTokenizer.from_pretrained(src)
    scorer_cfg = json.loads((src / "scorer_config.json").read_text(encoding="utf-8"))
    scorer_cfg["model_version"] = "spread-test"
    return write_model_dir(model.eval(), tok, dst, scorer_cfg, metrics={}, card="# spread test model\n")


@pytest.fixture(scope="session")
def spread_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny checkpoint with scores spread over (0, 1) (session-wide, read-only)."""
    return make_spread_checkpoint(tiny_model_dir, tmp_path_factory.mktemp("spread") / "model")


@pytest.fixture(scope="session")
def spread_scorer(spread_model_dir):
    from zhenping.model.scorer import Scorer

    return Scorer.from_pretrained(spread_model_dir)
