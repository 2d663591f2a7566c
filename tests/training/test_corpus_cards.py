"""The per-corpus data cards' gold-label figures follow the label files."""

from __future__ import annotations

import json

from zhenping.training import corpus_cards
from zhenping.training.corpus_cards import CARDS_DIR, gold_counts, refresh_card, stale_cards
from zhenping.training.labels import gold_files, read_gold

CARD = """# Data card: demo

| staged file | original | rows | columns | text field | gold labels |
|---|---|---|---|---|---|
| `a.csv.gz` | a.csv | 1,000 | id, text | `text` | 7 |
| `b.csv.gz` | b.csv | 20 | id, text | `text` | 0 |

| field | meaning |
|---|---|
| `text` | the comment |

- **Gold labels**: 7 rows of this corpus carry gold labels on all three axes (see labels.md).

| axis | 0 | 1 | 2 | 3 |
|---|---|---|---|---|
| warmth | 1 | 2 | 3 | 1 |
| substance | 0 | 7 | 0 | 0 |
| template | 7 | 0 | 0 | 0 |
"""


def _rec(file, row, w, s, t):
    return {"id": f"demo/{file}:{row}", "sha1": "0" * 40, "warmth": w, "substance": s, "template": t}


def test_refresh_card_sets_total_per_file_column_and_levels():
    records = [_rec("a.csv.gz", 1, 0, 1, 3), _rec("a.csv.gz", 2, 1, 1, 3), _rec("b.csv.gz", 5, 3, 2, 0),
               {"id": "other/x.csv.gz:1", "warmth": 2, "substance": 2, "template": 2}]
    counts = gold_counts(records)
    assert counts["demo"].total == 3 and counts["other"].total == 1
    new = refresh_card(CARD, counts["demo"])
    assert "- **Gold labels**: 3 rows of this corpus" in new
    assert "| `a.csv.gz` | a.csv | 1,000 | id, text | `text` | 2 |" in new
    assert "| `b.csv.gz` | b.csv | 20 | id, text | `text` | 1 |" in new
    assert "| warmth | 1 | 1 | 0 | 1 |" in new
    assert "| substance | 0 | 2 | 1 | 0 |" in new
    assert "| template | 1 | 0 | 0 | 2 |" in new
    assert "| `text` | the comment |" in new  # other tables untouched
    assert refresh_card(new, counts["demo"]) == new


def test_check_lists_a_stale_card_and_a_rewrite_fixes_it(tmp_path, monkeypatch, capsys):
    (tmp_path / "demo.md").write_text(CARD, encoding="utf-8")
    (tmp_path / "labels.md").write_text("no corpus figures here\n", encoding="utf-8")
    gold = tmp_path / "gold_v1.jsonl"
    gold.write_text("".join(json.dumps(r) + "\n" for r in [_rec("a.csv.gz", 1, 1, 1, 3)]), encoding="utf-8")
    monkeypatch.setattr("zhenping.training.labels.gold_files", lambda *a, **k: [gold])
    assert corpus_cards.main(["--cards", str(tmp_path), "--check"]) == 1
    assert "demo.md" in capsys.readouterr().out
    assert corpus_cards.main(["--cards", str(tmp_path)]) == 0
    assert "- **Gold labels**: 1 rows of this corpus" in (tmp_path / "demo.md").read_text(encoding="utf-8")
    assert corpus_cards.main(["--cards", str(tmp_path), "--check"]) == 0


def test_a_card_with_no_figures_for_a_corpus_that_now_has_labels_is_named(tmp_path, monkeypatch, capsys):
    (tmp_path / "demo.md").write_text("# Data card: demo\n\n- **Gold labels**: none; not sampled.\n", encoding="utf-8")
    (tmp_path / "other.md").write_text("# Data card: other\n\n- **Gold labels**: none; not sampled.\n", encoding="utf-8")
    gold = tmp_path / "gold_v1.jsonl"
    gold.write_text("".join(json.dumps(_rec("a.csv.gz", i, 1, 1, 3)) + "\n" for i in range(3)), encoding="utf-8")
    monkeypatch.setattr("zhenping.training.labels.gold_files", lambda *a, **k: [gold])
    for argv in (["--check"], []):
        assert corpus_cards.main(["--cards", str(tmp_path), *argv]) == 1
        err = capsys.readouterr().err
        assert "demo.md: 3 rows of this corpus carry gold labels, but the card states no gold-label figures" in err
        assert "other.md" not in err  # a corpus with no labels may say none
    assert (tmp_path / "demo.md").read_text(encoding="utf-8").endswith("none; not sampled.\n")  # left for a person


def test_missing_cards_folder_or_a_bad_label_line_is_a_usage_error(tmp_path, monkeypatch, capsys):
    assert corpus_cards.main(["--cards", str(tmp_path / "nope")]) == 2
    assert "not a folder" in capsys.readouterr().err
    gold = tmp_path / "gold_v1.jsonl"
    gold.write_text(json.dumps(_rec("a.csv.gz", 1, 1, 1, 3)) + "\n{not json\n", encoding="utf-8")
    monkeypatch.setattr("zhenping.training.labels.gold_files", lambda *a, **k: [gold])
    assert corpus_cards.main(["--cards", str(tmp_path)]) == 2
    assert "gold_v1.jsonl:2: not valid JSON" in capsys.readouterr().err


def test_committed_corpus_cards_match_the_label_files():
    counts = gold_counts(read_gold(gold_files()))
    stale = stale_cards(CARDS_DIR, counts)
    assert not stale, f"run `python -m zhenping.training.corpus_cards`: {[p.name for p in stale]}"
    # every labelled corpus has a card that states its figures
    stated = {p.stem for p in CARDS_DIR.glob("*.md") if "carry gold labels" in p.read_text(encoding="utf-8")}
    assert set(counts) <= stated
