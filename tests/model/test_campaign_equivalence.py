"""The detector's answers on a fixed stream stay what they were recorded as.

Faster code paths (batched signatures, caches, vectorised band keys) must not
change a single cluster id, count, campaign score, action or likes flag: the
answers on :mod:`tests.model.campaign_stream` are compared with the recorded
ones (floats to 1e-9 relative).
"""

from __future__ import annotations

import math

from tests.model.campaign_stream import load_expected, run


def _same(a, b, path="") -> str | None:
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) \
                and not isinstance(b, bool) and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12):
            return None
        return f"{path}: {a!r} != {b!r}"
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            found = _same(x, y, f"{path}[{i}]")
            if found:
                return found
        return None
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return f"{path}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            found = _same(a[k], b[k], f"{path}.{k}")
            if found:
                return found
        return None
    return None if a == b else f"{path}: {a!r} != {b!r}"


def test_answers_on_the_fixed_stream_are_the_recorded_ones():
    expected = load_expected()
    got = run()
    assert sum(len(r["results"]) for r in got) >= 2500
    # The stream reaches every path: folds and reviews, near copies, ids seen again, likes flagged.
    flat = [res for r in expected for res in r["results"]]
    assert {res[7] for res in flat} == {"pass", "review", "fold"}
    assert any(res[1] > 0 for res in flat) and any(res[4] for res in flat) and any(res[10] for res in flat)
    problem = _same(got, expected, "requests")
    assert problem is None, problem


def test_warm_caches_answer_the_same():
    # Per-text caches outlive a detector; a second run over the same texts must not answer differently.
    assert _same(run(comments=600), run(comments=600)) is None


def test_batched_signatures_are_datasketch_minhash_in_any_batch():
    import random
    import unicodedata

    import numpy as np
    from datasketch import MinHash

    from zhenping.model.campaign import WindowConfig
    from zhenping.model.campaign.window import SIGN_CHUNK, Signer, hash64

    config = WindowConfig()
    signer = Signer(config)
    rng = random.Random(3)
    chars = "好听的歌曲让我想起了高三晚自习abc123"
    forms = ["", "好", "好听", "好听的", "好听好听好听好听", *("".join(rng.choice(chars) for _ in range(rng.randint(3, 80)))
                                                 for _ in range(40)),
             "".join(rng.choice(chars + "一二三四五六七八九十") for _ in range(SIGN_CHUNK + 500))]
    rng.shuffle(forms)
    for attempt in range(2):  # cold, then with every shingle's hash remembered
        got = signer.signatures(forms)
        for form, sig in zip(forms, got):
            if not form:
                assert sig is None
            elif len(form) < config.shingle:
                assert np.array_equal(sig, np.full(config.num_perm, hash64(form) & 0xFFFFFFFF, dtype=np.uint32))
            else:
                m = MinHash(num_perm=config.num_perm, seed=config.seed)
                k = config.shingle
                m.update_batch({form[i:i + k].encode("utf-8") for i in range(len(form) - k + 1)})
                assert np.array_equal(sig, m.hashvalues), (attempt, form[:20])
            assert sig is None or (sig.base is None and sig.dtype == np.uint32)
    assert [signer.signature(f) is None for f in forms] == [not f for f in forms]
    # The shingle form drops exactly emoji codes, Unicode punctuation, symbols and combining marks,
    # then filler particles.
    import re

    from zhenping.model.campaign.window import shingle_form

    sample = "".join(chr(c) for c in range(0x20, 0x3100)) + "好听!!!。“”😂[doge]啊"
    content = "".join(ch for ch in re.sub(r"\[[^\[\]]{1,8}\]", "", sample)
                      if unicodedata.category(ch)[0] not in "PS" and unicodedata.category(ch) != "Mn")
    assert shingle_form(sample) == "".join(ch for ch in content if ch not in "的了啊呀哦嗯哈吧呢")
    # A text of nothing but symbols keeps them, without punctuation.
    assert shingle_form("😂!😂。") == "😂😂"


def test_a_full_shingle_cache_is_cleared_without_losing_the_batch(monkeypatch):
    # A request whose shingles overflow the cache clears it; hashes of shingles that were cached
    # before the clear must still reach the signature (once a KeyError, a 500 on a long-running server).
    import random

    import numpy as np
    from datasketch import MinHash

    from zhenping.model.campaign import WindowConfig
    from zhenping.model.campaign import window as window_module

    monkeypatch.setattr(window_module, "GRAM_CACHE", 200)
    config = WindowConfig()
    signer = window_module.Signer(config)
    rng = random.Random(5)
    chars = "好听的歌曲让我想起了高三晚自习一二三四五六七八九十"
    forms = ["".join(rng.choice(chars) for _ in range(rng.randint(3, 40))) for _ in range(300)]
    for start in range(0, len(forms), 16):
        batch = forms[start:start + 16]
        for form, sig in zip(batch, signer.signatures(batch)):
            m = MinHash(num_perm=config.num_perm, seed=config.seed)
            k = config.shingle
            m.update_batch({form[i:i + k].encode("utf-8") for i in range(len(form) - k + 1)})
            assert np.array_equal(sig, m.hashvalues), form
        assert len(signer._grams) <= 200 + 16 * 40


def test_local_band_keys_are_equal_exactly_where_bands_are():
    import numpy as np

    from zhenping.model.campaign import WindowConfig
    from zhenping.model.campaign.window import Signer

    signer = Signer(WindowConfig())
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**32, size=(50, signer.num_perm), dtype=np.uint32)
    sigs = [row.copy() for row in base]
    for i in range(1, 50, 2):  # odd rows copy some bands of their predecessor
        for band in rng.choice(signer.bands, size=3, replace=False):
            lo, hi = band * signer.rows, (band + 1) * signer.rows
            sigs[i][lo:hi] = sigs[i - 1][lo:hi]
    keys = signer.local_band_keys(sigs)
    assert all(len(k) == signer.bands for k in keys)
    all_keys = [k for row in keys for k in row]
    for i in range(50):
        for j in range(i + 1, 50):
            for band in range(signer.bands):
                lo, hi = band * signer.rows, (band + 1) * signer.rows
                same = np.array_equal(sigs[i][lo:hi], sigs[j][lo:hi])
                assert (keys[i][band] == keys[j][band]) == same
    assert len(set(all_keys)) == len(all_keys) - 3 * 25  # and no key is shared across bands
