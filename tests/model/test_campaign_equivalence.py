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
