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

from model.scorer import DEFAULT_MODEL_DIR, ModelLoadError
from training.cli import app

FORMATS = ("txt", "jsonl", "csv", "parquet")
DEFAULT_CHUNK = 2048  # rows read, scored and written at a time; bounds memory on big files

# Exit codes: 2 for input the user can fix (a file, a column, an option),
# 1 for a model that cannot be loaded.
EXIT_BAD_INPUT = 2
EXIT_MODEL = 1


class InputError(ValueError):
    """An input file that cannot be scored (names the file, the row and the reason)."""


class Backend(str, Enum):
    torch = "torch"
    onnx = "onnx"
    auto = "auto"


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
    source: str, fmt: str | None = None, text_field: str = "text", chunk_size: int = DEFAULT_CHUNK
) -> Iterator[list[dict]]:
    """Read records in chunks of ``chunk_size``; each record has ``text_field`` as a str.

    Args:
        source: a file path, or ``-`` for standard input (plain text unless ``fmt``).
        fmt: ``txt``, ``jsonl``, ``csv`` or ``parquet``; default from the file name.
        text_field: the column or field holding the comment.
        chunk_size: records per chunk.

    Raises:
        InputError: naming the file, the line or row, and what is wrong.
    """
    if chunk_size < 1:
        raise InputError(f"chunk size must be > 0, got {chunk_size}")
    name = "<stdin>" if source == "-" else source
    if fmt is None:
        fmt = "txt" if source == "-" else detect_format(source)
    if source != "-" and not Path(source).is_file():
        raise InputError(f"{source}: no such file")
    if fmt == "parquet":
        yield from _parquet_chunks(source, name, text_field, chunk_size)
        return
    with _open_text(source) as fh:
        if fmt == "txt":
            rows = ({text_field: line.rstrip("\r\n")} for line in fh)
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


@contextlib.contextmanager
def _open_text(source: str):
    if source == "-":
        # Read stdin as UTF-8 whatever the locale says.
        yield io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", newline="")
    elif source.endswith(".gz"):
        with gzip.open(source, "rt", encoding="utf-8", newline="") as fh:
            yield fh
    else:
        with open(source, encoding="utf-8", newline="") as fh:
            yield fh


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
        if text_field not in rec:
            raise InputError(
                f"{name} line {lineno}: no {text_field!r} field; found {sorted(rec)} (use --text-field)"
            )
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
        yield rec


def _parquet_chunks(source: str, name: str, text_field: str, chunk_size: int) -> Iterator[list[dict]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(io.BytesIO(sys.stdin.buffer.read()) if source == "-" else source)
    except (pa.ArrowException, OSError) as err:
        raise InputError(f"{name}: not a readable Parquet file ({err})") from err
    columns = pf.schema_arrow.names
    if text_field not in columns:
        raise InputError(f"{name}: expected a {text_field!r} column, found {columns} (use --text-field)")
    row = 0
    for batch in pf.iter_batches(batch_size=chunk_size):
        recs = batch.to_pylist()
        for i, rec in enumerate(recs):
            _check_text(rec[text_field], name, f"row {row + i}", text_field)
        row += len(recs)
        yield recs


def _check_text(value, name: str, where: str, text_field: str) -> None:
    if not isinstance(value, str):
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
) -> int:
    """Score every row of ``source`` and write one record per row; returns the row count.

    Output goes to ``out`` (JSONL, or Parquet when it ends in ``.parquet``) or to
    standard output as JSONL. The input is streamed in chunks of ``chunk_size``.
    """
    from tqdm import tqdm

    sink = ParquetSink(out) if out is not None and out.suffix == ".parquet" else JsonlSink(out)
    n = 0
    ok = False
    bar = tqdm(unit=" comments", file=sys.stderr, disable=not progress, dynamic_ncols=True, mininterval=0.5)
    try:
        for chunk in iter_chunks(source, fmt, text_field, chunk_size):
            scores = scorer.score([r[text_field] for r in chunk], batch_size=batch_size)
            sink.write([output_record(r, text_field, scorer.axes, s) for r, s in zip(chunk, scores)])
            n += len(chunk)
            bar.update(len(chunk))
        ok = True
    finally:
        bar.close()
        sink.close(ok)
    return n


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
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar on stderr."),
) -> None:
    """Score comments in a file; one JSON object per input row."""
    from model.scorer import Scorer

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
        scorer = Scorer.from_pretrained(model, backend=backend.value, num_threads=threads)
    except ModelLoadError as err:
        raise _fail(str(err), EXIT_MODEL) from None
    try:
        n = score_file(scorer, file, out, fmt_name, text_field, batch_size, chunk_size, progress)
    except InputError as err:
        raise _fail(str(err), EXIT_BAD_INPUT) from None
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
    from model.onnx_backend import export_onnx

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
