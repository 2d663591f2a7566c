"""Likes that don't add up, and the 优质互动榜 ordering that keeps likes as a signal.

A comment's like count is compared with what its quality and age predict::

    expected log(1 + likes) = b0 + b1 * quality + b2 * log(1 + age_hours) + b3 * campaign + c * context

where ``context`` is the median ``log(1 + likes)`` of the request's comments that
carry likes (0 with fewer than ``CONTEXT_MIN`` of them): a thread whose comments
all have thousands of likes (a 热评 list) sets a higher expectation than a stream
of new comments. ``c`` is 1.

``b0``-``b2`` fitted by least squares on real NetEase comments (their like counts
and posting times) of the benchmark's validation seeds
(``training/campaign_bench.py``); ``b3`` (zero or negative: a campaign comment
earns fewer likes honestly), ``margin`` and ``min_likes`` are chosen there against
injected like bursts. ``suspicious_likes`` is set when ``log(1 + likes)`` exceeds
the expectation by ``margin`` or more and the count is at least ``min_likes``.

The quality-and-engagement ordering adds ``like_weight * log(1 + likes)`` to
the weighted quality, with the likes discounted by how templated the comment is
and by its campaign score, and a suspicious count replaced by its expectation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SECONDS_PER_HOUR = 3600.0
CONTEXT_MIN = 3  # comments with likes a request needs for its median to set the context


def like_context(likes: Sequence[int | None]) -> float:
    """Median ``log(1 + likes)`` of the comments that carry likes; 0 with fewer than ``CONTEXT_MIN``."""
    values = sorted(math.log1p(max(0, n)) for n in likes if n is not None)
    if len(values) < CONTEXT_MIN:
        return 0.0
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


@dataclass(frozen=True)
class LikesModel:
    """Expected likes from quality and age, and the flag for counts far above it.

    Args:
        intercept, quality, log_age, campaign: ``b0``, ``b1``, ``b2``, ``b3`` above.
        margin: how far above the expectation, in ``log(1 + likes)``, is suspicious.
        min_likes: counts below this are never suspicious.
        default_age_hours: the age assumed when a comment has no ``posted_at``.

    Example:
        >>> m = LikesModel(0.1, 0.3, 0.2, margin=3.0, min_likes=20, default_age_hours=24)
        >>> m.suspicious(likes=5000, quality=-0.5, age_hours=2.0), m.suspicious(likes=3, quality=0.5, age_hours=2.0)
        (True, False)
    """

    intercept: float
    quality: float
    log_age: float
    margin: float
    min_likes: int
    default_age_hours: float
    campaign: float = 0.0
    context: float = 1.0

    def __post_init__(self):
        for name in ("intercept", "quality", "log_age", "margin", "default_age_hours", "campaign", "context"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"likes.{name} must be a finite number, got {value!r}")
        if self.margin <= 0 or self.default_age_hours < 0:
            raise ValueError(f"likes.margin must be > 0 and default_age_hours >= 0, got {self.margin!r}, "
                             f"{self.default_age_hours!r}")
        if isinstance(self.min_likes, bool) or not isinstance(self.min_likes, int) or self.min_likes < 0:
            raise ValueError(f"likes.min_likes must be an int >= 0, got {self.min_likes!r}")

    def age_hours(self, posted_at: float | None, now: float) -> float:
        """Hours from ``posted_at`` (seconds since the epoch) to ``now``; the default when unknown."""
        if posted_at is None:
            return self.default_age_hours
        return max(0.0, (now - posted_at) / SECONDS_PER_HOUR)

    def expected_log(self, quality: float, age_hours: float, campaign: float = 0.0, context: float = 0.0) -> float:
        """Expected ``log(1 + likes)``, at least 0."""
        return max(0.0, self.intercept + self.quality * quality + self.log_age * math.log1p(age_hours)
                   + self.campaign * campaign + self.context * context)

    def expected(self, quality: float, age_hours: float, campaign: float = 0.0, context: float = 0.0) -> float:
        """Expected like count."""
        return math.expm1(self.expected_log(quality, age_hours, campaign, context))

    def excess(self, likes: int, quality: float, age_hours: float, campaign: float = 0.0,
               context: float = 0.0) -> float:
        """``log(1 + likes)`` above its expectation."""
        return math.log1p(max(0, likes)) - self.expected_log(quality, age_hours, campaign, context)

    def check(self, likes: int, quality: float, age_hours: float, campaign: float = 0.0,
              context: float = 0.0) -> tuple[float, bool]:
        """``(expected(...), suspicious(...))`` with the expectation computed once."""
        expected_log = self.expected_log(quality, age_hours, campaign, context)
        suspicious = likes >= self.min_likes and math.log1p(max(0, likes)) - expected_log >= self.margin
        return math.expm1(expected_log), suspicious

    def suspicious(self, likes: int, quality: float, age_hours: float, campaign: float = 0.0,
                   context: float = 0.0) -> bool:
        """Whether ``likes`` is far above what quality, age, campaign score and context predict."""
        return likes >= self.min_likes and self.excess(likes, quality, age_hours, campaign, context) >= self.margin


def counted_likes(likes: int | None, expected: float | None, suspicious: bool | None) -> float:
    """The likes the engagement ordering counts: a suspicious count is cut to its expectation."""
    if not likes:
        return 0.0
    if suspicious and expected is not None:
        return min(float(likes), expected)
    return float(likes)


def engagement(likes: int | None, expected: float | None, suspicious: bool | None, template: float,
               campaign: float) -> float:
    """``log(1 + counted likes)``, discounted by the template and campaign scores.

    Example:
        >>> round(engagement(99, None, False, template=0.0, campaign=0.0), 3), engagement(99, None, False, 1.0, 0.0)
        (4.605, 0.0)
    """
    discount = max(0.0, 1.0 - template) * max(0.0, 1.0 - campaign)
    return math.log1p(counted_likes(likes, expected, suspicious)) * discount


def rank_by_engagement(items: Sequence[Any], qualities: Sequence[float], engagements: Sequence[float],
                       like_weight: float) -> list[tuple[int, float]]:
    """``(index, quality + like_weight * engagement)`` best first; ties keep input order."""
    keyed = [(q + like_weight * e, i) for i, (q, e) in enumerate(zip(qualities, engagements))]
    keyed.sort(key=lambda pair: (-pair[0], pair[1]))
    return [(i, value) for value, i in keyed]
