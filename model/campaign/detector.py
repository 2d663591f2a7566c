"""Campaign detection on top of a scorer's scores: duplicates, cluster evidence,
campaign score, fused template score, evidence, action, likes check and author
summaries, for one batch of comments."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from zhenping.model.axes import score_to_level
from zhenping.model.campaign.actions import ActionPolicy, CopyRule
from zhenping.model.campaign.authors import AuthorObservation, AuthorSummary, AuthorWindow, author_key
from zhenping.model.campaign.clusters import SINGLE, CampaignModel, ClusterEvidence, ClusterWindow
from zhenping.model.campaign.config import CampaignConfig
from zhenping.model.campaign.evidence import Evidence, EvidenceFinder, duplicate_evidence
from zhenping.model.campaign.fusion import Fusion
from zhenping.model.campaign.likes import LikesModel, like_context
from zhenping.model.campaign.window import Duplicates, DuplicateWindow, caller_key

TEMPLATED_LEVEL = 2  # fused template level from which an author's comment counts as templated


@dataclass(frozen=True)
class CampaignInput:
    """One comment as campaign detection sees it.

    Attributes:
        text: the normalised text (:func:`zhenping.model.normalize.normalize_text`).
        id: the caller's comment id; a comment seen again under the same id with
            the same text is not counted twice.
        author_id: the caller's author id, for author summaries and cluster evidence.
        likes: the comment's like count, for the likes check.
        posted_at: when it was posted, seconds since the epoch (its age for the
            likes check); the window's clock when absent.
    """

    text: str
    id: str | int | None = None
    author_id: str | None = None
    likes: int | None = None
    posted_at: float | None = None


class CampaignResult(NamedTuple):
    """Campaign evidence for one comment (a named tuple: one is made per comment, and a
    tuple is the cheapest immutable record to make).

    Attributes:
        duplicates: its copies in the window.
        template_fused: the model's template score raised by copies and by the
            campaign score: ``1 - (1 - fused by copies) * (1 - campaign)``.
        evidence: phrase and duplicate evidence.
        action: ``"pass"``, ``"review"`` or ``"fold"``.
        campaign: the campaign score in [0, 1].
        cluster: its cluster's evidence in the window.
        suspicious_likes: likes far above what quality and age predict; ``None``
            without a like count.
        expected_likes: the like count quality and age predict; ``None`` without one.
    """

    duplicates: Duplicates
    template_fused: float
    evidence: tuple[Evidence, ...]
    action: str
    campaign: float = 0.0
    cluster: ClusterEvidence = SINGLE
    suspicious_likes: bool | None = None
    expected_likes: float | None = None


@dataclass(frozen=True)
class WindowPass:
    """The text-only half of campaign detection for one batch (:meth:`CampaignDetector.observe`):
    what the duplicate window found, and each text's phrase evidence. It needs no model scores,
    so the service computes it while the model scores the same comments.

    Attributes:
        found: each comment's copies in the window.
        keys: each comment's text key.
        lengths: each comment's visible length (an emoji code one character).
        evidence: each comment's phrase evidence.
        now: when the comments were seen.
        record: whether they were added to the window.
    """

    found: list[Duplicates]
    keys: list[int]
    lengths: list[int]
    evidence: list[tuple[Evidence, ...]]
    now: float
    record: bool


@dataclass(frozen=True)
class CampaignReport:
    """Results in input order, and one summary per author id given."""

    results: list[CampaignResult]
    authors: list[AuthorSummary]


def campaign_model(config: CampaignConfig) -> CampaignModel:
    """The campaign model of a config."""
    return CampaignModel(dict(config.campaign_weights), config.campaign_intercept, config.campaign_min_size)


def likes_model(config: CampaignConfig) -> LikesModel:
    """The likes model of a config."""
    return LikesModel(config.likes_intercept, config.likes_quality, config.likes_log_age, config.likes_margin,
                      config.likes_min, config.likes_default_age_hours, config.likes_campaign,
                      config.likes_context)


def copy_rule_of(config: CampaignConfig) -> CopyRule:
    """The copy rule of a config."""
    return CopyRule(config.copy_fold_copies, config.copy_fold_length, config.copy_fold_authors,
                    config.copy_fold_template)


class CampaignDetector:
    """Add what a per-comment scorer misses: repeats across the stream.

    Args:
        window: the duplicate window.
        fusion: how copies raise the template score.
        policy: action thresholds.
        evidence: the phrase lexicons.
        authors: the author window, or ``None`` to skip author summaries.
        clusters: per-cluster sums over the window (a fresh one when ``None``).
        campaign: the campaign model (the shipped calibration when ``None``).
        likes: the likes model (the shipped calibration when ``None``).
        copy_rule: the fold rule for long exact copies from many accounts (the
            shipped calibration when ``None``).

    Example:
        >>> detector = CampaignDetector.build(CampaignConfig())
        >>> report = detector.process([CampaignInput("好评好评")] * 3, [scores] * 3)  # doctest: +SKIP
        >>> report.results[0].duplicates.exact_count  # doctest: +SKIP
        2
    """

    def __init__(self, window: DuplicateWindow, fusion: Fusion, policy: ActionPolicy,
                 evidence: EvidenceFinder, authors: AuthorWindow | None = None,
                 clusters: ClusterWindow | None = None, campaign: CampaignModel | None = None,
                 likes: LikesModel | None = None, copy_rule: CopyRule | None = None):
        self.window = window
        self.fusion = fusion
        self.policy = policy
        self.evidence = evidence
        self.authors = authors
        config = CampaignConfig()
        self.clusters = clusters if clusters is not None else ClusterWindow(window.config.max_size,
                                                                            window.config.ttl_seconds)
        self.campaign = campaign if campaign is not None else campaign_model(config)
        self.likes = likes if likes is not None else likes_model(config)
        self.copy_rule = copy_rule if copy_rule is not None else copy_rule_of(config)

    @property
    def in_process(self) -> bool:
        """True when every window lives in this process's memory: :meth:`process` does no I/O."""
        return self.window.backend == "memory" and (self.authors is None or self.authors.store.backend == "memory")

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
            ActionPolicy(config.fold_template, config.review_template, config.fold_hostile, config.review_hostile,
                         config.fold_campaign, config.review_campaign),
            EvidenceFinder.default(config.lexicon_extra),
            authors,
            ClusterWindow(config.window.max_size, config.window.ttl_seconds),
            campaign_model(config),
            likes_model(config),
            copy_rule_of(config),
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
        return self.process_columns([c.text for c in comments], [c.id for c in comments],
                                    [c.author_id for c in comments], [c.likes for c in comments],
                                    [c.posted_at for c in comments], scores, now, record)

    def observe(self, texts: Sequence[str], ids: Sequence[str | int | None], now: float | None = None,
                record: bool = True) -> WindowPass:
        """The text-only half of :meth:`process_columns`: the comments' copies in the duplicate
        window (adding them to it unless ``record`` is false) and their phrase evidence.

        Pass the result to :meth:`process_columns` as ``observed`` with the same texts and ids
        once the scores are known; meanwhile nothing else may be observed or processed with
        ``record`` that should come after these comments. Safe to call from a worker thread.

        Raises:
            ValueError: ``texts`` and ``ids`` differ in length.
        """
        if len(texts) != len(ids):
            raise ValueError(f"{len(texts)} texts but {len(ids)} ids")
        now = self.window.clock() if now is None else now
        found, keys, lengths = self.window.observe_texts(texts, list(map(caller_key, ids)), now=now, record=record)
        return WindowPass(found, keys, lengths, list(map(self.evidence.find_tuple, texts)), now, record)

    def process_columns(self, texts: Sequence[str], ids: Sequence[str | int | None],
                        author_ids: Sequence[str | None], likes: Sequence[int | None],
                        posted_at: Sequence[float | None], scores: Sequence, now: float | None = None,
                        record: bool = True, observed: WindowPass | None = None) -> CampaignReport:
        """:meth:`process` of comments given as columns, one list per :class:`CampaignInput`
        field, without an input object per comment (the service's path).

        ``observed``: these comments' :meth:`observe` (made with the same texts and ids), when
        the text-only half ran already; ``now`` and ``record`` are then its own.

        Raises:
            ValueError: the columns and ``scores`` differ in length, or ``observed`` is of
                another batch size.
        """
        n = len(texts)
        if not len(ids) == len(author_ids) == len(likes) == len(posted_at) == len(scores) == n:
            raise ValueError(f"{n} texts but {len(ids)} ids, {len(author_ids)} author ids, {len(likes)} like "
                             f"counts, {len(posted_at)} posting times and {len(scores)} scores")
        if observed is None:
            observed = self.observe(texts, ids, now, record)
        elif len(observed.found) != n:
            raise ValueError(f"{n} texts but the window pass holds {len(observed.found)}")
        found, keys, lengths, evidences, now, record = (observed.found, observed.keys, observed.lengths,
                                                        observed.evidence, observed.now, observed.record)
        author_keys = [None if a is None else author_key(a) for a in author_ids]
        templates = [float(s.template) for s in scores]
        new = [(dup.cluster_id, author, key, template)
               for dup, author, key, template in zip(found, author_keys, keys, templates) if not dup.seen_before]
        clusters = self.clusters.observe_batch(new, [dup.cluster_id for dup in found], now, record=record)
        results = []
        observations = []
        context = like_context(likes)
        decide = self.policy.decide
        # Fusion.fuse written out: the same arithmetic, without a call per comment.
        neg_exact, neg_near = -self.fusion.exact_weight, -self.fusion.near_weight
        model, liking = self.campaign, self.likes
        copy_rule = self.copy_rule.applies if self.copy_rule.on else None
        min_size = model.min_size
        campaign_scores: dict[tuple, float] = {}  # one cluster's comments of one length and evidence score alike
        for evidence, score, template, dup, length, cluster, author, liked, posted in zip(
                evidences, scores, templates, found, lengths, clusters, author_keys, likes, posted_at):
            exact, near = dup.exact_count, dup.near_count
            fused = min(1.0, max(0.0, 1.0 - (1.0 - template) * (1.0 + exact) ** neg_exact
                                 * (1.0 + near) ** neg_near))
            campaign = 0.0
            if cluster.size >= min_size:
                ad = any(e.category == "ad" for e in evidence)
                ai = any(e.kind == "ai_marker" for e in evidence)
                memo = (dup.cluster_id, length, ad, ai)
                campaign = campaign_scores.get(memo)
                if campaign is None:
                    campaign = campaign_scores[memo] = model.score(cluster, length, ad, ai)
            if exact:
                evidence += (duplicate_evidence("exact", exact),)
            if near:
                evidence += (duplicate_evidence("near", near),)
            warmth = float(score.warmth)
            action = decide(fused, warmth, campaign)
            if copy_rule is not None and action != "fold" and exact and \
                    copy_rule(exact + 1, length, cluster.authors, cluster.template_mean):
                action = "fold"
            fused = 1.0 - (1.0 - fused) * (1.0 - campaign)
            suspicious = expected = None
            if liked is not None:
                quality = warmth + float(score.substance) - fused
                age = liking.age_hours(posted, now)
                expected, suspicious = liking.check(liked, quality, age, campaign, context)
            results.append(CampaignResult(dup, fused, evidence, action, campaign, cluster, suspicious, expected))
            if author is not None and not dup.seen_before:
                observations.append(AuthorObservation(
                    author, score_to_level(fused) >= TEMPLATED_LEVEL, exact + near > 0, warmth,
                    float(score.substance)))
        authors: list[AuthorSummary] = []
        given = [a for a in author_ids if a is not None]
        if self.authors is not None and given:
            if record and observations:
                self.authors.add(observations, now=now)
            authors = self.authors.summaries(given, now=now)
        return CampaignReport(results, authors)
