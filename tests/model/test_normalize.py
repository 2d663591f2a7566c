"""normalize_text: total on every string, idempotent, and the documented rewrites."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zhenping.model.normalize import MAX_RUN, normalize_text

# Any code point except surrogates (which a Python str from decoded text never
# holds), mixed with fragments normalisation rewrites: controls, zero-width and
# bidi marks, full-width forms, traditional characters, emoji sequences.
_ANY = st.characters(blacklist_categories=("Cs",))
_TRICKY = st.sampled_from(
    list("\t\n\r\x0b\x0c\x00\x1f\x7f\u00a0\u3000\u200b\u200d\u2060\ufeff\u00ad\u202e")
    + list("ＡＢ１！？。，、～愛說這個們時間後發現國乾隆髮")
    + ["👍", "😂", "👨\u200d👩\u200d👧", "🇨🇳", "①", "㎡", "ﬁ", "Å", "é"]
    + list("哈啊!?。 aA1")
)
TEXTS = st.lists(
    st.one_of(st.text(alphabet=_ANY, max_size=6), _TRICKY), max_size=20
).map("".join)
RUNS = st.builds(
    lambda ch, n, pre, post: pre + ch * n + post,
    st.one_of(_TRICKY, _ANY),
    st.integers(min_value=1, max_value=40),
    TEXTS,
    TEXTS,
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(TEXTS, RUNS))
def test_never_raises_and_returns_str(text):
    out = normalize_text(text)
    assert isinstance(out, str)
    assert out == out.strip()
    assert "  " not in out
    for ch in "\t\n\r\u200b\ufeff":
        assert ch not in out


@settings(max_examples=300, deadline=None)
@given(st.one_of(TEXTS, RUNS))
def test_idempotent(text):
    once = normalize_text(text)
    assert normalize_text(once) == once


@settings(max_examples=200, deadline=None)
@given(st.one_of(TEXTS, RUNS))
def test_no_run_longer_than_max_run(text):
    out = normalize_text(text)
    run = 1
    for prev, cur in zip(out, out[1:]):
        run = run + 1 if cur == prev else 1
        assert run <= MAX_RUN


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ＡＢＣ１２３！", "ABC123!"),  # NFKC: full-width to half-width
        ("？，：；（）", "?,:;()"),
        ("這個東西很好，說實話", "这个东西很好,说实话"),  # traditional to simplified
        ("愛你們", "爱你们"),
        ("a\u200bb\u200cc\u200dd\u2060e\ufeff", "abcde"),  # zero-width removed
        ("\u202e反转\u202c", "反转"),  # bidi controls removed
        ("soft\u00adhyphen", "softhyphen"),
        ("  好 \t\n 看\r\n  ", "好 看"),  # white space collapsed and trimmed
        ("好\u3000看", "好 看"),  # ideographic space is white space
        ("a\x00b\x07c", "abc"),  # C0 controls dropped
        ("", ""),
        ("   ", ""),
    ],
)
def test_examples(raw, expected):
    assert normalize_text(raw) == expected


def test_long_runs_capped_at_max_run():
    assert normalize_text("哈" * 30) == "哈" * MAX_RUN
    assert normalize_text("!" * (MAX_RUN + 1)) == "!" * MAX_RUN
    assert normalize_text("好" * MAX_RUN) == "好" * MAX_RUN  # exactly MAX_RUN: untouched
    assert normalize_text("６" * 12) == "6" * MAX_RUN  # capped after NFKC
    assert normalize_text("好評！！！！！！！！！！") == "好评" + "!" * MAX_RUN


def test_short_repetition_is_kept():
    # Runs up to MAX_RUN and repeated words carry template signal: keep them.
    assert normalize_text("顶顶顶") == "顶顶顶"
    assert normalize_text("好评!好评!好评!") == "好评!好评!好评!"
    assert normalize_text("哈哈哈哈哈") == "哈哈哈哈哈"


@pytest.mark.parametrize(
    "text",
    [
        "👍👍👍",
        "😂😂",
        "[doge][doge]",
        "@人民日报 @央视新闻",
        "看这个 https://example.com/a?b=1&c=2#x",
        "真的吗???",
        "好!!!",
        "……",
        "//@某人:转发微博",
        "👨\u200d👩\u200d👧",  # the joiner inside an emoji sequence is a format char
    ],
)
def test_signals_kept(text):
    out = normalize_text(text)
    for token in ("👍", "😂", "[doge]", "@人民日报", "@央视新闻", "https://example.com/a?b=1&c=2#x",
                  "???", "!!!", "//@"):
        if token in text:
            assert token in out
    assert out  # nothing here normalises to empty


def test_ellipsis_is_nfkc_expanded():
    # NFKC spells the ellipsis as three full stops; the result is stable.
    assert normalize_text("……") == "......"
    assert normalize_text(normalize_text("……")) == "......"


def test_rejects_non_str():
    with pytest.raises(TypeError, match="normalize_text expects str, got bytes"):
        normalize_text(b"abc")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="got NoneType"):
        normalize_text(None)  # type: ignore[arg-type]


# ------------------------------------------------------------ fast simplified path

def _dictionary_keys(limit: int = 100_000) -> list[str]:
    import opencc
    from pathlib import Path

    folder = Path(opencc.__file__).parent / "dictionary"
    keys = []
    for name in ("TSPhrases.txt", "TSCharacters.txt"):
        with open(folder / name, encoding="utf-8") as fh:
            keys += [line.split("\t", 1)[0].strip() for line in fh][: limit // 2]
    return keys


def test_skipping_the_converter_changes_nothing_on_dictionary_entries():
    # Every dictionary key, alone and inside simplified text, converts exactly as
    # the converter would: the fast path is only taken when nothing can change.
    from zhenping.model.normalize import _t2s, _to_simplified

    convert = _t2s().convert
    for key in _dictionary_keys():
        for text in (key, f"我觉得{key}挺好的", f"{key}!"):
            assert _to_simplified(text) == convert(text), text


_POOL = "".join(sorted(set("".join(_dictionary_keys(600))))) + "的一是不了人我在有他这为好评很质量物流快差干后里面发着台"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=_POOL, max_size=30))
def test_fast_path_matches_the_converter_on_mixed_text(text):
    from zhenping.model.normalize import _t2s, _to_simplified

    assert _to_simplified(text) == _t2s().convert(text)


def test_plain_simplified_text_skips_the_converter(monkeypatch):
    import zhenping.model.normalize as norm

    class Boom:
        def convert(self, text):
            raise AssertionError("the converter ran on text it cannot change")

    monkeypatch.setattr(norm, "_t2s", lambda: Boom())
    assert norm.normalize_text("今天天气不错,心情很好,怎么说呢") == "今天天气不错,心情很好,怎么说呢"


def _strip_controls_reference(text: str) -> str:
    import unicodedata

    out = []
    for ch in text:
        if ch in "\t\n\r\x0b\x0c":
            out.append(" ")
        elif unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co"):
            out.append(ch)
    return "".join(out)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=40))
def test_control_stripping_matches_the_per_character_definition(text):
    from zhenping.model.normalize import _strip_controls

    assert _strip_controls(text) == _strip_controls_reference(text)


def test_control_stripping_on_every_control_and_format_character():
    import sys
    import unicodedata

    from zhenping.model.normalize import _strip_controls

    every = "".join(chr(c) for c in range(sys.maxunicode + 1)
                    if unicodedata.category(chr(c)) in ("Cc", "Cf", "Co") and c < 0xF0000)
    assert _strip_controls("a" + every + "b") == _strip_controls_reference("a" + every + "b")


def test_short_texts_are_remembered_long_ones_are_not():
    from zhenping.model.normalize import _MEMO_MAX_CHARS, _normalize_memo

    short, long = "火钳刘明!!!!!!!!!!!!", "长短" * (_MEMO_MAX_CHARS // 2 + 1)
    normalize_text(short)
    hits = _normalize_memo.cache_info().hits
    assert normalize_text(short) == "火钳刘明!!!!!!!!"
    assert _normalize_memo.cache_info().hits == hits + 1
    size = _normalize_memo.cache_info().currsize
    assert normalize_text(long) == long
    assert _normalize_memo.cache_info().currsize == size
