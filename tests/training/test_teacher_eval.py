"""Teacher choice on validation: every average of the candidate parts, ranked; errors name the fault."""

from __future__ import annotations

import json

import numpy as np

from zhenping.model.axes import AXES
from zhenping.training.baselines import TfidfRidgeBaseline
from zhenping.training.teacher_eval import main, rank_combinations
from tests.training.test_train import _tiny_data


def test_rank_combinations_prefers_the_average_that_tracks_gold():
    rng = np.random.default_rng(0)
    gold = rng.random((200, len(AXES)))
    noise_a, noise_b = rng.normal(0, 0.3, gold.shape), rng.normal(0, 0.3, gold.shape)
    scores = {"a": gold + noise_a, "b": gold + noise_b, "junk": rng.random(gold.shape)}
    rows = rank_combinations(scores, gold, max_parts=2)
    assert len(rows) == 3 + 3  # three singles, three pairs
    # two independent noisy views average to a better one; junk drags any average down
    assert rows[0]["parts"] == ["a", "b"]
    assert rows[-1]["parts"] == ["junk"]
    assert all(rows[i]["mean_spearman"] >= rows[i + 1]["mean_spearman"] for i in range(len(rows) - 1))
    m = rows[0]
    assert abs(m["mean_spearman"] - np.mean([m[f"spearman_{a}"] for a in AXES])) < 1e-12


def _fitted(data, out, ngrams):
    rows = [json.loads(line) for line in (data / "train.jsonl").read_text().splitlines()]
    y = np.asarray([[r[a] for a in AXES] for r in rows])
    TfidfRidgeBaseline(ngram_range=ngrams, min_df=1).fit([r["text"] for r in rows], y).save(out)
    return out


def test_main_scores_validation_once_per_part_and_writes_the_chosen_spec(tmp_path, capsys):
    data = _tiny_data(tmp_path / "data")
    one = _fitted(data, tmp_path / "one.joblib", (1, 2))
    two = _fitted(data, tmp_path / "two.joblib", (1, 3))
    stem = tmp_path / "results" / "teachers"
    assert main([f"one={one}", f"two={two}", "--data_dir", str(data), "--out", str(stem)]) == 0
    report = json.loads(stem.with_suffix(".json").read_text())
    assert report["split"] == "validation" and report["rows"] == 20
    assert len(report["ranking"]) == 3
    best = report["ranking"][0]
    assert report["best"]["spec"] == ",".join({"one": str(one), "two": str(two)}[p] for p in best["parts"])
    md = stem.with_suffix(".md").read_text()
    assert "**(chosen)**" in md and f"Chosen spec: `{report['best']['spec']}`" in md
    assert "best teacher on validation" in capsys.readouterr().out


def test_test_after_scores_the_chosen_teacher_on_test_only_after_the_choice(tmp_path):
    data = _tiny_data(tmp_path / "data")
    one = _fitted(data, tmp_path / "one.joblib", (1, 2))
    two = _fitted(data, tmp_path / "two.joblib", (1, 3))
    plain, after = tmp_path / "plain", tmp_path / "after"
    assert main([f"one={one}", f"two={two}", "--data_dir", str(data), "--out", str(plain)]) == 0
    assert main([f"one={one}", f"two={two}", "--data_dir", str(data), "--out", str(after), "--test_after"]) == 0
    without, report = json.loads(plain.with_suffix(".json").read_text()), json.loads(after.with_suffix(".json").read_text())
    assert "test_after_choice" not in without
    assert report["ranking"] == without["ranking"]  # the choice does not read test
    chosen = report["best"]["parts"]
    test = report["test_after_choice"]
    names = ["teacher: " + " + ".join(chosen)] + (chosen if len(chosen) > 1 else [])
    assert list(test) == names
    # the figures are those of the chosen average on the test rows
    from zhenping.training.evaluate import evaluate, summary_row
    from zhenping.training.teacher_eval import part_scores

    rows = [json.loads(line) for line in (data / "test.jsonl").read_text().splitlines()]
    gold = np.asarray([[r[a] for a in AXES] for r in rows])
    specs = {"one": str(one), "two": str(two)}
    from zhenping.model.normalize import normalize_text

    got = part_scores({n: specs[n] for n in chosen}, [normalize_text(r["text"]) for r in rows])
    expected = summary_row(evaluate(gold, np.clip(np.mean([got[n] for n in chosen], axis=0), 0, 1)))
    assert test[names[0]]["n"] == len(rows)
    for key, value in expected.items():
        assert (value is None and test[names[0]][key] is None) or abs(test[names[0]][key] - value) < 1e-9
    assert "## The chosen teacher on the test split" in after.with_suffix(".md").read_text()
    assert "test split" not in plain.with_suffix(".md").read_text()


def test_test_after_without_a_test_split_says_so(tmp_path, capsys):
    data = _tiny_data(tmp_path / "data")
    (data / "test.jsonl").unlink()
    one = _fitted(data, tmp_path / "one.joblib", (1, 2))
    assert main([f"one={one}", "--data_dir", str(data), "--out", str(tmp_path / "t"), "--test_after"]) == 2
    assert "--test_after" in capsys.readouterr().err


def test_main_rejects_bad_parts_with_a_reason(tmp_path, capsys):
    data = _tiny_data(tmp_path / "data")
    assert main(["no-equals", "--data_dir", str(data)]) == 2
    assert "expected NAME=SPEC" in capsys.readouterr().err
    assert main([f"x={tmp_path}/missing.joblib", "--data_dir", str(data)]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["x=a,b", "--data_dir", str(data)]) == 2
    assert "give each part on its own" in capsys.readouterr().err
    assert main([f"x={tmp_path}", "--data_dir", str(tmp_path / "nodata")]) == 2
    assert "zhenping prepare" in capsys.readouterr().err


def test_max_length_is_the_tokens_scorer_folders_read(tmp_path, tiny_model_dir):
    from zhenping.model.scorer import Scorer
    from zhenping.training.teacher_eval import part_scores

    texts = ["质量很好物流很快" * 5, "质量很好物流很快" + "你脑子有病吧" * 9]
    cut = part_scores({"m": str(tiny_model_dir)}, texts, max_length=10)["m"]
    want = Scorer.from_pretrained(tiny_model_dir, max_length=10).score_normalized(texts)
    assert np.allclose(cut, [[s.warmth, s.substance, s.template] for s in want], atol=1e-4)
    assert np.allclose(cut[0], cut[1], rtol=0, atol=1e-7)  # both cut to the same first 10 tokens
    data = _tiny_data(tmp_path / "data")
    stem = tmp_path / "teachers"
    assert main([f"m={tiny_model_dir}", "--data_dir", str(data), "--max_length", "10", "--out", str(stem)]) == 0
    assert json.loads(stem.with_suffix(".json").read_text())["max_length"] == 10
    assert "scorer folders read 10 tokens per comment" in stem.with_suffix(".md").read_text()


def test_max_length_beyond_a_models_positions_is_refused(tmp_path, tiny_model_dir, capsys):
    data = _tiny_data(tmp_path / "data")
    assert main([f"m={tiny_model_dir}", "--data_dir", str(data), "--max_length", "500"]) == 2
    assert "max_length 500 is more than the 66 tokens this model has positions for" in capsys.readouterr().err
    assert main([f"m={tiny_model_dir}", "--data_dir", str(data), "--max_length", "1"]) == 2
    assert "--max_length must be at least 2, got 1" in capsys.readouterr().err
