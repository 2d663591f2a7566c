"""Gold labels: reading the label files and joining them to their corpus rows.

A gold record is ``{"id": "<corpus>/<file>:<row>", "sha1": ..., "warmth": 0-3,
"substance": 0-3, "template": 0-3}`` (see ``data_cards/labels.md``). The join
looks each id up in the corpora, checks the SHA-1 of the stored text and reports
ids whose row is missing or whose text changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from zhenping.model.axes import AXES
from zhenping.training.corpora import corpora_root, get_file, iter_rows, row_text

LABEL_TEXT_CHARS = 300  # labels were judged on the stripped text cut to this length
# The project's gold labels, shipped in the package (training/gold/README.md).
DEFAULT_GOLD_DIR = Path(__file__).resolve().parent / "gold"
GOLD_ENV_VAR = "ZHENPING_GOLD"


@dataclass(frozen=True)
class LabelledText:
    """One labelled comment, ready for splitting and training."""

    id: str
    source: str  # corpus name, or the user file's name
    text: str
    levels: tuple[float, float, float]  # per axis in AXES order, on the 0-3 scale


@dataclass
class JoinReport:
    """What the join found besides the rows it joined."""

    missing: list[str] = field(default_factory=list)  # id has no such corpus row
    changed: list[str] = field(default_factory=list)  # row text's sha1 differs
    unknown_file: list[str] = field(default_factory=list)  # corpus/file not registered

    @property
    def ok(self) -> bool:
        return not (self.missing or self.changed or self.unknown_file)

    def summary(self) -> str:
        parts = []
        for name in ("missing", "changed", "unknown_file"):
            ids = getattr(self, name)
            if ids:
                shown = ", ".join(ids[:10]) + (" ..." if len(ids) > 10 else "")
                parts.append(f"{len(ids)} {name.replace('_', ' ')}: {shown}")
        return "; ".join(parts) or "all ids joined"


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def sha1_matches(text: str, sha1: str) -> bool:
    """Whether ``sha1`` is the SHA-1 of ``text`` as stored, or of ``text`` read with
    universal newlines (``\\r\\n`` and bare ``\\r`` as ``\\n``), which is how a
    plain text-mode reader of the staged CSV sees fields holding carriage returns.
    """
    if _sha1(text) == sha1:
        return True
    return "\r" in text and _sha1(text.replace("\r\n", "\n").replace("\r", "\n")) == sha1


def gold_dir(path: str | os.PathLike | None = None) -> Path:
    """Resolve the gold label folder: the argument, else ``$ZHENPING_GOLD``, else the
    copy shipped in the package (``training/gold``).

    Raises:
        FileNotFoundError: the folder named by the argument or the variable does not exist.
    """
    for cand, what in ((path, "--gold"), (os.environ.get(GOLD_ENV_VAR), GOLD_ENV_VAR)):
        if cand:
            folder = Path(cand).expanduser()
            if not folder.is_dir():
                raise FileNotFoundError(f"gold label folder {folder} (from {what}) does not exist")
            return folder
    if DEFAULT_GOLD_DIR.is_dir():
        return DEFAULT_GOLD_DIR
    raise FileNotFoundError(  # pragma: no cover - the package ships the folder
        f"no gold label folder found; pass --gold DIR or set {GOLD_ENV_VAR}"
    )


def gold_files(path: str | os.PathLike | None = None) -> list[Path]:
    """The ``gold_v*.jsonl`` files of the gold folder, in version order."""
    files = sorted(gold_dir(path).glob("gold_v*.jsonl"))
    if not files:
        raise FileNotFoundError(f"no gold_v*.jsonl files in {gold_dir(path)}")
    return files


def read_gold(files: list[Path]) -> list[dict]:
    """Read gold records, checking each line's shape.

    Raises:
        ValueError: naming file, line and reason for the first bad line.
    """
    out = []
    for f in files:
        with open(f, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{f}:{lineno}: not valid JSON ({exc.msg})") from None
                if not isinstance(rec, dict) or "id" not in rec or "sha1" not in rec:
                    raise ValueError(f"{f}:{lineno}: expected an object with 'id' and 'sha1'")
                for ax in AXES:
                    v = rec.get(ax)
                    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 3:
                        raise ValueError(
                            f"{f}:{lineno}: {ax} must be an integer level 0-3, got {v!r}"
                        )
                rec["_file"] = f.name
                rec["_line"] = lineno
                out.append(rec)
    return out


def join_gold(
    records: list[dict], root: str | os.PathLike | None = None
) -> tuple[list[LabelledText], JoinReport]:
    """Join gold records to their corpus rows by id, checking each text's sha1.

    Returns:
        The joined rows (text stripped and cut to ``LABEL_TEXT_CHARS``, as it was
        labelled) and a report of ids that could not be joined.
    """
    base = corpora_root(root)
    by_file: dict[str, dict[int, dict]] = defaultdict(dict)
    report = JoinReport()
    for rec in records:
        key, _, row = rec["id"].rpartition(":")
        by_file[key][int(row)] = rec
    joined: list[LabelledText] = []
    for key, wanted in by_file.items():
        corpus, _, name = key.partition("/")
        try:
            _, cf = get_file(corpus, name)
        except KeyError:
            report.unknown_file.extend(r["id"] for r in wanted.values())
            continue
        path = base / corpus / name
        if not path.exists():
            report.missing.extend(r["id"] for r in wanted.values())
            continue
        found = set()
        for i, row in iter_rows(path, cf):
            rec = wanted.get(i)
            if rec is None:
                continue
            found.add(i)
            text = row_text(row, cf)
            if not sha1_matches(text, rec["sha1"]):
                report.changed.append(rec["id"])
                continue
            joined.append(
                LabelledText(
                    id=rec["id"],
                    source=corpus,
                    text=text.strip()[:LABEL_TEXT_CHARS],
                    levels=tuple(float(rec[a]) for a in AXES),
                )
            )
        report.missing.extend(r["id"] for i, r in wanted.items() if i not in found)
    joined.sort(key=lambda r: r.id)
    return joined, report
