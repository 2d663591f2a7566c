"""Labels + corpora → train/validation/test JSONL (``zhenping prepare``).

Reads the gold label files, joins them to their corpus rows, adds any user
label files, merges comments whose normalised text is the same (averaging their
levels), assigns each text its stable split and writes::

    <out>/train.jsonl, validation.jsonl, test.jsonl
        {"id", "source", "text", "warmth", "substance", "template"}  # scores = level / 3
    <out>/prepare_manifest.json
        label file sha1s, output sha1s, counts per split / source / level, versions

The split of a row is a function of its normalised text alone
(:func:`zhenping.training.splits.split_of_normalized`), so adding data never moves an
existing row and one text never sits in two splits.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

from zhenping.model.axes import AXES, LEVELS, score_to_level
from zhenping.model.normalize import normalize_text
from zhenping.training.labels import LabelledText, gold_files, join_gold, read_gold
from zhenping.training.splits import SPLITS, split_of_normalized

if TYPE_CHECKING:
    import numpy as np

DEFAULT_OUT = Path("runs/data")
MANIFEST_NAME = "prepare_manifest.json"
FORMAT = "zhenping-prepared-v1"
NORMALIZATION = "zhenping-nfkc-t2s-v1"


class PrepareError(RuntimeError):
    """The inputs cannot be prepared as asked (``--strict`` join problems, no rows)."""


@dataclass(frozen=True)
class PreparedRow:
    """One training row: a distinct normalised text with its (averaged) levels."""

    id: str
    source: str
    text: str
    levels: tuple[float, ...]  # per axis in AXES order, 0-3 (averages may be fractional)
    split: str
    merged: int = 1  # labelled rows that share this normalised text

    def record(self) -> dict:
        rec = {"id": self.id, "source": self.source, "text": self.text}
        rec.update({a: round(v / LEVELS, 6) for a, v in zip(AXES, self.levels)})
        return rec


@dataclass
class SplitData:
    """One prepared split, as read back by evaluation and training."""

    ids: list[str]
    sources: list[str]
    texts: list[str]
    scores: np.ndarray  # (n, len(axes)) scores in [0, 1]

    def __len__(self) -> int:
        return len(self.ids)


# ------------------------------------------------------------------ merging


def merge_duplicates(rows: Iterable[LabelledText]) -> tuple[list[PreparedRow], dict]:
    """Merge rows with the same normalised text; give each distinct text its split.

    The first row of a group (gold before user files, in file order) gives the id,
    source and text; the levels are the mean over the group.

    Returns:
        The merged rows, sorted by split then id, and ``{"groups", "rows_merged",
        "conflicting", "empty"}`` counts: duplicate groups, rows in them, groups
        whose labels disagree, and rows dropped because their text normalises to
        nothing.
    """
    groups: dict[str, list[LabelledText]] = defaultdict(list)
    empty = 0
    for r in rows:
        norm = normalize_text(r.text)
        if not norm:
            empty += 1
            continue
        groups[norm].append(r)
    out = []
    stats = {"groups": 0, "rows_merged": 0, "conflicting": 0, "empty": empty}
    for norm, members in groups.items():
        first = members[0]
        if len(members) > 1:
            stats["groups"] += 1
            stats["rows_merged"] += len(members)
            if len({m.levels for m in members}) > 1:
                stats["conflicting"] += 1
            levels = tuple(
                sum(m.levels[k] for m in members) / len(members) for k in range(len(AXES))
            )
        else:
            levels = first.levels
        out.append(
            PreparedRow(first.id, first.source, first.text, levels, split_of_normalized(norm),
                        len(members))
        )
    out.sort(key=lambda r: (SPLITS.index(r.split), r.id))
    return out, stats


# ------------------------------------------------------------------ counting


def count_rows(rows: Sequence[PreparedRow]) -> dict:
    """Rows per split, per source per split, and rounded levels per axis per split."""
    per_split = Counter(r.split for r in rows)
    by_source: dict[str, Counter] = {s: Counter() for s in SPLITS}
    levels = {s: {a: Counter() for a in AXES} for s in SPLITS}
    for r in rows:
        by_source[r.split][r.source] += 1
        for a, v in zip(AXES, r.levels):
            levels[r.split][a][score_to_level(v / LEVELS)] += 1
    return {
        "rows": {s: per_split.get(s, 0) for s in SPLITS},
        "total": len(rows),
        "by_source": {s: dict(sorted(by_source[s].items())) for s in SPLITS},
        "levels": {
            s: {a: {str(k): levels[s][a].get(k, 0) for k in range(LEVELS + 1)} for a in AXES}
            for s in SPLITS
        },
    }


def format_counts(counts: dict) -> str:
    """Plain-text tables of :func:`count_rows` output, for the terminal."""
    lines = []
    rows = counts["rows"]
    total = counts["total"] or 1
    lines.append("rows per split:")
    for s in SPLITS:
        lines.append(f"  {s:<10} {rows[s]:>7,}  ({100 * rows[s] / total:.1f}%)")
    lines.append(f"  {'total':<10} {counts['total']:>7,}")

    sources = sorted({src for s in SPLITS for src in counts["by_source"][s]})
    width = max([len("source"), *(len(x) for x in sources)])
    lines.append("")
    lines.append("rows per source and split:")
    lines.append(f"  {'source':<{width}}  {'train':>7} {'validation':>10} {'test':>7} {'total':>7}")
    for src in sources:
        n = [counts["by_source"][s].get(src, 0) for s in SPLITS]
        lines.append(f"  {src:<{width}}  {n[0]:>7,} {n[1]:>10,} {n[2]:>7,} {sum(n):>7,}")

    lines.append("")
    lines.append("level counts per axis and split (averaged labels rounded):")
    header = "  ".join(f"{'L' + str(k):>6}" for k in range(LEVELS + 1))
    lines.append(f"  {'split':<10} {'axis':<10} {header}")
    for s in SPLITS:
        for a in AXES:
            c = counts["levels"][s][a]
            cells = "  ".join(f"{c[str(k)]:>6,}" for k in range(LEVELS + 1))
            lines.append(f"  {s:<10} {a:<10} {cells}")
    return "\n".join(lines)


# ------------------------------------------------------------------ files


def _sha1_file(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_jsonl(path: Path, records: Iterable[dict]) -> None:
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def versions() -> dict:
    """Versions of the interpreter and the libraries that shape the prepared data."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("zhenping", "opencc-python-reimplemented", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def load_split(data_dir: str | os.PathLike, split: str, axes: Sequence[str] = AXES) -> SplitData:
    """Read one prepared split file back.

    Args:
        data_dir: the folder ``zhenping prepare`` wrote.
        split: ``train``, ``validation`` or ``test``.
        axes: the axis columns to read, in output order.

    Raises:
        FileNotFoundError: the split file is absent (run ``zhenping prepare``).
        ValueError: a line lacks a field, naming file and line.

    Example:
        >>> data = load_split("runs/data", "test")  # doctest: +SKIP
        >>> data.scores.shape  # doctest: +SKIP
        (911, 3)
    """
    import numpy as np

    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    path = Path(data_dir) / f"{split}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run `zhenping prepare --out {data_dir}`")
    ids, sources, texts, scores = [], [], [], []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                ids.append(str(rec["id"]))
                sources.append(str(rec["source"]))
                texts.append(rec["text"])
                scores.append([float(rec[a]) for a in axes])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path}:{lineno}: not a prepared row ({exc!r})") from None
    arr = np.asarray(scores, dtype=np.float64).reshape(len(ids), len(axes))
    return SplitData(ids, sources, texts, arr)


# ------------------------------------------------------------------ the stage


def prepare(
    corpora: str | os.PathLike | None = None,
    gold: str | os.PathLike | None = None,
    extra: Sequence[str | os.PathLike] = (),
    out: str | os.PathLike = DEFAULT_OUT,
    skip_invalid: bool = False,
    strict: bool = False,
    scale: str = "auto",
    use_gold: bool = True,
    echo: Callable[[str], None] = print,
) -> dict:
    """Build the split files from gold labels and user label files.

    Args:
        corpora: corpora root (default: ``$ZHENPING_CORPORA`` or ``../shared``).
        gold: gold label folder (default: ``$ZHENPING_GOLD`` or ``../shared``).
        extra: user label files or dataset names (see :mod:`zhenping.training.userdata`).
        out: output folder.
        skip_invalid: drop bad rows of user files instead of stopping.
        strict: stop when a gold id cannot be joined (missing row, changed
            text); by default those ids are left out with a warning.
        scale: how to read user files' axis values (``auto``/``levels``/``scores``).
        use_gold: include the gold labels (``False``: user files only).
        echo: where progress and tables go.

    Returns:
        The manifest written to ``<out>/prepare_manifest.json``.

    Raises:
        PrepareError: ``strict`` and the join found problems, or no rows at all.
        zhenping.training.userdata.LabelFileError: a user file has bad rows.

    Example:
        >>> manifest = prepare(out="runs/data")  # doctest: +SKIP
        >>> manifest["counts"]["rows"]["train"]  # doctest: +SKIP
        7290
    """
    from zhenping.training.userdata import read_labelled

    out = Path(out)
    labelled: list[LabelledText] = []
    label_files: dict[str, str] = {}
    manifest: dict = {"format": FORMAT, "normalization": NORMALIZATION}

    if use_gold:
        files = gold_files(gold)
        records = read_gold(files)
        joined, report = join_gold(records, corpora)
        for f in files:
            label_files[f.name] = _sha1_file(f)
        echo(f"gold: {len(records):,} labels in {len(files)} files, {len(joined):,} joined")
        if not report.ok:
            msg = f"gold labels not joined: {report.summary()}"
            if strict:
                raise PrepareError(msg + " (run without --strict to leave them out)")
            echo(f"warning: {msg}; those ids are left out")
        manifest["gold"] = {
            "records": len(records),
            "joined": len(joined),
            "missing": report.missing,
            "changed": report.changed,
            "unknown_file": report.unknown_file,
        }
        labelled.extend(joined)

    manifest["extra"] = []
    for spec in extra:
        lf = read_labelled(spec, skip_invalid=skip_invalid, scale=scale)
        key = lf.name if lf.name not in label_files else str(spec)
        label_files[key] = lf.sha1 or "unknown (remote dataset)"
        echo(f"extra: {lf.summary()}")
        for p in lf.skipped[:20]:
            echo(f"  skipped {p}")
        if len(lf.skipped) > 20:
            echo(f"  ... and {len(lf.skipped) - 20} more skipped")
        manifest["extra"].append(
            {"name": key, "rows": len(lf.rows), "scale": lf.scale, "skipped": len(lf.skipped),
             "skipped_rows": [str(p) for p in lf.skipped]}
        )
        labelled.extend(lf.rows)

    if not labelled:
        raise PrepareError("no labelled rows: no gold labels and no --extra files")

    rows, dup = merge_duplicates(labelled)
    echo(
        f"duplicates: {dup['groups']:,} texts labelled more than once "
        f"({dup['rows_merged']:,} rows merged into {dup['groups']:,}, levels averaged; "
        f"{dup['conflicting']:,} with differing labels)"
    )
    if dup["empty"]:
        echo(f"warning: {dup['empty']:,} rows whose text normalises to nothing were left out")

    out.mkdir(parents=True, exist_ok=True)
    outputs = {}
    for s in SPLITS:
        path = out / f"{s}.jsonl"
        _write_jsonl(path, (r.record() for r in rows if r.split == s))
        outputs[path.name] = _sha1_file(path)

    counts = count_rows(rows)
    manifest.update(
        {
            "label_files": label_files,
            "output_files": outputs,
            "labelled_rows": len(labelled),
            "duplicates": dup,
            "counts": counts,
            "versions": versions(),
        }
    )
    tmp = out / (MANIFEST_NAME + ".part")
    tmp.write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out / MANIFEST_NAME)
    echo("")
    echo(format_counts(counts))
    echo("")
    echo(f"wrote {', '.join(outputs)} and {MANIFEST_NAME} to {out}")
    return manifest


def read_manifest(data_dir: str | os.PathLike) -> dict:
    """The ``prepare_manifest.json`` of a prepared folder."""
    path = Path(data_dir) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run `zhenping prepare --out {data_dir}`")
    return json.loads(path.read_text(encoding="utf-8"))

