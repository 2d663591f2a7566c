"""The gold labels against the shared corpora (skipped without ../shared).

What the tests expect is read from the label files themselves (how many files,
records and distinct sources), so that new label files do not break them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zhenping.training.labels import gold_files
from zhenping.training.prepare import prepare
from zhenping.training.splits import SPLITS

pytestmark = pytest.mark.real_data

RESULTS = Path(__file__).resolve().parents[2] / "training" / "results" / "baselines.json"


@pytest.fixture(scope="module")
def gold_on_disk():
    """Records, file names and sources counted straight from the gold files."""
    files = gold_files()
    records = []
    for f in files:
        with open(f, encoding="utf-8") as fh:
            records += [json.loads(line) for line in fh if line.strip()]
    sources = {r["id"].split("/", 1)[0] for r in records}
    return {"files": sorted(f.name for f in files), "records": len(records), "sources": sources}


@pytest.fixture(scope="module")
def real_manifest(tmp_path_factory):
    out = tmp_path_factory.mktemp("real") / "data"
    return prepare(out=out, echo=lambda _msg: None), out


def test_every_gold_label_joins(real_manifest, gold_on_disk):
    manifest, _ = real_manifest
    n = gold_on_disk["records"]
    assert n > 0
    assert manifest["gold"] == {"records": n, "joined": n, "missing": [], "changed": [],
                                "unknown_file": []}
    assert sorted(manifest["label_files"]) == gold_on_disk["files"]


def test_real_splits_have_expected_proportions(real_manifest, gold_on_disk):
    manifest, out = real_manifest
    rows = manifest["counts"]["rows"]
    total = manifest["counts"]["total"]
    n = gold_on_disk["records"]
    # every label is one row, except texts labelled twice, merged into one row each
    dup = manifest["duplicates"]
    assert total == n - dup["rows_merged"] + dup["groups"]
    assert 0 <= dup["rows_merged"] - dup["groups"] < 0.01 * n
    assert 0.77 < rows["train"] / total < 0.83
    assert 0.08 < rows["validation"] / total < 0.12
    assert 0.08 < rows["test"] / total < 0.12
    for s in SPLITS:
        with open(out / f"{s}.jsonl", encoding="utf-8") as fh:
            assert sum(1 for _ in fh) == rows[s]
    # every source with gold labels reaches the training split
    assert set(manifest["counts"]["by_source"]["train"]) == gold_on_disk["sources"]
    # the rarest levels are present in every split
    for s in SPLITS:
        assert manifest["counts"]["levels"][s]["warmth"]["3"] > 0
        assert manifest["counts"]["levels"][s]["template"]["3"] > 0


def test_committed_baselines_match_the_gold_labels(real_manifest):
    manifest, _ = real_manifest
    results = json.loads(RESULTS.read_text(encoding="utf-8"))
    assert results["data"]["label_files"] == manifest["label_files"]
    assert results["data"]["rows"] == manifest["counts"]["rows"]
