"""Suggested moderation action per comment: pass, review or fold.

Three reasons lead to an action: a templated comment (fused template score), a
hostile one (hostility = 1 - warmth) and a campaign (the campaign score of
:mod:`model.campaign.clusters`, from the comment's cluster in the window). Each
has a fold threshold and a lower review threshold; a comment is folded when any
reason reaches its fold threshold, sent to review when any reaches its review
threshold, passed otherwise. A threshold above 1 turns that rule off. The
shipped thresholds are fitted by ``training/campaign_bench.py`` on the
injected-campaign benchmark's validation seeds and the gold validation split, so
that campaigns fold while organic repeats and ordinary comments stay out of the
review queue.
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
    fold_campaign: float = 1.01  # above 1: off
    review_campaign: float = 1.01

    def __post_init__(self):
        for name in ("fold_template", "review_template", "fold_hostile", "review_hostile", "fold_campaign",
                     "review_campaign"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a number >= 0 (above 1 turns the rule off), got {value!r}")
        for reason in ("template", "hostile", "campaign"):
            review, fold = getattr(self, f"review_{reason}"), getattr(self, f"fold_{reason}")
            if review > fold:
                raise ValueError(f"review_{reason} ({review}) must be <= fold_{reason} ({fold}): "
                                 "whatever is folded would otherwise skip review")

    def decide(self, template: float, warmth: float, campaign: float = 0.0) -> str:
        """``"fold"``, ``"review"`` or ``"pass"`` for a fused template score, a warmth score and a campaign score."""
        hostile = 1.0 - warmth
        if template >= self.fold_template or hostile >= self.fold_hostile or campaign >= self.fold_campaign:
            return "fold"
        if template >= self.review_template or hostile >= self.review_hostile or campaign >= self.review_campaign:
            return "review"
        return "pass"
