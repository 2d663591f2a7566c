"""Compact pretraining pack: the corpus tokenised once, compressed, self-describing.

``zhenping pack`` reuses the corpus stage of :mod:`zhenping.training.pretrain` (normalised,
deduplicated texts, labelled validation and test texts left out) and writes a
folder small enough to travel with the code to a machine without the corpora:

* ``tokens.xz`` — every document's token ids (uint16, no special tokens) one after
  another, stored as two byte planes (high bytes, then low bytes: the high bytes
  are nearly constant, which LZMA packs far tighter) and compressed with LZMA;
* ``lengths.xz`` — the documents' lengths in tokens (uint16), from which the
  document boundaries (offsets) follow;
* ``tokenizer/`` — the tokenizer the ids belong to;
* ``header.json`` — format version, vocabulary size, counts (documents, tokens,
  held-out documents and tokens, bytes), the SHA-1 of the tokenizer vocabulary,
  the normalisation version, the corpus file and its SHA-1, the SHA-1 of the token bytes,
  and the seed of the document order.

Documents are stored in a seeded random order of the corpus lines (pack document
``k`` is corpus line ``doc_lines(header)[k]``), so a ``--max_tokens`` or
``--max_mib`` cap keeps a random sample of every source. The first
``heldout_docs`` documents are the held-out slice: pretraining never trains on
them and measures masked-token / replaced-token accuracy there.

``zhenping pack --labels`` adds ``labels.npz``: the prepared gold training and
validation rows (normalised text, token ids, the three axis values in [0, 1]) for
fine-tuning a teacher where the corpora are not. It holds comment text, so it
lives in the ignored ``runs/`` area only and is never committed.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PACK_FORMAT = 1
HEADER = "header.json"
TOKENS = "tokens.xz"
LENGTHS = "lengths.xz"
LABELS = "labels.npz"
MAX_DOC_TOKENS = 510  # longer documents are cut here (a few 128-token sequences' worth)
MIB = 1024 * 1024


def normalization_version() -> str:
    """SHA-1 (12 hex digits) of ``model/normalize.py``: texts normalised by another version may differ."""
    import zhenping.model.normalize as norm

    return hashlib.sha1(Path(norm.__file__).read_bytes()).hexdigest()[:12]


def tokenizer_sha1(tok) -> str:
    """SHA-1 of the vocabulary in id order: equal for two tokenizers that give the same ids."""
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    return hashlib.sha1("\n".join(t for t, _ in vocab).encode("utf-8")).hexdigest()


def file_sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _compress_u16(arr: np.ndarray, preset: int) -> bytes:
    a = np.ascontiguousarray(arr, dtype="<u2").view(np.uint8).reshape(-1, 2)
    planes = np.concatenate([a[:, 1], a[:, 0]])  # high bytes first
    return lzma.compress(planes.tobytes(), preset=preset)


def _decompress_u16(blob: bytes, n: int) -> np.ndarray:
    planes = np.frombuffer(lzma.decompress(blob), dtype=np.uint8)
    if planes.size != 2 * n:
        raise ValueError(f"pack data holds {planes.size // 2:,} values, header says {n:,}; rebuild the pack")
    out = np.empty((n, 2), dtype=np.uint8)
    out[:, 1], out[:, 0] = planes[:n], planes[n:]
    return out.reshape(-1).view("<u2").astype(np.uint16)


def doc_lines(header: dict) -> np.ndarray:
    """Corpus line number of each pack document (the order the pack was written in)."""
    order = np.random.default_rng(header["seed"]).permutation(header["corpus_lines"])
    return order[: header["documents"]]


@dataclass
class Pack:
    """A loaded pack: ``tokens`` (uint16), ``offsets`` (int64, documents + 1) and the header."""

    header: dict
    tokens: np.ndarray
    offsets: np.ndarray
    path: Path

    @property
    def n_docs(self) -> int:
        return len(self.offsets) - 1

    @property
    def heldout_docs(self) -> range:
        return range(0, self.header["heldout_docs"])

    @property
    def train_docs(self) -> range:
        return range(self.header["heldout_docs"], self.n_docs)

    def doc(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i] : self.offsets[i + 1]]

    def tokenizer(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.path / "tokenizer")


def load_pack(path: str | Path) -> Pack:
    """Read a pack folder written by :func:`build_pack`.

    Raises:
        FileNotFoundError: the folder or one of its files is missing.
        ValueError: the files disagree with the header.
    """
    path = Path(path)
    if not (path / HEADER).is_file():
        raise FileNotFoundError(f"{path / HEADER} not found; write the pack with `zhenping pack --out {path}`")
    header = json.loads((path / HEADER).read_text(encoding="utf-8"))
    if header.get("format") != PACK_FORMAT:
        raise ValueError(f"{path}: pack format {header.get('format')!r}, expected {PACK_FORMAT}; rebuild the pack")
    for name in (TOKENS, LENGTHS):
        if not (path / name).is_file():
            raise FileNotFoundError(f"{path / name} not found; rebuild the pack with `zhenping pack --out {path}`")
    tokens = _decompress_u16((path / TOKENS).read_bytes(), header["tokens"])
    if hashlib.sha1(tokens.tobytes()).hexdigest() != header["tokens_sha1"]:
        raise ValueError(f"{path / TOKENS}: SHA-1 differs from the header; the file is damaged, rebuild the pack")
    lengths = _decompress_u16((path / LENGTHS).read_bytes(), header["documents"])
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return Pack(header=header, tokens=tokens, offsets=offsets, path=path)


def pack_sequences(pack_or_tokens, offsets: np.ndarray | None, docs, max_length: int, cls_id: int,
                   sep_id: int, seed: int, max_doc_tokens: int | None = None) -> np.ndarray:
    """Documents packed into ``[n, max_length]`` rows ``[CLS] doc [SEP] doc [SEP] ... [SEP]``.

    The documents are taken in a seeded random order (sources mix inside a row) and
    cut at ``max_doc_tokens`` (default: four rows' worth); the tail that does not
    fill a row is dropped. Same layout as the corpus path of ``zhenping pretrain``.
    """
    if isinstance(pack_or_tokens, Pack):
        tokens, offsets = pack_or_tokens.tokens, pack_or_tokens.offsets
    else:
        tokens = pack_or_tokens
    body = max_length - 2
    cap = max_doc_tokens or body * 4
    docs = np.asarray(list(docs), dtype=np.int64)
    docs = docs[np.random.default_rng(seed).permutation(len(docs))]
    starts = offsets[docs]
    lens = np.minimum(offsets[docs + 1] - starts, cap)
    total = int(lens.sum()) + len(docs)
    flat = np.full(total, sep_id, dtype=np.uint16)  # each document's slot ends in [SEP]
    dst = np.concatenate([[0], np.cumsum(lens + 1)[:-1]])
    # One gather: positions of every kept token in ``tokens`` and in ``flat``.
    rep = np.repeat(np.arange(len(docs)), lens)
    within = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
    flat[dst[rep] + within] = tokens[starts[rep] + within]
    n = total // body
    out = np.empty((n, max_length), dtype=np.uint16)
    out[:, 0] = cls_id
    out[:, 1:-1] = flat[: n * body].reshape(n, body)
    out[:, -1] = sep_id
    return out


def build_pack(out: str | Path, tokenizer_dir: str | Path, work_dir: str | Path = "runs/pretrain",
               corpora: str | None = None, gold: str | None = None, max_tokens: int = 0,
               max_mib: float = 24.0, heldout_docs: int = 2000, seed: int = 13, preset: int = 6,
               echo=print) -> dict:
    """Tokenise the corpus once and write the pack folder; returns the header.

    Args:
        out: the pack folder (written to ``<out>.tmp`` first, then renamed).
        tokenizer_dir: the tokenizer to use (``"default"``: the shipped model's, so
            pretraining can start from ``model/default``; ``"train"``: the tokenizer
            stage of ``zhenping pretrain`` in ``work_dir``).
        work_dir: where the corpus stage caches ``corpus.txt`` (shared with ``zhenping pretrain``).
        max_tokens: keep documents until this many tokens (0: all).
        max_mib: largest compressed size of the folder; documents are dropped until it fits.
        heldout_docs: documents kept out of training for held-out accuracy.
        seed: seed of the document order.
        preset: LZMA preset (0-9).

    Example:
        >>> header = build_pack("runs/pack", "default", max_mib=24)  # doctest: +SKIP
        >>> header["documents"], header["tokens"]  # doctest: +SKIP
    """
    import shutil

    from transformers import AutoTokenizer

    from zhenping.training.pretrain import PretrainConfig, build_corpus, build_tokenizer
    from zhenping.training.tokenizer import save_tokenizer

    if max_mib <= 0:
        raise ValueError(f"max_mib must be > 0, got {max_mib}")
    if max_tokens < 0 or heldout_docs < 0:
        raise ValueError(f"max_tokens and heldout_docs must be >= 0, got {max_tokens} and {heldout_docs}")
    out, work = Path(out), Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    cfg = PretrainConfig(out_dir=str(work), corpora=corpora, gold=gold, seed=seed)
    corpus = build_corpus(cfg, work)
    if str(tokenizer_dir) == "train":
        tok = build_tokenizer(cfg, work, corpus)
    else:
        if str(tokenizer_dir) == "default":
            from zhenping.model.scorer import DEFAULT_MODEL_DIR

            tokenizer_dir = DEFAULT_MODEL_DIR
        if not (Path(tokenizer_dir) / "tokenizer.json").is_file():
            raise FileNotFoundError(f"no tokenizer.json in {tokenizer_dir}; pass a model or tokenizer folder, "
                                    "'default' or 'train'")
        tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    if len(tok) > 65535:
        raise ValueError(f"tokenizer has {len(tok):,} tokens; the pack stores uint16 ids (at most 65,535)")

    t0 = time.time()
    with open(corpus, encoding="utf-8") as fh:
        lines = [line.rstrip("\n") for line in fh]
    header = {"format": PACK_FORMAT, "seed": seed, "corpus_lines": len(lines),
              "corpus_sha1": file_sha1(corpus), "corpus_file": str(corpus), "documents": len(lines)}
    order = doc_lines(header)
    heldout_docs = min(heldout_docs, len(lines) // 10)
    lengths: list[int] = []
    chunks: list[np.ndarray] = []
    n_tokens = 0
    for i in range(0, len(order), 8192):
        batch = [lines[j] for j in order[i : i + 8192]]
        for ids in tok(batch, add_special_tokens=False)["input_ids"]:
            ids = ids[:MAX_DOC_TOKENS]
            if max_tokens and len(lengths) >= heldout_docs and n_tokens + len(ids) > max_tokens:
                break
            lengths.append(len(ids))
            chunks.append(np.asarray(ids, dtype=np.uint16))
            n_tokens += len(ids)
        else:
            continue
        break
    echo(f"pack: tokenised {len(lengths):,} documents, {n_tokens:,} tokens in {time.time() - t0:.0f}s")

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_tokenizer(tok, tmp / "tokenizer")
    tok_bytes = sum(f.stat().st_size for f in (tmp / "tokenizer").iterdir())
    lens = np.asarray(lengths, dtype=np.uint16)
    offsets = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    tokens = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.uint16)
    n_docs = len(lens)
    while True:
        t1 = time.time()
        tok_blob = _compress_u16(tokens[: offsets[n_docs]], preset)
        len_blob = _compress_u16(lens[:n_docs], preset)
        size = len(tok_blob) + len(len_blob) + tok_bytes + 4096
        echo(f"pack: {n_docs:,} documents compressed to {size / MIB:.2f} MiB in {time.time() - t1:.0f}s")
        if size <= max_mib * MIB or n_docs <= heldout_docs + 1:
            break
        # Drop documents from the end of the random order in proportion, with a margin.
        n_docs = max(heldout_docs + 1, int(n_docs * (max_mib * MIB - tok_bytes - 4096) / size * 0.98))
    if size > max_mib * MIB:
        raise ValueError(f"the pack does not fit in {max_mib} MiB even with {n_docs:,} documents; raise --max_mib")
    (tmp / TOKENS).write_bytes(tok_blob)
    (tmp / LENGTHS).write_bytes(len_blob)
    kept = tokens[: offsets[n_docs]]
    header.update({
        "documents": n_docs,
        "tokens": int(offsets[n_docs]),
        "heldout_docs": heldout_docs,
        "heldout_tokens": int(offsets[heldout_docs]),
        "train_docs": n_docs - heldout_docs,
        "train_tokens": int(offsets[n_docs] - offsets[heldout_docs]),
        "max_doc_tokens": MAX_DOC_TOKENS,
        "vocab_size": len(tok),
        "tokenizer_sha1": tokenizer_sha1(tok),
        "normalization_version": normalization_version(),
        "tokens_sha1": hashlib.sha1(np.ascontiguousarray(kept, dtype=np.uint16).tobytes()).hexdigest(),
        "bytes": {"tokens": len(tok_blob), "lengths": len(len_blob), "tokenizer": tok_bytes,
                  "uncompressed_tokens": int(kept.nbytes)},
        "compression": f"lzma preset {preset}, uint16 as two byte planes (high, low)",
        "corpus_manifest": _read_json(work / "corpus_manifest.json"),
    })
    (tmp / HEADER).write_text(json.dumps(header, ensure_ascii=False, indent=2), encoding="utf-8")
    labels = out / LABELS
    if labels.is_file():  # a label pack written earlier stays with the rebuilt pack if the tokenizer is the same
        try:
            with np.load(labels) as z:
                same = str(z["tokenizer_sha1"]) == header["tokenizer_sha1"]
        except (OSError, KeyError, ValueError):
            same = False
        if same:
            shutil.copy2(labels, tmp / LABELS)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    total = folder_bytes(out)
    echo(f"pack: {out}: {n_docs:,} documents ({n_docs - heldout_docs:,} training, {heldout_docs:,} held out), "
         f"{header['tokens']:,} tokens ({header['heldout_tokens']:,} held out), vocabulary {len(tok):,}; "
         f"{header['bytes']['uncompressed_tokens'] / MIB:.1f} MiB of ids → {total / MIB:.2f} MiB on disk")
    return header


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


# ------------------------------------------------------------------ labels


def write_label_pack(pack_dir: str | Path, data_dir: str | Path = "runs/data", max_length: int = 128,
                     echo=print) -> Path:
    """Write ``labels.npz`` into the pack: prepared train and validation rows, tokenised.

    Holds per split: ``<split>_text`` (normalised), ``<split>_ids`` (token ids with
    [CLS]/[SEP], cut at ``max_length``, concatenated), ``<split>_offsets`` and
    ``<split>_y`` (float32 ``[n, 3]``: warmth, substance, template in [0, 1]).
    """
    from zhenping.model.axes import AXES
    from zhenping.model.normalize import normalize_text
    from zhenping.training.finetune import read_split

    pack_dir = Path(pack_dir)
    pack_header = json.loads((pack_dir / HEADER).read_text(encoding="utf-8")) if (pack_dir / HEADER).is_file() \
        else None
    if pack_header is None:
        raise FileNotFoundError(f"{pack_dir / HEADER} not found; write the pack first with "
                                f"`zhenping pack --out {pack_dir}`")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(pack_dir / "tokenizer")
    arrays: dict[str, np.ndarray] = {"axes": np.asarray(AXES), "tokenizer_sha1": np.asarray(tokenizer_sha1(tok)),
                                     "normalization_version": np.asarray(normalization_version()),
                                     "max_length": np.asarray(max_length)}
    counts = {}
    for split in ("train", "validation"):
        rows = read_split(data_dir, split)
        texts = [normalize_text(r["text"]) for r in rows]
        y = np.asarray([[float(r[a]) for a in AXES] for r in rows], dtype=np.float32)
        if len(y) and (y.min() < 0 or y.max() > 1):
            raise ValueError(f"{Path(data_dir) / (split + '.jsonl')}: axis values outside [0, 1]; "
                             "rerun `zhenping prepare`")
        enc = tok(texts, truncation=True, max_length=max_length)["input_ids"]
        lens = np.asarray([len(e) for e in enc], dtype=np.int64)
        arrays[f"{split}_text"] = np.asarray(texts, dtype=np.str_)
        arrays[f"{split}_ids"] = np.concatenate([np.asarray(e, dtype=np.uint16) for e in enc]) if enc \
            else np.zeros(0, dtype=np.uint16)
        arrays[f"{split}_offsets"] = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        arrays[f"{split}_y"] = y
        counts[split] = len(rows)
    path = pack_dir / LABELS
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
    echo(f"labels: {path}: {counts['train']:,} train and {counts['validation']:,} validation rows, "
         f"{path.stat().st_size / MIB:.2f} MiB (holds comment text: keep it under runs/, never commit it)")
    return path


def load_label_pack(path: str | Path) -> dict:
    """``{"train": (ids_list, y), "validation": (ids_list, y), "axes": [...], "tokenizer_sha1": str}``."""
    path = Path(path)
    if path.is_dir():
        path = path / LABELS
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; write it with `zhenping pack --labels --out {path.parent}`")
    out: dict = {}
    with np.load(path) as z:
        out["axes"] = [str(a) for a in z["axes"]]
        out["tokenizer_sha1"] = str(z["tokenizer_sha1"])
        for split in ("train", "validation"):
            ids, offs = z[f"{split}_ids"], z[f"{split}_offsets"]
            out[split] = ([ids[offs[i] : offs[i + 1]] for i in range(len(offs) - 1)], z[f"{split}_y"].copy())
    return out
