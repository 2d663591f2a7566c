"""Builders for small test artefacts: a tiny random checkpoint, label files."""

from __future__ import annotations

from pathlib import Path

import pytest

from zhenping.model.axes import AXES
from zhenping.model.campaign.window import compiled_index_available

# The campaign window's compiled core is built wherever the package is installed with a C compiler
# (CI installs it so); the pure-Python window is what runs without one.
needs_compiled_window = pytest.mark.skipif(not compiled_index_available(),
                                           reason="the compiled campaign window was not built (no C compiler)")

# What holds between runs that batch the same texts differently (other batch
# sizes, chunking, padding, the order of a float32 reduction, the CPU's kernels):
# scores agree to about 1e-6, not to the last bit. Tests that compare across
# batchings use this tolerance; only a repeat of the very same call is exact.
BATCHING_TOL = 1e-4

TINY_TEXTS = [
    "沙发",
    "顶顶顶",
    "默认好评",
    "好听",
    "哈哈哈哈哈哈",
    "👍👍👍",
    "抱抱你,会好起来的",
    "你脑子有病吧",
    "谢谢分享,挺有用的",
    "屏幕6.1寸,续航一天,拍照偏暗,不推荐给爱拍照的人",
    "住了两晚:房间干净但隔音差,早餐种类少;前台帮忙叫车很及时",
    "质量很好,物流很快,很满意,会回购的",
    "第二张图里那只橘猫是你家的吗?好胖好可爱",
    "兼职日结加微信 abc123",
    "The quick brown fox 2024 https://example.com @user",
]


def make_tiny_checkpoint(path: str | Path, seed: int = 0, max_length: int = 64) -> Path:
    """Write a complete, randomly initialised scorer directory at ``path``.

    A 2-layer, 32-wide BERT with a character vocabulary trained on a few
    sentences: loads in well under a second, scores are random but deterministic.
    """
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from zhenping.training.export import make_scorer_config, set_label_names, write_model_dir
    from zhenping.training.tokenizer import train_tokenizer

    torch.manual_seed(seed)
    tok = train_tokenizer(TINY_TEXTS * 3, vocab_size=300, min_frequency=1)
    cfg = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_length + 2,
        pad_token_id=tok.pad_token_id,
    )
    set_label_names(cfg)
    model = BertForSequenceClassification(cfg).eval()
    scorer_cfg = make_scorer_config(max_length=max_length, model_version="tiny-test")
    return write_model_dir(model, tok, path, scorer_cfg, metrics={}, card="# tiny test model\n")


SYNTHETIC_CHARS = "的一是不了人我在有他这为之大来以个中上们到说国和地也子时道出要就下得可你年生自会那后能对着事其里所去行过家十用发天如然作方成者多日都三小于"


def synthetic_texts(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct synthetic comments of 5-40 common characters (a tiny corpus for packs and pretraining)."""
    import random

    rng = random.Random(seed)
    return ["".join(rng.choice(SYNTHETIC_CHARS) for _ in range(rng.randint(5, 40))) + f" {i}" for i in range(n)]


REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE_SOURCES = ("pyproject.toml", "README.md", "zhenping", "model", "api", "training")


def copy_package_sources(dst: Path) -> Path:
    """What a wheel or an editable install is built from, copied to ``dst`` (no caches)."""
    import shutil

    dst.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in PACKAGE_SOURCES:
        path = REPO_ROOT / name
        if path.is_dir():
            shutil.copytree(path, dst / name, ignore=ignore)
        else:
            shutil.copy2(path, dst / name)
    return dst


class StubScorer:
    """What the service reads from a ``Scorer`` besides its scores; a test's scorer
    subclasses it and gives ``score_normalized`` (and overrides what it needs)."""

    axes = AXES
    max_length = 64
    model_id = "stub"
    model_version = "v1"
    backend = "torch"
    config = {"level_scale": 3}
