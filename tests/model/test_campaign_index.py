"""The compiled band table (model/campaign/_bands.c) against the pure-Python one.

The window keeps its signatures and LSH band buckets either in dicts and sets or in
the compiled ``BandIndex``; both must give the same answers, step by step, through
additions, full buckets, id replacements, retirements and evictions.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from zhenping.model.campaign import WindowConfig
from zhenping.model.campaign.window import (
    BAND_TEXTS,
    DuplicateWindow,
    MemoryStore,
    Signer,
    caller_key,
)
from zhenping.model.normalize import normalize_text
from tests.helpers import needs_compiled_window

pytestmark = needs_compiled_window

TEMPLATE = "这家店的东西真的太好用了强烈推荐给大家买到就是赚到闭眼入不会后悔"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_compiled_and_python_windows_answer_alike(seed):
    # The recorded stream's generator (templates with campaign edits, short repeats, ids seen again
    # with the same text or an edit, lookups without recording), through a small window that
    # evicts by size and by age.
    from tests.model.campaign_stream import requests

    config = WindowConfig(max_size=150, ttl_seconds=40.0)
    windows = {index: DuplicateWindow(config, store=MemoryStore(index=index)) for index in ("python", "compiled")}
    assert windows["compiled"].store.index == "compiled" and windows["python"].store.index == "python"
    near_seen = 0
    for now, batch, _, record in requests(seed, comments=1_200):
        texts = [normalize_text(text) for text, *_ in batch]
        callers = [caller_key(cid) for _, cid, *_ in batch]
        answers = {index: w.observe_texts(texts, callers, now=now, record=record) for index, w in windows.items()}
        assert answers["compiled"] == answers["python"], now
        near_seen += sum(d.near_count > 0 for d in answers["compiled"][0])
        py, c = windows["python"].store, windows["compiled"].store
        assert len(py) == len(c) and py.distinct_texts == c.distinct_texts and py.ids_held == c.ids_held
        assert sorted(py.bucket_sizes()) == sorted(c.bucket_sizes())
    assert near_seen > 100  # the stream did exercise near copies


def test_full_buckets_match():
    # A flood of variants of one text fills buckets to BAND_TEXTS in both tables alike.
    config = WindowConfig(max_size=5_000)
    windows = [DuplicateWindow(config, store=MemoryStore(index=index)) for index in ("python", "compiled")]
    base = TEMPLATE
    variants = [normalize_text(base[:k] + f"{k}号{'好' * (k % 5)}" + base[k:]) for k in range(1, len(base))] * 6
    variants = [v + str(i) for i, v in enumerate(variants)]
    for i in range(0, len(variants), 25):
        a, b = (w.observe_texts(variants[i:i + 25], [None] * len(variants[i:i + 25]), now=float(i)) for w in windows)
        assert a == b
    sizes = [sorted(w.store.bucket_sizes()) for w in windows]
    assert sizes[0] == sizes[1] and max(sizes[1]) == BAND_TEXTS


def _brute_near(held: dict, cap_members: dict, key, sig, bands, min_equal):
    cands = set()
    for b in bands:
        cands |= cap_members.get(b, set())
    cands.discard(key)
    return {c for c in cands if held[c][0] is not None and int(np.count_nonzero(held[c][0] == sig)) >= min_equal}


def test_band_index_random_operations_match_a_model():
    # Thousands of inserts and removes over a small space of band keys (buckets shared, filled to the
    # cap, emptied, refilled): membership, bucket sizes and near answers follow a dict-of-sets model.
    from zhenping.model.campaign._bands import BandIndex

    rng = np.random.default_rng(5)
    cap, width = 4, 8
    index = BandIndex(cap)
    assert index.cap == cap
    held: dict[int, tuple] = {}  # key -> (sig, bands)
    buckets: dict[int, list[int]] = {}  # band -> members in arrival order (a full bucket takes no more)
    for step in range(6_000):
        if held and rng.random() < 0.45:
            key = list(held)[int(rng.integers(len(held)))]
            index.remove(key)
            for b in held.pop(key)[1]:
                if key in buckets.get(b, []):
                    buckets[b].remove(key)
                    if not buckets[b]:
                        del buckets[b]
        else:
            key = int(rng.integers(0, 2**64, dtype=np.uint64))
            sig = None if rng.random() < 0.05 else rng.integers(0, 3, size=width).astype(np.uint32)
            bands = tuple(int(b) for b in rng.integers(0, 60, size=3))
            index.insert(key, sig, bands)
            held[key] = (sig, bands)
            for b in bands:
                members = buckets.setdefault(b, [])
                if key not in members and len(members) < cap:
                    members.append(key)
        if step % 97 == 0:
            assert len(index) == len(held)
            model = {b: set(m) for b, m in buckets.items()}
            assert index.members(list(range(60))) == model
            assert sorted(index.bucket_sizes()) == sorted(len(m) for m in model.values())
            assert index.bands == len(model)
            probe_keys = [int(k) for k in rng.integers(0, 2**64, size=5, dtype=np.uint64)]
            probe_sigs = [rng.integers(0, 3, size=width).astype(np.uint32) for _ in probe_keys]
            probe_bands = [tuple(int(b) for b in rng.integers(0, 60, size=3)) for _ in probe_keys]
            if held:  # a held text asks too: it is never its own near copy
                own = next(iter(held))
                if held[own][0] is not None:
                    probe_keys.append(own)
                    probe_sigs.append(held[own][0])
                    probe_bands.append(held[own][1])
            got = index.near_many(probe_keys, probe_sigs, probe_bands, 5)
            want = [_brute_near(held, model, k, s, b, 5) for k, s, b in zip(probe_keys, probe_sigs, probe_bands)]
            assert got == want, step
    for key in list(held):
        index.remove(key)
    assert len(index) == 0 and index.bucket_sizes() == [] and index.bands == 0


def test_band_index_signatures_round_trip_and_clear():
    from zhenping.model.campaign._bands import BandIndex

    index = BandIndex()
    sig = np.arange(128, dtype=np.uint32)
    index.insert(7, sig, (1, 2, 3))
    index.insert(7, sig + 1, (4,))  # already held: left as it is
    assert index.signature(7) == sig.tobytes() and index.signature(8) is None
    assert index.members([1, 4]) == {1: {7}}
    index.insert(9, None, (1,))
    assert index.signature(9) is None and index.members([1]) == {1: {7, 9}}
    assert index.near_many([10], [sig], [(1,)], 128) == [{7}]  # a text without a signature is no one's copy
    index.clear()
    assert len(index) == 0 and index.members([1, 2, 3]) == {}


def test_band_index_refuses_what_it_cannot_hold():
    from zhenping.model.campaign._bands import BandIndex

    index = BandIndex()
    index.insert(1, np.zeros(128, dtype=np.uint32), (5,))
    with pytest.raises(ValueError, match="signature of 64 values in an index of 128"):
        index.insert(2, np.zeros(64, dtype=np.uint32), (5,))
    with pytest.raises(ValueError, match="signature of 64 values in an index of 128"):
        index.near_many([3], [np.zeros(64, dtype=np.uint32)], [(5,)], 10)
    with pytest.raises(ValueError, match="differ in length"):
        index.near_many([3, 4], [None], [()], 10)
    with pytest.raises(TypeError, match="band keys must be a sequence of ints"):
        index.insert(3, np.zeros(128, dtype=np.uint32), 5)
    with pytest.raises(ValueError, match="cap must be at least 1"):
        BandIndex(0)
    assert len(index) == 1  # nothing half-added


def test_memory_store_index_choice_is_checked(monkeypatch):
    with pytest.raises(ValueError, match="index must be 'auto', 'compiled' or 'python', not 'fast'"):
        MemoryStore(index="fast")
    assert MemoryStore().index == "compiled"  # built here, so the default takes it
    from zhenping.model.campaign import window

    monkeypatch.setattr(window, "_CompiledIndex", None)
    with pytest.raises(RuntimeError, match="was not built"):
        MemoryStore(index="compiled")
    assert MemoryStore().index == "python"  # a build without a C compiler still has a window


def _random_forms(rng: random.Random, n: int) -> list[str]:
    alphabet = "的一是了我不人在他有这个上们来到时大地为子中你说生国年着就那和要她出也得里后自以会" \
               "abcXYZ0123😊🎉𠀋𪚥"  # astral code points too
    forms = []
    for _ in range(n):
        size = rng.choice([0, 1, 2, 3, 5, 18, 40, 300])
        forms.append("".join(rng.choice(alphabet) for _ in range(size)))
    forms.append("长" * 9000)  # more shingles than one array chunk of the array code
    return forms


@pytest.mark.parametrize(("threshold", "num_perm", "shingle"), [(0.5, 64, 2), (0.6, 128, 3), (0.7, 96, 2)])
def test_compiled_signing_gives_the_array_codes_values(threshold, num_perm, shingle):
    config = WindowConfig(threshold=threshold, num_perm=num_perm, shingle=shingle)
    compiled, arrays = Signer(config, compiled=True), Signer(config, compiled=False)
    forms = _random_forms(random.Random(num_perm), 200)
    for mode in (None, "local", "shared"):
        got_sigs, got_bands = compiled.sign(forms, mode)
        want_sigs, want_bands = arrays.sign(forms, mode)
        assert got_bands == want_bands
        assert [None if s is None else s.tolist() for s in got_sigs] == \
               [None if s is None else s.tolist() for s in want_sigs]


def test_the_signing_settings_cover_both_band_layouts():
    # Even rows read two signature values per 64-bit word, odd rows one: both layouts are compared above.
    from zhenping.model.campaign.window import lsh_params

    assert {lsh_params(0.5, 64)[1] % 2, lsh_params(0.7, 96)[1] % 2} == {0, 1}


def test_compiled_signing_refuses_bad_input():
    from zhenping.model.campaign import _bands

    a = np.ones(4, dtype=np.uint32)
    with pytest.raises(ValueError, match="form 0 has 1 code points, fewer than k = 2"):
        _bands.minhash(["好"], 2, a, a)
    with pytest.raises(TypeError, match="form 1 is int, not str"):
        _bands.minhash(["好听", 5], 2, a, a)
    with pytest.raises(ValueError, match="b: 8 bytes, expected 16"):
        _bands.minhash(["好听"], 2, a, a[:2])
    with pytest.raises(ValueError, match="bands x rows must fit"):
        _bands.local_bands(a, 1, 4, 3, 2, np.zeros(3, dtype=np.uint64))


def test_window_core_refuses_a_malformed_observation():
    from zhenping.model.campaign._bands import WindowCore

    core = WindowCore()
    with pytest.raises(TypeError, match="observation 1 is not a 6-tuple"):
        core.add([(None, 1, 1, 0.0, None, ()), (None, 2)], 5.0)
    assert len(core) == 1 and core.distinct_texts == 1  # the rows before it are in
    assert core.held([1, 2]) == {1: (1, 1, 0.0)} and core.held([1])[1].first_seen == 0.0


def test_key_zero_is_a_key_like_any_other():
    # Zero marks an empty slot inside the compiled maps; a text, band or caller key of 0 is held apart.
    from zhenping.model.campaign._bands import BandIndex, WindowCore

    index = BandIndex()
    sig = np.arange(16, dtype=np.uint32)
    index.insert(0, sig, (0, 5))
    index.insert(3, sig, (0,))
    assert index.members([0, 5]) == {0: {0, 3}, 5: {0}} and len(index) == 2
    assert index.near_many([9], [sig], [(0,)], 16) == [{0, 3}]
    index.remove(0)
    assert index.members([0, 5]) == {0: {3}} and index.signature(0) is None
    core = WindowCore()
    core.add([(0, 0, 0, 1.0, sig, (0,)), (0, 7, 7, 2.0, sig, (0,))], 2.0)  # caller 0 posts twice: the first leaves
    assert core.callers([0]) == {0: 7} and core.held([0, 7]) == {7: (1, 7, 2.0)}
    core.evict(100.0, 0.0, 0)
    assert len(core) == 0 and core.distinct_texts == 0 and core.ids_held == 0 and core.bucket_sizes() == []
