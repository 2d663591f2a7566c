"""A smaller model cut from a larger one, the comparison report and the card's sizes table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from zhenping.model.axes import AXES
from zhenping.training.card import rerender_card, sizes_section
from zhenping.training.compare_models import main as compare_main
from zhenping.training.finetune import FinetuneConfig, load_base
from zhenping.training.train import run_train
from tests.training.test_train import _tiny_data, _tiny_encoder


def test_num_layers_keeps_the_first_layers_of_the_base(tmp_path, tiny_model_dir):
    full, _ = load_base(str(tiny_model_dir))
    cut, _ = load_base(str(tiny_model_dir), num_layers=1)
    assert full.config.num_hidden_layers == 2 and cut.config.num_hidden_layers == 1
    base = full.base_model.encoder.layer[0].state_dict()
    kept = cut.base_model.encoder.layer[0].state_dict()
    assert base.keys() == kept.keys()
    for k in base:
        assert (base[k] == kept[k]).all(), k
    # The head comes with the base; nothing else is re-initialised.
    assert (full.classifier.weight == cut.classifier.weight).all()
    with pytest.raises(ValueError, match="num_layers above the base's 2 layers must be a multiple of it, got 3"):
        load_base(str(tiny_model_dir), num_layers=3)


def _tiny_prelayernorm(folder, tokenizer_dir):
    import shutil

    from transformers import AutoTokenizer, RobertaPreLayerNormConfig, RobertaPreLayerNormForSequenceClassification

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    cfg = RobertaPreLayerNormConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                                    num_attention_heads=2, intermediate_size=64, max_position_embeddings=66,
                                    num_labels=len(AXES), pad_token_id=tok.pad_token_id)
    RobertaPreLayerNormForSequenceClassification(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    shutil.copy(tokenizer_dir / "scorer_config.json", folder / "scorer_config.json")
    return folder


def test_growing_a_prelayernorm_base_keeps_its_scores_and_trains_the_new_layers(tmp_path, tiny_model_dir):
    import torch

    base = _tiny_prelayernorm(tmp_path / "base", tiny_model_dir)
    small, tok = load_base(str(base), dropout=0.0)
    grown, _ = load_base(str(base), dropout=0.0, num_layers=4)
    assert grown.config.num_hidden_layers == 4 and len(grown.base_model.encoder.layer) == 4
    # Layer i of the base sits at 2i; its twin at 2i+1 has zero output projections.
    for i in range(2):
        orig = small.base_model.encoder.layer[i].state_dict()
        same = grown.base_model.encoder.layer[2 * i].state_dict()
        twin = grown.base_model.encoder.layer[2 * i + 1].state_dict()
        for k in orig:
            assert torch.equal(orig[k], same[k]), k
            if k.startswith(("attention.output.dense.", "output.dense.")):
                assert not twin[k].any(), k
            else:
                assert torch.equal(orig[k], twin[k]), k
    enc = tok(["抱抱你，会好起来的", "沙发沙发沙发", "物流很快，包装完好"], padding=True, return_tensors="pt")
    small.eval(), grown.eval()
    with torch.no_grad():
        assert torch.allclose(small(**enc).logits, grown(**enc).logits, atol=1e-6)
    # The zeroed projections still receive gradients, so the new layers learn.
    grown.train()
    grown(**enc, labels=torch.full((3, len(AXES)), 0.5)).loss.backward()
    assert grown.base_model.encoder.layer[1].output.dense.weight.grad.abs().sum() > 0
    # The grown model saves as a plain checkpoint with its new depth.
    grown.save_pretrained(tmp_path / "grown")
    again, _ = load_base(str(tmp_path / "grown"))
    assert again.config.num_hidden_layers == 4


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cmp")
    enc = _tiny_encoder(tmp / "enc")
    data = _tiny_data(tmp / "data")
    out = {}
    for name, layers in (("full", 0), ("cut", 1)):
        cfg = FinetuneConfig(data_dir=str(data), base=str(enc), out_dir=str(tmp / f"ft-{name}"), epochs=1,
                             batch_size=8, max_length=32, patience=1, num_layers=layers)
        run_train(cfg, tmp / name, model_version=f"tiny-{name}", baselines=tmp / "none.json")
        out[name] = tmp / name
    return out


@pytest.mark.slow
def test_the_cut_model_exports_with_fewer_layers(two_models):
    cfg = json.loads((two_models["cut"] / "config.json").read_text())
    assert cfg["num_hidden_layers"] == 1
    sc = json.loads((two_models["cut"] / "scorer_config.json").read_text())
    assert sc["training_config"]["num_layers"] == 1


@pytest.mark.slow
def test_compare_models_writes_both_files_and_marks_the_best_validation(two_models, tmp_path):
    stem = tmp_path / "results" / "objectives"
    rc = compare_main([f"full={two_models['full']}", f"cut={two_models['cut']}", "--out", str(stem),
                       "--title", "Tiny", "--note", "Ships: the cut model, twice as fast."])
    assert rc == 0
    data = json.loads(stem.with_suffix(".json").read_text())
    rows = {r["name"]: r for r in data["runs"]}
    assert set(rows) == {"full", "cut"}
    for r in rows.values():
        metrics = json.loads((__import__("pathlib").Path(r["model"]) / "metrics.json").read_text())
        assert r["test_spearman"] == {a: metrics["overall"][a]["spearman"] for a in AXES}
        assert r["validation_mean_spearman"] == metrics["training"]["finetune"]["best_validation_mean_spearman"]
    best = max(rows.values(), key=lambda r: r["validation_mean_spearman"])["name"]
    md = stem.with_suffix(".md").read_text()
    assert f"| {best} (chosen) |" in md and md.count("(chosen)") == 1
    assert md.rstrip().endswith("Ships: the cut model, twice as fast.")
    assert data["note"] == "Ships: the cut model, twice as fast."


@pytest.mark.slow
def test_compare_models_with_data_rescores_every_run_on_the_same_rows(two_models, tmp_path):
    from scipy.stats import spearmanr

    from zhenping.model.scorer import Scorer
    from zhenping.training.prepare import load_split

    data_dir = two_models["full"].parent / "data"
    stem = tmp_path / "same_rows"
    rc = compare_main([f"full={two_models['full']}", f"cut={two_models['cut']}", "--out", str(stem),
                       "--data", str(data_dir)])
    assert rc == 0
    rows = {r["name"]: r for r in json.loads(stem.with_suffix(".json").read_text())["runs"]}
    for name, row in rows.items():
        scorer = Scorer.from_pretrained(str(two_models[name]))
        for split in ("validation", "test"):
            split_data = load_split(data_dir, split)
            # scores travel as float32 (as teachers' do), so ties are those of float32 values
            pred = np.asarray([[getattr(s, a) for a in AXES] for s in scorer.score(split_data.texts)], np.float32)
            rho = [spearmanr(pred[:, i], split_data.scores[:, i]).correlation for i in range(len(AXES))]
            if split == "validation":
                assert row["validation_mean_spearman"] == pytest.approx(sum(rho) / len(rho), abs=1e-4)
            else:
                assert [row["test_spearman"][a] for a in AXES] == pytest.approx(rho, abs=1e-4)
        assert row["data"]["rows"]["validation"] == len(load_split(data_dir, "validation"))
    md = stem.with_suffix(".md").read_text()
    assert "each run scored afresh on the same prepared rows" in md and f"Rows: `{data_dir}`" in md


def test_compare_models_needs_data_for_a_fitted_baseline(tmp_path, capsys):
    assert compare_main([f"tfidf={tmp_path / 'tfidf_ridge.joblib'}", "--out", str(tmp_path / "o")]) == 2
    assert "a fitted baseline needs --data" in capsys.readouterr().err


def test_compare_models_rejects_a_folder_without_metrics(tmp_path, capsys):
    assert compare_main([f"x={tmp_path}", "--out", str(tmp_path / "o")]) == 2
    assert "metrics.json not found" in capsys.readouterr().err
    assert compare_main(["no-equals-sign", "--out", str(tmp_path / "o")]) == 2
    assert "expected NAME=MODEL_DIR" in capsys.readouterr().err


@pytest.mark.slow
def test_sizes_json_becomes_a_table_in_the_card(two_models):
    d = two_models["full"]
    sizes = {"measured": "2026-01-01 00:00 UTC", "comments": 100, "sample": "synthetic",
             "path": "ONNX int8, batch 128, max_tokens 2048", "rounds": 2,
             "models": [{"version": "tiny-full", "layers": 2, "hidden": 32, "parameters": 123456,
                         "spearman": {"warmth": 0.5, "substance": 0.6, "template": 0.7},
                         "template_auroc": 0.8, "hostile_auroc": 0.9, "comments_per_s": 1234.0,
                         "comments_per_cpu_s": 700.0, "validation_mean_spearman": 0.76543,
                         "validation_rows": 50}]}
    (d / "sizes.json").write_text(json.dumps(sizes))
    card = rerender_card(d)
    assert "## Sizes" in card
    assert "| tiny-full | 2 × 32 | 0.1M | 0.7654 | 0.500 | 0.600 | 0.700 | 0.800 | 0.900 | 1,234 | 700 | – |" in card
    assert sizes_section(sizes)[0] == "## Sizes"
    assert "earlier run" not in card


def _load_bench_sizes():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_sizes.py"
    spec = importlib.util.spec_from_file_location("bench_sizes", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _size_row(version, layers, rate, ratio, **extra):
    return {"version": version, "layers": layers, "hidden": 256, "heads": 4, "parameters": 5_000_000,
            "spearman": {"warmth": 0.7, "substance": 0.78, "template": 0.75}, "template_auroc": 0.89,
            "hostile_auroc": 0.85, "comments_per_s": rate, "comments_per_cpu_s": rate / 2,
            "speed_vs_first": ratio, **extra}


def test_earlier_sizes_keep_other_sizes_marked_with_their_run(tmp_path):
    bench = _load_bench_sizes()
    earlier = {"measured": "2026-01-01 00:00 UTC", "models": [
        _size_row("small-old", 4, 1000.0, 1.0), _size_row("deep", 8, 550.0, 0.55), _size_row("tiny", 2, 1700.0, 1.7)]}
    path = tmp_path / "sizes.json"
    path.write_text(json.dumps(earlier))
    now = [_size_row("small-new", 4, 1100.0, 1.0)]
    kept = bench.earlier_rows(path, now)
    # the size measured now replaces its earlier row; the others stay, dated by their run
    assert [r["version"] for r in kept] == ["deep", "tiny"]
    assert all(r["measured"] == "2026-01-01 00:00 UTC" for r in kept)
    sizes = {"measured": "2026-02-02 00:00 UTC", "comments": 10, "path": "ONNX int8", "rounds": 1,
             "models": now + kept}
    lines = sizes_section(sizes)
    assert any(line.startswith("| small-new | 4 × 256 |") and line.endswith("| 1.00× |") for line in lines)
    assert any(line.startswith("| deep * | 8 × 256 |") and line.endswith("| 0.55× |") for line in lines)
    assert any("earlier run (2026-01-01 00:00 UTC)" in line for line in lines)


def test_sizes_carry_the_validation_figure_a_size_is_chosen_by():
    bench = _load_bench_sizes()
    trained = {"training": {"finetune": {"best_validation_mean_spearman": 0.76747, "validation_rows": 1955}}}
    assert bench.validation_figure(trained) == {"validation_mean_spearman": 0.76747, "validation_rows": 1955}
    assert bench.validation_figure({"training": {}}) == {}
    assert bench.validation_figure({}) == {}
    small = _size_row("small", 4, 1100.0, 1.0, validation_mean_spearman=0.7675, validation_rows=1955)
    deep = _size_row("deep", 8, 550.0, 0.5, validation_mean_spearman=0.7690, validation_rows=1955)
    old = _size_row("old", 2, 1700.0, 1.5)  # an earlier run that recorded none
    lines = sizes_section({"measured": "now", "comments": 10, "path": "ONNX int8", "rounds": 1,
                           "models": [small, deep, old]})
    assert any(line.startswith("| small | 4 × 256 | 5.0M | 0.7675 | 0.700 |") for line in lines)
    assert any(line.startswith("| deep | 8 × 256 | 5.0M | 0.7690 |") for line in lines)
    assert any(line.startswith("| old | 2 × 256 | 5.0M | – | 0.700 |") for line in lines)
    assert not any("different sizes" in line for line in lines)
    other = _size_row("other", 6, 700.0, 0.6, validation_mean_spearman=0.76, validation_rows=1889)
    lines = sizes_section({"measured": "now", "comments": 10, "path": "ONNX int8", "rounds": 1,
                           "models": [small, other]})
    assert any("different sizes (1,889, 1,955 rows)" in line for line in lines)


def test_earlier_sizes_relative_to_another_first_size_are_refused(tmp_path):
    bench = _load_bench_sizes()
    path = tmp_path / "sizes.json"
    path.write_text(json.dumps({"measured": "x", "models": [_size_row("deep", 8, 550.0, 1.0)]}))
    with pytest.raises(SystemExit, match="not 4 × 256"):
        bench.earlier_rows(path, [_size_row("small", 4, 1100.0, 1.0)])
    path.write_text(json.dumps({"measured": "x", "models": []}))
    with pytest.raises(SystemExit, match="holds no models"):
        bench.earlier_rows(path, [_size_row("small", 4, 1100.0, 1.0)])
    path.write_text("not json")
    with pytest.raises(SystemExit, match="not a sizes file"):
        bench.earlier_rows(path, [_size_row("small", 4, 1100.0, 1.0)])
