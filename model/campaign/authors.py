"""Per-author summaries over the rolling window.

Each comment with an author id adds one observation: whether its fused template
score reaches level 2, whether it had copies, its warmth and substance. An
author's summary adds up their observations still in the window, so it follows
the same size and time limits as the duplicate window and its memory is bounded
the same way. Author ids are kept only as 64-bit hashes.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

from zhenping.model.campaign.clusters import rounded
from zhenping.model.campaign.config import WindowConfig
from zhenping.model.campaign.window import hash64


@lru_cache(maxsize=1 << 16)
def author_key(author_id: str) -> int:
    """The 64-bit key an author id is kept under (recent ids remembered)."""
    return hash64(f"author:{author_id}")


class AuthorObservation(NamedTuple):
    """One comment's contribution to its author's summary (a named tuple: one is
    made per comment, and a tuple is the cheapest immutable record to make)."""

    author: int
    templated: bool
    duplicated: bool
    warmth: float
    substance: float


class AuthorStats(NamedTuple):
    """Sums over an author's comments in the window (a named tuple, like
    :class:`AuthorObservation`)."""

    comments: int = 0
    templated: int = 0
    duplicated: int = 0
    warmth_sum: float = 0.0
    substance_sum: float = 0.0


_NO_STATS = AuthorStats()


class AuthorSummary(NamedTuple):
    """What the window says about one author (a named tuple, like :class:`AuthorStats`).

    Attributes:
        author_id: as the caller sent it.
        comments: the author's comments in the window (this request included).
        template_rate: share of them with a fused template level of 2 or more.
        duplicate_rate: share of them that had exact or near copies when seen.
        mean_warmth: mean warmth score.
        mean_substance: mean substance score.
    """

    author_id: str
    comments: int
    template_rate: float
    duplicate_rate: float
    mean_warmth: float
    mean_substance: float

    @classmethod
    def from_stats(cls, author_id: str, stats: AuthorStats) -> "AuthorSummary":
        n = stats.comments
        if n <= 0:
            return cls(author_id, 0, 0.0, 0.0, 0.0, 0.0)
        return cls(author_id, n, rounded(stats.templated / n, 6), rounded(stats.duplicated / n, 6),
                   rounded(min(1.0, max(0.0, stats.warmth_sum / n)), 6),
                   rounded(min(1.0, max(0.0, stats.substance_sum / n)), 6))

    def as_dict(self) -> dict:
        return {"author_id": self.author_id, "comments": self.comments, "template_rate": self.template_rate,
                "duplicate_rate": self.duplicate_rate, "mean_warmth": self.mean_warmth,
                "mean_substance": self.mean_substance}


class MemoryAuthorStore:
    """Author sums in this process's memory; observations leave with the window's limits."""

    backend = "memory"

    def __init__(self) -> None:
        # Observations in arrival order, in parallel deques of plain values (no record object per
        # comment for the garbage collector to track): time, author, templated, duplicated, warmth,
        # substance.
        self._columns: tuple[deque, ...] = tuple(deque() for _ in range(6))
        self._sums: dict[int, list] = {}  # author -> [comments, templated, duplicated, warmth, substance]

    def __len__(self) -> int:
        return len(self._columns[0])

    @property
    def authors(self) -> int:
        return len(self._sums)

    def clear(self) -> None:
        for column in self._columns:
            column.clear()
        self._sums.clear()

    def evict(self, now: float, ttl: float, max_size: int) -> None:
        times, authors, templated, duplicated, warmth, substance = self._columns
        cutoff = now - ttl if ttl > 0 else None
        while times and (len(times) > max_size or (cutoff is not None and times[0] < cutoff)):
            times.popleft()
            author, t, d, w, s = (authors.popleft(), templated.popleft(), duplicated.popleft(), warmth.popleft(),
                                  substance.popleft())
            sums = self._sums[author]
            sums[0] -= 1
            if sums[0] <= 0:
                del self._sums[author]
            else:
                sums[1] -= t
                sums[2] -= d
                sums[3] -= w
                sums[4] -= s

    def add(self, observations: Sequence[AuthorObservation], now: float) -> None:
        times, authors, templated_of, duplicated_of, warmth_of, substance_of = self._columns
        known = self._sums
        for author, templated, duplicated, warmth, substance in observations:
            t, d = int(templated), int(duplicated)
            times.append(now)
            authors.append(author)
            templated_of.append(t)
            duplicated_of.append(d)
            warmth_of.append(warmth)
            substance_of.append(substance)
            sums = known.get(author)
            if sums is None:
                sums = known[author] = [0, 0, 0, 0.0, 0.0]
            sums[0] += 1
            sums[1] += t
            sums[2] += d
            sums[3] += warmth
            sums[4] += substance

    def stats(self, authors: Sequence[int]) -> dict[int, AuthorStats]:
        out = {}
        known = self._sums
        for author in authors:
            sums = known.get(author)
            if sums is not None:
                out[author] = AuthorStats._make(sums)
        return out


class AuthorWindow:
    """Per-author sums over a rolling window.

    Args:
        config: size and time-to-live (the duplicate window's).
        store: :class:`MemoryAuthorStore` by default, or a Redis one.
        clock: seconds since the epoch.

    Example:
        >>> authors = AuthorWindow(WindowConfig())
        >>> authors.add([AuthorObservation(author_key("u1"), True, False, 0.3, 0.1)])
        >>> authors.summaries(["u1"])[0].template_rate
        1.0
    """

    def __init__(self, config: WindowConfig | None = None, store=None, clock=time.time):
        self.config = config or WindowConfig()
        self.store = store if store is not None else MemoryAuthorStore()
        self.clock = clock
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self.store.clear()

    def add(self, observations: Sequence[AuthorObservation], now: float | None = None) -> None:
        """Add observations seen at ``now`` and evict what the limits drop."""
        now = self.clock() if now is None else now
        with self._lock:
            self.store.add(observations, now)
            self.store.evict(now, self.config.ttl_seconds, self.config.max_size)

    def summaries(self, author_ids: Sequence[str], now: float | None = None) -> list[AuthorSummary]:
        """One summary per distinct id, in order of first appearance."""
        now = self.clock() if now is None else now
        ids = list(dict.fromkeys(author_ids))
        keys = [author_key(a) for a in ids]
        with self._lock:
            self.store.evict(now, self.config.ttl_seconds, self.config.max_size)
            stats = self.store.stats(keys)
        return [AuthorSummary.from_stats(a, stats.get(k, _NO_STATS)) for a, k in zip(ids, keys)]
