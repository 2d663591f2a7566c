"""`zhenping score`: every input format, stdin, Parquet output, and bad input."""

from __future__ import annotations

import csv
import gzip
import json

import pytest
from typer.testing import CliRunner

from zhenping.model.commands import iter_chunks
from tests.helpers import BATCHING_TOL, TINY_TEXTS
from zhenping.training.cli import app

# Rows without text follow the input contract, tested in tests/model/test_input_contract.py.
TEXTS = TINY_TEXTS[:6] + ["第二行\t有制表符"]


@pytest.fixture(scope="module")
def expected(spread_scorer):
    return [s.as_dict() for s in spread_scorer.score(TEXTS)]


def run(*args, input=None):
    return CliRunner().invoke(app, ["score", *map(str, args), "--no-progress"], input=input)


def read_jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def check_scores(rows: list[dict], expected: list[dict]) -> None:
    assert [r["text"] for r in rows] == TEXTS
    for row, exp in zip(rows, expected):
        for axis, value in exp.items():
            assert row[axis] == pytest.approx(value, abs=BATCHING_TOL)
        assert row["levels"] == {a: min(3, max(0, round(row[a] * 3))) for a in exp}


def test_txt_to_stdout(tmp_path, spread_model_dir, expected):
    src = tmp_path / "comments.txt"
    src.write_text("".join(t + "\n" for t in TEXTS), encoding="utf-8")
    result = run(src, "--model", spread_model_dir, "--batch-size", 3)
    assert result.exit_code == 0, result.stderr
    rows = read_jsonl(result.stdout)
    check_scores(rows, expected)
    assert list(rows[0]) == ["text", "warmth", "substance", "template", "levels", "truncated"]
    assert not any(r["truncated"] for r in rows)


def test_jsonl_keeps_other_fields_and_renames_clashes(tmp_path, spread_model_dir, expected):
    src = tmp_path / "comments.jsonl.gz"
    with gzip.open(src, "wt", encoding="utf-8") as fh:
        for i, t in enumerate(TEXTS):
            fh.write(json.dumps({"id": f"c{i}", "text": t, "warmth": 0.5, "meta": {"likes": i}}, ensure_ascii=False) + "\n")
            if i == 2:
                fh.write("\n")  # a blank line is not a row
    out = tmp_path / "scores.jsonl"
    result = run(src, "-o", out, "--model", spread_model_dir)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr.strip().startswith(f"scored {len(TEXTS)} comments with model (torch) -> {out}")
    rows = read_jsonl(out.read_text(encoding="utf-8"))
    check_scores(rows, expected)
    assert [r["id"] for r in rows] == [f"c{i}" for i in range(len(TEXTS))]
    assert rows[3]["meta"] == {"likes": 3}
    assert rows[0]["input_warmth"] == 0.5  # the input's own "warmth" (a gold label, say) is kept aside
    assert list(rows[0]) == ["id", "input_warmth", "meta", "text", "warmth", "substance", "template", "levels",
                             "truncated"]


def test_csv_with_chunks(tmp_path, spread_model_dir, expected):
    src = tmp_path / "comments.csv"
    with open(src, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "text"])
        for i, t in enumerate(TEXTS):
            w.writerow([i, t])
    result = run(src, "--model", spread_model_dir, "--chunk-size", 3)
    assert result.exit_code == 0, result.stderr
    rows = read_jsonl(result.stdout)
    check_scores(rows, expected)
    assert [r["id"] for r in rows] == [str(i) for i in range(len(TEXTS))]


def test_parquet_in_and_out(tmp_path, spread_model_dir, expected):
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "comments.parquet"
    pq.write_table(pa.table({"id": list(range(len(TEXTS))), "text": TEXTS}), src)
    out = tmp_path / "scores.parquet"
    result = run(src, "-o", out, "--model", spread_model_dir, "--chunk-size", 4)
    assert result.exit_code == 0, result.stderr
    table = pq.read_table(out)
    assert table.column_names == ["id", "text", "warmth", "substance", "template", "levels", "truncated"]
    rows = table.to_pylist()
    check_scores(rows, expected)
    assert [r["id"] for r in rows] == list(range(len(TEXTS)))


def test_stdin(spread_model_dir, expected):
    result = run("-", "--model", spread_model_dir, input="".join(t + "\n" for t in TEXTS))
    assert result.exit_code == 0, result.stderr
    check_scores(read_jsonl(result.stdout), expected)
    jsonl = "".join(json.dumps({"text": t}) + "\n" for t in TEXTS)
    result = run("-", "--format", "jsonl", "--model", spread_model_dir, input=jsonl)
    assert result.exit_code == 0, result.stderr
    check_scores(read_jsonl(result.stdout), expected)


def test_a_long_comment_is_scored_and_marked_truncated(spread_model_dir):
    review = "入住三晚,前台办理很快,房间干净,早餐不错,隔音略差,停车收费。" * 100  # 3,300 characters
    result = run("-", "--model", spread_model_dir, input=f"还行\n{review}\n")
    assert result.exit_code == 0, result.stderr
    rows = read_jsonl(result.stdout)
    assert [r["truncated"] for r in rows] == [False, True]
    assert all(0 <= r["warmth"] <= 1 for r in rows)


def test_max_length_option_reads_more_or_less_of_a_comment(spread_model_dir):
    review = "入住三晚,前台办理很快,房间干净,早餐不错,隔音略差,停车收费。"  # 31 characters
    text = review * 3  # 93 characters: more than the model's 64 tokens
    rows = {n: read_jsonl(run("-", "--model", spread_model_dir, *(["--max-length", n] if n else []),
                              input=f"{text}\n").stdout)[0] for n in (None, 20, 66)}
    assert rows[None]["truncated"] and rows[20]["truncated"] and rows[66]["truncated"]
    assert rows[20]["warmth"] != pytest.approx(rows[None]["warmth"], abs=1e-6)
    short = read_jsonl(run("-", "--model", spread_model_dir, input=f"{review[:18]}\n").stdout)[0]
    assert rows[20]["warmth"] == pytest.approx(short["warmth"], abs=BATCHING_TOL)  # 18 characters + 2 tokens
    result = run("-", "--model", spread_model_dir, "--max-length", 67, input="好评\n")
    assert result.exit_code == 2
    assert result.stderr == ("error: max_length 67 is more than the 66 tokens this model has positions for "
                             "(its max_position_embeddings is 66)\n")


def test_text_field_option(tmp_path, spread_model_dir, expected):
    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps({"content": t}) + "\n" for t in TEXTS), encoding="utf-8")
    result = run(src, "--model", spread_model_dir, "--text-field", "content")
    assert result.exit_code == 0, result.stderr
    check_scores(read_jsonl(result.stdout), expected)


def test_missing_text_column_is_named(tmp_path, spread_model_dir):
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "c.csv"
    src.write_text("id,content\n1,好评\n", encoding="utf-8")
    result = run(src, "--model", spread_model_dir)
    assert result.exit_code == 2
    assert result.stderr == f"error: {src}: expected a 'text' column, found ['id', 'content'] (use --text-field)\n"
    assert result.stdout == ""

    pq_src = tmp_path / "c.parquet"
    pq.write_table(pa.table({"id": [1], "body": ["好评"]}), pq_src)
    result = run(pq_src, "--model", spread_model_dir)
    assert result.exit_code == 2
    assert result.stderr == f"error: {pq_src}: expected a 'text' column, found ['id', 'body'] (use --text-field)\n"

    # A JSONL record without the field has no text: kept with null scores, and said so
    # (tests/model/test_input_contract.py); a wrong field name shows as every row unscored.
    js = tmp_path / "c.jsonl"
    js.write_text('{"text": "好评"}\n{"id": 2, "body": "差评"}\n', encoding="utf-8")
    result = run(js, "--model", spread_model_dir)
    assert result.exit_code == 0
    assert "1 rows have no text (null, missing, empty or white space): written with null scores (rows 2)" in result.stderr


def test_bad_rows_are_named(tmp_path, spread_model_dir):
    js = tmp_path / "c.jsonl"
    js.write_text('{"text": "好评"}\n{"text": \n', encoding="utf-8")
    result = run(js, "--model", spread_model_dir)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {js} line 2: not valid JSON (")
    js.write_text('{"text": "好评"}\n{"text": 7}\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = run(js, "-o", out, "--model", spread_model_dir)
    assert result.stderr == f"error: {js} line 2: 'text' must be a string, got int\n"
    assert not out.exists()  # no half-written output
    assert list(tmp_path.glob(".out.jsonl.tmp-*")) == []
    js.write_text('["好评"]\n', encoding="utf-8")
    result = run(js, "--model", spread_model_dir)
    assert result.stderr == f"error: {js} line 1: expected a JSON object, got list\n"


def test_bad_file_and_model(tmp_path, spread_model_dir):
    result = run(tmp_path / "nope.txt", "--model", spread_model_dir)
    assert result.exit_code == 2
    assert result.stderr == f"error: {tmp_path / 'nope.txt'}: no such file\n"
    odd = tmp_path / "c.xlsx"
    odd.write_text("x", encoding="utf-8")
    result = run(odd, "--model", spread_model_dir)
    assert result.exit_code == 2
    assert "cannot tell the format from the file name" in result.stderr
    ok = tmp_path / "c.txt"
    ok.write_text("好评\n", encoding="utf-8")
    result = run(ok, "--model", tmp_path / "no-model")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: model directory '{tmp_path / 'no-model'}' does not exist")


def test_iter_chunks_streams(tmp_path):
    src = tmp_path / "c.txt"
    src.write_text("".join(f"{i}\n" for i in range(10)), encoding="utf-8")
    chunks = list(iter_chunks(str(src), chunk_size=4))
    assert [len(c) for c in chunks] == [4, 4, 2]
    assert chunks[2] == [{"text": "8"}, {"text": "9"}]
