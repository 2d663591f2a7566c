"""Stable train/validation/test assignment from a hash of the normalised text.

The split of a comment depends on its normalised text alone, so one text never
lands in two splits, duplicates of a test comment are always test comments, and
adding data never moves an existing row.
"""

from __future__ import annotations

import hashlib

from zhenping.model.normalize import normalize_text

SPLITS = ("train", "validation", "test")
BOUNDS = (80, 90)  # percent: [0, 80) train, [80, 90) validation, [90, 100) test


def split_of_normalized(norm: str) -> str:
    """Split for a text that is already normalised."""
    bucket = int.from_bytes(hashlib.sha1(norm.encode("utf-8")).digest()[:8], "big") % 100
    if bucket < BOUNDS[0]:
        return "train"
    if bucket < BOUNDS[1]:
        return "validation"
    return "test"


def split_of(text: str) -> str:
    """Split for a raw text: ``train`` (80 %), ``validation`` (10 %) or ``test`` (10 %).

    Example:
        >>> split_of("好听") in SPLITS
        True
    """
    return split_of_normalized(normalize_text(text))
