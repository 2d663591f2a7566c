"""zhenping score-dataset: the local engine on Parquet, JSONL and CSV, its errors,
and the ray engine on a local Ray giving the same rows."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from zhenping.model.axes import AXES
from zhenping.model.campaign.config import load_calibration
from zhenping.model.scorer import Scorer
from tests.helpers import BATCHING_TOL, TINY_TEXTS
from zhenping.training.score_dataset import CampaignStage, DatasetError, output_columns, score_dataset

LONG = "入住三晚,前台办理很快,房间干净,早餐不错,隔音略差。" * 30  # far over the tiny model's 64 tokens
TEXTS = [t for t in TINY_TEXTS for _ in range(2)] + ["沙发!", LONG, None, ""]
SCORE_COLUMNS = output_columns(AXES, [CampaignStage])


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The same rows as Parquet, JSONL and gzipped CSV, with extra columns to keep."""
    folder = tmp_path_factory.mktemp("datasets")
    table = pa.table({
        "comment_id": pa.array(range(len(TEXTS)), pa.int64()),
        "text": pa.array(TEXTS, pa.string()),
        "likedcount": pa.array([i * 7 for i in range(len(TEXTS))], pa.int64()),
    })
    pq.write_table(table, folder / "in.parquet")
    rows = table.to_pylist()
    (folder / "in.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    import pyarrow.csv as pacsv

    with pa.CompressedOutputStream(str(folder / "in.csv.gz"), "gzip") as out:
        pacsv.write_csv(table, out)
    return folder


@pytest.fixture(scope="module")
def local_out(inputs, tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "scored.parquet"
    summary = score_dataset(str(inputs / "in.parquet"), str(out), model_dir=tiny_model_dir, batch_size=4,
                            chunk_size=7, progress=False)
    return out, summary


def test_local_engine_keeps_rows_and_columns_and_adds_scores(local_out, tiny_model_dir):
    out, summary = local_out
    table = pq.read_table(out)
    assert summary["rows"] == len(TEXTS) and summary["engine"] == "local"
    assert summary["model"] == "model@tiny-test"
    assert table.column_names == ["comment_id", "text", "likedcount", *SCORE_COLUMNS]
    assert table["comment_id"].to_pylist() == list(range(len(TEXTS)))
    assert table["text"].to_pylist() == TEXTS
    assert table.schema.field("warmth").type == pa.float64()
    assert table.schema.field("warmth_level").type == pa.int8()
    assert table.schema.field("exact_copies").type == pa.int32()
    assert table.schema.field("truncated").type == pa.bool_()

    expected = Scorer.from_pretrained(tiny_model_dir).score([t for t in TEXTS if t])
    got = table.to_pylist()
    present = [r for r in got if r["text"]]  # a row without text (null or "") is kept, not scored
    for row, ref in zip(present, expected):
        for axis in AXES:
            assert row[axis] == pytest.approx(getattr(ref, axis), abs=BATCHING_TOL)
            assert row[f"{axis}_level"] == ref.levels[axis]
    assert [r["truncated"] for r in present] == [s.truncated for s in expected]
    assert present[TEXTS.index(LONG)]["truncated"] is True and not present[0]["truncated"]
    for blank in (None, ""):
        row = got[TEXTS.index(blank)]
        assert row["text"] == blank and all(row[c] is None for c in SCORE_COLUMNS)
    assert summary["unscored"] == 2


def test_copies_are_counted_in_file_order_and_share_a_cluster(local_out):
    rows = pq.read_table(local_out[0]).to_pylist()
    first, second, bang = rows[0], rows[1], rows[TEXTS.index("沙发!")]
    assert (first["text"], second["text"]) == ("沙发", "沙发")
    assert (first["exact_copies"], second["exact_copies"]) == (0, 1)
    assert bang["near_copies"] == 2 and bang["exact_copies"] == 0  # punctuation aside, the same text
    assert first["duplicate_cluster"] == second["duplicate_cluster"] == bang["duplicate_cluster"]
    # The second 沙发 has one exact copy and a cluster too small for a campaign score: its fused
    # template is the model's raised by the shipped fusion weight for exact copies (never lowered).
    exact_weight = load_calibration()["fusion"]["exact_weight"]
    assert second["template_fused"] == pytest.approx(1 - (1 - second["template"]) * 2.0 ** -exact_weight)
    assert second["template_fused"] >= second["template"]
    assert {r["action"] for r in rows if r["text"]} <= {"pass", "review", "fold"}
    assert len({r["duplicate_cluster"] for r in rows if r["text"]}) == len(TINY_TEXTS) + 1  # 沙发! joined 沙发; LONG alone


@pytest.mark.parametrize("name, out_name", [("in.jsonl", "out.jsonl"), ("in.csv.gz", "out.csv")])
def test_jsonl_and_csv_give_the_same_scores(inputs, local_out, tiny_model_dir, tmp_path, name, out_name):
    out = tmp_path / out_name
    score_dataset(str(inputs / name), str(out), model_dir=tiny_model_dir, batch_size=4, chunk_size=5, progress=False)
    if out_name.endswith(".jsonl"):
        rows = [json.loads(line) for line in out.read_text().splitlines()]
    else:
        import pyarrow.csv as pacsv

        rows = pacsv.read_csv(out).to_pylist()
    ref = pq.read_table(local_out[0]).to_pylist()
    assert len(rows) == len(ref)
    for row, want in zip(rows, ref):
        assert row["likedcount"] == want["likedcount"]
        if want["text"] is None and out_name.endswith(".csv"):
            continue  # CSV has no null text: the empty cell reads back as ""
        for axis in AXES:
            assert row[axis] == pytest.approx(want[axis], abs=BATCHING_TOL) if want[axis] is not None else row[axis] is None
        assert (row["duplicate_cluster"] or None) == want["duplicate_cluster"]  # CSV: null reads back as ""


def test_bad_inputs_are_named(inputs, tiny_model_dir, tmp_path):
    pq.write_table(pa.table({"content": ["好"]}), tmp_path / "no_text.parquet")
    with pytest.raises(DatasetError, match=r"no_text.parquet: expected a 'text' column, found \['content'\]"):
        score_dataset(str(tmp_path / "no_text.parquet"), str(tmp_path / "o.parquet"), model_dir=tiny_model_dir,
                      progress=False)
    pq.write_table(pa.table({"text": ["好"], "warmth": [1]}), tmp_path / "clash.parquet")
    with pytest.raises(DatasetError, match=r"already has column\(s\) \['warmth'\], which scoring adds"):
        score_dataset(str(tmp_path / "clash.parquet"), str(tmp_path / "o.parquet"), model_dir=tiny_model_dir,
                      progress=False)
    assert not (tmp_path / "o.parquet").exists() and not list(tmp_path.glob(".o.parquet*"))
    with pytest.raises(DatasetError, match="cannot tell the format from the name"):
        score_dataset(str(inputs / "in.parquet"), str(tmp_path / "o.xlsx"), model_dir=tiny_model_dir)
    with pytest.raises(DatasetError, match="nope.csv: no such file"):
        score_dataset(str(tmp_path / "nope.csv"), str(tmp_path / "o.csv"), model_dir=tiny_model_dir)

    from zhenping.training.cli import app

    result = CliRunner().invoke(app, ["score-dataset", str(tmp_path / "no_text.parquet"), str(tmp_path / "o.csv"),
                                      "--model", str(tiny_model_dir), "--no-progress"])
    assert result.exit_code == 2
    assert "expected a 'text' column, found ['content'] (use --text-column)" in result.output


# ------------------------------------------------------------------ ray


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason='the ray engine needs Ray Data: pip install "ray[data]"')
    root = str(Path(__file__).resolve().parents[2])  # the workers import this checkout
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": root}})
    yield ray
    ray.shutdown()


@pytest.mark.ray
@pytest.mark.slow
def test_ray_engine_gives_the_local_engines_rows(local_ray, inputs, local_out, tiny_model_dir, tmp_path):
    out = tmp_path / "ray.parquet"
    summary = score_dataset(str(inputs / "in.parquet"), str(out), engine="ray", model_dir=tiny_model_dir,
                            batch_size=4, num_actors=2, cpus_per_actor=0.5, progress=False)
    assert summary["rows"] == len(TEXTS) and summary["engine"] == "ray"
    ray_table, local_table = pq.read_table(out), pq.read_table(local_out[0])
    assert ray_table.column_names == local_table.column_names
    floats = {*AXES, "template_fused"}
    for name in local_table.column_names:
        got, want = ray_table[name].to_pylist(), local_table[name].to_pylist()
        if name in floats:  # batches pad differently: equal to float32 rounding
            assert got == [None if w is None else pytest.approx(w, abs=BATCHING_TOL) for w in want], name
        else:
            assert got == want, name

    # An explicit pool that leaves reading no CPU is refused, naming the fix.
    with pytest.raises(DatasetError, match="lower --num-actors or --cpus-per-actor"):
        score_dataset(str(inputs / "in.parquet"), str(tmp_path / "x.parquet"), engine="ray",
                      model_dir=tiny_model_dir, num_actors=2, cpus_per_actor=1.0, progress=False)


@pytest.mark.ray
@pytest.mark.slow
def test_ray_engine_defaults_fit_a_two_cpu_ray(local_ray, inputs, local_out, tiny_model_dir, tmp_path):
    # The plain command on a 2-CPU Ray: the scorer pool sizes itself (1 actor, 1 CPU left for reading).
    from zhenping.training.cli import app

    out = tmp_path / "out.parquet"
    result = CliRunner().invoke(app, ["score-dataset", str(inputs / "in.parquet"), str(out), "--engine", "ray",
                                      "--model", str(tiny_model_dir), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "ray: 2 CPUs; scorer actors: 1 to 1 (1 CPU each), one CPU left for reading" in result.stderr
    got, want = pq.read_table(out).to_pylist(), pq.read_table(local_out[0]).to_pylist()
    assert [r["text"] for r in got] == [r["text"] for r in want]
    for row, ref in zip(got, want):
        for axis in AXES:
            assert row[axis] == (None if ref[axis] is None else pytest.approx(ref[axis], abs=BATCHING_TOL))
