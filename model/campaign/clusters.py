"""Cluster evidence over the rolling window, and the campaign score built on it.

The duplicate window (:mod:`zhenping.model.campaign.window`) says which cluster of
copies a comment belongs to. This module keeps, for every cluster in the
window, what a moderator would ask about it:

* **size**: comments of the cluster in the window, this one included;
* **authors**: distinct authors among them (a comment without an author id
  counts as an author of its own);
* **arrival rate**: comments per hour since the cluster's oldest comment still
  in the window (at least ``RATE_FLOOR_SECONDS`` apart, so two copies in one
  request do not read as an infinite rate);
* **template mean**: the mean of the text model's template score over the
  cluster's comments (how templated the cluster's text is);
* **variants**: distinct texts in the cluster (dodge edits make many);
* **author overlap**: the share of the cluster's authors who also posted into
  another cluster of two or more comments (accounts that work several
  campaigns).

The campaign score is a logistic model of these (and of the comment's length,
its product with the template mean, its product with the share of copies posted again by an
account already in the cluster, and lexicon evidence), fitted on the injected-campaign benchmark's validation
seeds by ``training/campaign_bench.py``; a comment whose cluster is smaller than
``min_size`` scores 0. Observations leave with the duplicate window's size and
time limits, so memory stays bounded. Author ids are kept as 64-bit hashes.

The sums live in the process. With the Redis window (``ZHENPING_DUP_BACKEND=
redis``) replicas share cluster ids and copy counts, but each replica's cluster
evidence covers only the comments it saw itself.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

ROUND_CACHE = 1 << 14  # rounded values remembered by :func:`rounded`
RATE_FLOOR_SECONDS = 60.0  # a cluster's span counts as at least this long for its arrival rate
OVERLAP_SCAN = 64  # authors of one cluster looked at for the overlap share
FEATURES = ("log_size", "log_authors", "author_share", "log_rate", "template_mean", "variant_share",
            "author_overlap", "log_length", "template_length", "lexicon_ad", "lexicon_ai", "repeat_length")


@lru_cache(maxsize=ROUND_CACHE, typed=True)
def _rounded(value: float, digits: int) -> float:
    return round(value, digits)


def rounded(value: float, digits: int) -> float:
    """``round(value, digits)``, remembered for values met again.

    A correctly rounded ``round`` of a float to some digits costs about as much
    as building a whole response field, and the values written (rates of small
    counts, means of scores a request shares) repeat. Zeros are not looked up:
    ``0.0`` and ``-0.0`` are equal keys but round to different results, and a
    zero rounds to itself (the same value, sign and type), so it is returned as is.
    """
    if not value:
        return value
    return _rounded(value, digits)


class ClusterEvidence(NamedTuple):
    """What the window knows about a comment's cluster (a named tuple: one is made per
    cluster of every request, and a tuple is the cheapest immutable record to make).

    Attributes:
        size: comments of the cluster in the window, this one included.
        authors: distinct authors among them.
        arrival_rate: comments per hour over the cluster's span in the window.
        span_seconds: seconds from the cluster's oldest comment in the window to now.
        template_mean: mean model template score of the cluster's comments.
        variants: distinct texts in the cluster.
        author_overlap: share of the cluster's authors seen in another cluster of 2+ comments.
    """

    size: int
    authors: int
    arrival_rate: float
    span_seconds: float
    template_mean: float
    variants: int
    author_overlap: float

    def as_dict(self) -> dict:
        return {"size": self.size, "authors": self.authors, "arrival_rate": rounded(self.arrival_rate, 4),
                "span_seconds": rounded(self.span_seconds, 3), "template_mean": rounded(self.template_mean, 6),
                "variants": self.variants, "author_overlap": rounded(self.author_overlap, 6)}


SINGLE = ClusterEvidence(1, 1, 0.0, 0.0, 0.0, 1, 0.0)


class _Cluster:
    """One cluster's sums. Most clusters only ever hold one comment: such a cluster
    keeps that comment's time, author and text in ``first_*`` and makes its
    ``times``, ``authors`` and ``texts`` containers when a second comment arrives
    (until then they are ``None``)."""

    __slots__ = ("count", "template_sum", "authors", "anonymous", "texts", "times", "first_time", "first_author",
                 "first_text")

    def __init__(self, time: float, author: int | None, text: int) -> None:
        self.count = 0
        self.template_sum = 0.0
        self.anonymous = 0
        self.authors: dict[int, int] | None = None
        self.texts: dict[int, int] | None = None
        self.times: deque[float] | None = None
        self.first_time = time
        self.first_author = author
        self.first_text = text


class ClusterWindow:
    """Per-cluster sums over the comments of the rolling window (in this process).

    Args:
        max_size: observations kept (the duplicate window's size).
        ttl_seconds: an observation leaves this long after it was seen; 0: no limit.

    Example:
        >>> clusters = ClusterWindow(1000, 0)
        >>> clusters.add([(7, 1, 11, 0.8), (7, 2, 12, 0.6)], now=100.0)
        >>> (ev,) = clusters.observe_batch([], [7], now=100.0)
        >>> ev.size, ev.authors, ev.variants, round(ev.template_mean, 2)
        (2, 2, 2, 0.7)
    """

    def __init__(self, max_size: int, ttl_seconds: float):
        self.max_size = max_size
        self.ttl_seconds = ttl_seconds
        # Observations in arrival order, one entry each in five parallel deques of plain values (no
        # record object per comment for the garbage collector to track): time, cluster, author, text
        # key, template score.
        self._times: deque[float] = deque()
        self._cluster_of: deque = deque()
        self._author_of: deque[int | None] = deque()
        self._text_of: deque[int] = deque()
        self._template_of: deque[float] = deque()
        self._clusters: dict[int, _Cluster] = {}
        # author -> clusters of 2+ comments the author posted into: an author of such a cluster also
        # posted into another exactly when this is 2 or more (kept as comments come and go, so the
        # overlap share reads one number per author instead of scanning the author's clusters).
        self._multi: dict[int, int] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._times)

    def clear(self) -> None:
        with self._lock:
            for column in self._columns():
                column.clear()
            self._clusters.clear()
            self._multi.clear()

    def _leave_multi(self, author: int) -> None:
        n = self._multi[author] - 1
        if n:
            self._multi[author] = n
        else:
            del self._multi[author]

    def _remove(self, cluster: int, author: int | None, text: int, template: float, oldest: bool) -> None:
        rec = self._clusters[cluster]
        rec.count -= 1
        if rec.count <= 0:
            del self._clusters[cluster]
        else:
            if rec.count == 1:  # no longer a cluster of 2+ for any of its authors
                for known in rec.authors:
                    self._leave_multi(known)
            rec.template_sum -= template
            if oldest:
                rec.times.popleft()
            else:
                rec.times.pop()
            n = rec.texts[text] - 1
            if n:
                rec.texts[text] = n
            else:
                del rec.texts[text]
            if author is None:
                rec.anonymous -= 1
            else:
                n = rec.authors[author] - 1
                if n:
                    rec.authors[author] = n
                else:
                    del rec.authors[author]
                    if rec.count >= 2:
                        self._leave_multi(author)

    def _evict(self, now: float) -> None:
        times = self._times
        cutoff = now - self.ttl_seconds if self.ttl_seconds > 0 else None
        while times and (len(times) > self.max_size or (cutoff is not None and times[0] < cutoff)):
            times.popleft()
            self._remove(self._cluster_of.popleft(), self._author_of.popleft(), self._text_of.popleft(),
                         self._template_of.popleft(), oldest=True)

    def _columns(self) -> tuple[deque, ...]:
        return self._times, self._cluster_of, self._author_of, self._text_of, self._template_of

    def _add(self, observations, now: float) -> None:
        times, cluster_of, author_of, text_of, template_of = self._columns()
        for cluster, author, text, template in observations:
            times.append(now)
            cluster_of.append(cluster)
            author_of.append(author)
            text_of.append(text)
            template_of.append(template)
            rec = self._clusters.get(cluster)
            if rec is None:
                rec = self._clusters[cluster] = _Cluster(now, author, text)
            rec.count += 1
            rec.template_sum += template
            if rec.times is None:
                if rec.count == 1:  # the cluster's only comment so far: kept in first_*
                    if author is None:
                        rec.anonymous += 1
                    continue
                # A second comment: the containers, holding the first one.
                rec.times = deque((rec.first_time,))
                rec.texts = {rec.first_text: 1}
                rec.authors = {} if rec.first_author is None else {rec.first_author: 1}
            rec.times.append(now)
            rec.texts[text] = rec.texts.get(text, 0) + 1
            multi = self._multi
            if author is None:
                rec.anonymous += 1
                new_author = False
            else:
                before = rec.authors.get(author, 0)
                rec.authors[author] = before + 1
                new_author = not before
            if rec.count == 2:  # now a cluster of 2+ for every one of its authors
                for known in rec.authors:
                    multi[known] = multi.get(known, 0) + 1
            elif rec.count > 2 and new_author:
                multi[author] = multi.get(author, 0) + 1

    def add(self, observations: Sequence[tuple[int, int | None, int, float]], now: float) -> None:
        """Add ``(cluster, author, text, template)`` observations seen at ``now``."""
        with self._lock:
            self._evict(now)
            self._add(observations, now)
            self._evict(now)

    def _evidence(self, cluster: int, now: float) -> ClusterEvidence:
        rec = self._clusters.get(cluster)
        if rec is None or rec.count <= 1:
            if rec is None:
                return SINGLE
            return ClusterEvidence(1, 1, 0.0, 0.0, rec.template_sum, 1, 0.0)
        span = max(0.0, now - rec.times[0])
        rate = rec.count * 3600.0 / max(span, RATE_FLOOR_SECONDS)
        known = len(rec.authors)
        overlap = 0.0
        if known:
            # This cluster has 2+ comments, so an author also posted into another such cluster
            # exactly when the author's count of them is 2 or more.
            multi = self._multi
            scanned = hits = 0
            for author in rec.authors:
                scanned += 1
                if multi[author] >= 2:
                    hits += 1
                if scanned >= OVERLAP_SCAN:
                    break
            overlap = hits / scanned
        return ClusterEvidence(rec.count, known + rec.anonymous, rate, span, rec.template_sum / rec.count,
                               len(rec.texts), overlap)

    def observe_batch(self, new: Sequence[tuple[int, int | None, int, float]], clusters: Sequence[int],
                      now: float, record: bool = True) -> list[ClusterEvidence]:
        """Add ``new`` observations, then return the evidence of each cluster in ``clusters``.

        Args:
            new: ``(cluster, author key, text key, model template score)`` of the
                comments not already in the window.
            clusters: the cluster of every comment of the batch, in order.
            now: when the batch is seen.
            record: ``False`` to take the new observations out again afterwards
                (a read that leaves the window unchanged).
        """
        with self._lock:
            self._evict(now)
            self._add(new, now)
            cache: dict[int, ClusterEvidence] = {}
            out = []
            for cluster in clusters:
                ev = cache.get(cluster)
                if ev is None:
                    ev = cache[cluster] = self._evidence(cluster, now)
                out.append(ev)
            if record:
                self._evict(now)
            else:
                for _ in range(len(new)):
                    self._times.pop()
                    self._remove(self._cluster_of.pop(), self._author_of.pop(), self._text_of.pop(),
                                 self._template_of.pop(), oldest=False)
            return out


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def feature_vector(ev: ClusterEvidence, length: int, lexicon_ad: bool, lexicon_ai: bool) -> list[float]:
    """The campaign model's inputs, in :data:`FEATURES` order."""
    return [
        math.log(ev.size),
        math.log(max(1, ev.authors)),
        ev.authors / ev.size,
        math.log1p(ev.arrival_rate),
        ev.template_mean,
        ev.variants / ev.size,
        ev.author_overlap,
        math.log1p(length),
        ev.template_mean * math.log1p(length),  # long and templated: stock text, not a chant or a lyric
        float(lexicon_ad),
        float(lexicon_ai),
        # Accounts posting the cluster's text again, by its length: one account pasting a long text over
        # and over works a campaign; one repeating a short chant (火钳刘明, 好听) is a fan.
        (1.0 - ev.authors / ev.size) * math.log1p(length),
    ]


@dataclass(frozen=True)
class CampaignModel:
    """Logistic campaign score over :data:`FEATURES`.

    Args:
        weights: one weight per feature name.
        intercept: the logistic intercept.
        min_size: clusters smaller than this score 0.

    Example:
        >>> m = CampaignModel({"log_size": 2.0}, -4.0, 3)
        >>> m.score(ClusterEvidence(2, 2, 1.0, 60.0, 0.5, 1, 0.0), 10, False, False)
        0.0
        >>> round(m.score(ClusterEvidence(20, 15, 1.0, 60.0, 0.5, 3, 0.0), 10, False, False), 3)
        0.88
    """

    weights: dict
    intercept: float
    min_size: int = 3

    def __post_init__(self):
        unknown = [k for k in self.weights if k not in FEATURES]
        if unknown:
            raise ValueError(f"campaign weight for unknown feature {unknown[0]!r}; features are {', '.join(FEATURES)}")
        for name, value in (*self.weights.items(), ("intercept", self.intercept)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"campaign {name} must be a finite number, got {value!r}")
        if not isinstance(self.min_size, int) or self.min_size < 2:
            raise ValueError(f"campaign min_size must be an int >= 2, got {self.min_size!r}")
        object.__setattr__(self, "_w", [float(self.weights.get(f, 0.0)) for f in FEATURES])

    def score(self, ev: ClusterEvidence, length: int, lexicon_ad: bool = False, lexicon_ai: bool = False) -> float:
        """The campaign score in [0, 1] of a comment with cluster evidence ``ev``."""
        if ev.size < self.min_size:
            return 0.0
        x = feature_vector(ev, length, lexicon_ad, lexicon_ai)
        return _sigmoid(self.intercept + sum(w * v for w, v in zip(self._w, x)))
