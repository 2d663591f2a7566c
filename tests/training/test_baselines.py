"""Rules and TF-IDF baselines: lexicons, rule behaviour, fitting and the results files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.training.corpus_fixtures import make_tiny
from zhenping.training.baselines import (
    STOCK_PHRASES,
    TONE_PHRASES,
    RulesBaseline,
    TfidfRidgeBaseline,
    load_lexicon,
    run_baselines,
)
from zhenping.training.cli import app
from zhenping.training.prepare import load_split, prepare


def quiet(_msg: str) -> None:
    pass


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("baselines")
    root, gold, _ = make_tiny(tmp)
    prepare(corpora=root, gold=gold, out=tmp / "data", echo=quiet)
    return tmp / "data"


def test_shipped_lexicons_load():
    stock = load_lexicon(STOCK_PHRASES)
    assert {"filler", "forward", "stock_praise", "review", "ad", "slogan", "buzzword",
            "ai_phrase"} <= set(stock)
    for phrase in ("沙发", "火钳刘明", "此用户未填写评价内容", "默认好评"):
        assert any(phrase in v for v in stock.values()), phrase
    assert "赋能" in stock["buzzword"] and "加微信" in stock["ad"]
    tone = load_lexicon(TONE_PHRASES)
    assert set(tone) == {"insult", "warm", "strong_warm"}
    assert "蠢货" in tone["insult"] and "抱抱" in tone["strong_warm"]


def test_lexicon_normalises_and_rejects_bad_lines(tmp_path):
    p = tmp_path / "lex.txt"
    p.write_text("# comment\n\nfiller\t沙發\nfiller\tＡＢ\n", encoding="utf-8")
    assert load_lexicon(p) == {"filler": ("ab", "沙发")}  # longest first, then by text
    p.write_text("filler 沙发\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"lex.txt:1: expected '<category><TAB><phrase>', got 'filler 沙发'"):
        load_lexicon(p)


def test_rules_follow_the_guidelines():
    rules = RulesBaseline()
    texts = [
        "沙发",                                                    # 0 filler
        "屏幕6.1寸,续航一天,拍照偏暗,不推荐给爱拍照的人",              # 1 specific
        "你脑子有病吧,蠢货",                                         # 2 insult
        "抱抱你,会好起来的,我去年也经历过失业,那段时间真的很难熬",        # 3 comfort
        "哈哈哈哈哈哈哈哈哈哈",                                       # 4 laughter wall
        "兼职日结加微信",                                            # 5 ad
        "@某某 @某某某",                                             # 6 mention only
        "",                                                         # 7 empty
    ]
    w, s, t = rules.raw(texts).T
    assert t[0] > t[1] and t[4] > t[1] and t[5] > t[1]
    assert t[6] == 1.0 and s[6] == 0.0
    assert s[1] > s[0] and s[1] > s[4] and s[0] == 0.0
    assert w[2] < w[1] < w[3]
    assert t[7] == 1.0 and s[7] == 0.0
    pred = rules.predict(texts)
    assert pred.shape == (8, 3)
    assert ((pred >= 0) & (pred <= 1)).all()


def test_rules_calibration_keeps_order(tiny_data):
    train = load_split(tiny_data, "train")
    rules = RulesBaseline().fit(train.texts, train.scores)
    for axis, (slope, _) in rules.calibration.items():
        assert slope >= 0, axis
    raw = rules.raw(train.texts)
    pred = rules.predict(train.texts)
    for k in range(3):
        order = np.argsort(raw[:, k], kind="stable")
        assert (np.diff(pred[order, k]) >= -1e-12).all()
    assert set(rules.params()["calibration"]) == {"warmth", "substance", "template"}


def test_tfidf_ridge_fit_predict_save_load(tiny_data, tmp_path):
    train = load_split(tiny_data, "train")
    val = load_split(tiny_data, "validation")
    model = TfidfRidgeBaseline(alphas=(0.1, 1.0)).fit(train.texts, train.scores, val.texts, val.scores)
    assert set(model.alpha) == {"warmth", "substance", "template"}
    assert all(a in (0.1, 1.0) for a in model.alpha.values())
    pred = model.predict(["沙发", "屏幕6.1寸,续航一天"])
    assert pred.shape == (2, 3)
    assert ((pred >= 0) & (pred <= 1)).all()
    # The training rows are fitted closely: it learned something.
    fit = model.predict(train.texts)
    assert np.corrcoef(fit[:, 2], train.scores[:, 2])[0, 1] > 0.8
    path = model.save(tmp_path / "m" / "tfidf.joblib")
    again = TfidfRidgeBaseline.load(path)
    np.testing.assert_allclose(again.predict(["沙发"]), model.predict(["沙发"]))
    params = model.params()
    assert params["features"] > 0 and params["ngram_range"] == [1, 3]


def test_tfidf_errors(tmp_path):
    with pytest.raises(RuntimeError, match="predict called before fit"):
        TfidfRidgeBaseline().predict(["x"])
    with pytest.raises(ValueError, match="alphas must not be empty"):
        TfidfRidgeBaseline(alphas=())
    import joblib

    joblib.dump({"something": 1}, tmp_path / "x.joblib")
    with pytest.raises(ValueError, match="is not a zhenping TF-IDF baseline file"):
        TfidfRidgeBaseline.load(tmp_path / "x.joblib")


def test_run_baselines_writes_results(tiny_data, tmp_path):
    lines = []
    results = run_baselines(tiny_data, tmp_path / "results", tmp_path / "models",
                            echo=lines.append, reports=False)
    saved = json.loads((tmp_path / "results" / "baselines.json").read_text(encoding="utf-8"))
    assert saved == json.loads(json.dumps(results))
    assert set(saved["models"]) == {"rules", "tfidf_ridge"}
    for name in ("rules", "tfidf_ridge"):
        for split in ("validation", "test"):
            m = saved["models"][name][split]
            assert m["n"] == saved["data"]["rows"][split]
            assert set(m["overall"]) == {"n", "warmth", "substance", "template", "template_ge2", "hostile"}
    assert saved["data"]["label_files"].keys() == {"gold_v1.jsonl"}
    md = (tmp_path / "results" / "baselines.md").read_text(encoding="utf-8")
    assert md.startswith("# Baselines")
    assert "## Test split" in md and "| rules |" in md and "| tfidf_ridge |" in md
    assert (tmp_path / "models" / "tfidf_ridge.joblib").is_file()
    assert any(line.startswith("| model | n |") for line in "\n".join(lines).splitlines())


def test_baselines_command(tiny_data, tmp_path):
    r = CliRunner().invoke(app, ["baselines", "--data", str(tiny_data), "--out", str(tmp_path / "res"),
                                 "--models-dir", str(tmp_path / "models")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "res" / "baselines.json").is_file()
    assert (tmp_path / "models" / "rules" / "test" / "report.md").is_file()
    r = CliRunner().invoke(app, ["baselines", "--data", str(tmp_path / "none"), "--out", str(tmp_path)])
    assert r.exit_code == 2
    assert "run `zhenping prepare" in r.output
