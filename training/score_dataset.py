"""Offline scoring of whole datasets (``zhenping score-dataset``), in this process or on Ray.

Input: a Parquet, JSONL or CSV file (``.gz`` allowed for JSONL and CSV) with a
``text`` column; every other column is kept. Output: the same rows in the same
order with these columns added, ready for ranking experiments:

=====================  ========  ==================================================
column                 type      meaning
=====================  ========  ==================================================
warmth, substance,     float64   the model's scores in [0, 1]
template
warmth_level, ...      int8      nearest level 0-3 (``round(score * 3)``)
truncated              bool      the model read only the text's first max_length tokens
template_fused         float64   template score raised by copies (:mod:`zhenping.model.campaign`)
exact_copies           int32     earlier rows with the same text (after normalisation)
near_copies            int32     earlier rows with a near-identical text
duplicate_cluster      string    id shared by a row and its copies (16 hex digits)
action                 string    suggested ``pass`` / ``review`` / ``fold``
=====================  ========  ==================================================

A null text gets null in every added column. Copies are counted in file order
over a window of the last 100,000 distinct rows, so the first row of a group
shows 0 copies and the ones after it count up; the cluster id groups them all.

Engines:

* ``local``: reads, scores and writes chunk by chunk with pyarrow (memory stays
  bounded by the chunk size); for files up to a few million rows.
* ``ray``: Ray Data; the scorer runs in a pool of actors
  (``map_batches(..., compute=ActorPoolStrategy(size=num_actors))``), each loading the model once;
  copy detection, which needs to see the rows in order, runs in one ordered actor
  after them. The model folder travels through Ray's object store, so worker
  nodes need no copy of it. With ``--ray-address`` (or ``RAY_ADDRESS``) it joins
  a cluster; input and output must then be paths every node can read (shared
  storage or ``s3://``...), and an output folder (``OUT/``) is written by the
  workers as Parquet files.

Both engines give the same scores for the same rows.

Extension point: the columns after the scores come from *stages*
(:class:`ColumnStage`); :func:`default_stages` lists them. A stage that looks
at one row at a time can run in the scorer actors; one that needs the rows in
order (``ordered = True``) runs alone, in order.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from zhenping.model.axes import AXES

FORMATS = ("parquet", "jsonl", "csv")
LEVEL_SUFFIX = "_level"
TRUNCATED = "truncated"  # column: the text was longer than the model's max_length tokens
DEFAULT_CHUNK = 4096  # rows read, scored and written at a time by the local engine
CSV_BLOCK_BYTES = 1 << 20  # bytes pyarrow reads per CSV/JSON block


class DatasetError(ValueError):
    """A dataset that cannot be scored as asked: names the file and what is wrong."""


# ------------------------------------------------------------------ formats


def detect_format(path: str) -> str:
    """``parquet``, ``jsonl`` or ``csv`` from a file name (``.gz`` allowed for JSONL and CSV)."""
    lower = str(path).lower().rstrip("/")
    gz = lower.endswith(".gz")
    if gz:
        lower = lower[:-3]
    for fmt, suffixes in (("parquet", (".parquet", ".pq")), ("jsonl", (".jsonl", ".ndjson", ".json")),
                          ("csv", (".csv",))):
        if lower.endswith(suffixes):
            if gz and fmt == "parquet":
                break
            return fmt
    raise DatasetError(f"{path}: cannot tell the format from the name; expected .parquet, .jsonl or .csv "
                       "(.jsonl.gz and .csv.gz too)")


def output_columns(axes: Sequence[str] = AXES, stages: Sequence["ColumnStage"] = ()) -> list[str]:
    """Names of the columns scoring adds, in order."""
    cols = [*axes, *(f"{a}{LEVEL_SUFFIX}" for a in axes), TRUNCATED]
    for stage in stages:
        cols.extend(stage.columns)
    return cols


def _check_columns(names: Sequence[str], text_column: str, added: Sequence[str], where: str) -> None:
    if text_column not in names:
        raise DatasetError(f"{where}: expected a {text_column!r} column, found {list(names)} (use --text-column)")
    clash = [c for c in added if c in names]
    if clash:
        raise DatasetError(f"{where}: already has column(s) {clash}, which scoring adds; rename or drop them first")


def read_chunks(path: str, text_column: str = "text", chunk_size: int = DEFAULT_CHUNK) -> Iterator[Any]:
    """Stream a dataset file as pyarrow Tables of at most about ``chunk_size`` rows.

    The text column is read as strings. Raises :class:`DatasetError` for a missing
    file, an unreadable one, or a missing text column.
    """
    import pyarrow as pa

    if chunk_size < 1:
        raise DatasetError(f"chunk size must be > 0, got {chunk_size}")
    if not Path(path).is_file():
        raise DatasetError(f"{path}: no such file")
    fmt = detect_format(path)
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(path)
            if text_column not in pf.schema_arrow.names:
                raise DatasetError(f"{path}: expected a {text_column!r} column, found {pf.schema_arrow.names} "
                                   "(use --text-column)")
            for batch in pf.iter_batches(batch_size=chunk_size):
                yield _text_as_string(pa.Table.from_batches([batch]), text_column, path)
            return
        reader = _open_csv(path, text_column) if fmt == "csv" else _open_jsonl(path, text_column)
        pending: list = []
        rows = 0
        for batch in reader:
            pending.append(batch)
            rows += batch.num_rows
            if rows >= chunk_size:
                yield _text_as_string(pa.Table.from_batches(pending), text_column, path)
                pending, rows = [], 0
        if pending:
            yield _text_as_string(pa.Table.from_batches(pending), text_column, path)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        raise DatasetError(f"{path}: cannot be read as {fmt} ({exc})") from None


def _text_as_string(table, text_column: str, path: str):
    import pyarrow as pa

    if text_column not in table.column_names:
        raise DatasetError(f"{path}: expected a {text_column!r} column, found {table.column_names} (use --text-column)")
    col = table[text_column]
    if not pa.types.is_string(col.type) and not pa.types.is_large_string(col.type):
        if not pa.types.is_null(col.type):
            raise DatasetError(f"{path}: column {text_column!r} holds {col.type}, expected text")
        col = col.cast(pa.string())
    if pa.types.is_large_string(col.type):
        col = col.cast(pa.string())
    return table.set_column(table.column_names.index(text_column), text_column, col)


def _open_csv(path: str, text_column: str):
    """Record batches of a CSV file. Quoted fields may hold line breaks; a bare ``\\r``
    (not followed by ``\\n``) is part of its field, as in ``zhenping score``, never a row end."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    raw = gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")
    reader = pacsv.open_csv(
        pa.PythonFile(_BareCR(raw), mode="r"),
        read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(column_types={text_column: pa.string()}, strings_can_be_null=False),
    )
    mark = _BareCR.MARK.decode("utf-8")
    try:
        for batch in reader:
            cols = [pc.replace_substring(c, mark, "\r") if pa.types.is_string(c.type) else c for c in batch.columns]
            yield pa.RecordBatch.from_arrays(cols, schema=batch.schema)
    finally:
        raw.close()


class _BareCR(io.RawIOBase):
    """A byte stream with each bare ``\\r`` (one not followed by ``\\n``) replaced by :attr:`MARK`,
    so that a CSV parser does not end a row there; the mark is turned back into ``\\r`` after parsing."""

    MARK = "\ue000".encode("utf-8")

    def __init__(self, raw):
        super().__init__()
        self._raw = raw
        self._out = b""
        self._held_cr = False  # a \r at the end of the last block: its meaning depends on the next byte

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._out:
            block = self._raw.read(1 << 16)
            end = not block
            if self._held_cr:
                block = b"\r" + block
                self._held_cr = False
            if not block:
                return 0
            if block.endswith(b"\r") and not end:
                block, self._held_cr = block[:-1], True
                if not block:
                    continue
            self._out = re.sub(rb"\r(?!\n)", self.MARK, block)
        n = min(len(buffer), len(self._out))
        buffer[:n] = self._out[:n]
        self._out = self._out[n:]
        return n


def _open_jsonl(path: str, text_column: str):
    import pyarrow as pa
    import pyarrow.json as pajson

    return pajson.open_json(
        path,
        read_options=pajson.ReadOptions(block_size=CSV_BLOCK_BYTES),
        parse_options=pajson.ParseOptions(explicit_schema=pa.schema([(text_column, pa.string())]),
                                          unexpected_field_behavior="infer", newlines_in_values=False),
    )


class TableWriter:
    """Writes pyarrow Tables to one Parquet, JSONL or CSV file, replaced atomically on success."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.fmt = detect_format(str(path))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self._sink = None
        self._writer = None
        self.schema = None
        self.rows = 0
        self.unscored = 0  # rows written without scores (no text)

    def write(self, table) -> None:
        import pyarrow as pa

        if self.schema is None:
            self.schema = table.schema
            self._open(table.schema)
        elif not table.schema.equals(self.schema):
            try:
                table = table.select(self.schema.names).cast(self.schema)
            except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError) as exc:
                raise DatasetError(f"{self.path}: a later part of the input has other columns or types than the "
                                   f"first ({exc}); write Parquet from a Parquet input to keep types exact") from None
        if self.fmt == "parquet":
            self._writer.write_table(table)
        elif self.fmt == "csv":
            try:
                self._writer.write_table(table)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise DatasetError(f"{self.path}: these columns cannot be written as CSV ({exc}); "
                                   "write .parquet or .jsonl") from None
        else:
            self._sink.write("".join(json.dumps(r, ensure_ascii=False, default=str) + "\n"
                                     for r in table.to_pylist()))
        self.rows += table.num_rows

    def _open(self, schema) -> None:
        if self.fmt == "parquet":
            import pyarrow.parquet as pq

            self._writer = pq.ParquetWriter(str(self._tmp), schema)
        elif self.fmt == "csv":
            import pyarrow as pa
            import pyarrow.csv as pacsv

            self._sink = (pa.CompressedOutputStream(str(self._tmp), "gzip") if self.path.name.endswith(".gz")
                          else pa.OSFile(str(self._tmp), "wb"))
            self._writer = pacsv.CSVWriter(self._sink, schema)
        else:
            raw = gzip.open(self._tmp, "wb") if self.path.name.endswith(".gz") else open(self._tmp, "wb")
            self._sink = io.TextIOWrapper(raw, encoding="utf-8", newline="\n")

    def close(self, ok: bool) -> None:
        """Finish the file (``ok``) or remove the partial one."""
        try:
            if self._writer is not None:
                self._writer.close()
            if self._sink is not None:
                self._sink.close()
        finally:
            if ok:
                if self.schema is None:  # no rows: an empty file of the right kind
                    if self.fmt == "parquet":
                        import pyarrow as pa
                        import pyarrow.parquet as pq

                        pq.write_table(pa.table({"text": pa.array([], pa.string())}), str(self._tmp))
                    else:
                        self._tmp.write_bytes(b"")
                os.replace(self._tmp, self.path)
            else:
                self._tmp.unlink(missing_ok=True)


# ------------------------------------------------------------------ scoring


class ColumnStage:
    """Adds columns computed from a chunk's texts and scores.

    Subclasses set ``columns`` (names, in order) and implement :meth:`add`.
    ``ordered = True`` marks a stage that must see every row once, in file order
    (the ray engine then runs it in a single actor after the scorers).
    """

    columns: tuple[str, ...] = ()
    column_types: dict[str, str] = {}  # name -> "float64", "int32", "int8" or "string" (the default)
    ordered = False

    def add(self, texts: list[str | None], scores: list) -> dict[str, list]:
        """Column values for the rows: ``{name: [value per row]}``; ``None`` where the text is null."""
        raise NotImplementedError


class CampaignStage(ColumnStage):
    """Copy detection and the suggested action, from :mod:`zhenping.model.campaign`.

    Rows go through the detector one at a time, in order, so the counts do not
    depend on how the rows were chunked.
    """

    columns = ("template_fused", "exact_copies", "near_copies", "duplicate_cluster", "action")
    column_types = {"template_fused": "float64", "exact_copies": "int32", "near_copies": "int32"}
    ordered = True

    def __init__(self, window_size: int = 100_000):
        from zhenping.model.campaign import CampaignConfig, CampaignDetector, WindowConfig

        # No time limit: an offline file has no clock; the window is bounded by size alone.
        config = CampaignConfig(window=WindowConfig(max_size=window_size, ttl_seconds=0.0), authors=False)
        self.detector = CampaignDetector.build(config)
        self.now = time.time()

    def add(self, texts, scores):
        from zhenping.model.campaign import CampaignInput
        from zhenping.model.normalize import normalize_text

        out: dict[str, list] = {c: [] for c in self.columns}
        for text, score in zip(texts, scores):
            if text is None:
                for c in self.columns:
                    out[c].append(None)
                continue
            (res,) = self.detector.process([CampaignInput(normalize_text(text))], [score], now=self.now).results
            out["template_fused"].append(float(res.template_fused))
            out["exact_copies"].append(int(res.duplicates.exact_count))
            out["near_copies"].append(int(res.duplicates.near_count))
            out["duplicate_cluster"].append(res.duplicates.cluster_id)
            out["action"].append(res.action)
        return out


def campaign_available() -> bool:
    """Whether copy detection (:mod:`zhenping.model.campaign`) is installed."""
    try:
        from zhenping import model
        import zhenping.model.campaign  # noqa: F401
    except ImportError:
        return False
    return True


def default_stages(campaign: bool = True) -> list[ColumnStage]:
    """The stages ``score-dataset`` runs after the scores."""
    return [CampaignStage()] if campaign and campaign_available() else []


def _arrow_type(name: str):
    import pyarrow as pa

    return {"float64": pa.float64(), "int32": pa.int32(), "int8": pa.int8(), "string": pa.string()}[name]


def score_table(scorer, table, text_column: str = "text", batch_size: int = 64,
                stages: Sequence[ColumnStage] = ()) -> Any:
    """The table with score and level columns (and the stages' columns) appended.

    A row without text (null, empty or white space only) is not scored; its added columns are null.
    """
    import pyarrow as pa

    texts = table[text_column].to_pylist()
    present = [i for i, t in enumerate(texts) if t is not None and t.strip()]
    scored = scorer.score([texts[i] for i in present], batch_size=batch_size) if present else []
    full: list = [None] * len(texts)
    for i, s in zip(present, scored):
        full[i] = s
    axes = list(scorer.axes)
    for axis in axes:
        table = table.append_column(axis, pa.array([None if s is None else getattr(s, axis) for s in full],
                                                   pa.float64()))
    for axis in axes:
        table = table.append_column(f"{axis}{LEVEL_SUFFIX}",
                                    pa.array([None if s is None else s.levels[axis] for s in full], pa.int8()))
    table = table.append_column(TRUNCATED, pa.array([None if s is None else bool(getattr(s, "truncated", False))
                                                     for s in full], pa.bool_()))
    return add_stage_columns(table, texts, full, stages)


def add_stage_columns(table, texts: list, scores: list, stages: Sequence[ColumnStage]):
    """Append each stage's columns (rows whose score is ``None`` get nulls)."""
    import pyarrow as pa

    for stage in stages:
        keep = [i for i, s in enumerate(scores) if s is not None]
        values = stage.add([texts[i] for i in keep], [scores[i] for i in keep])
        for name in stage.columns:
            col: list = [None] * len(texts)
            for i, v in zip(keep, values[name]):
                col[i] = v
            table = table.append_column(name, pa.array(col, _arrow_type(stage.column_types.get(name, "string"))))
    return table


def _scores_from_table(table, axes: Sequence[str]) -> list:
    """CommentScores back from the score columns (for stages that run after the scorers)."""
    from zhenping.model.scorer import CommentScores

    cols = {a: table[a].to_pylist() for a in axes}
    return [None if cols[axes[0]][i] is None else CommentScores(**{a: cols[a][i] for a in axes})
            for i in range(table.num_rows)]


def load_model(model_dir: str | os.PathLike | None, num_threads: int | None = None):
    """A scorer from a model folder, a model store (its current version) or ``None`` (the shipped model)."""
    from zhenping.model.scorer import Scorer
    from zhenping.training.store import resolve_model_dir

    path = resolve_model_dir(model_dir) if model_dir is not None else None
    return Scorer.from_pretrained(path, num_threads=num_threads)


def _known_rows(src: str) -> int | None:
    """Rows of the input where its metadata says (Parquet), for the progress bar's total and ETA."""
    if detect_format(src) != "parquet":
        return None
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(src).metadata.num_rows
    except Exception:  # noqa: BLE001 - an unreadable file is reported by the reader
        return None


def score_local(src: str, dst: str, scorer, text_column: str = "text", batch_size: int = 64,
                chunk_size: int = DEFAULT_CHUNK, stages: Sequence[ColumnStage] = (), progress: bool = True,
                summary: dict | None = None) -> int:
    """Score ``src`` into ``dst`` chunk by chunk in this process; returns the rows written.

    ``summary``, when given, receives ``unscored``: rows written without scores (no text).
    """
    from tqdm import tqdm

    added = output_columns(scorer.axes, stages)
    writer = TableWriter(dst)
    ok = False
    bar = tqdm(unit=" comments", desc="scoring", file=sys.stderr, disable=not progress, dynamic_ncols=True,
               mininterval=0.5, total=_known_rows(src))
    try:
        first = True
        for chunk in read_chunks(src, text_column, chunk_size):
            if first:
                _check_columns(chunk.column_names, text_column, added, src)
                first = False
            done = score_table(scorer, chunk, text_column, batch_size, stages)
            writer.unscored += done[scorer.axes[0]].null_count
            writer.write(done)
            bar.update(chunk.num_rows)
        ok = True
    finally:
        bar.close()
        writer.close(ok)
    if summary is not None:
        summary["unscored"] = writer.unscored
    return writer.rows


# ------------------------------------------------------------------ ray


def model_files(model_dir: Path) -> dict[str, bytes]:
    """Every file of a model folder, by relative path: what the actors rebuild the folder from."""
    return {str(p.relative_to(model_dir)): p.read_bytes() for p in sorted(model_dir.rglob("*")) if p.is_file()}


class ScoreActor:
    """Ray actor: rebuilds the model folder from the object store once, then scores batches."""

    def __init__(self, files_ref: list, text_column: str, batch_size: int, num_threads: int,
                 added: Sequence[str] = (), source: str = "input", stages: Sequence[ColumnStage] = ()):
        import ray

        from zhenping.model.scorer import Scorer

        files = ray.get(files_ref[0])
        self._dir = tempfile.mkdtemp(prefix="zhenping-model-")
        for rel, data in files.items():
            out = Path(self._dir) / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
        self.scorer = Scorer.from_pretrained(self._dir, num_threads=num_threads)
        self.text_column = text_column
        self.batch_size = batch_size
        self.added = list(added)
        self.source = source
        self.stages = list(stages)

    def __call__(self, table):
        _check_columns(table.column_names, self.text_column, self.added, self.source)
        table = _text_as_string(table, self.text_column, self.source)
        return score_table(self.scorer, table, self.text_column, self.batch_size, self.stages)


class OrderedStageActor:
    """Ray actor for stages that need every row in order (one instance, order preserved)."""

    def __init__(self, stage_factories: list, text_column: str, axes: Sequence[str]):
        self.stages = [factory() for factory in stage_factories]
        self.text_column = text_column
        self.axes = list(axes)

    def __call__(self, table):
        return add_stage_columns(table, table[self.text_column].to_pylist(), _scores_from_table(table, self.axes),
                                 self.stages)


def _ray_read(src: str, text_column: str):
    import pyarrow as pa
    import ray.data

    fmt = detect_format(src)
    stream_args = {"compression": "gzip"} if src.lower().endswith(".gz") else None
    if fmt == "parquet":
        return ray.data.read_parquet(src)
    if fmt == "csv":
        import pyarrow.csv as pacsv

        return ray.data.read_csv(src, arrow_open_stream_args=stream_args,
                                 convert_options=pacsv.ConvertOptions(column_types={text_column: pa.string()},
                                                                      strings_can_be_null=False))
    # JSON lines: Ray takes no parse options here; the scorer actors make the text column strings.
    return ray.data.read_json(src, lines=True, arrow_open_stream_args=stream_args)


def score_ray(
    src: str,
    dst: str,
    model_dir: Path,
    axes: Sequence[str],
    text_column: str = "text",
    batch_size: int = 64,
    num_actors: int | None = None,
    cpus_per_actor: float = 1.0,
    stage_factories: Sequence = (),
    ray_address: str | None = None,
    progress: bool = True,
) -> int:
    """Score with Ray Data: a pool of scorer actors, then ordered stages in one actor.

    ``num_actors=None`` sizes the pool to the cluster it finds: it autoscales from one
    actor up to as many as the cluster's CPUs hold with one CPU left for reading
    (``(CPUs - 1) // cpus_per_actor``). A number fixes the pool at that size.

    Joins a running Ray (``ray_address``, ``RAY_ADDRESS``, or one this process
    already started), else starts a local one and shuts it down afterwards.
    Returns the rows written.
    """
    import ray
    import ray.data
    from tqdm import tqdm

    started = False
    if not ray.is_initialized():
        address = ray_address or os.environ.get("RAY_ADDRESS") or None
        root = Path(__file__).resolve().parent.parent
        if address:  # workers elsewhere need the code; the model travels through the object store
            runtime_env = {"py_modules": [str(root / "model"), str(root / "training")],
                           "excludes": ["default/", "__pycache__/", "*.pyc"]}
        else:  # local workers import this very checkout, whatever else is installed
            runtime_env = {"env_vars": {"PYTHONPATH": os.pathsep.join(
                p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p)}}
        ray.init(address=address, include_dashboard=False, runtime_env=runtime_env, log_to_driver=False)
        started = True
    try:
        total = float(ray.cluster_resources().get("CPU", 0))
        if num_actors is None:
            # Actors hold their CPUs for the whole run: leave one for the read tasks.
            most = int((total - 1) / cpus_per_actor + 1e-9)
            if most < 1:
                raise DatasetError(
                    f"this Ray has {total:g} CPUs: one scorer actor of {cpus_per_actor:g} CPUs and reading need "
                    f"{cpus_per_actor + 1:g}; lower --cpus-per-actor (e.g. {max(0.1, total - 1) / 2:g}) or use "
                    "--engine local")
            pool = ray.data.ActorPoolStrategy(min_size=1, max_size=most)
            print(f"ray: {total:g} CPUs; scorer actors: 1 to {most} ({cpus_per_actor:g} CPU each), "
                  "one CPU left for reading", file=sys.stderr)
        else:
            pool = ray.data.ActorPoolStrategy(size=num_actors)
        need = (num_actors or 0) * cpus_per_actor
        if num_actors is not None and len(ray.nodes()) == 1 and need + 1 > total + 1e-9:
            # Actors hold their CPUs for the whole run; with none left, the read tasks never start.
            raise DatasetError(
                f"{num_actors} scorer actors x {cpus_per_actor:g} CPUs = {need:g} CPUs, and reading needs 1 more, "
                f"but this one-node Ray has {total:g} CPUs; lower --num-actors or --cpus-per-actor"
            )
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # rows leave in input order (and ordered stages see them so)
        ctx.enable_progress_bars = progress
        ds = _ray_read(src, text_column)
        added = output_columns(axes) + [c for f in stage_factories for c in f.columns]
        if detect_format(src) == "parquet":  # from the footer; CSV and JSON are checked as blocks arrive
            _check_columns(ds.schema().names, text_column, added, src)
        files_ref = [ray.put(model_files(model_dir))]
        threads = max(1, int(cpus_per_actor))
        ds = ds.map_batches(
            ScoreActor,
            fn_constructor_kwargs={"files_ref": files_ref, "text_column": text_column, "batch_size": batch_size,
                                   "num_threads": threads, "added": added, "source": src},
            batch_size=batch_size * 4,
            batch_format="pyarrow",
            compute=pool,
            num_cpus=cpus_per_actor,
        )
        if stage_factories:
            ds = ds.map_batches(
                OrderedStageActor,
                fn_constructor_kwargs={"stage_factories": list(stage_factories), "text_column": text_column,
                                       "axes": list(axes)},
                batch_size=batch_size * 4,
                batch_format="pyarrow",
                compute=ray.data.ActorPoolStrategy(size=1),
                num_cpus=0,  # light work; must not take a CPU the readers need
            )
        try:
            if dst.endswith("/") or Path(dst).is_dir():
                ds.write_parquet(dst)
                return _parquet_rows(dst)
            writer = TableWriter(dst)
            ok = False
            bar = tqdm(unit=" comments", desc="writing", file=sys.stderr, disable=not progress, dynamic_ncols=True)
            try:
                for table in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                    writer.write(table)
                    bar.update(table.num_rows)
                ok = True
            finally:
                bar.close()
                writer.close(ok)
            return writer.rows
        except Exception as exc:
            # An input problem found inside an actor arrives wrapped in Ray's errors: report it plainly.
            cause = exc
            while cause is not None and not isinstance(cause, DatasetError):
                cause = cause.__cause__ or getattr(cause, "cause", None)
            if cause is None or cause is exc:
                raise
            raise DatasetError(str(cause).strip().splitlines()[-1]) from None
    finally:
        if started:
            ray.shutdown()


def _parquet_rows(folder: str) -> int:
    import pyarrow.parquet as pq

    path = Path(folder)
    if not path.is_dir():  # a remote folder: not counted here
        return -1
    return sum(pq.ParquetFile(p).metadata.num_rows for p in path.glob("*.parquet"))


class _CampaignFactory:
    """Builds a :class:`CampaignStage` inside the ordered actor (it holds state, so it is made there)."""

    columns = CampaignStage.columns

    def __call__(self) -> CampaignStage:
        return CampaignStage()


# ------------------------------------------------------------------ entry point


def score_dataset(
    src: str,
    dst: str,
    engine: str = "local",
    model_dir: str | os.PathLike | None = None,
    batch_size: int = 64,
    num_actors: int | None = None,
    ray_address: str | None = None,
    cpus_per_actor: float = 1.0,
    text_column: str = "text",
    chunk_size: int = DEFAULT_CHUNK,
    campaign: bool = True,
    progress: bool = True,
) -> dict:
    """Score every row of a dataset file and write it with the score columns added.

    Args:
        src: input Parquet/JSONL/CSV file.
        dst: output file (format from its name); with ``engine="ray"`` a folder
            ending in ``/`` gets Parquet files written by the workers.
        engine: ``"local"`` or ``"ray"``.
        model_dir: model folder or model store; ``None`` for the shipped model.
        batch_size: texts per forward pass.
        num_actors: scorer actors (ray); ``None``: an autoscaling pool from 1 to what
            the cluster's CPUs hold beside reading.
        ray_address: Ray cluster address (ray); default ``RAY_ADDRESS`` or a local Ray.
        cpus_per_actor: CPUs each scorer actor reserves; its torch threads follow (ray).
        text_column: the column holding the comments.
        chunk_size: rows per chunk (local).
        campaign: add copy-detection and action columns when :mod:`zhenping.model.campaign` is installed.

    Returns:
        ``{"rows", "unscored", "seconds", "comments_per_second", "engine", "model", "columns"}``;
        ``unscored``: rows written without scores because they have no text (local engine; ``None`` on Ray).

    Raises:
        DatasetError: a bad file, format or column, naming it.
        zhenping.model.scorer.ModelLoadError: the model cannot be loaded.

    Example:
        >>> score_dataset("comments.csv.gz", "scored.parquet")  # doctest: +SKIP
        {'rows': 16995, 'seconds': 41.2, 'comments_per_second': 412.5, 'engine': 'local', ...}
    """
    if engine not in ("local", "ray"):
        raise DatasetError(f"engine must be 'local' or 'ray', got {engine!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DatasetError(f"batch_size must be > 0, got {batch_size!r}")
    if not Path(src).is_file() and "://" not in src:
        raise DatasetError(f"{src}: no such file")
    detect_format(src)
    if not (engine == "ray" and dst.endswith("/")):
        detect_format(dst)
    started = time.perf_counter()
    local: dict = {}
    if engine == "local":
        scorer = load_model(model_dir)
        stages = default_stages(campaign)
        rows = score_local(src, dst, scorer, text_column, batch_size, chunk_size, stages, progress, local)
        axes, model = list(scorer.axes), f"{scorer.model_id}@{scorer.model_version}"
    else:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise DatasetError('the ray engine needs Ray Data: pip install "ray[data]"') from None
        from zhenping.model.scorer import DEFAULT_MODEL_DIR
        from zhenping.training.store import resolve_model_dir

        path = Path(resolve_model_dir(model_dir) if model_dir is not None else DEFAULT_MODEL_DIR)
        probe = load_model(path)  # fail here, with the loader's message, rather than inside an actor
        axes, model = list(probe.axes), f"{probe.model_id}@{probe.model_version}"
        del probe
        factories = [_CampaignFactory()] if campaign and campaign_available() else []
        rows = score_ray(src, dst, path, axes, text_column, batch_size, num_actors, cpus_per_actor, factories,
                         ray_address, progress)
    seconds = time.perf_counter() - started
    stages_cols = list(CampaignStage.columns) if campaign and campaign_available() else []
    return {"rows": rows, "unscored": local.get("unscored"), "seconds": seconds, "comments_per_second": rows / seconds if seconds > 0 and rows > 0 else 0.0,
            "engine": engine, "model": model, "columns": output_columns(axes) + stages_cols}
