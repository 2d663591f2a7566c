"""Pretraining on a tiny corpus: artefacts, held-out accuracy, resume."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from zhenping.training.pretrain import PretrainConfig, mask_tokens, run

CHARS = "的一是不了人我在有他这为之大来以个中上们到说国和地也子时道出要就下得可你年生自会那后能对着事其里所去行过家十用发天如然作方成者多日都三小于"


def _tiny_corpus(out_dir, n=300, seed=0):
    rng = random.Random(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = ["".join(rng.choice(CHARS) for _ in range(rng.randint(5, 40))) for _ in range(n)]
    (out_dir / "corpus.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out_dir / "corpus_manifest.json").write_text(json.dumps({"stats": {"texts": n}}))


def _cfg(out_dir, **kw):
    base = dict(out_dir=str(out_dir), vocab_size=200, min_frequency=1, max_length=32,
                hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                batch_size=8, lr=1e-3, warmup_steps=2, eval_sequences=16,
                checkpoint_minutes=100.0, seed=3)
    base.update(kw)
    return PretrainConfig(**base)


def test_pretrain_writes_encoder_and_logs_accuracy(tmp_path):
    _tiny_corpus(tmp_path)
    enc = run(_cfg(tmp_path, max_steps=12))
    assert (enc / "model.safetensors").exists()
    assert (enc / "tokenizer.json").exists()
    summary = json.loads((enc / "pretrain_summary.json").read_text())
    assert summary["steps"] == 12
    assert 0.0 <= summary["final_eval"]["mlm_accuracy"] <= 1.0
    log = [json.loads(l) for l in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 12 and "mlm_accuracy" in log[-1]
    packed = np.load(tmp_path / "packed_32.npy")
    assert packed.shape[1] == 32
    assert (packed[:, 0] == 2).all()  # [CLS]


def test_pretrain_resumes_from_checkpoint(tmp_path):
    _tiny_corpus(tmp_path)
    # First run stops at step 6 as if interrupted: the checkpoint holds step 6.
    run(_cfg(tmp_path, max_steps=6))
    state = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
    assert state["step"] == 6
    enc = run(_cfg(tmp_path, max_steps=10))
    summary = json.loads((enc / "pretrain_summary.json").read_text())
    assert summary["steps"] == 10
    log = [json.loads(l) for l in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [6, 10]


def test_a_second_stage_resumes_with_another_batch_size_and_dropout(tmp_path):
    _tiny_corpus(tmp_path)
    run(_cfg(tmp_path, max_steps=4, batch_size=8))
    state = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
    assert state["sequences"] == 32
    enc = run(_cfg(tmp_path, max_steps=7, batch_size=4, dropout=0.0))
    state = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
    assert state["step"] == 7
    assert state["sequences"] == 32 + 3 * 4  # the data position continues where the first stage left it
    assert state["config"]["batch_size"] == 4 and state["config"]["dropout"] == 0.0
    config = json.loads((enc / "config.json").read_text())
    assert config["hidden_dropout_prob"] == 0.0  # the resumed model trained without dropout


def test_resuming_an_older_checkpoint_counts_sequences_from_steps(tmp_path):
    _tiny_corpus(tmp_path)
    run(_cfg(tmp_path, max_steps=3))
    path = tmp_path / "checkpoint" / "state.json"
    state = json.loads(path.read_text())
    del state["sequences"]  # a checkpoint written before the data position was kept
    path.write_text(json.dumps(state))
    run(_cfg(tmp_path, max_steps=5))
    assert json.loads(path.read_text())["sequences"] == 5 * 8


def test_mask_tokens_never_masks_special_tokens():
    import torch

    class Tok:
        mask_token_id = 4

        def __len__(self):
            return 50

    ids = torch.tensor([[2] + list(range(5, 35)) + [3]] * 20)
    g = torch.Generator().manual_seed(0)
    corrupted, chosen, target = mask_tokens(ids, Tok(), 0.5, g, [0, 1, 2, 3, 4])
    assert not chosen[:, 0].any() and not chosen[:, -1].any()
    assert torch.equal(target, ids[chosen])
    share = chosen.float().mean().item()
    assert 0.35 < share < 0.6


def test_unknown_config_key_is_refused():
    from zhenping.training.config import load_config

    with pytest.raises(ValueError, match="unknown config key"):
        load_config(PretrainConfig, None, {"hidden": "3"})
    with pytest.raises(TypeError, match="expected an integer"):
        load_config(PretrainConfig, None, {"hidden_size": "wide"})
