"""User label files: formats, scale detection and a named reason for every bad row."""

from __future__ import annotations

import gzip
import json
import logging

import pytest

from zhenping.training.userdata import LabelFileError, load_labelled, read_labelled


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                    encoding="utf-8")
    return path


def rec(text="好评", w=1, s=0, t=3, **kw):
    return {"text": text, "warmth": w, "substance": s, "template": t, **kw}


# ------------------------------------------------------------------ good files


def test_jsonl_levels(tmp_path):
    p = write_jsonl(tmp_path / "mine.jsonl", [rec("沙发", 1, 0, 3, id="a"), rec("抱抱你", 3, 0, 1)])
    rows = load_labelled(p)
    assert [r.id for r in rows] == ["a", "mine.jsonl:2"]  # no id: file and line
    assert rows[0].levels == (1.0, 0.0, 3.0)
    assert rows[1].levels == (3.0, 0.0, 1.0)
    assert {r.source for r in rows} == {"mine.jsonl"}
    assert rows[0].text == "沙发"


def test_jsonl_scores_are_converted_to_levels(tmp_path):
    p = write_jsonl(tmp_path / "s.jsonl", [rec("a", 0.5, 1.0, 0.0), rec("b", 0.25, 0, 1)])
    lf = read_labelled(p)
    assert lf.scale == "scores"
    assert lf.rows[0].levels == (1.5, 3.0, 0.0)
    assert lf.rows[1].levels == (0.75, 0.0, 3.0)


def test_all_zero_one_values_read_as_levels_unless_told(tmp_path):
    p = write_jsonl(tmp_path / "z.jsonl", [rec("a", 0, 1, 1), rec("b", 1, 0, 0)])
    assert read_labelled(p).scale == "levels"
    assert load_labelled(p)[0].levels == (0.0, 1.0, 1.0)
    scored = read_labelled(p, scale="scores")
    assert scored.scale == "scores"
    assert scored.rows[0].levels == (0.0, 3.0, 3.0)


def test_source_column_and_gz(tmp_path):
    p = tmp_path / "mine.jsonl.gz"
    with gzip.open(p, "wt", encoding="utf-8") as fh:
        fh.write(json.dumps(rec("好", source="weibo", id=7)) + "\n\n")  # blank line ignored
    rows = load_labelled(p)
    assert rows[0].source == "weibo"
    assert rows[0].id == "7"


def test_csv_with_bom_multiline_field_and_tsv(tmp_path):
    p = tmp_path / "mine.csv"
    p.write_bytes(
        "\ufefftext,warmth,substance,template,id\n"
        '"第一行\n第二行",2,1,0,x1\n'
        "好听,1,1,2,x2\n".encode("utf-8")
    )
    rows = load_labelled(p)
    assert [r.id for r in rows] == ["x1", "x2"]
    assert rows[0].text == "第一行\n第二行"
    assert rows[1].levels == (1.0, 1.0, 2.0)

    t = tmp_path / "mine.tsv"
    t.write_text("text\twarmth\tsubstance\ttemplate\n好听\t0.5\t0.5\t1\n", encoding="utf-8")
    lf = read_labelled(t)
    assert lf.scale == "scores"
    assert lf.rows[0].levels == (1.5, 1.5, 3.0)
    assert lf.rows[0].id == "mine.tsv:2"


def test_parquet(tmp_path):
    import pandas as pd

    p = tmp_path / "mine.parquet"
    pd.DataFrame({"text": ["沙发", "抱抱你"], "warmth": [1, 3], "substance": [0, 0],
                  "template": [3, 1]}).to_parquet(p)
    lf = read_labelled(p)
    assert lf.scale == "levels"
    assert [r.levels for r in lf.rows] == [(1.0, 0.0, 3.0), (3.0, 0.0, 1.0)]
    assert lf.rows[1].id == "mine.parquet:1"  # 0-based row index
    assert lf.sha1 and len(lf.sha1) == 40


def test_hf_dataset_saved_to_disk(tmp_path):
    import datasets

    ds = datasets.Dataset.from_dict(
        {"text": ["沙发", "好听", ""], "warmth": [1, 1, 1], "substance": [0, 1, 0],
         "template": [3, 2, 3]}
    )
    ds.save_to_disk(str(tmp_path / "ds"))
    with pytest.raises(LabelFileError) as err:
        load_labelled(tmp_path / "ds")
    assert "ds: row 2: empty text" in str(err.value)
    lf = read_labelled(tmp_path / "ds", skip_invalid=True)
    assert [r.text for r in lf.rows] == ["沙发", "好听"]
    assert [str(p) for p in lf.skipped] == ["ds: row 2: empty text"]

    dd = datasets.DatasetDict({"train": ds.select([0]), "test": ds.select([1])})
    dd.save_to_disk(str(tmp_path / "dd"))
    rows = load_labelled(tmp_path / "dd")
    assert [r.id for r in rows] == ["dd:test:0", "dd:train:0"] or [r.id for r in rows] == [
        "dd:train:0", "dd:test:0"]
    assert [r.text for r in rows] == ["沙发", "好听"]


def test_hf_dataset_from_local_data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "hfdata"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [rec("沙发"), rec("抱抱你", 3, 0, 1)])
    rows = load_labelled(folder)
    assert sorted(r.text for r in rows) == ["抱抱你", "沙发"]


def test_missing_local_file_is_not_taken_for_a_dataset_name(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_labelled(tmp_path / "nope.jsonl")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_labelled("./labels.csv")


def test_unsupported_extension(tmp_path):
    p = tmp_path / "labels.xlsx"
    p.write_bytes(b"x")
    with pytest.raises(ValueError, match="unsupported file type"):
        load_labelled(p)


def test_bad_scale_argument(tmp_path):
    p = write_jsonl(tmp_path / "a.jsonl", [rec()])
    with pytest.raises(ValueError, match=r"scale must be one of \['auto', 'levels', 'scores'\], got 'x'"):
        load_labelled(p, scale="x")


# ------------------------------------------------------------------ bad rows


def test_every_bad_jsonl_row_is_named(tmp_path):
    p = tmp_path / "bad.jsonl"
    lines = [
        json.dumps(rec("好")),                                  # 1 ok
        "{not json",                                            # 2
        json.dumps(rec("")),                                    # 3 empty text
        json.dumps({"warmth": 1, "substance": 1, "template": 1}),  # 4 missing text column
        json.dumps(rec("a", w=5)),                              # 5 level out of range
        json.dumps(rec("b", s="2")),                            # 6 wrong type
        json.dumps(rec("c", t=None)),                           # 7 missing value
        json.dumps(rec(123)),                                   # 8 text not a string
        "[1, 2]",                                               # 9 not an object
        json.dumps(rec("d", w=True)),                           # 10 boolean
        json.dumps(rec("e", w=-1)),                             # 11 below range
        '{"text": "f", "warmth": NaN, "substance": 1, "template": 1}',  # 12 NaN
        json.dumps(rec("g", id="dup")),                         # 13 ok
        json.dumps(rec("h", id="dup")),                         # 14 duplicate id
        json.dumps(rec("   ")),                                 # 15 blank text
        '{"text": "\\ud800x", "warmth": 1, "substance": 1, "template": 1}',  # 16 lone surrogate
    ]
    data = ("\n".join(lines) + "\n").encode("utf-8")
    data += b'{"text": "\xff\xfe", "warmth": 1, "substance": 1, "template": 1}\n'  # 17 bad UTF-8
    p.write_bytes(data)
    with pytest.raises(LabelFileError) as err:
        load_labelled(p)
    msg = str(err.value)
    assert msg.startswith("bad.jsonl: 15 of 17 rows are invalid:")
    expected = [
        "bad.jsonl: line 2: not valid JSON",
        "bad.jsonl: line 3: empty text",
        "bad.jsonl: line 4: missing column(s) ['text']",
        "bad.jsonl: line 5: warmth: level must be an integer 0-3, got 5",
        "bad.jsonl: line 6: substance: expected a number, got str '2'",
        "bad.jsonl: line 7: template: missing value",
        "bad.jsonl: line 8: text must be a string, got int 123",
        "bad.jsonl: line 9: expected a JSON object, got list",
        "bad.jsonl: line 10: warmth: expected a number, got boolean True",
        "bad.jsonl: line 11: warmth: level must be an integer 0-3, got -1",
        "bad.jsonl: line 12: warmth: value is NaN",
        "bad.jsonl: line 14: duplicate id 'dup' (first at line 13)",
        "bad.jsonl: line 15: empty text",
        "bad.jsonl: line 16: text has broken encoding",
        "bad.jsonl: line 17: invalid UTF-8 bytes at byte 10",
    ]
    for e in expected:
        assert e in msg, e
    assert "--skip-invalid" in msg
    assert len(err.value.problems) == 15
    assert err.value.problems[0].where == "line 2"


def test_skip_invalid_reports_what_was_skipped(tmp_path, caplog):
    p = tmp_path / "bad.jsonl"
    p.write_text(json.dumps(rec("好")) + "\n{oops\n" + json.dumps(rec("x", w=9)) + "\n",
                 encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="zhenping.training.userdata"):
        lf = read_labelled(p, skip_invalid=True)
    assert [r.text for r in lf.rows] == ["好"]
    assert [p.where for p in lf.skipped] == ["line 2", "line 3"]
    assert "bad.jsonl: 1 rows read as levels, 2 invalid rows skipped" == lf.summary()
    assert "skipped 2 invalid rows" in caplog.text
    assert "bad.jsonl: line 3: warmth: level must be an integer 0-3, got 9" in caplog.text


def test_only_first_20_problems_are_quoted(tmp_path):
    p = write_jsonl(tmp_path / "many.jsonl", [rec("", 1, 1, 1) for _ in range(25)] + [rec("ok")])
    with pytest.raises(LabelFileError) as err:
        load_labelled(p)
    msg = str(err.value)
    assert "many.jsonl: 25 of 26 rows are invalid:" in msg
    assert "line 20: empty text" in msg
    assert "line 21: empty text" not in msg
    assert "... and 5 more" in msg
    assert len(err.value.problems) == 25


def test_no_usable_rows_even_when_skipping(tmp_path):
    p = write_jsonl(tmp_path / "empty.jsonl", [rec("")])
    with pytest.raises(LabelFileError, match=r"empty.jsonl: no usable labelled rows \(1 invalid rows skipped\)"):
        load_labelled(p, skip_invalid=True)


def test_csv_bad_rows_with_physical_line_numbers(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_bytes(
        b"text,warmth,substance,template\n"   # 1
        b'"two\nlines",1,1,1\n'               # 2-3 ok
        b",1,1,1\n"                           # 4 empty text
        b"a,4,1,1\n"                          # 5 out of range
        b"b,x,1,1\n"                          # 6 wrong type
        b"c,nan,1,1\n"                        # 7 NaN
        b"d,1,1\n"                            # 8 too few fields
        b"\xe5\xa5\xbd\xff,1,1,1\n"           # 9 invalid UTF-8
        b"e,1,,1\n"                           # 10 empty cell
        b'"multi\nline",7,1,1\n'              # 11-12 out of range
    )
    with pytest.raises(LabelFileError) as err:
        load_labelled(p)
    got = [str(x) for x in err.value.problems]
    assert got == [
        "bad.csv: line 4: empty text",
        "bad.csv: line 5: warmth: level must be an integer 0-3, got 4",
        "bad.csv: line 6: warmth: expected a number, got str 'x'",
        "bad.csv: line 7: warmth: value is NaN",
        "bad.csv: line 8: expected 4 fields, found 3",
        "bad.csv: line 9: invalid UTF-8 bytes at byte 3 of the line (b'\\xff,1,')",
        "bad.csv: line 10: substance: missing value",
        "bad.csv: lines 11-12: warmth: level must be an integer 0-3, got 7",
    ]


def test_csv_missing_column_stops_even_with_skip_invalid(tmp_path):
    p = tmp_path / "cols.csv"
    p.write_text("content,warmth,substance\n好,1,1\n", encoding="utf-8")
    with pytest.raises(LabelFileError) as err:
        load_labelled(p, skip_invalid=True)
    assert str(err.value) == (
        "cols.csv: missing column(s) ['text', 'template']; expected columns "
        "['text', 'warmth', 'substance', 'template'] (optional ['id', 'source']), "
        "found ['content', 'warmth', 'substance']"
    )


def test_parquet_bad_rows_use_row_index(tmp_path):
    import numpy as np
    import pandas as pd

    p = tmp_path / "bad.parquet"
    pd.DataFrame({"text": ["ok", None, "x"], "warmth": [1, 1, np.nan],
                  "substance": [0, 0, 0], "template": [3, 3, 3]}).to_parquet(p)
    with pytest.raises(LabelFileError) as err:
        load_labelled(p)
    assert [str(x) for x in err.value.problems] == [
        "bad.parquet: row 1: missing text",
        "bad.parquet: row 2: warmth: missing value",  # pandas NaN is stored as null
    ]


def test_parquet_missing_column(tmp_path):
    import pandas as pd

    p = tmp_path / "cols.parquet"
    pd.DataFrame({"text": ["ok"], "warmth": [1]}).to_parquet(p)
    with pytest.raises(LabelFileError, match=r"missing column\(s\) \['substance', 'template'\]"):
        load_labelled(p)


def test_mixed_scale_file_says_how_it_was_read(tmp_path):
    # Mostly levels with one fractional value: read as levels, the 0.5 is the bad row.
    p = write_jsonl(tmp_path / "mixed.jsonl",
                    [rec("a", 2, 3, 0), rec("b", 3, 2, 1), rec("c", 0.5, 1, 1)])
    with pytest.raises(LabelFileError) as err:
        load_labelled(p)
    (problem,) = err.value.problems
    assert problem.where == "line 3"
    assert problem.reason.startswith("warmth: level must be an integer 0-3, got 0.5 (the file was "
                                     "read as levels: 4 values fit only levels 0-3, 1 only scores")
    assert "--scale" in problem.reason
    # Told it is scores, the levels above 1 are the bad rows instead.
    with pytest.raises(LabelFileError) as err:
        load_labelled(p, scale="scores")
    assert [x.where for x in err.value.problems] == ["line 1", "line 2"]
    assert "score must be in [0, 1], got 2" in err.value.problems[0].reason
