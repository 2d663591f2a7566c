"""Weighted quality ranking."""

from __future__ import annotations

import math

import pytest

from zhenping.model.ranking import DEFAULT_WEIGHTS, check_weights, quality, rank
from zhenping.model.scorer import CommentScores

HEARTFELT = {"id": "a", "warmth": 0.9, "substance": 0.8, "template": 0.1}
STOCK = {"id": "b", "warmth": 0.4, "substance": 0.1, "template": 0.9}
INFORMATIVE = {"id": "c", "warmth": 0.3, "substance": 0.9, "template": 0.2}


def test_default_ranking_puts_warm_substantial_comments_first():
    ranked = rank([STOCK, INFORMATIVE, HEARTFELT])
    assert [(r.rank, r.comment["id"]) for r in ranked] == [(1, "a"), (2, "c"), (3, "b")]
    assert [r.index for r in ranked] == [2, 1, 0]
    assert ranked[0].quality == pytest.approx(0.9 + 0.8 - 0.1)
    assert ranked[2].quality == pytest.approx(0.4 + 0.1 - 0.9)


def test_weights_change_the_order():
    by_substance = rank([HEARTFELT, INFORMATIVE], {"substance": 1.0})
    assert [r.comment["id"] for r in by_substance] == ["c", "a"]
    stock_first = rank([HEARTFELT, STOCK], {"template": 1.0})
    assert [r.comment["id"] for r in stock_first] == ["b", "a"]


def test_fused_template_score_replaces_the_model_one():
    pasted = dict(INFORMATIVE, id="pasted", template_fused=0.95)
    ranked = rank([pasted, INFORMATIVE])
    assert [r.comment["id"] for r in ranked] == ["c", "pasted"]
    assert quality(pasted, DEFAULT_WEIGHTS) == pytest.approx(0.3 + 0.9 - 0.95)
    assert quality(dict(INFORMATIVE, template_fused=None), DEFAULT_WEIGHTS) == pytest.approx(0.3 + 0.9 - 0.2)


def test_ties_keep_input_order_and_objects_work():
    same = [CommentScores(0.5, 0.5, 0.5) for _ in range(4)]
    assert [r.index for r in rank(same)] == [0, 1, 2, 3]
    assert rank([]) == []


@pytest.mark.parametrize(
    "weights, message",
    [
        ({"warmth": 1, "humour": 2}, "weights has unknown axis 'humour'; axes are warmth, substance, template"),
        ({"warmth": math.inf}, "weights.warmth must be a finite number, got inf"),
        ({"warmth": "1"}, "weights.warmth must be a finite number, got '1'"),
        ({"warmth": True}, "weights.warmth must be a finite number, got True"),
        ({"substance": 1e6}, "weights.substance must be between -1000 and 1000, got 1000000.0"),
        ({"warmth": 0, "template": 0.0}, "weights are all zero; give at least one axis a weight"),
        ([1, 2, 3], "weights must be an object mapping axes to numbers, got list"),
    ],
)
def test_bad_weights_are_refused_with_the_reason(weights, message):
    with pytest.raises(ValueError) as err:
        check_weights(weights)
    assert str(err.value) == message


def test_missing_scores_are_named():
    with pytest.raises(ValueError, match=r"comment has no numeric substance score, got None"):
        rank([{"warmth": 0.5, "template": 0.1}])
    assert check_weights(None) == DEFAULT_WEIGHTS
