"""The three axes zhenping scores, in the order of the model's outputs.

This is the one place the names are written down; an exported model carries them
in its config and everything downstream reads them from the loaded model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

AXES = ("warmth", "substance", "template")
LEVELS = 3  # levels run 0..LEVELS; score = level / LEVELS


def score_to_level(score: float, thresholds: Sequence[float] | None = None) -> int:
    """Level 0-3 for a score in [0, 1].

    Without ``thresholds`` the nearest level, ``round(score * 3)``. With
    ``thresholds`` (three non-decreasing cut points ``[t1, t2, t3]``, as fitted by
    ``zhenping calibrate``), the number of cut points at or below the score:
    level 1 from ``t1``, 2 from ``t2``, 3 from ``t3``.

    Example:
        >>> score_to_level(0.6), score_to_level(0.6, [0.2, 0.65, 0.9])
        (2, 1)
    """
    if thresholds is None:
        return int(min(LEVELS, max(0, round(score * LEVELS))))
    return sum(1 for t in thresholds if score >= t)


def check_level_thresholds(value, axes: Sequence[str] = AXES) -> dict[str, list[float]]:
    """Validate a ``level_thresholds`` mapping ``{axis: [t1, t2, t3]}``.

    Axes may be left out (those keep ``round(score * 3)``); each given one needs
    three numbers in [0, 1], non-decreasing.

    Raises:
        ValueError: naming the axis and the value received.
    """
    if not isinstance(value, Mapping):
        raise ValueError(f"level_thresholds must be an object {{axis: [t1, t2, t3]}}, got {value!r}")
    out: dict[str, list[float]] = {}
    for axis, cuts in value.items():
        if axis not in axes:
            raise ValueError(f"level_thresholds has an unknown axis {axis!r}; expected some of {list(axes)}")
        ok = (
            isinstance(cuts, (list, tuple))
            and len(cuts) == LEVELS
            and all(isinstance(t, (int, float)) and not isinstance(t, bool) and 0.0 <= t <= 1.0 for t in cuts)
        )
        if not ok or any(a > b for a, b in zip(cuts, cuts[1:])):
            raise ValueError(
                f"level_thresholds[{axis!r}] must be {LEVELS} non-decreasing numbers in [0, 1], got {cuts!r}"
            )
        out[axis] = [float(t) for t in cuts]
    return out
