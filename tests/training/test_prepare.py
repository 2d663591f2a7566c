"""Gold join and `zhenping prepare`: split files, counts, duplicates, stable splits."""

from __future__ import annotations

import hashlib
import json

import pytest
from typer.testing import CliRunner

from zhenping.model.normalize import normalize_text
from tests.training.corpus_fixtures import (
    HC3,
    NETEASE,
    WAIMAI,
    gold_record,
    make_tiny,
    write_csv_gz,
    write_gold,
)
from zhenping.training.cli import app
from zhenping.training.labels import gold_files, join_gold, read_gold
from zhenping.training.prepare import PrepareError, load_split, merge_duplicates, prepare, read_manifest
from zhenping.training.splits import SPLITS, split_of, split_of_normalized

runner = CliRunner()


def quiet(_msg: str) -> None:
    pass


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def tiny(tmp_path):
    return make_tiny(tmp_path)


# ------------------------------------------------------------------ join


def test_join_all_rows(tiny):
    root, gold, rows = tiny
    joined, report = join_gold(read_gold(gold_files(gold)), root)
    assert report.ok and report.summary() == "all ids joined"
    assert len(joined) == len(rows) == 72
    by_id = {r.id: r for r in joined}
    text, w, s, t = rows[f"{WAIMAI}:0"]
    assert by_id[f"{WAIMAI}:0"].text == text
    assert by_id[f"{WAIMAI}:0"].levels == (float(w), float(s), float(t))
    assert by_id[f"{HC3}:1"].source == "hc3plus_zh"


def test_join_reports_missing_changed_and_unknown(tmp_path):
    root, gold, rows = make_tiny(tmp_path)
    text, w, s, t = rows[f"{NETEASE}:0"]
    records = [
        gold_record(f"{WAIMAI}:0", *rows[f"{WAIMAI}:0"]),         # ok
        gold_record(f"{WAIMAI}:999", "不存在", 1, 1, 1),            # no such row
        gold_record(f"{NETEASE}:0", text + "改", w, s, t),          # text changed
        gold_record("waimai_10k/other.csv.gz:0", "x", 1, 1, 1),     # file not registered
        gold_record("cold/train.csv.gz:3", "x", 1, 1, 1),           # registered, not staged
    ]
    write_gold(gold / "gold_v1.jsonl", records)
    joined, report = join_gold(read_gold(gold_files(gold)), root)
    assert [r.id for r in joined] == [f"{WAIMAI}:0"]
    assert report.missing == [f"{WAIMAI}:999", "cold/train.csv.gz:3"]
    assert report.changed == [f"{NETEASE}:0"]
    assert report.unknown_file == ["waimai_10k/other.csv.gz:0"]
    assert not report.ok
    assert "2 missing" in report.summary() and "1 changed" in report.summary()


# ------------------------------------------------------------------ prepare


def test_prepare_writes_splits_and_manifest(tiny, tmp_path):
    root, gold, rows = tiny
    out = tmp_path / "out"
    manifest = prepare(corpora=root, gold=gold, out=out, echo=quiet)

    written = {s: read_jsonl(out / f"{s}.jsonl") for s in SPLITS}
    assert sum(len(v) for v in written.values()) == 72
    for s, recs in written.items():
        for r in recs:
            assert set(r) == {"id", "source", "text", "warmth", "substance", "template"}
            text, w, sub, t = rows[r["id"]]
            assert r["text"] == text
            assert (r["warmth"], r["substance"], r["template"]) == (
                round(w / 3, 6), round(sub / 3, 6), round(t / 3, 6))
            assert split_of(text) == s  # split depends on the normalised text only
    assert manifest["counts"]["rows"] == {s: len(written[s]) for s in SPLITS}
    assert manifest["counts"]["total"] == 72
    assert sum(manifest["counts"]["by_source"]["train"].values()) == len(written["train"])
    assert manifest["gold"] == {"records": 72, "joined": 72, "missing": [], "changed": [],
                                "unknown_file": []}
    gold_sha1 = hashlib.sha1((gold / "gold_v1.jsonl").read_bytes()).hexdigest()
    assert manifest["label_files"] == {"gold_v1.jsonl": gold_sha1}
    for s in SPLITS:
        assert manifest["output_files"][f"{s}.jsonl"] == hashlib.sha1(
            (out / f"{s}.jsonl").read_bytes()).hexdigest()
    levels = manifest["counts"]["levels"]["train"]["template"]
    assert sum(levels.values()) == len(written["train"])
    assert read_manifest(out) == manifest
    assert set(manifest["versions"]) >= {"python", "zhenping"}


def test_prepare_prints_tables(tiny, tmp_path):
    root, gold, _ = tiny
    lines = []
    prepare(corpora=root, gold=gold, out=tmp_path / "out", echo=lines.append)
    text = "\n".join(lines)
    assert "gold: 72 labels in 1 files, 72 joined" in text
    assert "rows per split:" in text
    assert "rows per source and split:" in text
    assert "waimai_10k" in text
    assert "level counts per axis and split" in text


def test_prepare_is_idempotent(tiny, tmp_path):
    root, gold, _ = tiny
    a, b = tmp_path / "a", tmp_path / "b"
    prepare(corpora=root, gold=gold, out=a, echo=quiet)
    prepare(corpora=root, gold=gold, out=b, echo=quiet)
    prepare(corpora=root, gold=gold, out=b, echo=quiet)  # rerun over its own output
    for name in ["train.jsonl", "validation.jsonl", "test.jsonl", "prepare_manifest.json"]:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_old_rows_keep_their_split_when_data_is_added(tmp_path):
    root, gold, rows = make_tiny(tmp_path, n_variants=2)
    before = tmp_path / "before"
    prepare(corpora=root, gold=gold, out=before, echo=quiet)
    old = {r["id"]: s for s in SPLITS for r in read_jsonl(before / f"{s}.jsonl")}

    extra = tmp_path / "more.jsonl"
    extra.write_text("".join(
        json.dumps({"text": f"新增评论{i}号,内容各不相同", "warmth": 1, "substance": 1,
                    "template": i % 4}, ensure_ascii=False) + "\n" for i in range(40)
    ), encoding="utf-8")
    after = tmp_path / "after"
    manifest = prepare(corpora=root, gold=gold, extra=[extra], out=after, echo=quiet)
    new = {r["id"]: s for s in SPLITS for r in read_jsonl(after / f"{s}.jsonl")}
    assert manifest["counts"]["total"] == len(old) + 40
    assert {k: new[k] for k in old} == old
    assert "more.jsonl" in manifest["label_files"]
    assert manifest["extra"][0]["rows"] == 40


def test_duplicates_are_merged_and_levels_averaged(tmp_path):
    root, gold, rows = make_tiny(tmp_path, n_variants=1)
    extra = tmp_path / "mine.jsonl"
    # Same comment as the gold row 沙发 in traditional/full-width spelling, and twice here.
    extra.write_text(
        json.dumps({"text": "沙發", "warmth": 2, "substance": 1, "template": 2}) + "\n"
        + json.dumps({"text": "  沙发 ", "warmth": 1, "substance": 0, "template": 3}) + "\n"
        + json.dumps({"text": "全新的一条", "warmth": 1, "substance": 1, "template": 1}) + "\n",
        encoding="utf-8",
    )
    lines = []
    manifest = prepare(corpora=root, gold=gold, extra=[extra], out=tmp_path / "out",
                       echo=lines.append)
    assert manifest["duplicates"] == {"groups": 1, "rows_merged": 3, "conflicting": 1, "empty": 0}
    assert manifest["counts"]["total"] == len(rows) + 1
    assert any("1 texts labelled more than once" in line for line in lines)
    split = split_of("沙发")
    recs = {r["id"]: r for r in read_jsonl(tmp_path / "out" / f"{split}.jsonl")}
    merged = recs[f"{WAIMAI}:0"]  # the gold row comes first and names the group
    assert merged["text"] == "沙发"
    assert merged["warmth"] == pytest.approx((1 + 2 + 1) / 3 / 3, abs=1e-6)
    assert merged["template"] == pytest.approx((3 + 2 + 3) / 3 / 3, abs=1e-6)


def test_merge_drops_texts_that_normalise_to_nothing():
    from zhenping.training.labels import LabelledText

    rows, stats = merge_duplicates([
        LabelledText("a", "s", "\u200b\u200b", (1.0, 0.0, 3.0)),
        LabelledText("b", "s", "好", (1.0, 1.0, 2.0)),
    ])
    assert [r.id for r in rows] == ["b"]
    assert stats["empty"] == 1


def test_join_problems_warn_or_stop_with_strict(tmp_path):
    root, gold, rows = make_tiny(tmp_path, n_variants=1)
    records = [gold_record(rid, *r) for rid, r in rows.items()]
    records.append(gold_record(f"{WAIMAI}:500", "gone", 1, 1, 1))
    write_gold(gold / "gold_v2.jsonl", records[-1:])
    lines = []
    manifest = prepare(corpora=root, gold=gold, out=tmp_path / "out", echo=lines.append)
    assert manifest["gold"]["missing"] == [f"{WAIMAI}:500"]
    assert manifest["counts"]["total"] == len(rows)
    assert any(line.startswith("warning: gold labels not joined: 1 missing") for line in lines)
    with pytest.raises(PrepareError, match="1 missing: waimai_10k/waimai_10k.csv.gz:500"):
        prepare(corpora=root, gold=gold, out=tmp_path / "out2", strict=True, echo=quiet)


def test_changed_corpus_text_is_reported(tmp_path):
    root, gold, rows = make_tiny(tmp_path, n_variants=1)
    n = sum(1 for rid in rows if rid.startswith(WAIMAI))
    ordered = [rows[f"{WAIMAI}:{i}"][0] for i in range(n)]
    ordered[0] = ordered[0] + "!"  # the corpus file changed under the labels
    write_csv_gz(root / WAIMAI, ["label", "review"], [["1", t] for t in ordered])
    manifest = prepare(corpora=root, gold=gold, out=tmp_path / "out", echo=quiet)
    assert manifest["gold"]["changed"] == [f"{WAIMAI}:0"]


def test_load_split_round_trip(tiny, tmp_path):
    root, gold, _ = tiny
    prepare(corpora=root, gold=gold, out=tmp_path / "out", echo=quiet)
    data = load_split(tmp_path / "out", "train")
    assert data.scores.shape == (len(data), 3)
    assert ((data.scores >= 0) & (data.scores <= 1)).all()
    assert len(data.texts) == len(data.sources) == len(data.ids)
    with pytest.raises(ValueError, match="split must be one of"):
        load_split(tmp_path / "out", "dev")
    with pytest.raises(FileNotFoundError, match="run `zhenping prepare"):
        load_split(tmp_path / "missing", "train")
    (tmp_path / "out" / "test.jsonl").write_text('{"id": "x"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"test.jsonl:1: not a prepared row"):
        load_split(tmp_path / "out", "test")


# ------------------------------------------------------------------ CLI


def test_cli_prepare(tiny, tmp_path):
    root, gold, _ = tiny
    out = tmp_path / "cli"
    result = runner.invoke(app, ["prepare", "--corpora", str(root), "--gold", str(gold),
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "rows per split:" in result.output
    assert (out / "train.jsonl").is_file() and (out / "prepare_manifest.json").is_file()


def test_cli_prepare_stops_on_bad_extra_rows(tiny, tmp_path):
    root, gold, _ = tiny
    bad = tmp_path / "bad.csv"
    bad.write_text("text,warmth,substance,template\n好,1,1,1\n坏,9,1,1\n", encoding="utf-8")
    args = ["prepare", "--corpora", str(root), "--gold", str(gold), "--extra", str(bad),
            "--out", str(tmp_path / "o")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.stderr == ("error: bad.csv: line 3: warmth: level must be an integer 0-3, got 9; "
                             "fix the row, or pass --skip-invalid to drop and list bad rows\n")
    assert not (tmp_path / "o" / "train.jsonl").exists()

    result = runner.invoke(app, args + ["--skip-invalid"])
    assert result.exit_code == 0, result.output
    assert "bad.csv: 1 rows read as levels, 1 invalid rows skipped" in result.output
    assert "skipped bad.csv: line 3" in result.output


def test_cli_prepare_strict_exit_code(tiny, tmp_path):
    root, gold, rows = tiny
    write_gold(gold / "gold_v2.jsonl", [gold_record(f"{HC3}:900", "gone", 1, 1, 1)])
    base = ["prepare", "--corpora", str(root), "--gold", str(gold), "--out", str(tmp_path / "o")]
    assert runner.invoke(app, base).exit_code == 0
    result = runner.invoke(app, base + ["--strict"])
    assert result.exit_code == 1
    assert "error: gold labels not joined: 1 missing: hc3plus_zh/val_hc3_QA.jsonl.gz:900" in result.output


def test_cli_prepare_extra_only_and_bad_scale(tmp_path):
    mine = tmp_path / "mine.jsonl"
    mine.write_text("".join(json.dumps({"text": f"评论{i}", "warmth": 0.5, "substance": 0.25,
                                        "template": 1.0}) + "\n" for i in range(10)),
                    encoding="utf-8")
    out = tmp_path / "o"
    result = runner.invoke(app, ["prepare", "--no-gold", "--extra", str(mine), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "mine.jsonl: 10 rows read as scores" in result.output
    recs = [r for s in SPLITS for r in read_jsonl(out / f"{s}.jsonl")]
    assert len(recs) == 10 and recs[0]["warmth"] == 0.5
    result = runner.invoke(app, ["prepare", "--no-gold", "--extra", str(mine), "--scale", "pct"])
    assert result.exit_code == 2
    assert "--scale must be one of ['auto', 'levels', 'scores'], got 'pct'" in result.output


def test_normalised_split_matches_training_splits(tiny, tmp_path):
    root, gold, rows = tiny
    prepare(corpora=root, gold=gold, out=tmp_path / "o", echo=quiet)
    for s in SPLITS:
        for r in read_jsonl(tmp_path / "o" / f"{s}.jsonl"):
            assert split_of_normalized(normalize_text(r["text"])) == s
