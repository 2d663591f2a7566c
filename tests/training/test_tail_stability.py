"""How far one trailing mark moves scores: the figures, and the command."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from zhenping.model.axes import AXES
from zhenping.training import tail_stability as ts
from zhenping.training.finetune import TAILS


class _MarkSensitive:
    """Warmth jumps by 0.3 when a text ends in 😊, every other axis stays put."""

    def score(self, texts):
        out = []
        for t in texts:
            w = 0.4 + (0.3 if t.endswith("😊") else 0.0)
            out.append(SimpleNamespace(warmth=w, substance=0.5, template=0.2,
                                       levels={"warmth": round(w * 3), "substance": 2, "template": 1}))
        return out


def test_stability_measures_the_change_one_mark_makes():
    texts = [f"第{i}条评论" for i in range(10)]
    r = ts.stability(_MarkSensitive(), texts, ("😊", "。"), seed=0)
    hit = sum(m.endswith("😊") for m in ts.marked_texts(texts, ("😊", "。"), seed=0))
    assert 0 < hit < 10
    assert r["warmth"] == {"mean_abs_change": round(0.3 * hit / 10, 4), "moved": hit / 10, "level_changed": hit / 10}
    for a in ("substance", "template"):
        assert r[a] == {"mean_abs_change": 0.0, "moved": 0.0, "level_changed": 0.0}


def test_the_unseen_marks_are_not_among_the_ones_training_adds():
    assert not set(ts.UNSEEN_TAILS) & set(TAILS)
    assert all(m.startswith("a") and m[1:] in ts.UNSEEN_TAILS for m in ts.marked_texts(["a "] * 20, ts.UNSEEN_TAILS, 3))


def test_the_command_writes_figures_per_model_and_names_bad_input(tiny_model_dir, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "validation.jsonl").write_text("".join(json.dumps({"id": str(i), "text": t}, ensure_ascii=False) + "\n"
                                                   for i, t in enumerate(["好听", "物流很快,包装完好", "抱抱你"])),
                                           encoding="utf-8")
    out = tmp_path / "res" / "tails"
    assert ts.main([f"tiny={tiny_model_dir}", "--data", str(data), "--out", str(out)]) == 0
    res = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert res["comments"] == 3 and set(res["models"]["tiny"]) == {"model", "seen", "unseen"}
    for kind in ("seen", "unseen"):
        for a in AXES:
            fig = res["models"]["tiny"][kind][a]
            assert 0.0 <= fig["moved"] <= 1.0 and fig["mean_abs_change"] >= 0.0
    assert "| tiny | seen |" in out.with_suffix(".md").read_text(encoding="utf-8")

    capsys.readouterr()
    assert ts.main(["tiny", "--data", str(data)]) == 2
    assert "expected NAME=FOLDER, got 'tiny'" in capsys.readouterr().err
    assert ts.main([f"x={tmp_path}", "--data", str(data)]) == 2
    assert "is not an exported model folder" in capsys.readouterr().err
    assert ts.main([f"tiny={tiny_model_dir}", "--data", str(tmp_path / "none")]) == 2
    assert "run `zhenping prepare` first" in capsys.readouterr().err


@pytest.mark.parametrize("spec", ["=x", "name="])
def test_empty_names_or_folders_are_refused(spec, capsys):
    assert ts.main([spec, "--data", "."]) == 2
    assert "expected NAME=FOLDER" in capsys.readouterr().err
