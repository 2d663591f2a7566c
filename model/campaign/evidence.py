"""Why a comment looks templated: the stock phrases and boilerplate markers it contains.

Phrases come from lexicon files of ``<category><TAB><phrase>`` lines: the stock
phrases and AI markers shipped in ``model/lexicon/``, plus any files a deployment
adds (``ZHENPING_LEXICON_EXTRA``). A ``*`` in a phrase stands for 1-20
characters. A one-character phrase counts only when the comment is that
character alone, repeated or with punctuation, so 顶 marks 顶顶顶 but not 顶级.
Evidence explains a score; it does not change one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from zhenping.model.lexicons import AI_MARKERS, STOCK_PHRASES, load_lexicon

# Categories reported as machine-written boilerplate; every other category is a stock phrase.
AI_CATEGORIES = frozenset({"buzzword", "ai_phrase", "ai_frame", "ai_boilerplate"})
MAX_PHRASES = 8  # phrase evidence per comment, in order of position
FIND_CACHE = 16384  # recent answers remembered, by text
FIND_CACHE_CHARS = 256  # longer texts are searched every time (rarely repeated, costly to keep)
_GAP = ".{1,20}?"


@dataclass(frozen=True)
class Evidence:
    """One reason a comment looks templated.

    Attributes:
        kind: ``"stock_phrase"``, ``"ai_marker"`` or ``"duplicate"``.
        category: the lexicon category (``"filler"``, ``"ad"``, ``"buzzword"``...),
            or for duplicates ``"exact"`` / ``"near"``.
        match: the matched text (normalised, lower-cased); ``None`` for duplicates.
        count: for duplicates, how many copies; ``None`` otherwise.
    """

    kind: str
    category: str
    match: str | None = None
    count: int | None = None

    def as_dict(self) -> dict:
        return {"kind": self.kind, "category": self.category, "match": self.match, "count": self.count}


@lru_cache(maxsize=1024)
def duplicate_evidence(category: str, count: int) -> Evidence:
    """Evidence of ``count`` copies, ``"exact"`` or ``"near"`` (one shared instance per count)."""
    return Evidence("duplicate", category, count=count)


def _regex(phrase: str) -> str:
    """The regular expression of one phrase: its pieces, escaped, with a gap for each ``*``."""
    return _GAP.join(re.escape(piece) for piece in phrase.split("*"))


def _compile(phrases: Sequence[str]) -> re.Pattern | None:
    parts = [_regex(p) for p in phrases if len(p) > 1]
    return re.compile("|".join(parts)) if parts else None


class EvidenceFinder:
    """Find lexicon phrases in normalised comments.

    Args:
        paths: lexicon files, read in order; categories of later files add to
            earlier ones.

    Example:
        >>> finder = EvidenceFinder.default()
        >>> [(e.kind, e.category, e.match) for e in finder.find("沙发!在流量焦虑的当下")][:3]
        [('stock_phrase', 'filler', '沙发'), ('ai_marker', 'ai_frame', '在流量焦虑的当下'), ('ai_marker', 'buzzword', '流量焦虑')]
    """

    def __init__(self, paths: Sequence[str | os.PathLike]):
        self.paths = tuple(Path(p) for p in paths)
        merged: dict[str, set[str]] = {}
        for path in self.paths:
            if not path.is_file():
                raise ValueError(f"lexicon file {path} does not exist")
            for category, phrases in load_lexicon(path).items():
                merged.setdefault(category, set()).update(phrases)
        self._patterns: list[tuple[str, str, re.Pattern | None, frozenset[str], frozenset[str]]] = []
        for category, phrases in merged.items():
            ordered = sorted(phrases, key=lambda s: (-len(s), s))
            kind = "ai_marker" if category in AI_CATEGORIES else "stock_phrase"
            singles = frozenset(p for p in ordered if len(p) == 1)
            firsts = frozenset(p[0] for p in ordered if len(p) > 1)
            self._patterns.append((kind, category, _compile(ordered), singles, firsts))
        self.phrases = sum(len(p) for p in merged.values())
        # Every category's phrases, in one pattern per first character: a text none of them finds
        # anything in (most texts) skips the category patterns, which could find nothing either. A
        # text is searched only with the patterns of its own characters, each of a few phrases; a
        # phrase that opens with a gap is searched in every text.
        by_first: dict[str, list[str]] = {}
        for phrases in merged.values():
            for phrase in sorted(phrases):
                if len(phrase) > 1:
                    by_first.setdefault("" if phrase[0] == "*" else phrase[0], []).append(_regex(phrase))
        self._by_first = {first: re.compile("|".join(parts)) for first, parts in by_first.items() if first}
        self._anywhere = re.compile("|".join(by_first[""])) if "" in by_first else None
        # The categories with one-character phrases, in order: all a text without phrases needs looked at.
        self._single_patterns = [entry for entry in self._patterns if entry[3]]
        # Repeated comments (好听, pasted copies) are the common case: remember recent answers.
        self._cached = lru_cache(maxsize=FIND_CACHE)(self._find)

    @classmethod
    def default(cls, extra: Sequence[str | os.PathLike] = ()) -> "EvidenceFinder":
        """The shipped stock phrases and AI markers, then ``extra`` files."""
        return cls([STOCK_PHRASES, AI_MARKERS, *extra])

    def find(self, normalized: str) -> list[Evidence]:
        """Phrase evidence for one normalised comment, at most :data:`MAX_PHRASES`,
        in order of where each first occurs."""
        if len(normalized) <= FIND_CACHE_CHARS:
            return list(self._cached(normalized))
        return list(self._find(normalized))

    def find_tuple(self, normalized: str) -> tuple[Evidence, ...]:
        """:meth:`find` as a tuple (shared between calls: evidence is immutable)."""
        if len(normalized) <= FIND_CACHE_CHARS:
            return self._cached(normalized)
        return self._find(normalized)

    def _any_phrase(self, text: str, chars: set[str]) -> bool:
        """Whether a phrase of two or more characters occurs in ``text`` (lower-cased;
        ``chars``, its characters): the patterns of the characters it holds, and of
        the phrases that open with a gap, find one."""
        if self._anywhere is not None and self._anywhere.search(text) is not None:
            return True
        by_first = self._by_first
        for first in by_first.keys() & chars:
            if by_first[first].search(text) is not None:
                return True
        return False

    def _find(self, normalized: str) -> tuple[Evidence, ...]:
        text = normalized.lower()
        chars = set(text)
        alnum = None  # the distinct letters and digits of the text, when a one-character phrase needs them
        found: dict[tuple[str, str], tuple[int, Evidence]] = {}
        phrases = self._any_phrase(text, chars)
        for kind, category, pattern, singles, firsts in (self._patterns if phrases else self._single_patterns):
            matched = False
            # A phrase can only match where its first character occurs.
            if phrases and pattern is not None and not firsts.isdisjoint(chars):
                for m in pattern.finditer(text):
                    matched = True
                    key = (category, m.group())
                    if key not in found:
                        found[key] = (m.start(), Evidence(kind, category, m.group()))
            if not matched and singles and not singles.isdisjoint(chars):
                if alnum is None:
                    alnum = [ch for ch in chars if ch.isalnum()]
                if len(alnum) == 1 and alnum[0] in singles:
                    key = (category, alnum[0])
                    found.setdefault(key, (text.find(alnum[0]), Evidence(kind, category, alnum[0])))
        if not found:
            return ()
        ranked = sorted(found.values(), key=lambda pair: (pair[0], -len(pair[1].match or "")))
        return tuple(ev for _, ev in ranked[:MAX_PHRASES])
