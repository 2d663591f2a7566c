"""evaluate(): metric values on hand-computed cases; write_report(): files and plots."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.training.corpus_fixtures import make_tiny
from zhenping.training.cli import app
from zhenping.training.evaluate import comparison_table, evaluate, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_perfect_predictions():
    y = np.array([[0, 0, 0], [1 / 3, 1 / 3, 1 / 3], [2 / 3, 2 / 3, 2 / 3], [1, 1, 1]])
    m = evaluate(y, y.copy())
    for a in ("warmth", "substance", "template"):
        assert m["overall"][a] == {"spearman": 1.0, "pearson": 1.0, "mae": 0.0}
    assert m["overall"]["template_ge2"]["auroc"] == 1.0
    assert m["overall"]["template_ge2"]["average_precision"] == 1.0
    assert m["overall"]["template_ge2"]["positives"] == 2
    assert m["overall"]["hostile"]["auroc"] == 1.0
    assert m["overall"]["hostile"]["positives"] == 1
    assert m["n"] == 4 and m["overall"]["n"] == 4
    assert m["axes"] == ["warmth", "substance", "template"]
    assert m["by_source"] == {}


def test_reversed_predictions_and_mae():
    t = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.5, 0.5, 0.5]])
    p = 1.0 - t
    m = evaluate(t, p)
    assert m["overall"]["substance"]["spearman"] == -1.0
    assert m["overall"]["substance"]["pearson"] == -1.0
    assert m["overall"]["substance"]["mae"] == pytest.approx(2 / 3, abs=1e-6)


def test_auroc_and_average_precision_on_a_known_case():
    # template: positives (gold >= 2/3) predicted .35 and .9; negatives .1 and .4.
    # AUROC = 3 of 4 pairs ranked right = 0.75; AP = (1/1 + 2/3) / 2.
    # warmth: hostile rows (gold 0) predicted .2 and .5 -> 1 - warmth = .8, .5 against
    # .7, .1 for the others: again 3 of 4 pairs = 0.75.
    t = np.array([[0, 0.5, 0], [1 / 3, 0.5, 1 / 3], [0, 0.5, 2 / 3], [2 / 3, 0.5, 1]])
    p = np.array([[0.2, 0.5, 0.1], [0.3, 0.5, 0.4], [0.5, 0.5, 0.35], [0.9, 0.5, 0.9]])
    m = evaluate(t, p)
    assert m["overall"]["template_ge2"]["auroc"] == 0.75
    assert m["overall"]["template_ge2"]["average_precision"] == pytest.approx((1 + 2 / 3) / 2, abs=1e-6)
    assert m["overall"]["hostile"]["auroc"] == 0.75
    assert m["overall"]["hostile"]["average_precision"] == pytest.approx((1 + 2 / 3) / 2, abs=1e-6)
    # substance gold and prediction constant: correlation undefined, not an error
    assert m["overall"]["substance"] == {"spearman": None, "pearson": None, "mae": 0.0}


def test_template_threshold_counts_level_two_exactly():
    # 2/3 stored with float rounding (0.666667) is still level 2.
    t = np.array([[0.5, 0.5, 0.666667], [0.5, 0.5, 0.333333]])
    m = evaluate(t, t)
    assert m["overall"]["template_ge2"]["positives"] == 1


def test_per_source_with_undefined_metrics():
    t = np.array([[0, 0, 1], [1 / 3, 1 / 3, 0], [2 / 3, 2 / 3, 1], [1, 1, 0], [1 / 3, 0, 1]])
    p = np.array([[0.1, 0.1, 0.9], [0.3, 0.4, 0.2], [0.6, 0.7, 0.8], [0.9, 0.9, 0.1], [0.3, 0.2, 0.7]])
    m = evaluate(t, p, sources=["a", "a", "a", "a", "b"])
    assert set(m["by_source"]) == {"a", "b"}
    a, b = m["by_source"]["a"], m["by_source"]["b"]
    assert a["n"] == 4 and b["n"] == 1
    assert a["warmth"]["spearman"] == 1.0
    assert a["hostile"]["auroc"] == 1.0
    # one row: no correlation, one class: no AUROC; MAE still defined
    assert b["warmth"] == {"spearman": None, "pearson": None, "mae": pytest.approx(0.033333, abs=1e-6)}
    assert b["template_ge2"] == {"auroc": None, "average_precision": None, "positives": 1, "n": 1}
    assert b["hostile"]["auroc"] is None and b["hostile"]["positives"] == 0
    json.dumps(m)  # plain JSON: no numpy types, no NaN


def test_axes_subset_and_input_errors():
    m = evaluate([[0.0], [1.0]], [[0.2], [0.7]], axes=["substance"])
    assert set(m["overall"]) == {"n", "substance"}
    with pytest.raises(ValueError, match=r"y_true_scores must have shape \(n, 3\), got \(2, 2\)"):
        evaluate([[0, 1], [1, 0]], [[0, 1], [1, 0]])
    with pytest.raises(ValueError, match="differ in shape"):
        evaluate(np.zeros((2, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="y_pred_scores contains NaN"):
        evaluate(np.zeros((2, 3)), np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match="sources has 1 entries for 2 rows"):
        evaluate(np.zeros((2, 3)), np.zeros((2, 3)), sources=["a"])


def _random_case(n=60, seed=0):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 4, size=(n, 3)) / 3
    p = np.clip(t + rng.normal(0, 0.2, size=t.shape), 0, 1)
    sources = [f"s{i % 3}" for i in range(n)]
    return t, p, sources


def test_write_report_files_and_plots(tmp_path):
    import matplotlib.image

    t, p, sources = _random_case()
    m = evaluate(t, p, sources)
    other = evaluate(t, np.full_like(p, 0.5), sources)
    report = write_report(m, t, p, tmp_path / "r", "model on test", compare={"constant": other})
    assert report == tmp_path / "r" / "report.md"
    text = report.read_text(encoding="utf-8")
    assert text.startswith("# model on test\n")
    for heading in ("## Per axis", "## Detection", "## Comparison", "## Per source", "## Plots"):
        assert heading in text
    assert "| constant | 60 |" in text
    assert "| s0 | 20 |" in text
    for a in ("warmth", "substance", "template"):
        png = tmp_path / "r" / f"{a}.png"
        assert png.read_bytes()[:8] == PNG_MAGIC
        img = matplotlib.image.imread(png)
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 400
        assert f"![{a}]({png.name})" in text
    saved = json.loads((tmp_path / "r" / "metrics.json").read_text(encoding="utf-8"))
    assert saved["overall"] == m["overall"]
    assert saved["compare"]["constant"]["overall"]["warmth"]["spearman"] is None


def test_confusion_counts():
    from zhenping.training.evaluate import confusion_counts

    cm = confusion_counts(np.array([0, 1 / 3, 1 / 3, 1]), np.array([0.1, 0.2, 0.5, 0.95]))
    assert cm.tolist() == [[1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1]]


def test_comparison_table_formats_missing_values():
    t, p, _ = _random_case(12)
    table = comparison_table({"a": evaluate(t, p), "flat": evaluate(t, np.zeros_like(p))})
    lines = table.splitlines()
    assert lines[0].startswith("| model | n | warmth ρ | substance ρ | template ρ |")
    assert lines[3].startswith("| flat | 12 | – | – | – |")


def test_evaluate_command_with_a_tiny_model(tiny_model_dir, tmp_path):
    runner = CliRunner()
    root, gold, _ = make_tiny(tmp_path)
    data = tmp_path / "data"
    r = runner.invoke(app, ["prepare", "--corpora", str(root), "--gold", str(gold), "--out", str(data)])
    assert r.exit_code == 0, r.output
    manifest = json.loads((data / "prepare_manifest.json").read_text(encoding="utf-8"))
    # A baselines file measured on the same label files is shown for comparison.
    t = np.array([[0, 0, 0], [1, 1, 1]], dtype=float)
    fake = evaluate(t, t)
    baselines = tmp_path / "baselines.json"
    baselines.write_text(json.dumps({"data": {"label_files": manifest["label_files"]},
                                     "models": {"rules": {"test": fake}}}), encoding="utf-8")
    out = tmp_path / "eval"
    r = runner.invoke(app, ["evaluate", "--model", str(tiny_model_dir), "--data", str(data),
                            "--split", "test", "--out", str(out), "--baselines", str(baselines)])
    assert r.exit_code == 0, r.output
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    n_test = manifest["counts"]["rows"]["test"]
    assert metrics["n"] == n_test
    assert metrics["split"] == "test"
    assert metrics["axes"] == ["warmth", "substance", "template"]
    assert set(metrics["compare"]) == {"rules baseline"}
    assert "## Comparison" in (out / "report.md").read_text(encoding="utf-8")
    assert (out / "template.png").read_bytes()[:8] == PNG_MAGIC
    assert "rules baseline" in r.output


def test_evaluate_command_errors(tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["evaluate", "--model", str(tmp_path), "--split", "dev",
                            "--out", str(tmp_path / "o")])
    assert r.exit_code == 2
    assert "--split must be one of ['train', 'validation', 'test'], got 'dev'" in r.output
    r = runner.invoke(app, ["evaluate", "--model", str(tmp_path / "nothing"), "--data",
                            str(tmp_path), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2
    assert r.output.startswith("error: ") and len(r.output.splitlines()) == 1
