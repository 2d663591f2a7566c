"""The GPU teacher's output as a teacher for distillation.

``python -m zhenping.training.gpu_teacher`` writes ``scores.npz``: the teacher's three axis
scores for every document of the pack it ran on, in pack order. Pack document ``k``
is corpus line ``doc_lines(header)[k]`` of the corpus file the pack was built from
(``corpus.txt`` of ``zhenping pretrain``), so the scores map back to normalised
corpus texts without the model: :func:`load_pack_scores` does that, after checking
that the corpus file here is the one the pack was built from (same SHA-1) and, when
the pack folder is at hand, that the scores belong to that pack (same token SHA-1).

A teacher spec (``pseudo_teacher`` of fine-tuning, ``distill_teacher`` of the
multi-task stage) may name the GPU run's output folder or its ``scores.npz``. Such
a teacher scores only the texts it has scores for: sampling draws from those
texts, also when it is averaged with a model or baseline teacher.

The output folder holds the weights (float16 shards) but, to stay within the
eight files a GPU run may bring back, not the tokenizer or ``scorer_config.json``.
``python -m zhenping.training.pack_scores OUT [--pack runs/pack]`` adds them here, from the
pack it was trained on; the folder is then a scorer folder that
``Scorer.from_pretrained`` loads (weights as float32), and as a teacher it scores
texts outside its pack with the model as well.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zhenping.model.axes import AXES

SCORES = "scores.npz"
LOG = "log.json"


class TeacherDataError(ValueError):
    """A teacher's scores cannot be used with the data given; the message says why, in one line."""


def scores_path(spec: str | Path) -> Path | None:
    """The ``scores.npz`` a teacher spec names (the file, or the folder holding it), else ``None``."""
    path = Path(spec)
    if path.is_file() and path.suffix == ".npz":
        return path
    if path.is_dir() and (path / SCORES).is_file():
        return path / SCORES
    return None


def is_complete_scorer(folder: Path) -> bool:
    """Whether a folder also loads as a scorer (weights, config, scorer config and tokenizer)."""
    return (folder.is_dir() and (folder / "scorer_config.json").is_file() and (folder / "config.json").is_file()
            and any((folder / f).is_file() for f in ("model.safetensors", "model.safetensors.index.json"))
            and any((folder / f).is_file() for f in ("tokenizer.json", "vocab.txt")))


def _read_log(folder: Path) -> dict:
    try:
        return json.loads((folder / LOG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _pack_dir(npz: Path, pack: str | Path | None) -> tuple[Path | None, bool]:
    """The pack folder (given, else the one the run's log names) and whether it was given."""
    if pack:
        return Path(pack), True
    named = (_read_log(npz.parent).get("config") or {}).get("pack")
    return (Path(named), False) if named else (None, False)


@dataclass
class PackScores:
    """A teacher's scores with the corpus texts they belong to."""

    spec: str
    texts: list[str]  # corpus text of each scored pack document, in pack order
    scores: np.ndarray  # float32 [documents, 3], warmth/substance/template
    folder: Path | None  # the run's output folder, when the spec names one

    def index(self) -> dict[str, int]:
        if not hasattr(self, "_index"):
            self._index = {t: i for i, t in enumerate(self.texts)}
        return self._index

    @property
    def can_score_new_texts(self) -> bool:
        return self.folder is not None and is_complete_scorer(self.folder)


def load_pack_scores(spec: str | Path, corpus: str | Path, pack: str | Path | None = None) -> PackScores:
    """Read a GPU run's ``scores.npz`` and map its rows to the corpus texts they score.

    Args:
        spec: the run's output folder or its ``scores.npz``.
        corpus: the corpus file the pack was built from (``runs/pretrain/corpus.txt``).
        pack: the pack folder the run scored (default: the one its ``log.json`` names).
            Needed only for scores files that do not record their corpus mapping.

    Raises:
        TeacherDataError: the corpus file or pack is not the one the scores belong to,
            or the files disagree (one line).
        FileNotFoundError: a file is missing.
    """
    npz = scores_path(spec)
    if npz is None:
        raise FileNotFoundError(f"teacher {spec}: no {SCORES} there; pass the folder a GPU teacher run wrote")
    with np.load(npz) as z:
        scores = np.asarray(z["scores"], dtype=np.float32)
        info = {k: z[k].item() for k in z.files if z[k].ndim == 0}
        axes = [str(a) for a in z["axes"]] if "axes" in z.files else list(AXES)
    if axes != list(AXES):
        raise TeacherDataError(f"teacher {spec}: scores axes {axes}, expected {list(AXES)}")
    pack_dir, given = _pack_dir(npz, pack)
    header = None
    if pack_dir is not None and (pack_dir / "header.json").is_file():
        header = json.loads((pack_dir / "header.json").read_text(encoding="utf-8"))
        if info.get("tokens_sha1") and header.get("tokens_sha1") != info["tokens_sha1"]:
            raise TeacherDataError(
                f"teacher {spec}: its scores are of another pack than {pack_dir} (token SHA-1 "
                f"{str(info['tokens_sha1'])[:12]}, the pack's {str(header.get('tokens_sha1'))[:12]}); "
                "pass the pack it scored")
    elif given:
        raise FileNotFoundError(f"teacher {spec}: pack {pack_dir} has no header.json")
    mapping = {k: info.get(k) for k in ("corpus_sha1", "corpus_lines", "seed", "documents")}
    if any(v is None for v in mapping.values()):  # scores written before they recorded their mapping
        if header is None:
            raise TeacherDataError(
                f"teacher {spec}: its {SCORES} does not say which corpus lines it scored and the pack it scored "
                f"is not here ({pack_dir or 'none named'}); pass that pack (pseudo_pack / distill_pack)")
        mapping = {k: header[k] for k in mapping}
    if len(scores) != int(mapping["documents"]):
        raise TeacherDataError(f"teacher {spec}: {len(scores):,} score rows for {int(mapping['documents']):,} "
                               "pack documents")
    corpus = Path(corpus)
    if not corpus.is_file():
        raise FileNotFoundError(f"{corpus} not found; run `zhenping pretrain` or `zhenping pack` first "
                                "(the corpus stage writes it)")
    from zhenping.training.pack import doc_lines, file_sha1

    sha1 = file_sha1(corpus)
    if sha1 != mapping["corpus_sha1"]:
        where = info.get("corpus_file") or (header or {}).get("corpus_file")
        raise TeacherDataError(
            f"teacher {spec}: it scored the documents of a corpus file with SHA-1 {str(mapping['corpus_sha1'])[:12]}"
            f"{f' ({where})' if where else ''}, but {corpus} has SHA-1 {sha1[:12]}: not the corpus its pack was "
            "built from; pass that corpus file, or rebuild the pack from this corpus and rerun the teacher")
    with open(corpus, encoding="utf-8") as fh:  # as `zhenping pack` read it
        lines = [line.rstrip("\n") for line in fh]
    if len(lines) != int(mapping["corpus_lines"]):
        raise TeacherDataError(f"teacher {spec}: {corpus} has {len(lines):,} lines, the pack says "
                               f"{int(mapping['corpus_lines']):,}")
    order = doc_lines({k: int(v) if k != "corpus_sha1" else v for k, v in mapping.items()})
    folder = npz.parent if Path(spec).is_dir() else None
    return PackScores(spec=str(spec), texts=[lines[i] for i in order], scores=scores, folder=folder)


def lookup(table: PackScores, texts: list[str]) -> np.ndarray:
    """The teacher's scores of ``texts`` (float64 ``[n, 3]``): from its scores file where it has
    them, from its model for the rest (only when its folder is a complete scorer folder)."""
    index = table.index()
    rows = [index.get(t, -1) for t in texts]
    out = np.zeros((len(texts), len(AXES)), dtype=np.float64)
    have = np.asarray([r >= 0 for r in rows], dtype=bool)
    if have.any():
        out[have] = table.scores[[r for r in rows if r >= 0]]
    missing = [t for t, h in zip(texts, have) if not h]
    if missing:
        if not table.can_score_new_texts:
            raise TeacherDataError(
                f"teacher {table.spec} has scores for the pack's documents only and {len(missing):,} of the texts "
                f"are not among them; add its tokenizer and scorer config with "
                f"`python -m zhenping.training.pack_scores {table.folder or '<output folder>'}` to score them with its model")
        from zhenping.model.scorer import Scorer

        scorer = Scorer.from_pretrained(table.folder, backend="torch")
        got = scorer.score_normalized(missing, batch_size=128, max_tokens=4096)
        out[~have] = np.asarray([[getattr(s, a) for a in AXES] for s in got], dtype=np.float64)
    print(f"teacher {table.spec}: {int(have.sum()):,} texts from its scores file"
          f"{f', {len(missing):,} scored by its model' if missing else ''}", file=sys.stderr)
    return out


def complete_scorer_folder(out: str | Path, pack: str | Path | None = None) -> Path:
    """Add the tokenizer (from the pack the run used) and ``scorer_config.json`` to a GPU
    teacher's output folder, so that ``Scorer.from_pretrained`` loads it."""
    from zhenping.training.export import make_scorer_config
    from zhenping.training.pack import tokenizer_sha1

    out = Path(out)
    if not (out / "config.json").is_file():
        raise FileNotFoundError(f"{out}: no config.json; pass the folder a GPU teacher run wrote")
    log = _read_log(out)
    pack_dir = Path(pack) if pack else Path((log.get("config") or {}).get("pack") or "runs/pack")
    tok_dir = pack_dir / "tokenizer"
    if not (tok_dir / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{tok_dir / 'tokenizer.json'} not found; pass the pack the teacher ran on (--pack)")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tok_dir)
    want = (log.get("data") or {}).get("tokenizer_sha1")
    if want and tokenizer_sha1(tok) != want:
        raise TeacherDataError(f"{tok_dir}: not the tokenizer the teacher in {out} was trained with "
                               "(vocabulary SHA-1 differs); pass the pack it ran on")
    for f in tok_dir.iterdir():
        if f.is_file():
            shutil.copyfile(f, out / f.name)
    config = log.get("config") or {}
    scfg = make_scorer_config(
        int(config.get("max_length") or 128), f"gpu-teacher-{config.get('objective', 'rtd')}",
        training_config=config,
        teacher={"validation_spearman": (log.get("finetune") or {}).get("validation_spearman"),
                 "parameters": log.get("parameters"), "device": log.get("device")})
    (out / "scorer_config.json").write_text(json.dumps(scfg, ensure_ascii=False, indent=2), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Make a GPU teacher's output folder a scorer folder: add the "
                                                 "tokenizer of the pack it ran on and scorer_config.json.")
    parser.add_argument("out", help="the folder the GPU teacher run wrote")
    parser.add_argument("--pack", default=None, help="the pack it ran on (default: the one its log.json names)")
    args = parser.parse_args(argv)
    try:
        out = complete_scorer_folder(args.out, args.pack)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{out}: a scorer folder now (Scorer.from_pretrained loads it)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
