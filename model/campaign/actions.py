"""Suggested moderation action per comment: pass, review or fold.

Three reasons lead to an action: a templated comment (fused template score), a
hostile one (hostility = 1 - warmth) and a campaign (the campaign score of
:mod:`zhenping.model.campaign.clusters`, from the comment's cluster in the window). Each
has a fold threshold and a lower review threshold; a comment is folded when any
reason reaches its fold threshold, sent to review when any reaches its review
threshold, passed otherwise. A threshold above 1 turns that rule off.

A fourth reason folds on its own: long exact copies posted by many accounts
(:class:`CopyRule`). A pasted stock review or ad that many accounts post word
for word reads like an organic chorus to the campaign score (one comment per
account), but its length and its templated text do not. The
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


@dataclass(frozen=True)
class CopyRule:
    """Fold exact copies of a long, templated text posted by many accounts.

    The rule folds a comment when the window holds at least ``copies`` exact
    copies of its text (this one included), the text is at least ``length``
    characters long (white space and punctuation aside), its cluster has at
    least ``authors`` distinct authors and a mean model template score of at
    least ``template``. ``copies = 0`` turns the rule off. The shipped values
    are fitted by ``training/campaign_bench.py`` on the benchmark's validation
    seeds, within the fold budgets of organic repeats and ordinary comments.

    Example:
        >>> rule = CopyRule(copies=8, length=15, authors=3, template=0.4)
        >>> rule.applies(copies=9, length=26, authors=9, template_mean=0.55)
        True
        >>> rule.applies(copies=9, length=8, authors=9, template_mean=0.55)  # a short chant
        False
        >>> CopyRule().applies(100, 100, 100, 1.0)  # off
        False
    """

    copies: int = 0  # exact copies in the window, this one included; 0: off
    length: int = 0  # characters of the text without white space, an emoji code one (visible_length), at least
    authors: int = 1  # distinct authors of the cluster, at least
    template: float = 0.0  # mean model template score of the cluster, at least

    def __post_init__(self):
        for name in ("copies", "length", "authors"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"copy rule {name} must be an int >= 0, got {value!r}")
        if self.copies == 1:
            raise ValueError("copy rule copies must be 0 (off) or >= 2: one comment is not a copy")
        t = self.template
        if not isinstance(t, (int, float)) or isinstance(t, bool) or not math.isfinite(t) or not 0 <= t <= 1:
            raise ValueError(f"copy rule template must be a number in [0, 1], got {t!r}")

    @property
    def on(self) -> bool:
        return self.copies > 0

    def applies(self, copies: int, length: int, authors: int, template_mean: float) -> bool:
        """Whether a comment with ``copies`` exact copies (itself included) of a ``length``-character
        text, in a cluster of ``authors`` authors and mean template score ``template_mean``, folds."""
        return (0 < self.copies <= copies and length >= self.length and authors >= self.authors
                and template_mean >= self.template)
