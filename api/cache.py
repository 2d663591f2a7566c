"""A small least-recently-used cache of scores.

Keys are ``(model_version, normalised_text)``: a repeated comment (and comment
sections are full of repeats: "沙发", "默认好评", "👍👍👍") is answered without
the model, and a different model never reads another model's scores.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class LRUCache(Generic[V]):
    """A bounded mapping that evicts the least recently used entry.

    Not thread-safe: the service touches it only from the event loop.

    Args:
        capacity: the most entries kept; 0 disables caching (every lookup misses).

    Example:
        >>> cache = LRUCache(2); cache.put("a", 1); cache.put("b", 2); _ = cache.get("a"); cache.put("c", 3)
        >>> cache.get("b") is None, cache.hits, cache.misses
        (True, 1, 1)
    """

    def __init__(self, capacity: int):
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 0:
            raise ValueError(f"capacity must be an int >= 0, got {capacity!r}")
        self.capacity = capacity
        self._data: OrderedDict[Hashable, V] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: Hashable) -> bool:
        # Membership does not count as a use: no reordering, no hit counted.
        return key in self._data

    def get(self, key: Hashable) -> V | None:
        """The cached value (marking it most recently used), or ``None``; counts a hit or a miss."""
        try:
            value = self._data[key]
        except KeyError:
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: Hashable, value: V) -> None:
        """Store ``value`` as the most recently used entry, evicting the oldest beyond capacity."""
        if self.capacity == 0:
            return
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.capacity:
            self._data.popitem(last=False)

    def clear(self) -> None:
        """Drop every entry (counters are kept)."""
        self._data.clear()
