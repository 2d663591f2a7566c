"""One input contract for every reader (README: "What counts as a comment").

* ``.txt`` (and the web page): one comment per line; blank and white-space-only
  lines are skipped and counted.
* ``.jsonl``, ``.csv``, ``.parquet``, in ``zhenping score`` and ``score-dataset``:
  every row is kept, in order; a row whose text is null, missing, empty or white
  space only is written with null scores and counted.
* A line ends at ``\\n`` or ``\\r\\n`` only: a bare ``\\r`` stays in its comment (or
  CSV field, quoted or not), so it never turns one row into two.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from zhenping.model.axes import AXES
from zhenping.training.cli import app

# Eleven comments; the fourth holds a bare carriage return.
COMMENTS = ["沙发", "谢谢分享,挺有用的", "默认好评", "第一句\r第二句", "好听", "顶顶顶", "抱抱你", "哈哈哈",
            "物流很快", "兼职日结", "质量很好"]
NO_TEXT = [None, "", "   ", "\t"]


def score(*args):
    return CliRunner().invoke(app, ["score", *map(str, args), "--no-progress"])


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_txt_skips_blank_lines_counts_them_and_keeps_a_bare_cr(tmp_path, spread_model_dir):
    src = tmp_path / "c.txt"
    body = "\n".join(COMMENTS[:3]) + "\n\n   \n" + "\r\n".join(COMMENTS[3:]) + "\r\n\t\n"
    src.write_bytes(body.encode("utf-8"))
    out = tmp_path / "out.jsonl"
    result = score(src, "-o", out, "--model", spread_model_dir)
    assert result.exit_code == 0, result.output
    rows = read_jsonl(out)
    assert [r["text"] for r in rows] == COMMENTS  # 11 in, 11 out: the bare \r split nothing
    assert all(r[a] is not None for r in rows for a in AXES)
    assert "skipped 3 blank lines (lines 4, 5, 14)" in result.stderr


def _structured(tmp_path, fmt: str):
    """COMMENTS with the four kinds of no text between them, as ``fmt``; returns the path and the texts."""
    texts = COMMENTS[:2] + NO_TEXT + COMMENTS[2:]
    ids = list(range(1, len(texts) + 1))
    path = tmp_path / f"c.{fmt}"
    if fmt == "jsonl":
        lines = []
        for i, t in zip(ids, texts):
            lines.append(json.dumps({"id": i} if t is None else {"id": i, "text": t}, ensure_ascii=False))
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif fmt == "csv":
        # CSV has no null: the missing text is an empty cell. The bare \r is in an unquoted field.
        cells = ["" if t is None else (f'"{t}"' if "," in t or t.strip() == "" else t) for t in texts]
        path.write_bytes(("id,text\r\n" + "".join(f"{i},{c}\r\n" for i, c in zip(ids, cells))).encode("utf-8"))
        texts = ["" if t is None else t for t in texts]
    else:
        pq.write_table(pa.table({"id": ids, "text": pa.array(texts, pa.string())}), path)
    return path, texts


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_score_keeps_rows_without_text_with_null_scores(tmp_path, spread_model_dir, fmt):
    src, texts = _structured(tmp_path, fmt)
    out = tmp_path / "out.jsonl"
    result = score(src, "-o", out, "--model", spread_model_dir)
    assert result.exit_code == 0, result.output
    rows = read_jsonl(out)
    assert len(rows) == len(texts) == 15
    assert [r["id"] if fmt != "csv" else int(r["id"]) for r in rows] == list(range(1, 16))
    assert [r["text"] for r in rows] == texts
    for r in rows:
        blank = r["text"] is None or not r["text"].strip()
        assert all((r[a] is None) == blank for a in AXES), r
        assert (r["levels"] is None) == blank
    assert ("4 rows have no text (null, missing, empty or white space): written with null scores "
            "(rows 3, 4, 5, 6)") in result.stderr


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_score_dataset_keeps_rows_without_text_with_null_scores(tmp_path, tiny_model_dir, fmt):
    src, texts = _structured(tmp_path, fmt)
    out = tmp_path / "out.parquet"
    result = CliRunner().invoke(app, ["score-dataset", str(src), str(out), "--model", str(tiny_model_dir),
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == 15
    assert [r["text"] for r in rows] == texts  # the bare \r stays inside its field
    for r in rows:
        blank = r["text"] is None or not r["text"].strip()
        assert all((r[a] is None) == blank for a in AXES), r
        assert (r["action"] is None) == blank
    assert "4 rows have no text (null, empty or white space): written with null scores" in result.stderr


def test_csv_line_breaks_inside_quoted_fields_stay_in_the_field(tmp_path, tiny_model_dir):
    src = tmp_path / "q.csv"
    src.write_bytes('id,text\n1,"第一行\n第二行"\n2,"回车\r在中间"\n3,"结尾\r\n换行"\n'.encode("utf-8"))
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(app, ["score-dataset", str(src), str(out), "--model", str(tiny_model_dir),
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    assert [r["text"] for r in read_jsonl(out)] == ["第一行\n第二行", "回车\r在中间", "结尾\r\n换行"]
    out2 = tmp_path / "out2.jsonl"
    assert score(src, "-o", out2, "--model", tiny_model_dir).exit_code == 0
    assert [r["text"] for r in read_jsonl(out2)] == ["第一行\n第二行", "回车\r在中间", "结尾\r\n换行"]


def test_bare_cr_filter_across_block_boundaries():
    import io

    from zhenping.training.score_dataset import _BareCR

    class Tiny(io.BytesIO):
        def read(self, n=-1):  # one byte at a time: every \r lands at a block's end
            return super().read(1)

    data = "a\rb\r\nc\r".encode("utf-8")
    got = _BareCR(Tiny(data)).read()
    assert got == b"a" + _BareCR.MARK + b"b\r\nc" + _BareCR.MARK


def test_the_progress_bar_has_a_total(tmp_path, spread_model_dir, monkeypatch):
    from zhenping.model import commands

    totals = []
    real = commands.iter_chunks

    def spy(*args, **kw):
        for chunk in real(*args, **kw):
            totals.append((args[4] if len(args) > 4 else kw.get("reader")).total)
            yield chunk

    monkeypatch.setattr(commands, "iter_chunks", spy)
    src = tmp_path / "c.txt"
    src.write_text("\n".join(COMMENTS) + "\n", encoding="utf-8")
    assert score(src, "-o", tmp_path / "o.jsonl", "--model", spread_model_dir).exit_code == 0
    assert totals == [src.stat().st_size]
    src2, _ = _structured(tmp_path, "parquet")
    assert score(src2, "-o", tmp_path / "o2.jsonl", "--model", spread_model_dir).exit_code == 0
    assert totals[-1] == 15
