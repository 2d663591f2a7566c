"""Suggested moderation action per comment: pass, review or fold.

Two reasons lead to an action: a templated comment (fused template score) and a
hostile one (hostility = 1 - warmth). Each has a fold threshold and a lower
review threshold; a comment is folded when either reason reaches its fold
threshold, sent to review when either reaches its review threshold, passed
otherwise. A threshold above 1 turns that rule off. The defaults are chosen on the
validation split by ``training/campaign_eval.py``: fold at the lowest threshold
whose precision is at least 0.9, review at the highest whose recall is at least
0.8.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ACTIONS = ("pass", "review", "fold")


@dataclass(frozen=True)
class ActionPolicy:
    """Thresholds that turn scores into an action.

    Example:
        >>> policy = ActionPolicy(fold_template=0.85, review_template=0.6, fold_hostile=0.9, review_hostile=0.75)
        >>> policy.decide(template=0.9, warmth=0.5), policy.decide(0.2, warmth=0.2), policy.decide(0.2, 0.6)
        ('fold', 'review', 'pass')
    """

    fold_template: float
    review_template: float
    fold_hostile: float
    review_hostile: float

    def __post_init__(self):
        for name in ("fold_template", "review_template", "fold_hostile", "review_hostile"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a number >= 0 (above 1 turns the rule off), got {value!r}")
        for reason in ("template", "hostile"):
            review, fold = getattr(self, f"review_{reason}"), getattr(self, f"fold_{reason}")
            if review > fold:
                raise ValueError(f"review_{reason} ({review}) must be <= fold_{reason} ({fold}): "
                                 "whatever is folded would otherwise skip review")

    def decide(self, template: float, warmth: float) -> str:
        """``"fold"``, ``"review"`` or ``"pass"`` for a fused template score and a warmth score."""
        hostile = 1.0 - warmth
        if template >= self.fold_template or hostile >= self.fold_hostile:
            return "fold"
        if template >= self.review_template or hostile >= self.review_hostile:
            return "review"
        return "pass"
