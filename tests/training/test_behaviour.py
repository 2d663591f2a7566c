"""Behavioural test suite machinery: loading cases, each check type passing and
failing on a fake scorer, the report, behaviour.json, the card section and the command.

These tests check the machinery, not the shipped model's pass rates."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from zhenping.model.scorer import CommentScores
from zhenping.training.behaviour import (
    CASES_FILE,
    CATEGORY_DESCRIPTIONS,
    Case,
    CaseError,
    card_section,
    case_from_dict,
    check_level,
    load_cases,
    parse_condition,
    report_table,
    run_suite,
    write_report,
)
from zhenping.training.cli import app


class FakeScorer:
    """Scores from a table (text -> (warmth, substance, template)); 0.5 for unknown texts."""

    axes = ("warmth", "substance", "template")
    model_id = "fake"
    model_version = "fake-1"
    backend = "fake"

    def __init__(self, table: dict[str, tuple[float, float, float]], thresholds=None) -> None:
        self.table = table
        self.level_thresholds = thresholds
        self.calls = 0

    def score(self, texts, batch_size: int = 32):
        self.calls += 1
        out = [CommentScores(*self.table.get(t, (0.5, 0.5, 0.5))) for t in texts]
        return [s.with_level_thresholds(self.level_thresholds) for s in out]


def mft(cid, text, **expect):
    return Case(id=cid, category="mft_x", kind="mft", text=text, expect=expect)


# ------------------------------------------------------------------ conditions


@pytest.mark.parametrize("cond,level,ok", [
    ("<=0", 0, True), ("<=0", 1, False), (">=2", 2, True), (">=2", 1, False),
    ("==1", 1, True), ("==1", 2, False), ("~2", 1, True), ("~2", 3, True), ("~2", 0, False), ("~0", 1, True),
])
def test_check_level(cond, level, ok):
    assert check_level(level, cond) is ok


@pytest.mark.parametrize("bad", ["<0", "<=4", "2", "~", ">= x", 3, None])
def test_bad_condition_is_refused(bad):
    with pytest.raises(ValueError, match="condition must be"):
        parse_condition(bad)


# ------------------------------------------------------------------ loading


def test_shipped_cases_load_and_cover_every_category():
    cases = load_cases()
    by_cat: dict[str, list[Case]] = {}
    for c in cases:
        by_cat.setdefault(c.category, []).append(c)
    assert set(by_cat) == set(CATEGORY_DESCRIPTIONS)
    for name, items in by_cat.items():
        kinds = {c.kind for c in items}
        assert len(kinds) == 1, name
        if name.startswith("mft_"):
            assert len(items) >= 25, name
        elif name.startswith(("inv_", "dir_")):
            assert len(items) >= 15, name
    assert all(c.variant and c.variant != c.text for c in cases if c.kind == "dir")
    # The "axes are distinct" table of the guidelines, with all three levels.
    guide = {c.text: c.expect for c in by_cat["guideline"] if len(c.expect) == 3}
    assert guide["加油加油!支持你!"] == {"warmth": "~2", "substance": "~0", "template": "~3"}
    assert guide["抱抱你,会好起来的"] == {"warmth": "~3", "substance": "~0", "template": "~1"}
    assert len(guide) == 6  # the five rows and the 抱抱你 note
    assert len(by_cat["guideline"]) >= 45


def test_case_file_errors_name_file_and_line(tmp_path):
    good = {"id": "a", "category": "c", "kind": "mft", "text": "沙发", "expect": {"template": ">=3"}}
    p = tmp_path / "cases.jsonl"
    for bad, message in [
        ("{not json", "not JSON"),
        (json.dumps({**good, "kind": "xyz"}), "kind must be one of"),
        (json.dumps({**good, "expect": {"tone": "<=0"}}), "unknown axis 'tone'"),
        (json.dumps({**good, "expect": {}}), "needs 'expect'"),
        (json.dumps({**good, "kind": "inv"}), "needs a non-empty 'variant'"),
        (json.dumps({**good, "kind": "dir", "variant": "x", "axis": "warmth", "direction": "sideways"}),
         "direction must be"),
        (json.dumps({**good, "kind": "inv", "variant": "x", "tolerance": 2}), "tolerance must be"),
        (json.dumps({**good, "colour": 1}), "unknown fields"),
        (json.dumps(good), "id 'a' already used on line 1"),
    ]:
        p.write_text(json.dumps(good, ensure_ascii=False) + "\n" + bad + "\n", encoding="utf-8")
        with pytest.raises(CaseError, match=message) as err:
            load_cases(p)
        assert f"{p}:2:" in str(err.value)
    with pytest.raises(FileNotFoundError):
        load_cases(tmp_path / "missing.jsonl")
    p.write_text("\n", encoding="utf-8")
    with pytest.raises(CaseError, match="holds no cases"):
        load_cases(p)


# ------------------------------------------------------------------ each check, passing and failing


def test_mft_passes_and_fails_on_levels():
    scorer = FakeScorer({"滚": (0.05, 0.1, 0.2), "抱抱": (0.6, 0.1, 0.2)})
    report = run_suite(scorer, [mft("ok", "滚", warmth="<=0"), mft("bad", "抱抱", warmth=">=3", substance="<=1")])
    cat = report["categories"]["mft_x"]
    assert (cat["cases"], cat["passed"], cat["pass_rate"]) == (2, 1, 0.5)
    [fail] = report["failures"]
    assert fail["id"] == "bad"
    assert fail["expected"] == {"warmth": ">=3", "substance": "<=1"}
    assert fail["got"]["warmth"] == {"level": 2, "score": 0.6}


def test_mft_reads_levels_through_the_scorers_thresholds():
    case = [mft("w", "谢谢", warmth=">=3")]
    assert run_suite(FakeScorer({"谢谢": (0.7, 0.5, 0.5)}), case)["passed"] == 0  # round(0.7*3) = 2
    calibrated = FakeScorer({"谢谢": (0.7, 0.5, 0.5)}, thresholds={"warmth": [0.2, 0.4, 0.65]})
    assert run_suite(calibrated, case)["passed"] == 1


def test_inv_passes_within_tolerance_and_fails_beyond():
    scorer = FakeScorer({"a": (0.5, 0.5, 0.5), "a!": (0.55, 0.45, 0.52), "b": (0.5, 0.5, 0.5),
                         "b!": (0.5, 0.5, 0.9)})
    cases = [Case("i1", "inv_x", "inv", "a", variant="a!", tolerance=0.1),
             Case("i2", "inv_x", "inv", "b", variant="b!", tolerance=0.1)]
    report = run_suite(scorer, cases)
    assert report["categories"]["inv_x"]["passed"] == 1
    [fail] = report["failures"]
    assert fail["id"] == "i2" and fail["variant"] == "b!"
    assert fail["got"]["template"] == pytest.approx(0.4)
    assert fail["levels_changed"] == ["template"]


@pytest.mark.parametrize("direction,delta,margin,ok", [
    ("down", -0.3, 0.02, True), ("down", -0.01, 0.02, False), ("down", 0.1, 0.02, False),
    ("up", 0.05, 0.02, True), ("up", 0.0, 0.02, False), ("up", 0.0, 0.0, True), ("up", -0.05, 0.0, False),
])
def test_dir_checks_direction_and_margin(direction, delta, margin, ok):
    scorer = FakeScorer({"x": (0.5, 0.5, 0.5), "y": (0.5 + delta, 0.5, 0.5)})
    case = Case("d", "dir_x", "dir", "x", variant="y", axis="warmth", direction=direction, margin=margin)
    report = run_suite(scorer, [case])
    assert report["passed"] == int(ok)
    if not ok:
        assert report["failures"][0]["got"] == {"warmth": pytest.approx(delta)}


def test_each_text_is_scored_once_in_one_call():
    scorer = FakeScorer({})
    seen = []
    orig = scorer.score
    scorer.score = lambda texts, batch_size=32: (seen.append(list(texts)), orig(texts))[1]
    cases = [mft("1", "a", warmth="~1"), mft("2", "a", template="~1"),
             Case("3", "inv_x", "inv", "a", variant="b")]
    run_suite(scorer, cases)
    assert seen == [["a", "b"]]


def test_scorer_returning_too_few_results_is_an_error():
    class Short(FakeScorer):
        def score(self, texts, batch_size=32):
            return super().score(texts)[:-1]

    with pytest.raises(RuntimeError, match="returned 1 results for 2 texts"):
        run_suite(Short({}), [mft("1", "a", warmth="~1"), mft("2", "b", warmth="~1")])


def test_shipped_suite_runs_on_a_fake_scorer():
    report = run_suite(FakeScorer({}))
    assert report["cases"] == len(load_cases())
    assert set(report["categories"]) == set(CATEGORY_DESCRIPTIONS)
    # A constant scorer is invariant to everything and moves nothing.
    assert report["categories"]["inv_name"]["pass_rate"] == 1.0
    assert report["categories"]["dir_insult"]["pass_rate"] == 0.0
    assert report["passed"] + len(report["failures"]) == report["cases"]


# ------------------------------------------------------------------ report, file, card


def test_report_file_table_and_card_section(tmp_path):
    scorer = FakeScorer({"滚": (0.05, 0.1, 0.2)}, thresholds={"warmth": [0.1, 0.5, 0.9]})
    report = run_suite(scorer, [mft("ok", "滚", warmth="<=0"), mft("bad", "沙发", template=">=3")])
    table = report_table(report)
    assert "| mft_x | mft |" in table and "| **all** | | | 2 | 1 | 50% |" in table
    path = write_report(report, tmp_path / "behaviour.json", scorer)
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert saved["model"] == {"id": "fake", "version": "fake-1", "backend": "fake", "level_mapping": "thresholds"}
    assert saved["cases_file"] == CASES_FILE.name and len(saved["cases_sha1"]) == 40
    assert saved["categories"]["mft_x"]["pass_rate"] == 0.5
    section = card_section(saved)
    assert section.startswith("## Behavioural tests")
    assert "calibrated level cut points" in section and "| mft_x |" in section


def test_card_shows_behaviour_and_levels_when_present(tmp_path):
    import numpy as np

    from zhenping.training.card import render_card, rerender_card
    from zhenping.training.evaluate import evaluate

    t = np.array([[0, 0, 0], [1 / 3, 1 / 3, 1 / 3], [2 / 3, 2 / 3, 2 / 3], [1, 1, 1]])
    metrics = evaluate(t, np.clip(t + 0.1, 0, 1), level_thresholds={"warmth": [0.1, 0.5, 0.95]})
    metrics["split"] = "test"
    sc = {"axes": ["warmth", "substance", "template"], "model_version": "v", "max_length": 8}
    card = render_card(sc, metrics, None, {})
    assert "### Levels" in card and "round → calibrated" in card and "## Behavioural tests" not in card
    report = run_suite(FakeScorer({}), [mft("1", "a", warmth="~1")])
    card = render_card(sc, metrics, None, {}, behaviour=report)
    assert "## Behavioural tests" in card
    assert card.index("### Levels") < card.index("## Behavioural tests") < card.index("## Intended use")
    # rerender_card picks behaviour.json up from the folder.
    (tmp_path / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    (tmp_path / "scorer_config.json").write_text(json.dumps(sc), encoding="utf-8")
    assert "## Behavioural tests" not in rerender_card(tmp_path)
    write_report(report, tmp_path / "behaviour.json")
    assert "## Behavioural tests" in rerender_card(tmp_path)
    assert "## Behavioural tests" in (tmp_path / "README.md").read_text(encoding="utf-8")


# ------------------------------------------------------------------ command


def test_behaviour_command(tiny_model_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    cases = tmp_path / "cases.jsonl"
    cases.write_text("\n".join(json.dumps(c, ensure_ascii=False) for c in [
        {"id": "a", "category": "mft_filler", "kind": "mft", "text": "沙发", "expect": {"template": "<=3"}},
        {"id": "b", "category": "mft_filler", "kind": "mft", "text": "顶", "expect": {"template": "<=0"}},
        {"id": "c", "category": "inv_width", "kind": "inv", "text": "OK", "variant": "ＯＫ"},
    ]) + "\n", encoding="utf-8")
    runner = CliRunner()
    r = runner.invoke(app, ["behaviour", "--model", str(model), "--cases", str(cases)])
    assert r.exit_code == 0, r.output
    assert "| mft_filler | mft |" in r.output and "| inv_width | inv |" in r.output
    saved = json.loads((model / "behaviour.json").read_text(encoding="utf-8"))
    assert saved["cases"] == 3 and saved["categories"]["inv_width"]["passed"] == 1  # NFKC: the same text
    assert saved["model"]["version"] == "tiny-test"
    out = tmp_path / "elsewhere.json"
    r = runner.invoke(app, ["behaviour", "--model", str(model), "--cases", str(cases), "--out", str(out)])
    assert r.exit_code == 0 and out.is_file()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x"}\n', encoding="utf-8")
    r = runner.invoke(app, ["behaviour", "--model", str(model), "--cases", str(bad)])
    assert r.exit_code == 1 and f"{bad}:1:" in r.output


def test_rebuilt_card_keeps_rows_per_split_without_the_data_folder(tmp_path):
    import numpy as np

    from zhenping.training.card import rerender_card
    from zhenping.training.evaluate import evaluate

    t = np.array([[0, 0, 0], [1, 1, 1]], dtype=float)
    metrics = evaluate(t, t)
    sc = {"axes": ["warmth", "substance", "template"], "model_version": "v", "max_length": 8,
          "label_files": {"gold_v1.jsonl": "a" * 40}}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    (tmp_path / "scorer_config.json").write_text(json.dumps(sc), encoding="utf-8")
    other = {"label_files": {"gold_v9.jsonl": "b" * 40}, "counts": {"rows": {"train": 1, "validation": 1, "test": 1}}}
    mine = {"label_files": sc["label_files"], "counts": {"rows": {"train": 80, "validation": 10, "test": 12}}}
    assert "| test | 12 |" in rerender_card(tmp_path, mine)
    card = rerender_card(tmp_path, other)  # other labels: their counts are not this model's
    assert "| test | 12 |" in card and "| test | 1 |" not in card
    metrics["data"] = {"rows": {"train": 70, "validation": 9, "test": 11}}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    assert "| test | 11 |" in rerender_card(tmp_path)
