"""The phrase lexicons shipped in ``model/lexicon/`` and their one loader.

Each lexicon is a UTF-8 text file, one phrase per line as
``<category><TAB><phrase>``; blank lines and lines starting with ``#`` are
skipped. The rule baseline reads them as features, the service reads them to
explain why a comment looks templated.
"""

from __future__ import annotations

import os
from pathlib import Path

from zhenping.model.normalize import normalize_text

LEXICON_DIR = Path(__file__).resolve().parent / "lexicon"
STOCK_PHRASES = LEXICON_DIR / "stock_phrases.txt"  # phrases that could be pasted under any post
TONE_PHRASES = LEXICON_DIR / "tone_phrases.txt"  # insults and warm phrases
AI_MARKERS = LEXICON_DIR / "ai_markers.txt"  # machine-written boilerplate and buzzword patterns


def load_lexicon(path: str | os.PathLike) -> dict[str, tuple[str, ...]]:
    """Read a ``<category>\\t<phrase>`` lexicon file.

    Phrases are normalised with :func:`normalize_text` and lower-cased; blank
    lines and ``#`` comments are skipped. Returns ``{category: phrases}``,
    longest phrase first within each category.

    Raises:
        ValueError: a line without a tab, naming file and line.

    Example:
        >>> lex = load_lexicon(STOCK_PHRASES)
        >>> "沙发" in lex["filler"]
        True
    """
    path = Path(path)
    out: dict[str, set[str]] = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            cat, sep, phrase = line.partition("\t")
            if not sep or not cat.strip() or not phrase.strip():
                raise ValueError(
                    f"{path}:{lineno}: expected '<category><TAB><phrase>', got {line!r}"
                )
            out.setdefault(cat.strip(), set()).add(normalize_text(phrase).lower())
    return {c: tuple(sorted(p, key=lambda s: (-len(s), s))) for c, p in out.items()}
