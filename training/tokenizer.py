"""The Chinese tokenizer: BERT-style, trained on the corpora with ``tokenizers``.

One token per CJK character (the BERT normaliser puts spaces around CJK
characters), WordPiece for runs of Latin letters and digits, and every emoji its
own token: emoji walls and 👍 chains are strong template-likeness signals, so the
tokenizer must not fold them into ``[UNK]``. Saved in the standard Hugging Face
format (``tokenizer.json``, ``tokenizer_config.json``, plus ``vocab.txt``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# Pictographs, dingbats, symbols and regional indicators; each becomes one token.
EMOJI_PATTERN = (
    "[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\u2300-\u23FF"
    "\u3030\u303D\u3297\u3299\U0001F1E6-\U0001F1FF]"
)


def build_empty_tokenizer() -> Tokenizer:
    """A WordPiece tokenizer with zhenping's normaliser and pre-tokeniser, untrained."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=True
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(EMOJI_PATTERN), behavior="isolated"),
            pre_tokenizers.BertPreTokenizer(),
        ]
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    return tok


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 8000,
    min_frequency: int = 3,
    limit_alphabet: int = 6000,
):
    """Train the tokenizer on ``texts`` and wrap it as a ``BertTokenizerFast``.

    Args:
        texts: normalised comment texts.
        vocab_size: total vocabulary, special tokens included.
        min_frequency: a merge (or ``##`` piece) must occur this often to enter.
        limit_alphabet: the most frequent characters kept as single tokens; rarer
            characters become ``[UNK]``.

    Returns:
        A fast ``transformers`` tokenizer backed by the trained ``tokenizer.json``.

    Example:
        >>> tok = train_tokenizer(["你好世界 hello 👍"] * 5, vocab_size=60, min_frequency=1)
        >>> tok.tokenize("你好👍")
        ['你', '好', '👍']
    """
    from transformers import PreTrainedTokenizerFast

    if vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must be > {len(SPECIAL_TOKENS)}, got {vocab_size}")
    tok = build_empty_tokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        limit_alphabet=limit_alphabet,
        special_tokens=SPECIAL_TOKENS,
        continuing_subword_prefix="##",
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    # The generic fast class loads tokenizer.json verbatim, emoji splitting included;
    # BertTokenizer would rebuild its own pre-tokeniser from vocab.txt and lose it.
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )


def save_tokenizer(tokenizer, out_dir: str | os.PathLike) -> Path:
    """Save in the standard format (``tokenizer.json``, ``vocab.txt``, configs)."""
    import json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    # Name the class every transformers release knows; v5 reads it as its
    # tokenizers backend, v4 as the generic fast tokenizer.
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_path.write_text(json.dumps(cfg, ensure_ascii=False, indent=2), encoding="utf-8")
    # vocab.txt for tools that expect a BERT vocabulary file (id order).
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    (out / "vocab.txt").write_text("".join(t + "\n" for t, _ in vocab), encoding="utf-8")
    return out
