"""The shipped gold labels against the shared corpora (skipped without ../shared)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.prepare import prepare
from training.splits import SPLITS

pytestmark = pytest.mark.real_data

RESULTS = Path(__file__).resolve().parents[2] / "training" / "results" / "baselines.json"


@pytest.fixture(scope="module")
def real_manifest(tmp_path_factory):
    out = tmp_path_factory.mktemp("real") / "data"
    return prepare(out=out, echo=lambda _msg: None), out


def test_every_gold_label_joins(real_manifest):
    manifest, _ = real_manifest
    assert manifest["gold"] == {"records": 9113, "joined": 9113, "missing": [], "changed": [],
                                "unknown_file": []}
    assert sorted(manifest["label_files"]) == ["gold_v1.jsonl", "gold_v2.jsonl", "gold_v3.jsonl"]


def test_real_splits_have_expected_proportions(real_manifest):
    manifest, out = real_manifest
    rows = manifest["counts"]["rows"]
    total = manifest["counts"]["total"]
    # 9,113 labels less the texts labelled twice, merged into one row each
    assert total == 9113 - manifest["duplicates"]["rows_merged"] + manifest["duplicates"]["groups"]
    assert 9000 < total <= 9113
    assert 0.77 < rows["train"] / total < 0.83
    assert 0.08 < rows["validation"] / total < 0.12
    assert 0.08 < rows["test"] / total < 0.12
    for s in SPLITS:
        with open(out / f"{s}.jsonl", encoding="utf-8") as fh:
            assert sum(1 for _ in fh) == rows[s]
    # every source with gold labels reaches the training split
    assert len(manifest["counts"]["by_source"]["train"]) == 21
    # the rarest levels are present in every split
    for s in SPLITS:
        assert manifest["counts"]["levels"][s]["warmth"]["3"] > 0
        assert manifest["counts"]["levels"][s]["template"]["3"] > 0


def test_committed_baselines_match_the_gold_labels(real_manifest):
    manifest, _ = real_manifest
    results = json.loads(RESULTS.read_text(encoding="utf-8"))
    assert results["data"]["label_files"] == manifest["label_files"]
    assert results["data"]["rows"] == manifest["counts"]["rows"]
