"""The campaign evaluation stage: streaming corpus files, weighted metrics, thresholds, artefacts."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from zhenping.model.axes import AXES
from zhenping.model.campaign.config import WindowConfig, load_calibration
from tests.training.corpus_fixtures import write_csv_gz
from zhenping.training.campaign_eval import (
    FileStream,
    choose_thresholds,
    parse_streams,
    precision_recall,
    run,
    spread,
    stream_file,
    weighted_spearman,
)
from zhenping.training.corpora import get_file

ZMS = "netease_music_comments/latest_comments_zms.csv.gz"
DANMAKU = "bilibili_danmaku_small/zhuosd_danmaku.csv.gz"
AD = "兼职日结,手机就能做,加微信abc123,月入过万"
ORDINARY = ["这首歌让我想起了高三的晚自习", "副歌那段吉他太好听了", "第一次听是在去年冬天的火车上", "循环了一整天"]


def netease_rows():
    """(text, posting time in ms), listed newest first as the crawl stored them."""
    rows = [(AD, 1_000), (ORDINARY[0], 2_000), (AD, 3_000), ("依托答辩", 4_000), (ORDINARY[1], 5_000),
            (AD + "!", 6_000), ("依托答辩", 7_000), (ORDINARY[2], 8_000), (AD, 9_000), (ORDINARY[3], 10_000)]
    return list(reversed(rows))


def write_netease(root):
    write_csv_gz(root / ZMS, ["commentId", "content", "time"],
                 [[str(i), text, str(ms)] for i, (text, ms) in enumerate(netease_rows())])


def test_spread_keeps_first_last_and_even_steps():
    assert spread([1, 2, 3], 10) == [1, 2, 3]
    assert spread(list(range(100)), 4) == [0, 33, 66, 99]


def test_weighted_spearman_matches_scipy_and_duplicated_rows():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    t = rng.integers(0, 4, 50) / 3
    p = t + rng.normal(0, 0.3, 50)
    assert weighted_spearman(t, p) == pytest.approx(spearmanr(t, p).statistic, abs=1e-4)
    # Weight 2 on a row is the row twice.
    w = np.where(np.arange(50) < 10, 2.0, 1.0)
    doubled_t, doubled_p = np.concatenate([t, t[:10]]), np.concatenate([p, p[:10]])
    assert weighted_spearman(t, p, w) == pytest.approx(spearmanr(doubled_t, doubled_p).statistic, abs=1e-4)
    assert weighted_spearman([0, 0, 0], [1, 2, 3]) is None


def test_thresholds_fold_for_precision_and_review_for_recall():
    rng = random.Random(0)
    score = np.array([rng.random() for _ in range(400)])
    positive = np.array([rng.random() < s ** 2 for s in score])
    fold, review = choose_thresholds(score, positive)
    assert review <= fold
    folded = precision_recall(score >= fold, positive)
    assert folded["precision"] >= 0.9
    lower = precision_recall(score >= fold - 0.01, positive)
    assert lower["precision"] < 0.9 or lower["flagged"] < 5  # the lowest threshold that reaches 0.9
    reviewed = precision_recall(score >= review, positive)
    assert reviewed["recall"] >= 0.8 or reviewed["precision"] < 0.55
    # Nothing reaches the fold precision: the rule is off.
    fold_off, _ = choose_thresholds(score, np.zeros(400, dtype=bool))
    assert fold_off > 1


def test_stream_file_follows_posting_order_and_every_copy(tmp_path):
    write_netease(tmp_path)
    _, cf = get_file(*ZMS.split("/"))
    rows = netease_rows()
    gold = {len(rows) - 1, len(rows) - 4}  # the first AD (oldest) and the first 依托答辩
    found = stream_file(tmp_path / ZMS, cf, gold, WindowConfig(), batch=1)
    assert isinstance(found, FileStream) and found.timed and found.rows == 10
    ad_row, meme_row = len(rows) - 1, len(rows) - 4
    assert found.labelled[ad_row] == (0, 0)  # the oldest copy sees nothing at arrival
    assert found.arrivals[ad_row] == [(0, 0), (1, 0), (2, 1)]  # exact copies of the AD text as they arrive
    assert found.whole_file[ad_row] == (2, 1)  # two other exact copies and the "!" one
    assert found.labelled[meme_row] == (0, 0) and found.whole_file[meme_row] == (1, 0)
    assert found.clusters_with_copies == 2 and found.largest_cluster == 4
    assert FileStream.from_json(json.loads(json.dumps(found.to_json()))) == found


def test_parse_streams_names_unknown_corpora():
    assert parse_streams(None) is None
    assert parse_streams(f"bilibili_danmaku_small,{ZMS}") == {
        "bilibili_danmaku_small": None, "netease_music_comments": ("latest_comments_zms.csv.gz",)}
    with pytest.raises(ValueError, match=r"unknown corpus 'weibo' in --streams"):
        parse_streams("weibo")


def test_stage_writes_results_and_calibration(tmp_path):
    from zhenping.training.baselines import TfidfRidgeBaseline

    root = tmp_path / "corpora"
    write_netease(root)
    rows = netease_rows()
    danmaku = [("火钳刘明",), ("马龙",), ("火钳刘明",), ("莎莎加油",), ("马龙",), ("火钳刘明",)]
    write_csv_gz(root / DANMAKU, ["弹幕"], [list(r) for r in danmaku])
    levels = {AD: 3, AD + "!": 3, "依托答辩": 2, "火钳刘明": 3, "马龙": 2, "莎莎加油": 2}
    data = tmp_path / "data"
    data.mkdir()

    def record(rid, text):
        t = levels.get(text, 0)
        return {"id": rid, "source": rid.split("/")[0], "text": text, "warmth": 1 / 3, "substance": 0.0 if t else 2 / 3,
                "template": t / 3}

    split_rows = {"validation": [], "test": []}
    for i, (text, _) in enumerate(rows):
        split_rows["validation" if i % 2 else "test"].append(record(f"{ZMS}:{i}", text))
    for i, (text,) in enumerate(danmaku):
        split_rows["validation" if i % 2 else "test"].append(record(f"{DANMAKU}:{i}", text))
    for split, recs in split_rows.items():
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs),
                                             encoding="utf-8")
    (data / "prepare_manifest.json").write_text(json.dumps({"label_files": {"gold_v1.jsonl": "abc"}}))
    texts = [r["text"] for recs in split_rows.values() for r in recs]
    scores = np.array([[r[a] for a in AXES] for recs in split_rows.values() for r in recs])
    baseline = TfidfRidgeBaseline(alphas=(1.0,)).fit(texts, scores).save(tmp_path / "tfidf.joblib")

    out = tmp_path / "results"
    calibration = tmp_path / "calibration.json"
    cache = tmp_path / "streams.json"
    streams = {"netease_music_comments": ("latest_comments_zms.csv.gz",), "bilibili_danmaku_small": ("zhuosd_danmaku.csv.gz",)}
    lines: list[str] = []
    results = run(data, baseline=baseline, streams=streams, out=out, batch=4, write_calibration=True,
                  calibration_path=calibration, corpora=str(root), cache_path=cache, bootstrap=20,
                  echo=lines.append)
    assert (out / "campaign.json").is_file() and (out / "campaign.md").is_file()
    assert json.loads((out / "campaign.json").read_text(encoding="utf-8"))["fusion"] == results["fusion"]
    assert [s["file"] for s in results["streams"]] == ["latest_comments_zms.csv.gz", "zhuosd_danmaku.csv.gz"]
    assert results["streams"][0]["gold_rows"] == 10 and results["streams"][1]["gold_rows"] == 6
    table = results["fusion_test"]["all streamed"]
    assert {"model", "fused_labelled", "fused_arrivals", "fused_whole_file", "logistic_arrivals"} <= set(table)
    assert set(results["actions"]["thresholds"]) == {"fold_template", "review_template", "fold_hostile",
                                                     "review_hostile"}
    doc = load_calibration(calibration)
    assert doc["fusion"] == {"exact_weight": results["fusion"]["exact_weight"],
                             "near_weight": results["fusion"]["near_weight"]}
    # The action thresholds, campaign and likes models stay the benchmark's (training/campaign_bench.py).
    shipped = load_calibration()
    assert {k: doc[k] for k in ("actions", "campaign", "likes")} == {k: shipped[k] for k in ("actions", "campaign", "likes")}
    assert "兼职" not in (out / "campaign.md").read_text(encoding="utf-8")  # no comment text in the results
    assert any(line.startswith("streamed netease_music_comments/latest_comments_zms.csv.gz") for line in lines)
    # A rerun reuses the streamed counts.
    lines.clear()
    again = run(data, baseline=baseline, streams=streams, out=out, batch=4, corpora=str(root), cache_path=cache,
                bootstrap=20, echo=lines.append)
    assert sum(line.startswith("reused the streamed counts") for line in lines) == 2
    assert again["fusion_test"] == results["fusion_test"]
