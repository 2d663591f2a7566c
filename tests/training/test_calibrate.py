"""Calibrated levels: the cut-point fit, level metrics, scorer_config thresholds read
by Scorer (torch and ONNX), old folders without them, and `zhenping calibrate`."""

from __future__ import annotations

import itertools
import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from zhenping.model.axes import check_level_thresholds, score_to_level
from zhenping.model.scorer import CommentScores, ModelLoadError, Scorer
from zhenping.training.calibrate import (
    apply_thresholds,
    fit_all,
    fit_thresholds,
    gold_levels,
    level_accuracy,
    write_thresholds,
)
from zhenping.training.cli import app
from zhenping.training.evaluate import evaluate, level_metrics


def compressed(n: int, seed: int):
    """Gold levels and scores squeezed toward the middle, as small models give them."""
    rng = np.random.default_rng(seed)
    gold = rng.choice(4, size=n, p=[0.1, 0.55, 0.28, 0.07])
    scores = np.clip(0.25 + gold / 3 * 0.5 + rng.normal(0, 0.08, n), 0, 1)
    return scores, gold


# ------------------------------------------------------------------ fitting


@pytest.mark.parametrize("seed", range(5))
def test_fit_is_monotone_and_never_worse_than_rounding(seed):
    scores, gold = compressed(600, seed)
    cuts = fit_thresholds(scores, gold)
    assert cuts == sorted(cuts) and all(0 <= t <= 1 for t in cuts)
    before, after = level_accuracy(scores, gold), level_accuracy(scores, gold, cuts)
    assert after >= before
    assert after > before + 0.05  # squeezed scores: rounding misses the outer levels


def test_fit_is_optimal_against_brute_force():
    rng = np.random.default_rng(3)
    for _ in range(20):
        n = int(rng.integers(4, 12))
        gold = rng.integers(0, 4, n)
        scores = np.round(np.clip(gold / 3 * 0.6 + 0.2 + rng.normal(0, 0.15, n), 0, 1), 2)
        values = sorted(set(scores.tolist()))
        candidates = [0.0] + [(a + b) / 2 for a, b in zip(values, values[1:])] + [1.0]
        best = max(np.mean(apply_thresholds(scores, c) == gold)
                   for c in itertools.combinations_with_replacement(candidates, 3))
        assert level_accuracy(scores, gold, fit_thresholds(scores, gold)) == pytest.approx(best)


def test_fit_separates_perfectly_separable_scores_and_keeps_ties_together():
    assert fit_thresholds([0.1, 0.2, 0.4, 0.5, 0.6, 0.9], [0, 0, 1, 1, 2, 3]) == [0.3, 0.55, 0.75]
    cuts = fit_thresholds([0.4, 0.4, 0.4, 0.8], [1, 2, 2, 3])
    levels = apply_thresholds([0.4, 0.4, 0.4], cuts)
    assert len(set(levels.tolist())) == 1


def test_balanced_criterion_shows_rare_levels_more():
    scores, gold = compressed(800, 11)
    acc = fit_thresholds(scores, gold, "accuracy")
    bal = fit_thresholds(scores, gold, "balanced")
    assert bal == sorted(bal)

    def balanced(cuts):
        pred = apply_thresholds(scores, cuts)
        return np.mean([np.mean(pred[gold == k] == k) for k in range(4)])

    assert balanced(bal) >= balanced(acc)
    assert (apply_thresholds(scores, bal) == 3).sum() >= (apply_thresholds(scores, acc) == 3).sum()


def test_fit_errors():
    with pytest.raises(ValueError, match="criterion must be one of"):
        fit_thresholds([0.1], [0], "f1")
    with pytest.raises(ValueError, match="scores has 2 rows and levels 1"):
        fit_thresholds([0.1, 0.2], [0])
    with pytest.raises(ValueError, match="no rows"):
        fit_thresholds([], [])
    with pytest.raises(ValueError, match="levels must be integers 0-3"):
        fit_thresholds([0.1], [4])


def test_fit_all_and_gold_levels():
    gold_scores = np.array([[0, 1 / 3, 1], [1, 2 / 3, 0], [0.5, 0.5, 0.5]])
    assert gold_levels(gold_scores).tolist() == [[0, 1, 3], [3, 2, 0], [2, 2, 2]]
    cuts = fit_all(gold_scores.copy(), gold_scores, ["warmth", "substance", "template"])
    assert set(cuts) == {"warmth", "substance", "template"}
    assert all(v == sorted(v) for v in cuts.values())


# ------------------------------------------------------------------ level mapping


def test_score_to_level_with_and_without_thresholds():
    assert [score_to_level(s) for s in (0.0, 0.2, 0.5, 0.9)] == [0, 1, 2, 3]
    cuts = [0.3, 0.6, 0.9]
    assert [score_to_level(s, cuts) for s in (0.0, 0.3, 0.59, 0.6, 0.95)] == [0, 1, 1, 2, 3]
    assert apply_thresholds(np.array([0.0, 0.3, 0.59, 0.6, 0.95]), cuts).tolist() == [0, 1, 1, 2, 3]
    assert apply_thresholds(np.array([0.0, 0.2, 0.5, 0.9]), None).tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("bad,message", [
    ({"warmth": [0.5, 0.2, 0.9]}, "non-decreasing"),
    ({"warmth": [0.1, 0.2]}, "3 non-decreasing numbers"),
    ({"warmth": [0.1, 0.2, 1.5]}, r"in \[0, 1\]"),
    ({"tone": [0.1, 0.2, 0.3]}, "unknown axis 'tone'"),
    ([0.1, 0.2, 0.3], "must be an object"),
])
def test_bad_thresholds_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        check_level_thresholds(bad)


def test_comment_scores_levels_follow_thresholds():
    s = CommentScores(warmth=0.7, substance=0.1, template=0.5)
    assert s.levels == {"warmth": 2, "substance": 0, "template": 2}
    t = s.with_level_thresholds({"warmth": [0.1, 0.4, 0.65]})
    assert t.levels == {"warmth": 3, "substance": 0, "template": 2}  # axes without cuts still round
    assert t == s and t.as_dict() == s.as_dict()  # the scores are unchanged
    assert s.levels["warmth"] == 2  # the original is untouched


# ------------------------------------------------------------------ level metrics in evaluate


def test_level_metrics_accuracy_and_confusion():
    t = np.array([[0.0], [1 / 3], [2 / 3], [1.0]])
    p = np.array([[0.1], [0.45], [0.7], [0.75]])
    rnd = level_metrics(t, p, ["warmth"])
    assert rnd["mapping"] == "round" and rnd["thresholds"] is None
    assert rnd["warmth"]["accuracy"] == 0.75  # 0.75 * 3 rounds to 2, gold 3
    assert rnd["warmth"]["confusion"] == [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0]]
    assert rnd["warmth"]["balanced_accuracy"] == 0.75 and rnd["warmth"]["within_one"] == 1.0
    cal = level_metrics(t, p, ["warmth"], {"warmth": [0.2, 0.5, 0.72]})
    assert cal["mapping"] == "thresholds"
    assert cal["warmth"]["accuracy"] == 1.0 and cal["warmth"]["within_one"] == 1.0
    assert np.trace(np.array(cal["warmth"]["confusion"])) == 4


def test_evaluate_reports_levels_with_and_without_thresholds():
    scores, gold = compressed(300, 5)
    t = np.repeat((gold / 3)[:, None], 3, axis=1)
    p = np.repeat(scores[:, None], 3, axis=1)
    m = evaluate(t, p)
    assert m["levels"]["mapping"] == "round" and "levels_round" not in m
    cuts = fit_thresholds(scores, gold)
    m = evaluate(t, p, level_thresholds={a: cuts for a in ("warmth", "substance", "template")})
    assert m["levels"]["mapping"] == "thresholds"
    assert m["levels"]["warmth"]["accuracy"] > m["levels_round"]["warmth"]["accuracy"]
    assert sum(map(sum, m["levels"]["template"]["confusion"])) == 300


# ------------------------------------------------------------------ Scorer reads the thresholds


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_scorer_uses_thresholds_when_present(tiny_model_dir, tmp_path):
    model = _copy(tiny_model_dir, tmp_path / "m")
    texts = ["沙发", "谢谢分享,挺有用的", "你脑子有病吧"]
    old = Scorer.from_pretrained(model)
    assert old.level_thresholds is None
    plain = old.score(texts)
    assert [s.levels for s in plain] == [{a: score_to_level(getattr(s, a)) for a in old.axes} for s in plain]

    write_thresholds(model, {"warmth": [0.0, 0.0, 0.0], "template": [1.0, 1.0, 1.0]})
    cfg = json.loads((model / "scorer_config.json").read_text(encoding="utf-8"))
    assert cfg["level_thresholds"]["warmth"] == [0.0, 0.0, 0.0] and "level_thresholds" in cfg["score"]
    new = Scorer.from_pretrained(model)
    assert new.level_thresholds == {"warmth": [0.0, 0.0, 0.0], "template": [1.0, 1.0, 1.0]}
    scored = new.score(texts)
    assert [dataclasses_tuple(s) for s in scored] == [dataclasses_tuple(s) for s in plain]  # scores unchanged
    for s, p in zip(scored, plain):
        assert s.levels == {"warmth": 3, "substance": p.levels["substance"], "template": 0}

    write_thresholds(model, None)  # removed: back to rounding
    again = Scorer.from_pretrained(model)
    assert again.level_thresholds is None
    assert [s.levels for s in again.score(texts)] == [s.levels for s in plain]


def dataclasses_tuple(s):
    import dataclasses

    return dataclasses.astuple(s)


def test_bad_thresholds_in_a_folder_are_a_load_error(tiny_model_dir, tmp_path):
    model = _copy(tiny_model_dir, tmp_path / "m")
    cfg = json.loads((model / "scorer_config.json").read_text(encoding="utf-8"))
    cfg["level_thresholds"] = {"warmth": [0.9, 0.5, 0.1]}
    (model / "scorer_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    with pytest.raises(ModelLoadError, match=r"scorer_config.json: level_thresholds\['warmth'\]"):
        Scorer.from_pretrained(model)


def test_onnx_backend_uses_the_thresholds_too(tiny_model_dir, tmp_path):
    pytest.importorskip("onnxruntime")
    from zhenping.model.onnx_backend import export_onnx

    model = _copy(tiny_model_dir, tmp_path / "m")
    export_onnx(model, quantize=False)
    write_thresholds(model, {"substance": [0.0, 0.0, 0.0]})
    scorer = Scorer.from_pretrained(model, backend="onnx")
    assert scorer.backend == "onnx"
    assert {s.levels["substance"] for s in scorer.score(["沙发", "好听"])} == {3}


# ------------------------------------------------------------------ command


def test_calibrate_command(tiny_model_dir, tmp_path):
    from tests.training.corpus_fixtures import make_tiny

    model = _copy(tiny_model_dir, tmp_path / "m")
    root, gold, _ = make_tiny(tmp_path)
    data = tmp_path / "data"
    runner = CliRunner()
    r = runner.invoke(app, ["prepare", "--corpora", str(root), "--gold", str(gold), "--out", str(data)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["calibrate", "--model", str(model), "--data", str(data), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "validation (" in r.output and "thresholds warmth:" in r.output
    assert "level_thresholds" not in json.loads((model / "scorer_config.json").read_text(encoding="utf-8"))
    r = runner.invoke(app, ["calibrate", "--model", str(model), "--data", str(data)])
    assert r.exit_code == 0, r.output
    cfg = json.loads((model / "scorer_config.json").read_text(encoding="utf-8"))
    assert set(cfg["level_thresholds"]) == {"warmth", "substance", "template"}
    assert cfg["level_calibration"]["split"] == "validation"
    for a, v in cfg["level_calibration"]["validation_accuracy"].items():
        assert v["thresholds"] >= v["round"], a
    assert Scorer.from_pretrained(model).level_thresholds == cfg["level_thresholds"]
    r = runner.invoke(app, ["calibrate", "--model", str(model), "--remove"])
    assert r.exit_code == 0
    assert "level_thresholds" not in json.loads((model / "scorer_config.json").read_text(encoding="utf-8"))
    r = runner.invoke(app, ["calibrate", "--model", str(model), "--data", str(data), "--criterion", "f1"])
    assert r.exit_code == 2 and "--criterion must be one of" in r.output
    r = runner.invoke(app, ["calibrate", "--model", str(tmp_path / "none"), "--data", str(data)])
    assert r.exit_code == 1 and "is not a model folder" in r.output
