"""Weight averaging: the averaged weights, the exported folder, and what cannot be averaged."""

from __future__ import annotations

import json

import pytest

from zhenping.model.axes import AXES
from zhenping.training.finetune import FinetuneConfig
from zhenping.training.soup import SoupError, average_weights, check_compatible, main as soup_main
from zhenping.training.train import run_train
from tests.training.test_train import _tiny_data, _tiny_encoder


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """Two tiny scorers fine-tuned from one encoder with different seeds, and a shallower one."""
    tmp = tmp_path_factory.mktemp("soup")
    enc = _tiny_encoder(tmp / "enc")
    data = _tiny_data(tmp / "data")
    out = {"data": data}
    for name, seed, layers in (("a", 1, 0), ("b", 2, 0), ("shallow", 1, 1)):
        cfg = FinetuneConfig(data_dir=str(data), base=str(enc), out_dir=str(tmp / f"ft-{name}"), epochs=1,
                             batch_size=8, max_length=32, patience=1, seed=seed, num_layers=layers)
        run_train(cfg, tmp / name, model_version=f"tiny-{name}", baselines=tmp / "none.json")
        out[name] = tmp / name
    return out


@pytest.mark.slow
def test_averaged_weights_are_the_mean_of_the_parts(parts):
    from safetensors.torch import load_file

    a = load_file(str(parts["a"] / "model.safetensors"))
    b = load_file(str(parts["b"] / "model.safetensors"))
    assert any(not (a[k] == b[k]).all() for k in a if a[k].is_floating_point())  # different seeds, different weights
    avg = average_weights([parts["a"], parts["b"]])
    for k in a:
        if a[k].is_floating_point():
            assert avg[k].dtype == a[k].dtype
            assert (avg[k] - (a[k].double() + b[k].double()) / 2).abs().max().item() < 1e-6
    lopsided = average_weights([parts["a"], parts["b"]], [1.0, 0.0])
    assert all((lopsided[k] == a[k]).all() for k in a)


@pytest.mark.slow
def test_soup_exports_an_evaluated_scorer(parts, tmp_path, capsys):
    out = tmp_path / "soup"
    rc = soup_main([str(parts["a"]), str(parts["b"]), "--out", str(out), "--data", str(parts["data"]),
                    "--version", "tiny-soup"])
    assert rc == 0
    from zhenping.model.scorer import Scorer

    scorer = Scorer.from_pretrained(str(out))
    assert scorer.model_version == "tiny-soup"
    assert len(scorer.score(["好听", "沙发"])) == 2
    sc = json.loads((out / "scorer_config.json").read_text())
    assert sc["training_config"]["soup"] == [str(parts["a"]), str(parts["b"])]
    assert set(sc["level_thresholds"]) == set(AXES)  # cut points fitted on validation
    metrics = json.loads((out / "metrics.json").read_text())
    parts_val = [p["validation_mean_spearman"] for p in metrics["training"]["soup"]["parts"]]
    assert len(parts_val) == 2 and all(isinstance(v, float) for v in parts_val)
    assert isinstance(metrics["training"]["finetune"]["best_validation_mean_spearman"], float)
    assert set(metrics["overall"]) >= set(AXES)
    card = (out / "README.md").read_text()
    assert "## Weight averaging" in card and str(parts["a"]) in card
    assert "validation mean Spearman: soup" in capsys.readouterr().err


@pytest.mark.slow
def test_models_that_differ_cannot_be_averaged(parts, tmp_path, capsys):
    with pytest.raises(SoupError, match="num_hidden_layers"):
        check_compatible([parts["a"], parts["shallow"]])
    with pytest.raises(SoupError, match="at least two"):
        check_compatible([parts["a"]])
    with pytest.raises(SoupError, match="weights must be"):
        average_weights([parts["a"], parts["b"]], [0.7, 0.7])
    assert soup_main([str(parts["a"]), str(tmp_path), "--out", str(tmp_path / "o"),
                      "--data", str(parts["data"])]) == 2
    assert "config.json is missing" in capsys.readouterr().err
    assert soup_main([str(parts["a"]), str(parts["b"]), "--out", str(tmp_path / "o"), "--weights", "x,y",
                      "--data", str(parts["data"])]) == 2
    assert "expected comma-separated numbers" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
