"""Fine-tuning, evaluation and export on a tiny encoder and a tiny labelled set."""

from __future__ import annotations

import json
from pathlib import Path
import random

import pytest
from transformers import pipeline

from zhenping.model.axes import AXES
from zhenping.training.finetune import FinetuneConfig
from zhenping.training.train import run_train
from tests.helpers import TINY_TEXTS


def _tiny_encoder(path):
    import torch
    from transformers import BertConfig, BertForMaskedLM

    from zhenping.training.tokenizer import save_tokenizer, train_tokenizer

    torch.manual_seed(0)
    tok = train_tokenizer(TINY_TEXTS * 3, vocab_size=300, min_frequency=1)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=130)
    BertForMaskedLM(cfg).save_pretrained(path)
    save_tokenizer(tok, path)
    return path


def _tiny_data(path, n=60):
    rng = random.Random(0)
    path.mkdir(parents=True)
    manifest = {"label_files": {"tiny.jsonl": "0" * 40}, "counts": {"rows": {}}}
    for split, k in (("train", n), ("validation", 20), ("test", 20)):
        rows = []
        for i in range(k):
            t = rng.choice(TINY_TEXTS) + str(i)
            rows.append({"id": f"{split}:{i}", "source": rng.choice(["a", "b"]), "text": t,
                         **{a: rng.choice([0, 1, 2, 3]) / 3 for a in AXES}})
        (path / f"{split}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        manifest["counts"]["rows"][split] = k
    (path / "prepare_manifest.json").write_text(json.dumps(manifest))
    return path


@pytest.mark.slow
def test_train_exports_a_complete_scorer_dir(tmp_path):
    enc = _tiny_encoder(tmp_path / "enc")
    data = _tiny_data(tmp_path / "data")
    cfg = FinetuneConfig(data_dir=str(data), base=str(enc), out_dir=str(tmp_path / "ft"),
                         epochs=2, batch_size=8, max_length=32, patience=1)
    out = tmp_path / "model"
    metrics = run_train(cfg, out, model_version="test-v1", baselines=tmp_path / "none.json")

    for name in ("config.json", "model.safetensors", "tokenizer.json", "scorer_config.json",
                 "metrics.json", "README.md", "report.md"):
        assert (out / name).exists(), name
    assert not list(tmp_path.glob(".model.*")), "staging folders must not be left behind"
    sc = json.loads((out / "scorer_config.json").read_text())
    assert sc["axes"] == list(AXES) and sc["max_length"] == 32 and sc["model_version"] == "test-v1"
    assert sc["label_files"] == {"tiny.jsonl": "0" * 40}
    cfg_json = json.loads((out / "config.json").read_text())
    assert cfg_json["id2label"] == {"0": "warmth", "1": "substance", "2": "template"}
    assert cfg_json["problem_type"] == "multi_label_classification"
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["n"] == 20 and set(saved["overall"]) >= set(AXES)
    assert metrics["training"]["finetune"]["train_rows"] == 60
    card = (out / "README.md").read_text()
    assert "test-v1" in card and "Intended use" in card and "Limitations" in card
    # Level cut points fitted on validation at export, used on test; behavioural tests in the card.
    assert set(sc["level_thresholds"]) == set(AXES)
    assert sc["level_calibration"]["rows"] == 20
    assert saved["levels"]["mapping"] == "thresholds" and "levels_round" in saved
    behaviour = json.loads((out / "behaviour.json").read_text())
    assert behaviour["model"]["level_mapping"] == "thresholds" and behaviour["cases"] > 300
    assert "### Levels" in card and "## Behavioural tests" in card

    # Plain transformers gives the scorer's scores on normalised text.
    from zhenping.model.scorer import Scorer

    scorer = Scorer.from_pretrained(str(out))
    texts = ["沙发", "质量很好,物流很快,会回购的"]
    ours = scorer.score(texts)
    clf = pipeline("text-classification", model=str(out), function_to_apply="sigmoid", top_k=None)
    for s, res in zip(ours, clf(texts)):
        got = {r["label"]: r["score"] for r in res}
        for a in AXES:
            assert abs(got[a] - getattr(s, a)) < 1e-5


def _sha1(path) -> str:
    import hashlib

    return hashlib.sha1(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_a_different_run_never_resumes_another_runs_checkpoints(tmp_path, capfd):
    import dataclasses

    enc = _tiny_encoder(tmp_path / "enc")
    data = _tiny_data(tmp_path / "data", n=24)
    mine = tmp_path / "my_ok.jsonl"
    mine.write_text("".join(json.dumps({"text": f"我自己标的第{i}条评论,写得很认真", "warmth": i % 4, "substance": 3,
                                        "template": 0}, ensure_ascii=False) + "\n" for i in range(16)),
                    encoding="utf-8")
    ft = tmp_path / "ft"
    first = FinetuneConfig(data_dir=str(data), base=str(enc), out_dir=str(ft), epochs=1, batch_size=8,
                           max_length=32, patience=1)
    run_train(first, tmp_path / "m1", model_version="first", baselines=tmp_path / "none.json")
    capfd.readouterr()

    # Same checkpoint folder, other data: the first run's checkpoints must not be resumed.
    second = dataclasses.replace(first, extra_train=[str(mine)])
    metrics = run_train(second, tmp_path / "m2", model_version="second", baselines=tmp_path / "none.json")
    err = capfd.readouterr().err
    assert f"not resuming from {ft}/checkpoint-" in err
    assert f"data differ: extra:{mine} none -> {_sha1(mine)[:12]}" in err
    assert not [line for line in err.splitlines() if line.startswith("resuming from")]
    ft_info = metrics["training"]["finetune"]
    assert ft_info["resumed_from"] is None and ft_info["train_rows"] == 24 + 16
    assert ft_info["checkpoints"].startswith(f"{ft}-") and ft_info["data_sha1"][f"extra:{mine}"] == _sha1(mine)
    assert _sha1(tmp_path / "m1" / "model.safetensors") != _sha1(tmp_path / "m2" / "model.safetensors")
    sc = json.loads((tmp_path / "m2" / "scorer_config.json").read_text())
    assert sc["label_files"]["my_ok.jsonl"] == _sha1(mine)
    assert sc["training_config"]["extra_train"] == [str(mine)]
    card = (tmp_path / "m2" / "README.md").read_text()
    assert f"`my_ok.jsonl`: `{_sha1(mine)}`" in card and "40 training" in card

    # The same second run again is the same run: it resumes its own checkpoints.
    run_train(second, tmp_path / "m3", model_version="second", baselines=tmp_path / "none.json")
    err = capfd.readouterr().err
    assert f"resuming from {ft_info['checkpoints']}/checkpoint-" in err


def test_eval_steps_enters_the_run_fingerprint_only_when_set(tmp_path):
    import dataclasses

    from zhenping.training.finetune import run_fingerprint

    data = _tiny_data(tmp_path / "data", n=8)
    base = FinetuneConfig(data_dir=str(data), base="no-such-hub-id", out_dir=str(tmp_path / "ft"))
    fp = run_fingerprint(base)
    assert "eval_steps" not in fp["config"]  # runs from before the field keep their fingerprint
    stepped = run_fingerprint(dataclasses.replace(base, eval_steps=5))
    assert stepped["config"]["eval_steps"] == 5 and stepped["id"] != fp["id"]


@pytest.mark.slow
def test_eval_steps_scores_validation_and_checkpoints_every_n_steps(tmp_path):
    enc = _tiny_encoder(tmp_path / "enc")
    data = _tiny_data(tmp_path / "data", n=48)
    cfg = FinetuneConfig(data_dir=str(data), base=str(enc), out_dir=str(tmp_path / "ft"), epochs=1,
                         batch_size=8, max_length=32, patience=10, eval_steps=2)
    metrics = run_train(cfg, tmp_path / "m", model_version="stepped", baselines=tmp_path / "none.json")
    ft = metrics["training"]["finetune"]
    # 48 rows / 8 per step = 6 steps, scored and saved every 2: the last save and the best remain
    saved = sorted(int(p.name.split("-")[1]) for p in Path(ft["checkpoints"]).glob("checkpoint-*"))
    assert 6 in saved and set(saved) <= {2, 4, 6}
    state = json.loads((Path(ft["checkpoints"]) / "checkpoint-6" / "trainer_state.json").read_text())
    scored = {h["step"]: h["eval_mean_spearman"] for h in state["log_history"] if "eval_mean_spearman" in h}
    assert sorted(scored) == [2, 4, 6]
    best = max(scored, key=scored.get)
    assert ft["best_validation_mean_spearman"] == scored[best]
    assert ft["best_checkpoint"].endswith(f"checkpoint-{best}")


def test_level_loss_weights_give_rare_levels_more_say():
    import numpy as np

    from zhenping.training.finetune import level_loss_weights

    # warmth: 1 row at level 0, 6 at level 1, 1 at level 3; substance: every row at level 2
    targets = [[0.0, 2 / 3]] + [[1 / 3, 2 / 3]] * 6 + [[1.0, 2 / 3]]
    w = level_loss_weights(targets, 1.0)
    assert w.shape == (8, 2) and np.allclose(w.mean(axis=0), 1.0)
    # power 1: each level present carries the same total weight on the axis
    assert np.isclose(w[0, 0], w[7, 0]) and np.isclose(w[0, 0], w[1:7, 0].sum())
    assert np.allclose(w[:, 1], 1.0)  # one level only: nothing to rebalance
    half = level_loss_weights(targets, 0.5)
    assert 1.0 < half[0, 0] < w[0, 0] and w[1, 0] < half[1, 0] < 1.0  # tempered between alike and balanced
    assert np.allclose(level_loss_weights(targets, 0.0), 1.0)
    # a soft target counts at its nearest level
    soft = level_loss_weights([[0.05], [0.3], [0.36], [0.95]], 1.0)[:, 0]
    assert np.isclose(soft[1], soft[2]) and np.isclose(soft[0], soft[3]) and soft[0] > soft[1]
    with pytest.raises(ValueError, match="level_weight must be >= 0"):
        level_loss_weights(targets, -1.0)
    with pytest.raises(ValueError, match="non-empty"):
        level_loss_weights([], 1.0)


def test_level_weight_enters_the_run_fingerprint_only_when_set(tmp_path):
    import dataclasses

    from zhenping.training.finetune import run_fingerprint

    data = _tiny_data(tmp_path / "data", n=8)
    base = FinetuneConfig(data_dir=str(data), base="no-such-hub-id", out_dir=str(tmp_path / "ft"))
    assert "level_weight" not in run_fingerprint(base)["config"]
    weighted = run_fingerprint(dataclasses.replace(base, level_weight=0.5))
    assert weighted["config"]["level_weight"] == 0.5 and weighted["id"] != run_fingerprint(base)["id"]


@pytest.mark.slow
def test_level_weight_reaches_the_loss(tmp_path, capfd):
    """Same seed, same data: two unweighted runs give the same weights, a weighted one
    does not, so the rows' loss weights get past the data collator into the loss."""
    import dataclasses

    import torch

    from zhenping.training.finetune import train

    enc = _tiny_encoder(tmp_path / "enc")
    data = _tiny_data(tmp_path / "data", n=32)
    cfg = FinetuneConfig(data_dir=str(data), base=str(enc), out_dir=str(tmp_path / "a"), epochs=1,
                         batch_size=8, max_length=32, patience=1, seed=3)

    def weights(c):
        model = train(c)[0]
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    a = weights(cfg)
    b = weights(dataclasses.replace(cfg, out_dir=str(tmp_path / "b")))
    capfd.readouterr()
    c = weights(dataclasses.replace(cfg, out_dir=str(tmp_path / "c"), level_weight=1.0))
    assert "rare levels weigh more (level_weight 1.0" in capfd.readouterr().err
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_tail_copies_add_one_trailing_mark_and_keep_the_levels():
    from zhenping.training.finetune import TAILS, tail_copies

    rows = [{"id": f"r{i}", "source": "a", "text": f"第{i}条评论 ", "warmth": i % 4 / 3, "substance": 1 / 3,
             "template": 0.0} for i in range(40)]
    copies = tail_copies(rows, 0.25, seed=7)
    assert len(copies) == 10 and copies == tail_copies(rows, 0.25, seed=7)
    by_id = {r["id"]: r for r in rows}
    for c in copies:
        orig = by_id[c["id"].removesuffix("+tail")]
        base = orig["text"].rstrip()
        assert c["text"].startswith(base) and c["text"][len(base):] in TAILS
        assert {k: c[k] for k in ("warmth", "substance", "template", "source")} == \
            {k: orig[k] for k in ("warmth", "substance", "template", "source")}
    assert rows[0]["text"] == "第0条评论 " and rows[0]["id"] == "r0"  # the originals are untouched
    tails = {c["text"][len(by_id[c["id"].removesuffix("+tail")]["text"].rstrip()):] for c in tail_copies(rows, 1.0, 1)}
    assert len(tails) > 5  # the marks vary
    assert tail_copies(rows, 0.0, 1) == []
    with pytest.raises(ValueError, match="augment_tails must be a share between 0 and 1"):
        tail_copies(rows, 1.5, 1)
    with pytest.raises(ValueError, match="augment_tails must be a share between 0 and 1"):
        FinetuneConfig(augment_tails=-0.1)
    with pytest.raises(ValueError, match="level_weight must be >= 0"):
        FinetuneConfig(level_weight=-0.5)


@pytest.mark.slow
def test_augment_tails_adds_the_copies_to_the_training_rows(tmp_path, capfd):
    import dataclasses

    from zhenping.training.finetune import run_fingerprint, train

    enc = _tiny_encoder(tmp_path / "enc")
    data = _tiny_data(tmp_path / "data", n=24)
    cfg = FinetuneConfig(data_dir=str(data), base=str(enc), out_dir=str(tmp_path / "ft"), epochs=1,
                         batch_size=8, max_length=32, patience=1, augment_tails=0.5)
    info = train(cfg)[2]
    assert info["train_rows"] == 24 + 12 and info["validation_rows"] == 20
    assert "12 labelled rows added again with a trailing mark (augment_tails 0.5)" in capfd.readouterr().err
    assert "augment_tails" not in run_fingerprint(dataclasses.replace(cfg, augment_tails=0.0))["config"]
    assert run_fingerprint(cfg)["config"]["augment_tails"] == 0.5


@pytest.mark.parametrize("arg, message", [
    ("--augment_tails=1.5", "augment_tails must be a share between 0 and 1, got 1.5"),
    ("--level_weight=-1", "level_weight must be >= 0, got -1.0"),
])
def test_train_refuses_out_of_range_augment_and_weight_settings(arg, message, tmp_path):
    from typer.testing import CliRunner

    from zhenping.training.cli import app

    result = CliRunner().invoke(app, ["train", "--config", "finetune_v8.toml", arg, "--out", str(tmp_path / "m")])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output
    assert not (tmp_path / "m").exists()


def test_distillation_leaves_out_every_labelled_text_the_held_out_ones_too(tmp_path, monkeypatch):
    # A corpus file built before a label file was added still holds the texts of that file's
    # validation and test rows: the fine-tune leaves them out itself.
    from zhenping.model.normalize import normalize_text
    from zhenping.training import finetune

    data = _tiny_data(tmp_path / "data")
    seen = {}

    class Stop(Exception):
        pass

    def capture(cfg, exclude):
        seen["exclude"] = exclude
        raise Stop

    monkeypatch.setattr(finetune, "pseudo_rows", capture)
    with pytest.raises(Stop):
        finetune.train(FinetuneConfig(data_dir=str(data), base="unused", pseudo_teacher="unused.joblib",
                                      pseudo_texts=10))
    for split in ("train", "validation", "test"):
        for row in finetune.read_split(data, split):
            assert row["text"] in seen["exclude"] and normalize_text(row["text"]) in seen["exclude"]
