"""Text normalisation shared by training and inference.

One function, :func:`normalize_text`, is applied to every comment before it is
tokenised, both when the pipeline builds its training data and when the scorer
scores. It makes different spellings of the same comment identical without
erasing the signals template-likeness depends on (emoji, @mentions, URLs,
repeated punctuation and characters).
"""

from __future__ import annotations

import re
import sys
import unicodedata
from functools import lru_cache
from pathlib import Path

MAX_RUN = 8  # a character repeated more than this many times in a row is capped here

# Zero-width and bidi-control characters carry no meaning for scoring and are a
# common way to dodge exact-match filters.
_INVISIBLE = re.compile(
    "[\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff\u00ad\u180e]"
)
_WHITESPACE = re.compile(r"\s+")
_RUN = re.compile(r"(.)\1{%d,}" % MAX_RUN, re.DOTALL)


@lru_cache(maxsize=1)
def _t2s():
    import opencc

    # The pure-Python OpenCC port accepts "t2s"; the C++ binding wants "t2s.json".
    try:
        return opencc.OpenCC("t2s")
    except Exception:  # noqa: BLE001 - the two bindings raise different types
        return opencc.OpenCC("t2s.json")


@lru_cache(maxsize=1)
def _t2s_triggers() -> dict[str, tuple[str, ...] | None] | None:
    """What the t2s conversion can change, or ``None`` if its dictionaries cannot be read.

    Maps a character to ``None`` when the character table changes it (any text
    holding it is converted), or to the phrases that change at that character
    (the text is converted only if it holds one of them: 么 is left alone except
    in a few phrases, say). A text that triggers nothing comes out of the
    conversion unchanged, so the (pure-Python, slow) converter can be skipped:
    most comments are already simplified.
    """
    try:
        import opencc

        folder = Path(opencc.__file__).parent / "dictionary"
        chars: set[str] = set()
        phrases: dict[str, set[str]] = {}
        for name in ("TSPhrases.txt", "TSCharacters.txt"):
            with open(folder / name, encoding="utf-8") as fh:
                for line in fh:
                    key, _, values = line.rstrip("\n").partition("\t")
                    key = key.strip()
                    value = values.split(" ", 1)[0].strip()  # the converter takes the first candidate
                    if not key or key == value:
                        continue
                    if len(key) == 1:
                        chars.add(key)
                        continue
                    differing = key if len(key) != len(value) else [k for k, v in zip(key, value) if k != v]
                    for ch in differing:
                        phrases.setdefault(ch, set()).add(key)
    except (ImportError, OSError, UnicodeDecodeError):
        return None  # another OpenCC binding: always convert
    if not chars and not phrases:
        return None
    triggers: dict[str, tuple[str, ...] | None] = {ch: tuple(sorted(ps)) for ch, ps in phrases.items()}
    triggers.update(dict.fromkeys(chars))
    return triggers


def _to_simplified(text: str) -> str:
    triggers = _t2s_triggers()
    if triggers is not None:
        for ch in triggers.keys() & set(text):
            found = triggers[ch]
            if found is None or any(phrase in text for phrase in found):
                break
        else:
            return text
    return _t2s().convert(text)


_CONTROL_CATEGORIES = ("Cc", "Cf", "Cs", "Co")
_SPACE_CONTROLS = "\t\n\r\x0b\x0c"
_TO_SPACE = str.maketrans({ch: " " for ch in _SPACE_CONTROLS})


@lru_cache(maxsize=1)
def _controls_pattern() -> re.Pattern:
    """One character class of every code point in categories Cc/Cf/Cs/Co (by this
    Python's Unicode database), white-space controls left out; built once, on first use."""
    ranges: list[tuple[int, int]] = []
    for cp in range(sys.maxunicode + 1):
        if unicodedata.category(chr(cp)) in _CONTROL_CATEGORIES and chr(cp) not in _SPACE_CONTROLS:
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1] = (ranges[-1][0], cp)
            else:
                ranges.append((cp, cp))
    parts = "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges)
    return re.compile(f"[{parts}]")


def _strip_controls(text: str) -> str:
    # Categories Cc/Cf/Cs/Co: control, format, surrogate, private use. Whitespace
    # controls (\t, \n, \r, \v, \f) become spaces so that words they separated stay apart.
    # Unassigned code points (Cn) stay: newer emoji are unassigned to an older
    # Unicode database and still carry signal.
    return _controls_pattern().sub("", text.translate(_TO_SPACE))


def _normalize_once(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = _INVISIBLE.sub("", text)
    text = _strip_controls(text)
    text = _to_simplified(text)
    text = _WHITESPACE.sub(" ", text).strip()
    text = _RUN.sub(lambda m: m.group(1) * MAX_RUN, text)
    return text


def normalize_text(text: str) -> str:
    """Normalise one comment for scoring.

    Applies Unicode NFKC, removes zero-width and control characters, converts
    traditional to simplified Chinese, collapses white space and caps runs of one
    repeated character at ``MAX_RUN``. Emoji, @mentions, URLs and punctuation are
    kept. The result is idempotent: ``normalize_text(normalize_text(s)) ==
    normalize_text(s)``.

    Args:
        text: the raw comment.

    Returns:
        The normalised comment (possibly empty).

    Example:
        >>> normalize_text("  好評！！！！！！！！！！  ")
        '好评!!!!!!!!'
    """
    if not isinstance(text, str):
        raise TypeError(f"normalize_text expects str, got {type(text).__name__}")
    if len(text) <= _MEMO_MAX_CHARS:
        return _normalize_memo(text)
    return _normalize(text)


# Comment streams repeat themselves (好听, 默认好评, 火钳刘明): short texts'
# results are remembered, a bounded few megabytes at most.
_MEMO_MAX_CHARS = 128
_MEMO_SIZE = 16384


def _normalize(text: str) -> str:
    # NFKC and t2s can each expose something the other then changes (a
    # compatibility form that maps to a traditional character, say), so repeat
    # until nothing changes. In practice this is one or two passes.
    for _ in range(4):
        out = _normalize_once(text)
        if out == text:
            return out
        text = out
    return text


_normalize_memo = lru_cache(maxsize=_MEMO_SIZE)(_normalize)
