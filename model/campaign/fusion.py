"""The fused template score: the model's template score pulled toward 1 by copies.

With ``m`` the model's template score, ``E`` the exact and ``N`` the near copies
of a comment in the window::

    template_fused = 1 - (1 - m) * (1 + E) ** -a * (1 + N) ** -b

The distance to 1 shrinks by a power of the number of copies: with ``a = 0.1``
one copy closes 7% of the gap, ten copies 21%, a hundred 37%; with ``a = 0.3``,
19%, 51% and 75%. A comment without
copies keeps the model's score exactly, so levels read the same way; more copies
never lower a score. ``a`` and ``b`` are fitted on the validation split by
``training/campaign_eval.py`` (least squares against the gold template score).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Fusion:
    """Combine a template score with duplicate counts.

    Args:
        exact_weight: ``a``, the pull of exact copies (>= 0).
        near_weight: ``b``, the pull of near copies (>= 0).

    Example:
        >>> round(Fusion(0.3, 0.15).fuse(0.4, exact_count=9, near_count=0), 3)
        0.699
    """

    exact_weight: float
    near_weight: float

    def __post_init__(self):
        for name in ("exact_weight", "near_weight"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")

    def fuse(self, template: float, exact_count: int, near_count: int) -> float:
        """The fused score of one comment, in [0, 1]."""
        gap = (1.0 - template) * (1.0 + exact_count) ** -self.exact_weight * (1.0 + near_count) ** -self.near_weight
        return min(1.0, max(0.0, 1.0 - gap))

    def fuse_many(self, template, exact_count, near_count) -> np.ndarray:
        """:meth:`fuse` over arrays."""
        t = np.asarray(template, dtype=np.float64)
        e = np.asarray(exact_count, dtype=np.float64)
        n = np.asarray(near_count, dtype=np.float64)
        return np.clip(1.0 - (1.0 - t) * (1.0 + e) ** -self.exact_weight * (1.0 + n) ** -self.near_weight, 0.0, 1.0)
