"""LRU score cache: eviction order, recency, hit and miss counts."""

from __future__ import annotations

import pytest

from zhenping.api.cache import LRUCache


def test_evicts_the_least_recently_used():
    cache = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("c", 3)
    assert "a" not in cache
    assert cache.get("b") == 2 and cache.get("c") == 3
    assert len(cache) == 2


def test_get_refreshes_recency():
    cache = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)  # "b" is now the oldest
    assert "b" not in cache
    assert "a" in cache and "c" in cache


def test_put_of_an_existing_key_updates_and_refreshes():
    cache = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("a", 10)
    cache.put("c", 3)
    assert cache.get("a") == 10
    assert "b" not in cache


def test_counts_hits_and_misses_but_not_membership():
    cache = LRUCache(3)
    cache.put(("v1", "好"), "s")
    assert cache.get(("v1", "好")) == "s"
    assert cache.get(("v2", "好")) is None  # another model version is another key
    assert cache.get(("v1", "差")) is None
    assert ("v1", "好") in cache
    assert (cache.hits, cache.misses) == (1, 2)


def test_capacity_zero_disables_caching():
    cache = LRUCache(0)
    cache.put("a", 1)
    assert len(cache) == 0
    assert cache.get("a") is None
    assert cache.misses == 1


def test_clear_keeps_counters():
    cache = LRUCache(2)
    cache.put("a", 1)
    cache.get("a")
    cache.clear()
    assert len(cache) == 0 and cache.hits == 1


@pytest.mark.parametrize("capacity", [-1, 1.5, "3", True])
def test_invalid_capacity(capacity):
    with pytest.raises(ValueError, match="capacity must be an int >= 0"):
        LRUCache(capacity)
