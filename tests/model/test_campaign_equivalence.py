"""The detector's answers on a fixed stream stay what they were recorded as.

Faster code paths (batched signatures, caches, vectorised band keys) must not
change a single cluster id, count, campaign score, action or likes flag: the
answers on :mod:`tests.model.campaign_stream` are compared with the recorded
ones (floats to 1e-9 relative).
"""

from __future__ import annotations

import math

import pytest

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


def reference_signature(form: str, config) -> list[int]:
    """MinHash of a form as the window defines it, one shingle at a time in plain Python integers:
    hash = high 32 bits of MurmurHash3's 64-bit finaliser of a polynomial (base FNV-1's 64-bit
    prime) over the shingle's code points; value i = min over shingles of (a_i * hash + b_i) mod 2**32,
    with datasketch's permutations for the seed."""
    from datasketch import MinHash

    mask = (1 << 64) - 1
    a, b = MinHash(num_perm=config.num_perm, seed=config.seed).permutations
    a = [int(x) & 0xFFFFFFFF for x in a]
    b = [int(x) & 0xFFFFFFFF for x in b]
    hashes = []
    for i in range(len(form) - config.shingle + 1):
        h = 0
        for j, ch in enumerate(form[i:i + config.shingle]):
            h = ord(ch) if j == 0 else (h * 0x100000001B3 + ord(ch)) & mask
        h ^= h >> 33
        h = (h * 0xFF51AFD7ED558CCD) & mask
        h ^= h >> 33
        h = (h * 0xC4CEB9FE1A85EC53) & mask
        h ^= h >> 33
        hashes.append(h >> 32)
    return [min((ai * h + bi) & 0xFFFFFFFF for h in hashes) for ai, bi in zip(a, b)]


@pytest.mark.parametrize("shingle", [2, 3])
def test_batched_signatures_are_the_reference_minhash_in_any_batch(shingle):
    import random

    import numpy as np

    from zhenping.model.campaign import WindowConfig
    from zhenping.model.campaign.window import SIGN_CHUNK, Signer, hash64

    config = WindowConfig(shingle=shingle)
    signer = Signer(config)
    rng = random.Random(3)
    chars = "好听的歌曲让我想起了高三晚自习abc123😂𠀀"  # an astral-plane character too
    forms = ["", "好", "好听", "好听的", "好听好听好听好听", *("".join(rng.choice(chars) for _ in range(rng.randint(3, 80)))
                                                 for _ in range(40)),
             "".join(rng.choice(chars + "一二三四五六七八九十") for _ in range(SIGN_CHUNK + 500))]
    rng.shuffle(forms)
    for attempt in range(2):  # the same answers signed again
        got = signer.signatures(forms)
        for form, sig in zip(forms, got):
            if not form:
                assert sig is None
            elif len(form) < config.shingle:
                assert np.array_equal(sig, np.full(config.num_perm, hash64(form) & 0xFFFFFFFF, dtype=np.uint32))
            else:
                assert sig.tolist() == reference_signature(form, config), (attempt, form[:20])
            assert sig is None or (sig.base is None and sig.dtype == np.uint32)
        # One at a time, the same as in a batch.
        assert all((a is None and b is None) or np.array_equal(a, b)
                   for a, b in zip(got, (signer.signature(f) for f in forms)))
    assert [signer.signature(f) is None for f in forms] == [not f for f in forms]


def test_the_shingle_form_drops_exactly_codes_punctuation_symbols_marks_then_fillers():
    import re
    import unicodedata

    from zhenping.model.campaign.window import shingle_form

    sample = "".join(chr(c) for c in range(0x20, 0x3100)) + "好听!!!。“”😂[doge]啊"
    content = "".join(ch for ch in re.sub(r"\[[^\[\]]{1,8}\]", "", sample)
                      if unicodedata.category(ch)[0] not in "PS" and unicodedata.category(ch) != "Mn")
    assert shingle_form(sample) == "".join(ch for ch in content if ch not in "的了啊呀哦嗯哈吧呢")
    # A text of nothing but symbols keeps them, without punctuation.
    assert shingle_form("😂!😂。") == "😂😂"


def test_estimated_similarity_follows_the_shingle_sets_jaccard():
    import random

    import numpy as np

    from zhenping.model.campaign import WindowConfig
    from zhenping.model.campaign.window import Signer

    config = WindowConfig()
    signer = Signer(config)
    rng = random.Random(11)
    chars = "的一是了我不人在他有这个上们来到时大地为子中你说生国年着就那和要她出也得里后自以会家可下而过天去能对小多"
    errors = []
    for _ in range(300):
        base = "".join(rng.choice(chars) for _ in range(rng.randint(8, 40)))
        edited = list(base)
        for _ in range(rng.randint(0, len(base) // 2)):
            edited[rng.randrange(len(edited))] = rng.choice(chars)
        edited = "".join(edited)
        grams = lambda t: {t[i:i + config.shingle] for i in range(len(t) - config.shingle + 1)}  # noqa: E731
        x, y = grams(base), grams(edited)
        errors.append(signer.similarity(signer.signature(base), signer.signature(edited)) - len(x & y) / len(x | y))
    errors = np.array(errors)
    # 64 permutations: an unbiased estimate with a standard error of at most 1 / (2 * sqrt(64)).
    assert abs(errors.mean()) < 0.02 and errors.std() < 0.0625


@pytest.mark.parametrize("threshold", [0.5, 0.6, 0.9])  # 4, 5 and 16 rows per band: paired and unpaired values
def test_local_band_keys_are_equal_exactly_where_bands_are(threshold):
    import numpy as np

    from zhenping.model.campaign import WindowConfig
    from zhenping.model.campaign.window import Signer

    signer = Signer(WindowConfig(threshold=threshold))
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
    # A signature that is a strided view (not contiguous) gets the same keys.
    strided = np.stack([np.concatenate([row, row]) for row in sigs])[:, ::2]
    assert signer._local_band_matrix(np.ascontiguousarray(strided)) == signer._local_band_matrix(strided)


def test_the_window_pass_made_first_gives_the_same_answers():
    """The service makes each request's window pass while the model scores, then the rest."""
    problem = _same(run(split=True), load_expected(), "requests")
    assert problem is None, problem


def test_a_window_pass_of_another_batch_size_is_refused():
    from zhenping.model.campaign import CampaignConfig, CampaignDetector
    from zhenping.model.scorer import CommentScores

    detector = CampaignDetector.build(CampaignConfig(), clock=lambda: 0.0)
    observed = detector.observe(["好听", "好听"], [None, None])
    with pytest.raises(ValueError, match="window pass holds 2"):
        detector.process_columns(["好听"], [None], [None], [None], [None], [CommentScores(0.5, 0.5, 0.5)],
                                 observed=observed)
    with pytest.raises(ValueError, match="2 texts but 1 ids"):
        detector.observe(["好听", "好听"], [None])
