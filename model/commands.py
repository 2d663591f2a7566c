"""Scoring subcommands of `zhenping`: score, export-onnx."""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import os
import sys
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from zhenping.model.scorer import DEFAULT_MODEL_DIR, Backend, ModelLoadError

# This module's subcommands; zhenping/cli.py adds them to the `zhenping` command.
app = typer.Typer()

FORMATS = ("txt", "jsonl", "csv", "parquet")
DEFAULT_CHUNK = 2048  # rows read, scored and written at a time; bounds memory on big files

# Exit codes: 2 for input the user can fix (a file, a column, an option),
# 1 for a model that cannot be loaded.
EXIT_BAD_INPUT = 2
EXIT_MODEL = 1


class InputError(ValueError):
    """An input file that cannot be scored (names the file, the row and the reason)."""


class Format(str, Enum):
    txt = "txt"
    jsonl = "jsonl"
    csv = "csv"
    parquet = "parquet"


# ------------------------------------------------------------------- reading


def detect_format(name: str) -> str:
    """The input format from a file name (``.gz`` allowed for text formats)."""
    lower = name.lower()
    if lower.endswith(".gz"):
        lower = lower[:-3]
    for fmt, suffixes in (
        ("txt", (".txt",)),
        ("jsonl", (".jsonl", ".ndjson")),
        ("csv", (".csv",)),
        ("parquet", (".parquet", ".pq")),
    ):
        if lower.endswith(suffixes):
            return fmt
    raise InputError(
        f"{name}: cannot tell the format from the file name; expected one of "
        ".txt, .jsonl, .csv, .parquet (or pass --format)"
    )


def iter_chunks(
    source: str, fmt: str | None = None, text_field: str = "text", chunk_size: int = DEFAULT_CHUNK,
    reader: "ReadProgress | None" = None,
) -> Iterator[list[dict]]:
    """Read records in chunks of ``chunk_size``; each record has ``text_field`` as a str, or ``None``.

    The input contract (README: "What counts as a comment"): a line of ``.txt`` is
    one comment and blank lines are skipped (counted in ``reader``); in ``.jsonl``,
    ``.csv`` and ``.parquet`` every row is kept, and a row whose text is null,
    missing, empty or white space only comes back with that text (``None`` when
    absent) for the caller to leave unscored. Lines end at ``\\n`` (or
    ``\\r\\n``) only: a bare ``\\r`` is part of its line or CSV field.

    Args:
        source: a file path, or ``-`` for standard input (plain text unless ``fmt``).
        fmt: ``txt``, ``jsonl``, ``csv`` or ``parquet``; default from the file name.
        text_field: the column or field holding the comment.
        chunk_size: records per chunk.
        reader: optional :class:`ReadProgress`, updated as the input is read
            (bytes or rows read, the total where known, blank lines skipped).

    Raises:
        InputError: naming the file, the line or row, and what is wrong.
    """
    reader = reader if reader is not None else ReadProgress()
    if chunk_size < 1:
        raise InputError(f"chunk size must be > 0, got {chunk_size}")
    name = "<stdin>" if source == "-" else source
    if fmt is None:
        fmt = "txt" if source == "-" else detect_format(source)
    if source != "-" and not Path(source).is_file():
        raise InputError(f"{source}: no such file")
    if fmt == "parquet":
        yield from _parquet_chunks(source, name, text_field, chunk_size, reader)
        return
    with _open_binary(source) as raw:
        fh = _Lines(raw, name, protect_cr=fmt == "csv", reader=reader)
        if fmt == "txt":
            rows = _txt_rows(fh, text_field, reader)
        elif fmt == "jsonl":
            rows = _jsonl_rows(fh, name, text_field)
        elif fmt == "csv":
            rows = _csv_rows(fh, name, text_field)
        else:
            raise InputError(f"unknown format {fmt!r}; expected one of {list(FORMATS)}")
        chunk: list[dict] = []
        for row in rows:
            chunk.append(row)
            if len(chunk) >= chunk_size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


class ReadProgress:
    """How far a reader got: ``done`` of ``total`` (``None``: unknown) in ``unit``, and blank lines skipped."""

    def __init__(self) -> None:
        self.done = 0
        self.total: int | None = None
        self.unit = "B"  # bytes of a text file, or " rows" of a Parquet file
        self.blank_lines: list[int] = []  # .txt line numbers skipped as blank


# Stands in for a bare carriage return inside a CSV field while the csv module
# parses (it would end the row there); put back in the values afterwards.
_CR_MARK = "\ue000"


@contextlib.contextmanager
def _open_binary(source: str):
    if source == "-":
        yield sys.stdin.buffer
    elif source.endswith(".gz"):
        with gzip.open(source, "rb") as fh:
            yield fh
    else:
        with open(source, "rb") as fh:
            yield fh


class _Lines:
    """UTF-8 lines of a byte stream, split at ``\\n`` only (a bare ``\\r`` stays in its line)."""

    def __init__(self, raw, name: str, protect_cr: bool, reader: ReadProgress):
        self.raw, self.name, self.protect_cr, self.reader = raw, name, protect_cr, reader
        if raw is not sys.stdin.buffer and not name.endswith(".gz"):
            with contextlib.suppress(OSError):
                reader.total = os.fstat(raw.fileno()).st_size

    def __iter__(self) -> Iterator[str]:
        import codecs

        decoder = codecs.getincrementaldecoder("utf-8")()
        pending = ""
        lineno = 0
        while True:
            block = self.raw.read(1 << 16)
            try:
                pending += decoder.decode(block, final=not block)
            except UnicodeDecodeError as err:
                raise InputError(f"{self.name} near line {lineno + pending.count(chr(10)) + 1}: not valid UTF-8 "
                                 f"({err.reason})") from None
            self.reader.done += len(block)
            parts = pending.split("\n")
            pending = parts.pop()
            for part in parts:
                lineno += 1
                yield self._mark(part + "\n")
            if not block:
                if pending:
                    yield self._mark(pending)
                return

    def _mark(self, line: str) -> str:
        if not self.protect_cr or "\r" not in line:
            return line
        end = "\r\n" if line.endswith("\r\n") else ("\n" if line.endswith("\n") else "")
        return line[: len(line) - len(end)].replace("\r", _CR_MARK) + end


def _txt_rows(lines, text_field: str, reader: ReadProgress) -> Iterator[dict]:
    for lineno, line in enumerate(lines, start=1):
        text = line[:-1] if line.endswith("\n") else line
        if text.endswith("\r"):
            text = text[:-1]
        if not text.strip():
            reader.blank_lines.append(lineno)
            continue
        yield {text_field: text}


def is_blank(text) -> bool:
    """Whether a comment has no text to score: ``None``, empty, or white space only."""
    return text is None or (isinstance(text, str) and not text.strip())


def _jsonl_rows(fh, name: str, text_field: str) -> Iterator[dict]:
    for lineno, line in enumerate(fh, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{name} line {lineno}: not valid JSON ({err.msg}, column {err.colno})") from err
        if not isinstance(rec, dict):
            raise InputError(f"{name} line {lineno}: expected a JSON object, got {type(rec).__name__}")
        rec.setdefault(text_field, None)  # no text: kept, not scored (the same as null)
        _check_text(rec[text_field], name, f"line {lineno}", text_field)
        yield rec


def _csv_rows(fh, name: str, text_field: str) -> Iterator[dict]:
    reader = csv.DictReader(fh)
    columns = reader.fieldnames or []
    if text_field not in columns:
        raise InputError(f"{name}: expected a {text_field!r} column, found {columns} (use --text-field)")
    for rec in reader:
        # Line of the record's end in the file (the header is line 1).
        if rec.get(text_field) is None:
            raise InputError(f"{name} line {reader.line_num}: row has fewer fields than the header")
        rec.pop(None, None)  # cells beyond the header
        for key, value in rec.items():
            if isinstance(value, str) and _CR_MARK in value:
                rec[key] = value.replace(_CR_MARK, "\r")
        yield rec


def _parquet_chunks(source: str, name: str, text_field: str, chunk_size: int,
                    reader: ReadProgress) -> Iterator[list[dict]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(io.BytesIO(sys.stdin.buffer.read()) if source == "-" else source)
    except (pa.ArrowException, OSError) as err:
        raise InputError(f"{name}: not a readable Parquet file ({err})") from err
    columns = pf.schema_arrow.names
    if text_field not in columns:
        raise InputError(f"{name}: expected a {text_field!r} column, found {columns} (use --text-field)")
    reader.total, reader.unit = pf.metadata.num_rows, " rows"
    row = 0
    for batch in pf.iter_batches(batch_size=chunk_size):
        recs = batch.to_pylist()
        for i, rec in enumerate(recs):
            _check_text(rec[text_field], name, f"row {row + i}", text_field)
        row += len(recs)
        reader.done = row
        yield recs


def _check_text(value, name: str, where: str, text_field: str) -> None:
    if value is not None and not isinstance(value, str):
        got = "null" if value is None else type(value).__name__
        raise InputError(f"{name} {where}: {text_field!r} must be a string, got {got}")


# ------------------------------------------------------------------- writing


def output_record(rec: dict, text_field: str, axes, scores) -> dict:
    """One output object: the input's other fields, ``text``, the scores, ``levels``
    and ``truncated`` (true when the model read only the text's first ``max_length``
    tokens).

    An input field named like an output field (``warmth``, ``levels``: gold labels
    in a prepared split, say) is kept as ``input_<name>``.
    """
    out_names = {"text", "levels", "truncated", *axes}
    out = {}
    for k, v in rec.items():
        if k == text_field:
            continue
        out[f"input_{k}" if k in out_names else k] = v
    out["text"] = rec[text_field]
    values = scores.as_dict()
    for axis in axes:
        out[axis] = values[axis]
    out["levels"] = scores.levels
    out["truncated"] = bool(getattr(scores, "truncated", False))
    return out


class JsonlSink:
    """Writes records as JSON lines to a file (atomically) or standard output."""

    def __init__(self, path: Path | None):
        self.path = path
        self._tmp = None
        if path is None:
            self._fh = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="\n", write_through=True)
        else:
            self._tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            self._fh = open(self._tmp, "w", encoding="utf-8", newline="\n")

    def write(self, records: list[dict]) -> None:
        self._fh.write("".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records))

    def close(self, ok: bool) -> None:
        if self._tmp is None:
            self._fh.flush()
            self._fh.detach()  # leave sys.stdout open
            return
        self._fh.close()
        if ok:
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)


class ParquetSink:
    """Writes records to a Parquet file chunk by chunk, schema from the first chunk."""

    def __init__(self, path: Path):
        self.path = path
        self._tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        self._writer = None

    def write(self, records: list[dict]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            if self._writer is None:
                table = pa.Table.from_pylist(records)
                self._writer = pq.ParquetWriter(str(self._tmp), table.schema)
            else:
                table = pa.Table.from_pylist(records, schema=self._writer.schema)
        except (pa.ArrowException, ValueError, TypeError) as err:
            raise InputError(
                f"{self.path}: the input's fields do not fit one Parquet schema ({err}); write JSONL instead"
            ) from err
        self._writer.write_table(table)

    def close(self, ok: bool) -> None:
        if self._writer is not None:
            self._writer.close()
        if ok:
            if self._writer is None:  # no rows: still write a valid, empty file
                import pyarrow as pa
                import pyarrow.parquet as pq

                pq.write_table(pa.table({"text": pa.array([], pa.string())}), str(self._tmp))
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)


def score_file(
    scorer,
    source: str,
    out: Path | None = None,
    fmt: str | None = None,
    text_field: str = "text",
    batch_size: int = 32,
    chunk_size: int = DEFAULT_CHUNK,
    progress: bool = True,
    summary: dict | None = None,
) -> int:
    """Score every row of ``source`` and write one record per row; returns the rows written.

    Output goes to ``out`` (JSONL, or Parquet when it ends in ``.parquet``) or to
    standard output as JSONL. The input is streamed in chunks of ``chunk_size``.
    Blank ``.txt`` lines are skipped; a structured row without text is written
    with null scores and levels (see :func:`iter_chunks`). ``summary``, when
    given, receives ``blank_lines`` (skipped .txt line numbers) and ``unscored``
    (1-based numbers of the rows written without scores).
    """
    from tqdm import tqdm

    sink = ParquetSink(out) if out is not None and out.suffix == ".parquet" else JsonlSink(out)
    n = 0
    ok = False
    unscored: list[int] = []
    reader = ReadProgress()
    bar = tqdm(file=sys.stderr, disable=not progress, dynamic_ncols=True, mininterval=0.5, unit_scale=True)
    try:
        for chunk in iter_chunks(source, fmt, text_field, chunk_size, reader):
            keep = [i for i, r in enumerate(chunk) if not is_blank(r[text_field])]
            scored = scorer.score([chunk[i][text_field] for i in keep], batch_size=batch_size)
            scores: list = [_NO_SCORES] * len(chunk)
            for i, sc in zip(keep, scored):
                scores[i] = sc
            unscored.extend(n + i + 1 for i, sc in enumerate(scores) if sc is _NO_SCORES)
            sink.write([output_record(r, text_field, scorer.axes, sc) for r, sc in zip(chunk, scores)])
            n += len(chunk)
            if bar.total is None and reader.total is not None:  # known once the file is open
                bar.unit, bar.total = reader.unit, reader.total
            bar.update(reader.done - bar.n)
            bar.set_postfix(comments=n, refresh=False)
        ok = True
    finally:
        bar.close()
        sink.close(ok)
    if summary is not None:
        summary.update(blank_lines=list(reader.blank_lines), unscored=unscored)
    return n


class _NoScores:
    """The scores of a row without text: null scores and levels."""

    truncated = False
    levels = None

    def as_dict(self) -> dict:
        from collections import defaultdict

        return defaultdict(lambda: None)


_NO_SCORES = _NoScores()


def _numbers(values: list[int], limit: int = 10) -> str:
    shown = ", ".join(str(v) for v in values[:limit])
    return shown + (f" and {len(values) - limit:,} more" if len(values) > limit else "")


# ------------------------------------------------------------------ commands


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@app.command("score")
def score_command(
    file: str = typer.Argument(
        ..., help="Comments: .txt (one per line), .jsonl, .csv or .parquet with a `text` field; - reads stdin."
    ),
    out: Optional[Path] = typer.Option(
        None, "-o", "--out", help="Output file: JSONL, or Parquet if it ends in .parquet. Default: JSONL on stdout."
    ),
    model: Optional[str] = typer.Option(
        None, "--model", help="Model directory or Hub id. Default: the shipped model in model/default."
    ),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Texts per forward pass."),
    backend: Backend = typer.Option(
        Backend.auto, "--backend",
        help="auto (ONNX Runtime when the model folder ships an ONNX file, else torch), torch, or onnx."),
    fmt: Optional[Format] = typer.Option(None, "--format", help="Input format; default from the file name (stdin: txt)."),
    text_field: str = typer.Option("text", "--text-field", help="Column or field holding the comment."),
    chunk_size: int = typer.Option(DEFAULT_CHUNK, "--chunk-size", min=1, help="Rows read and scored at a time."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads for the model."),
    max_length: Optional[int] = typer.Option(
        None, "--max-length", min=2,
        help="Tokens read per comment, in place of the model's own max_length (at most the positions it has)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar on stderr."),
) -> None:
    """Score comments in a file; one JSON object per input row."""
    from zhenping.model.scorer import Scorer

    fmt_name = fmt.value if fmt is not None else None
    try:
        # Fail on a bad file before spending seconds on loading the model.
        if fmt_name is None and file != "-":
            detect_format(file)
        if file != "-" and not Path(file).is_file():
            raise InputError(f"{file}: no such file")
    except InputError as err:
        raise _fail(str(err), EXIT_BAD_INPUT) from None
    try:
        scorer = Scorer.from_pretrained(model, backend=backend.value, num_threads=threads, max_length=max_length)
    except ModelLoadError as err:
        raise _fail(str(err), EXIT_MODEL) from None
    except ValueError as err:  # --max-length beyond the model's positions
        raise _fail(str(err), EXIT_BAD_INPUT) from None
    summary: dict = {}
    try:
        n = score_file(scorer, file, out, fmt_name, text_field, batch_size, chunk_size, progress, summary)
    except InputError as err:
        raise _fail(str(err), EXIT_BAD_INPUT) from None
    if summary["blank_lines"]:
        typer.echo(f"skipped {len(summary['blank_lines']):,} blank lines (lines "
                   f"{_numbers(summary['blank_lines'])})", err=True)
    if summary["unscored"]:
        typer.echo(f"{len(summary['unscored']):,} rows have no text (null, missing, empty or white space): "
                   f"written with null scores (rows {_numbers(summary['unscored'])})", err=True)
    if out is not None:
        typer.echo(f"scored {n} comments with {scorer.model_id} ({scorer.backend}) -> {out}", err=True)


@app.command("export-onnx")
def export_onnx_command(
    model: Optional[Path] = typer.Option(None, "--model", help="Model directory. Default: model/default."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output directory. Default: the model directory."),
    quantize: bool = typer.Option(True, "--quantize/--no-quantize", help="Also write model.int8.onnx."),
    optimize: bool = typer.Option(
        False,
        "--optimize/--no-optimize",
        help="Apply ONNX Runtime's BERT fusions before saving and quantising (no faster at the shipped size).",
    ),
) -> None:
    """Export a model directory to ONNX (model.onnx, optionally model.int8.onnx).

    The shipped model (model/default) is never changed: exporting it needs --out DIR,
    which then holds an ONNX-only copy.
    """
    from zhenping.model.onnx_backend import export_onnx

    src = model if model is not None else DEFAULT_MODEL_DIR
    if model is None and not DEFAULT_MODEL_DIR.is_dir():
        raise _fail(f"no default model is installed at {DEFAULT_MODEL_DIR}; pass --model DIR", EXIT_BAD_INPUT)
    if _same_dir(out if out is not None else src, DEFAULT_MODEL_DIR):
        raise _fail(
            f"export-onnx does not write into the shipped model ({DEFAULT_MODEL_DIR}), which serve and score "
            "use as installed; pass --out DIR for an ONNX-only copy of it (then `zhenping score --model DIR`), "
            "or --model DIR to export your own model",
            EXIT_BAD_INPUT,
        )
    try:
        info = export_onnx(src, out, quantize=quantize, optimize=optimize)
    except ModelLoadError as err:
        raise _fail(str(err), EXIT_MODEL) from None
    dest = (out or src).resolve()
    for name, meta in info["files"].items():
        size = (dest / name).stat().st_size / 2**20
        typer.echo(
            f"{dest / name}  {size:.1f} MiB  optimized={meta['optimized']}  "
            f"max |logit - torch| = {meta['max_abs_logit_diff_vs_torch']:.2e}"
        )
    if out is not None and not _same_dir(out, src):
        typer.echo(f"ONNX-only model folder: {dest} (use it with --model {dest})", err=True)


def _same_dir(a: Path, b: Path) -> bool:
    """Whether two paths name the same folder (symlinks and relative paths resolved)."""
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except OSError:
        return False
