"""Reading labelled comments supplied by a user: JSONL, CSV/TSV, Parquet or a
Hugging Face dataset.

A labelled file has a ``text`` column and one column per axis (``warmth``,
``substance``, ``template``), plus optional ``id`` and ``source`` columns. Axis
values are either integer **levels** 0-3 or **scores** in [0, 1] (score =
level / 3). Which one a file uses is decided per file (``scale="auto"``):

* every axis value is an integer 0-3 → levels;
* otherwise, if any value has a fractional part → scores (all must lie in [0, 1]);
* a file whose values are all 0 or 1 is read as levels; pass ``scale="scores"``
  (``--scale scores``) if those are scores.

Every bad row (missing or empty text, a value out of range, of the wrong type or
NaN, invalid UTF-8 bytes, a line that is not JSON, a duplicate id) is reported
with the file, its location and the reason. Locations are 1-based physical line
numbers for JSONL and CSV (the CSV header is line 1) and 0-based row indexes for
Parquet and Hugging Face datasets. Unless ``skip_invalid`` is set, any bad row
stops the load with a :class:`LabelFileError` listing them; with it, the bad rows
are dropped and reported.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import json
import logging
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from zhenping.model.axes import AXES, LEVELS
from zhenping.training.labels import LabelledText

log = logging.getLogger(__name__)

TEXT_COLUMN = "text"
OPTIONAL_COLUMNS = ("id", "source")
SCALES = ("auto", "levels", "scores")
MAX_LISTED = 20  # problems quoted in an error message; the rest are counted

csv.field_size_limit(sys.maxsize)


@dataclass(frozen=True)
class RowProblem:
    """One row that could not be used, and why."""

    file: str
    where: str  # "line 12" (JSONL/CSV) or "row 3" (Parquet, datasets)
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.where}: {self.reason}"


class LabelFileError(ValueError):
    """A labelled file has bad rows (or no usable rows); ``problems`` lists them."""

    def __init__(self, message: str, problems: list[RowProblem] | None = None):
        super().__init__(message)
        self.problems = problems or []


@dataclass
class LabelledFile:
    """What :func:`read_labelled` found in one file."""

    name: str  # file (or dataset) name as given
    rows: list[LabelledText]
    scale: str  # "levels" or "scores": how the axis values were read
    skipped: list[RowProblem] = field(default_factory=list)
    sha1: str | None = None  # of the file's bytes (of every file, for a dataset folder)
    total: int = 0  # rows read, good and bad

    def summary(self) -> str:
        text = f"{self.name}: {len(self.rows)} rows read as {self.scale}"
        if self.skipped:
            text += f", {len(self.skipped)} invalid rows skipped"
        return text


@dataclass
class _Raw:
    """One row as read, before the scale is known."""

    where: str
    text: Any
    values: dict[str, Any]
    id: Any = None
    source: Any = None
    problem: str | None = None  # set when the row is already known to be bad


# ----------------------------------------------------------------- public API


def load_labelled(
    path_or_hf_name: str | os.PathLike,
    skip_invalid: bool = False,
    scale: str = "auto",
) -> list[LabelledText]:
    """Read a user's labelled comments.

    Args:
        path_or_hf_name: a ``.jsonl``, ``.csv``, ``.tsv`` or ``.parquet`` file
            (``.gz`` allowed for the text formats), a folder written by
            ``datasets.Dataset.save_to_disk``, or a Hugging Face dataset name.
        skip_invalid: drop bad rows (logging how many and which) instead of
            raising.
        scale: ``"auto"``, ``"levels"`` (integers 0-3) or ``"scores"`` ([0, 1]).

    Returns:
        One :class:`LabelledText` per good row, levels on the 0-3 scale.

    Raises:
        LabelFileError: listing every bad row (first 20 quoted) when
            ``skip_invalid`` is false, or when no usable row is left.
        FileNotFoundError: the path does not exist and is not a dataset name.

    Example:
        >>> rows = load_labelled("my_labels.jsonl")  # doctest: +SKIP
        >>> rows[0].levels  # doctest: +SKIP
        (2.0, 1.0, 0.0)
    """
    return read_labelled(path_or_hf_name, skip_invalid=skip_invalid, scale=scale).rows


def read_labelled(
    path_or_hf_name: str | os.PathLike,
    skip_invalid: bool = False,
    scale: str = "auto",
) -> LabelledFile:
    """Like :func:`load_labelled`, returning the rows with the scale used, the
    skipped rows and the file's SHA-1."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {list(SCALES)}, got {scale!r}")
    path = Path(path_or_hf_name).expanduser()
    name = path.name if path.exists() else str(path_or_hf_name)
    raws, sha1 = _read_any(path_or_hf_name, path, name)
    used_scale, rows, problems = _validate(raws, name, scale)
    if problems and not skip_invalid:
        raise LabelFileError(_problem_message(name, problems, len(raws)), problems)
    if not rows:
        raise LabelFileError(
            f"{name}: no usable labelled rows"
            + (f" ({len(problems)} invalid rows skipped)" if problems else ""),
            problems,
        )
    if problems:
        shown = "; ".join(str(p) for p in problems[:MAX_LISTED])
        more = f" (and {len(problems) - MAX_LISTED} more)" if len(problems) > MAX_LISTED else ""
        log.warning("%s: skipped %d invalid rows: %s%s", name, len(problems), shown, more)
    return LabelledFile(name, rows, used_scale, problems, sha1, len(raws))


# ----------------------------------------------------------------- readers


def _read_any(spec: str | os.PathLike, path: Path, name: str) -> tuple[list[_Raw], str | None]:
    if path.is_dir():
        return _read_dataset(path, name, local=True), _sha1_of_tree(path)
    if path.is_file():
        lower = path.name.lower()
        if lower.endswith((".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")):
            reader = _read_jsonl
        elif lower.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz")):
            reader = _read_csv
        elif lower.endswith((".parquet", ".pq")):
            reader = _read_parquet
        else:
            raise ValueError(
                f"{name}: unsupported file type; expected .jsonl, .csv, .tsv or .parquet "
                "(.gz allowed for the text formats), a dataset folder written by "
                "save_to_disk, or a Hugging Face dataset name"
            )
        return reader(path, name), _sha1_of_file(path)
    spec = str(spec)
    # A Hugging Face name is "name" or "owner/name"; anything else is a path.
    looks_like_path = (
        spec.startswith((".", "/", "~"))
        or spec.count("/") > 1
        or spec.lower().endswith((".jsonl", ".csv", ".tsv", ".parquet", ".pq", ".gz", ".json"))
    )
    if looks_like_path:
        raise FileNotFoundError(f"labelled file {spec!r} does not exist")
    return _read_dataset(spec, name, local=False), None


def _read_bytes(path: Path) -> bytes:
    if path.name.lower().endswith(".gz"):
        with gzip.open(path, "rb") as fh:
            return fh.read()
    return path.read_bytes()


def _lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Physical lines (1-based number, bytes without the line end)."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    for i, line in enumerate(data.split(b"\n"), 1):
        yield i, line.rstrip(b"\r")


def _bad_utf8(line: bytes) -> str | None:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"invalid UTF-8 bytes at byte {exc.start} of the line ({line[exc.start:exc.start + 4]!r})"
    return None


def _read_jsonl(path: Path, name: str) -> list[_Raw]:
    out = []
    for lineno, line in _lines(_read_bytes(path)):
        if not line.strip():
            continue  # blank lines (a trailing newline, spacing) are not rows
        where = f"line {lineno}"
        bad = _bad_utf8(line)
        if bad:
            out.append(_Raw(where, None, {}, problem=bad))
            continue
        try:
            rec = json.loads(line.decode("utf-8"))
        except json.JSONDecodeError as exc:
            out.append(_Raw(where, None, {}, problem=f"not valid JSON ({exc.msg} at column {exc.colno})"))
            continue
        if not isinstance(rec, dict):
            out.append(_Raw(where, None, {}, problem=f"expected a JSON object, got {type(rec).__name__}"))
            continue
        missing = [c for c in (TEXT_COLUMN, *AXES) if c not in rec]
        if missing:
            out.append(_Raw(where, None, {}, problem=f"missing column(s) {missing}"))
            continue
        out.append(
            _Raw(where, rec[TEXT_COLUMN], {a: rec[a] for a in AXES}, rec.get("id"), rec.get("source"))
        )
    return out


def _check_columns(name: str, columns: Iterable[str]) -> None:
    columns = list(columns)
    missing = [c for c in (TEXT_COLUMN, *AXES) if c not in columns]
    if missing:
        expected = [TEXT_COLUMN, *AXES]
        raise LabelFileError(
            f"{name}: missing column(s) {missing}; expected columns {expected} "
            f"(optional {list(OPTIONAL_COLUMNS)}), found {columns}",
            [RowProblem(name, "header", f"missing column(s) {missing}")],
        )


def _parse_csv_number(value: str) -> Any:
    """A CSV cell as a number when it spells one; otherwise the string itself."""
    s = value.strip()
    if s == "":
        return None
    try:
        return int(s)
    except ValueError:
        pass
    try:
        return float(s)
    except ValueError:
        return value


def _read_csv(path: Path, name: str) -> list[_Raw]:
    delimiter = "\t" if ".tsv" in path.name.lower() else ","
    lines = list(_lines(_read_bytes(path)))
    # Invalid bytes are kept as lone surrogates so that the CSV reader still sees
    # every line (quoted fields may span lines) and the bad row can be named.
    texts = (
        line.decode("utf-8", errors="surrogateescape") + "\n"
        for _, line in lines
    )
    reader = csv.reader(texts, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise LabelFileError(f"{name}: the file is empty; expected a header row") from None
    header = [h.strip() for h in header]
    if any(_has_surrogate(h) for h in header):
        raise LabelFileError(f"{name}: line 1: invalid UTF-8 bytes in the header row")
    _check_columns(name, header)
    col = {h: i for i, h in enumerate(header)}
    out = []
    start = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            out.append(_Raw(f"line {start}", None, {}, problem=f"malformed CSV ({exc})"))
            break
        where = f"line {start}" if reader.line_num == start else f"lines {start}-{reader.line_num}"
        first = start
        start = reader.line_num + 1
        if not cells or all(not c.strip() for c in cells):
            continue  # blank line
        if any(_has_surrogate(c) for c in cells):
            bad_line = next(
                (n for n, b in lines[first - 1: start - 1] if _bad_utf8(b)), first
            )
            reason = _bad_utf8(lines[bad_line - 1][1]) or "invalid UTF-8 bytes"
            out.append(_Raw(f"line {bad_line}", None, {}, problem=reason))
            continue
        if len(cells) != len(header):
            out.append(
                _Raw(where, None, {}, problem=f"expected {len(header)} fields, found {len(cells)}")
            )
            continue

        def cell(c: str) -> str | None:
            return cells[col[c]] if c in col else None

        out.append(
            _Raw(
                where,
                cell(TEXT_COLUMN),
                {a: _parse_csv_number(cells[col[a]]) for a in AXES},
                cell("id") or None,
                cell("source") or None,
            )
        )
    return out


def _has_surrogate(s: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for ch in s)


def _records_from_table(name: str, columns: list[str], records: Iterable[dict], prefix: str = "") -> list[_Raw]:
    _check_columns(name, columns)
    out = []
    for i, rec in enumerate(records):
        text = rec.get(TEXT_COLUMN)
        where = f"{prefix}row {i}"
        if isinstance(text, (bytes, bytearray)):
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError as exc:
                out.append(_Raw(where, None, {}, problem=f"invalid UTF-8 bytes at byte {exc.start} of the text"))
                continue
        out.append(_Raw(where, text, {a: rec.get(a) for a in AXES}, rec.get("id"), rec.get("source")))
    return out


def _read_parquet(path: Path, name: str) -> list[_Raw]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for bad files
        raise LabelFileError(f"{name}: not a readable Parquet file ({exc})") from None
    return _records_from_table(name, table.column_names, table.to_pylist())


def _read_dataset(spec: str | Path, name: str, local: bool) -> list[_Raw]:
    import datasets

    saved = local and any(
        (Path(spec) / marker).exists() for marker in ("dataset_info.json", "dataset_dict.json")
    )
    try:
        if saved:  # written by save_to_disk
            ds = datasets.load_from_disk(str(spec))
        else:
            ds = datasets.load_dataset(str(spec))
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - datasets raises many types; report and stop
        raise LabelFileError(f"{name}: could not load the dataset ({type(exc).__name__}: {exc})") from None
    if isinstance(ds, datasets.DatasetDict):
        out = []
        for split in ds:
            out.extend(
                _records_from_table(name, ds[split].column_names, iter(ds[split]), prefix=f"{split} ")
            )
        return out
    return _records_from_table(name, ds.column_names, iter(ds))


def _sha1_of_file(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _sha1_of_tree(path: Path) -> str:
    h = hashlib.sha1()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode("utf-8"))
        h.update(_sha1_of_file(f).encode("ascii"))
    return h.hexdigest()


# ----------------------------------------------------------------- validation


def _number(v: Any) -> tuple[float | None, str | None]:
    """(value, problem) for one axis cell."""
    if v is None:
        return None, "missing value"
    if isinstance(v, bool):
        return None, f"expected a number, got boolean {v!r}"
    if isinstance(v, (int, float)):
        if isinstance(v, float) and math.isnan(v):
            return None, "value is NaN"
        if isinstance(v, float) and math.isinf(v):
            return None, f"value is {v!r}"
        return float(v), None
    # numpy scalars from pandas/pyarrow paths
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        return _number(v.item())
    return None, f"expected a number, got {type(v).__name__} {v!r}"


def _decide_scale(values: list[float], scale: str) -> tuple[str, str]:
    """The scale to read a file's values with, and a note for error messages."""
    if scale != "auto":
        return scale, ""
    only_levels = sum(1 for v in values if v == int(v) and 1 < v <= LEVELS)
    only_scores = sum(1 for v in values if v != int(v) and 0 < v < 1)
    if not only_scores:
        return "levels", ""
    if not only_levels:
        return "scores", ""
    # Mixed: go with the reading most values support and say so on each error.
    used = "scores" if only_scores > only_levels else "levels"
    note = (
        f" (the file was read as {used}: {only_levels} values fit only levels 0-{LEVELS}, "
        f"{only_scores} only scores in [0, 1]; pass --scale levels or --scale scores to choose)"
    )
    return used, note


def _check_cells(raw: _Raw) -> tuple[dict[str, float], list[str]]:
    """Axis values as floats, and what is wrong with the row's cells."""
    reasons = []
    text = raw.text
    if text is None or (isinstance(text, float) and math.isnan(text)):
        reasons.append("missing text")
    elif not isinstance(text, str):
        reasons.append(f"text must be a string, got {type(text).__name__} {text!r}")
    elif not text.strip():
        reasons.append("empty text")
    elif _has_surrogate(text):
        reasons.append("text has broken encoding (unpaired surrogate code points)")
    vals = {}
    for a in AXES:
        v, why = _number(raw.values.get(a))
        if why:
            reasons.append(f"{a}: {why}")
        else:
            vals[a] = v
    for opt in ("id", "source"):
        v = getattr(raw, opt)
        if v is None or isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool)):
            continue
        reasons.append(f"{opt} must be a string, got {type(v).__name__} {v!r}")
    return vals, reasons


def _validate(
    raws: list[_Raw], name: str, scale: str
) -> tuple[str, list[LabelledText], list[RowProblem]]:
    problems: dict[int, RowProblem] = {}
    parsed: dict[int, dict[str, float]] = {}
    for i, raw in enumerate(raws):
        if raw.problem:
            problems[i] = RowProblem(name, raw.where, raw.problem)
            continue
        vals, reasons = _check_cells(raw)
        if reasons:
            problems[i] = RowProblem(name, raw.where, "; ".join(reasons))
        else:
            parsed[i] = vals

    used, note = _decide_scale([v for vals in parsed.values() for v in vals.values()], scale)
    rows: list[LabelledText] = []
    seen_ids: dict[str, str] = {}
    for i, vals in parsed.items():
        raw = raws[i]
        reasons = []
        levels = []
        for a in AXES:
            v = vals[a]
            if used == "levels":
                if v != int(v) or not 0 <= v <= LEVELS:
                    reasons.append(f"{a}: level must be an integer 0-{LEVELS}, got {_fmt(v)}{note}")
                levels.append(v)
            else:
                if not 0.0 <= v <= 1.0:
                    reasons.append(f"{a}: score must be in [0, 1], got {_fmt(v)}{note}")
                levels.append(v * LEVELS)
        # Without an id column, a row is named by its file and location.
        rid = str(raw.id) if raw.id not in (None, "") else _default_id(name, raw.where)
        if rid in seen_ids:
            reasons.append(f"duplicate id {rid!r} (first at {seen_ids[rid]})")
        if reasons:
            problems[i] = RowProblem(name, raw.where, "; ".join(reasons))
            continue
        seen_ids[rid] = raw.where
        source = str(raw.source) if raw.source not in (None, "") else name
        rows.append(LabelledText(rid, source, raw.text, tuple(float(x) for x in levels)))
    return used, rows, [problems[i] for i in sorted(problems)]


def _default_id(name: str, where: str) -> str:
    """``<file>:<line>`` (first line of a multi-line CSV row), ``<file>:<row>`` or
    ``<dataset>:<split>:<row>``."""
    *split, _, pos = where.split()
    return ":".join([name, *split, pos.split("-")[0]])


def error_line(exc: LabelFileError, skip_flag: str | None = "--skip-invalid") -> str:
    """One line for a command to print: the first bad row (file, line, reason), how
    many more there are, and the fix; ``skip_flag`` is the option of that command
    that drops bad rows (``None`` when it has none).

    Example:
        >>> bad = RowProblem("a.csv", "line 3", "warmth: level must be an integer 0-3, got 9")
        >>> error_line(LabelFileError("a.csv: 1 of 2 rows are invalid:", [bad]))
        'a.csv: line 3: warmth: level must be an integer 0-3, got 9; fix the row, or pass --skip-invalid to drop and list bad rows'
    """
    head = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if not exc.problems or "rows are invalid" not in head:
        return head.rstrip(":")
    n = len(exc.problems)
    more = f" (and {n - 1} more invalid row{'s' if n > 2 else ''})" if n > 1 else ""
    fix = "fix the rows" if n > 1 else "fix the row"
    if exc.problems[0].reason.startswith("missing column"):
        return (f"{exc.problems[0]}{more}; a labelled file needs the columns {TEXT_COLUMN}, {', '.join(AXES)} "
                f"(optional: {', '.join(OPTIONAL_COLUMNS)}); rename yours to these")
    if skip_flag:
        fix += f", or pass {skip_flag} to drop and list bad rows"
    return f"{exc.problems[0]}{more}; {fix}"


def _fmt(v: float) -> str:
    return str(int(v)) if v == int(v) else repr(v)


def _problem_message(name: str, problems: list[RowProblem], total: int) -> str:
    head = f"{name}: {len(problems)} of {total} rows are invalid"
    lines = [f"  {p}" for p in problems[:MAX_LISTED]]
    if len(problems) > MAX_LISTED:
        lines.append(f"  ... and {len(problems) - MAX_LISTED} more")
    tail = "fix these rows, or pass --skip-invalid (skip_invalid=True) to drop them"
    return "\n".join([head + ":", *lines, tail])
