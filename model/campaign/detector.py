"""Campaign detection on top of a scorer's scores: duplicates, fused template
score, evidence, action and author summaries, for one batch of comments."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from model.axes import score_to_level
from model.campaign.actions import ActionPolicy
from model.campaign.authors import AuthorObservation, AuthorSummary, AuthorWindow, author_key
from model.campaign.config import CampaignConfig
from model.campaign.evidence import Evidence, EvidenceFinder
from model.campaign.fusion import Fusion
from model.campaign.window import Duplicates, DuplicateWindow, WindowItem, caller_key

TEMPLATED_LEVEL = 2  # fused template level from which an author's comment counts as templated


@dataclass(frozen=True)
class CampaignInput:
    """One comment as campaign detection sees it.

    Attributes:
        text: the normalised text (:func:`model.normalize.normalize_text`).
        id: the caller's comment id; a comment seen again under the same id with
            the same text is not counted twice.
        author_id: the caller's author id, for author summaries.
    """

    text: str
    id: str | int | None = None
    author_id: str | None = None


@dataclass(frozen=True)
class CampaignResult:
    """Campaign evidence for one comment."""

    duplicates: Duplicates
    template_fused: float
    evidence: tuple[Evidence, ...]
    action: str


@dataclass(frozen=True)
class CampaignReport:
    """Results in input order, and one summary per author id given."""

    results: list[CampaignResult]
    authors: list[AuthorSummary]


class CampaignDetector:
    """Add what a per-comment scorer misses: repeats across the stream.

    Args:
        window: the duplicate window.
        fusion: how copies raise the template score.
        policy: action thresholds.
        evidence: the phrase lexicons.
        authors: the author window, or ``None`` to skip author summaries.

    Example:
        >>> detector = CampaignDetector.build(CampaignConfig())
        >>> report = detector.process([CampaignInput("好评好评")] * 3, [scores] * 3)  # doctest: +SKIP
        >>> report.results[0].duplicates.exact_count  # doctest: +SKIP
        2
    """

    def __init__(self, window: DuplicateWindow, fusion: Fusion, policy: ActionPolicy,
                 evidence: EvidenceFinder, authors: AuthorWindow | None = None):
        self.window = window
        self.fusion = fusion
        self.policy = policy
        self.evidence = evidence
        self.authors = authors

    @classmethod
    def build(cls, config: CampaignConfig, window_store=None, author_store=None,
              clock=time.time) -> "CampaignDetector":
        """A detector from settings; in-process stores unless others are given.

        Raises:
            ValueError: an invalid setting or lexicon file, naming it.
        """
        window = DuplicateWindow(config.window, store=window_store, clock=clock)
        authors = AuthorWindow(config.window, store=author_store, clock=clock) if config.authors else None
        return cls(
            window,
            Fusion(config.exact_weight, config.near_weight),
            ActionPolicy(config.fold_template, config.review_template, config.fold_hostile, config.review_hostile),
            EvidenceFinder.default(config.lexicon_extra),
            authors,
        )

    def process(self, comments: Sequence[CampaignInput], scores: Sequence, now: float | None = None,
                record: bool = True) -> CampaignReport:
        """Campaign results for a batch of scored comments.

        Args:
            comments: the comments, normalised text first.
            scores: one object per comment with ``warmth``, ``substance`` and
                ``template`` attributes (a scorer's ``CommentScores``).
            now: when the comments are seen (default: the window's clock).
            record: ``False`` to read the window without adding the comments
                (ranking experiments, re-checks).

        Returns:
            A :class:`CampaignReport`.

        Raises:
            ValueError: ``comments`` and ``scores`` differ in length.
        """
        if len(comments) != len(scores):
            raise ValueError(f"{len(comments)} comments but {len(scores)} scores")
        now = self.window.clock() if now is None else now
        found = self.window.observe([WindowItem(c.text, caller_key(c.id)) for c in comments], now=now,
                                    record=record)
        results = []
        observations = []
        for comment, score, dup in zip(comments, scores, found):
            fused = self.fusion.fuse(float(score.template), dup.exact_count, dup.near_count)
            evidence = list(self.evidence.find(comment.text))
            if dup.exact_count:
                evidence.append(Evidence("duplicate", "exact", count=dup.exact_count))
            if dup.near_count:
                evidence.append(Evidence("duplicate", "near", count=dup.near_count))
            action = self.policy.decide(fused, float(score.warmth))
            results.append(CampaignResult(dup, fused, tuple(evidence), action))
            if comment.author_id is not None and not dup.seen_before:
                observations.append(AuthorObservation(
                    author_key(comment.author_id), score_to_level(fused) >= TEMPLATED_LEVEL, dup.copies > 0,
                    float(score.warmth), float(score.substance)))
        authors: list[AuthorSummary] = []
        author_ids = [c.author_id for c in comments if c.author_id is not None]
        if self.authors is not None and author_ids:
            if record and observations:
                self.authors.add(observations, now=now)
            authors = self.authors.summaries(author_ids, now=now)
        return CampaignReport(results, authors)
