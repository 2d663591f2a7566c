"""Order comments by a weighted quality score, for 优质评论 / 热评 ranking experiments.

``quality = sum(weight[axis] * score[axis])`` over the axes the weights name;
the default weighs warmth and substance up and template-likeness down. When a
comment carries a fused template score (copies counted, see
:mod:`zhenping.model.campaign`), the template weight applies to that instead of the
model's template score, so a pasted comment sinks however well it reads.
Ties keep input order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from zhenping.model.axes import AXES

DEFAULT_WEIGHTS: dict[str, float] = {"warmth": 1.0, "substance": 1.0, "template": -1.0}
MAX_WEIGHT = 1000.0  # larger weights only rescale the quality; refusing them catches typos


@dataclass(frozen=True)
class RankedComment:
    """One comment in ranked order.

    Attributes:
        rank: 1 for the best.
        index: its position in the input.
        quality: the weighted score it was ranked by.
        comment: the input item, unchanged.
    """

    rank: int
    index: int
    quality: float
    comment: Any


def check_weights(weights: Mapping[str, float] | None) -> dict[str, float]:
    """Validate ranking weights; axes left out weigh 0.

    Args:
        weights: ``{axis: weight}``; ``None`` for :data:`DEFAULT_WEIGHTS`.

    Returns:
        A weight for every axis.

    Raises:
        ValueError: an unknown axis, a weight that is not a finite number in
            ``[-MAX_WEIGHT, MAX_WEIGHT]``, or all weights zero; the message names it.

    Example:
        >>> check_weights({"substance": 2})
        {'warmth': 0.0, 'substance': 2.0, 'template': 0.0}
    """
    if weights is None:
        return dict(DEFAULT_WEIGHTS)
    if not isinstance(weights, Mapping):
        raise ValueError(f"weights must be an object mapping axes to numbers, got {type(weights).__name__}")
    unknown = [k for k in weights if k not in AXES]
    if unknown:
        raise ValueError(f"weights has unknown axis {unknown[0]!r}; axes are {', '.join(AXES)}")
    out = {}
    for axis in AXES:
        value = weights.get(axis, 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"weights.{axis} must be a finite number, got {value!r}")
        if abs(value) > MAX_WEIGHT:
            raise ValueError(f"weights.{axis} must be between -{MAX_WEIGHT:g} and {MAX_WEIGHT:g}, got {value!r}")
        out[axis] = float(value)
    if not any(out.values()):
        raise ValueError("weights are all zero; give at least one axis a weight")
    return out


def _score(comment: Any, name: str) -> float | None:
    if isinstance(comment, Mapping):
        return comment.get(name)
    return getattr(comment, name, None)


def quality(comment: Any, weights: Mapping[str, float]) -> float:
    """The weighted quality of one comment (a mapping or an object with axis scores).

    Raises:
        ValueError: a weighted axis score is missing or not a number.
    """
    total = 0.0
    for axis, weight in weights.items():
        if not weight:
            continue
        value = _score(comment, "template_fused") if axis == "template" else None
        if value is None:
            value = _score(comment, axis)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"comment has no numeric {axis} score, got {value!r}")
        total += weight * float(value)
    return total


def rank(comments_with_scores: Sequence[Any], weights: Mapping[str, float] | None = None) -> list[RankedComment]:
    """Order comments best first by weighted quality.

    Args:
        comments_with_scores: items with ``warmth``, ``substance`` and
            ``template`` scores as keys or attributes (a scorer's
            ``CommentScores``, a service result); an optional
            ``template_fused`` replaces ``template``.
        weights: ``{axis: weight}``, checked by :func:`check_weights`;
            ``None`` for :data:`DEFAULT_WEIGHTS`.

    Returns:
        One :class:`RankedComment` per input, best first; equal qualities keep
        input order.

    Example:
        >>> ranked = rank([{"warmth": .2, "substance": .1, "template": .9}, {"warmth": .7, "substance": .6, "template": .1}])
        >>> [(r.rank, r.index, round(r.quality, 2)) for r in ranked]
        [(1, 1, 1.2), (2, 0, -0.6)]
    """
    checked = check_weights(weights)
    scored = [(quality(c, checked), i, c) for i, c in enumerate(comments_with_scores)]
    scored.sort(key=lambda item: (-item[0], item[1]))
    return [RankedComment(r, i, q, c) for r, (q, i, c) in enumerate(scored, 1)]
