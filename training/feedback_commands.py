"""Subcommands that close the loop: `feedback export/stats`, the model store
(`promote`, `rollback`, `models list`) and offline scoring (`score-dataset`).

``zhenping feedback export`` turns the feedback the service collected into a
labelled JSONL file that ``zhenping train --extra`` reads. One line per distinct
comment (normalised text)::

    {"id": "feedback:<sha256 prefix>", "source": "feedback", "text": "...",
     "warmth": 2, "substance": 1, "template": 0,
     "corrected": ["warmth"], "filled_by": "<model version>", "submitters": 1}

Levels are integers 0-3. An axis corrected by several submitters gets the mean
of their levels, rounded half up. An axis nobody corrected is filled with the
current model's level for that text (``--fill model``, the default; the model
is ``--model``, else the store's current version, else the shipped model), or
the comment is left out (``--fill skip``). ``corrected`` names the axes that
came from people. Feedback that names a comment only by id has no text to
train on and is left out; so is feedback on a text that is in the validation
or test split of ``--data`` (those rows measure every model, and a promotion
compares models on them).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections import defaultdict
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from zhenping.model.axes import AXES

# This module's subcommands; zhenping/cli.py adds them to the `zhenping` command.
app = typer.Typer()

EXIT_BAD_INPUT = 2  # something the user can fix: a file, an option, the store
EXIT_MODEL = 1  # a model that cannot be loaded; also: a candidate that was not promoted
HELD_OUT_SPLITS = ("validation", "test")

feedback_app = typer.Typer(help="Feedback collected by the service (POST /v1/feedback).", no_args_is_help=True)
models_app = typer.Typer(help="The versioned model store ($ZHENPING_MODEL_STORE).", no_args_is_help=True)
app.add_typer(feedback_app, name="feedback")
app.add_typer(models_app, name="models")


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


# ------------------------------------------------------------------ feedback export


class Fill(str, Enum):
    model = "model"
    skip = "skip"


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def default_model_dir() -> Path:
    """The model that fills uncorrected axes: the store's current version if there is one, else the shipped model."""
    from zhenping.model.scorer import DEFAULT_MODEL_DIR
    from zhenping.training.store import ModelStore, is_store, store_root

    root = store_root()
    if is_store(root) and ModelStore(root).current() is not None:
        return ModelStore(root).current_dir()
    return DEFAULT_MODEL_DIR


def held_out_keys(data_dir: Path) -> set[str]:
    """SHA-256 keys (as feedback stores them) of every text in the validation and test split files."""
    from zhenping.api.db import text_sha256

    keys: set[str] = set()
    for split in HELD_OUT_SPLITS:
        path = data_dir / f"{split}.jsonl"
        if not path.is_file():
            continue
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        keys.add(text_sha256(json.loads(line)["text"]))
                    except (json.JSONDecodeError, KeyError, TypeError) as exc:
                        raise ValueError(f"{path}:{lineno}: not a prepared row ({exc!r})") from None
    return keys


def export_feedback(
    out: str | os.PathLike,
    store=None,
    model_dir: str | os.PathLike | None = None,
    fill: str = "model",
    data_dir: str | os.PathLike | None = "runs/data",
    keep_held_out: bool = False,
    batch_size: int = 32,
    echo=print,
    progress: bool = True,
) -> dict:
    """Write the stored feedback as a labelled JSONL file (see the module docstring).

    Args:
        out: the JSONL file to write (replaced atomically).
        store: an :class:`zhenping.api.db.FeedbackStore`; default: the one the environment names.
        model_dir: the model that fills uncorrected axes (default :func:`default_model_dir`).
        fill: ``"model"`` or ``"skip"`` (leave out comments with an uncorrected axis).
        data_dir: prepared split folder whose validation/test texts are left out; ``None``: none.
        keep_held_out: include feedback on validation/test texts anyway.

    Returns:
        Counts: ``records``, ``without_text``, ``held_out``, ``incomplete`` (filled or
        skipped), ``rows`` written; plus ``filled_by`` (model version or ``None``) and ``out``.

    Example:
        >>> export_feedback("runs/feedback.jsonl")  # doctest: +SKIP
        {'records': 120, 'without_text': 3, 'held_out': 1, 'incomplete': 97, 'rows': 110, ...}
    """
    from tqdm import tqdm

    from zhenping.api.db import FeedbackStore

    if fill not in ("model", "skip"):
        raise ValueError(f"fill must be 'model' or 'skip', got {fill!r}")
    own_store = store is None
    store = store or FeedbackStore.from_settings()
    held = set()
    if data_dir is not None and not keep_held_out and Path(data_dir).is_dir():
        held = held_out_keys(Path(data_dir))

    counts = {"records": 0, "without_text": 0, "held_out": 0}
    groups: dict[str, dict] = {}
    levels: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    try:
        total = store.count()
        for rec in tqdm(store.records(), total=total, unit=" records", desc="reading feedback",
                        disable=not progress, file=sys.stderr):
            counts["records"] += 1
            if rec.text is None:
                counts["without_text"] += 1
                continue
            if rec.text_sha256 in held:
                counts["held_out"] += 1
                continue
            g = groups.setdefault(rec.text_sha256, {"text": rec.text, "updated": rec.updated_at, "submitters": 0})
            if rec.updated_at >= g["updated"]:  # the latest submission's wording
                g["text"], g["updated"] = rec.text, rec.updated_at
            g["submitters"] += 1
            for axis, level in rec.levels.items():
                levels[rec.text_sha256][axis].append(level)
    finally:
        if own_store:
            store.close()

    rows = []
    for key, g in groups.items():
        got = {a: _round_half_up(sum(v) / len(v)) for a, v in levels[key].items()}
        rows.append({"id": f"feedback:{key[:16]}", "source": "feedback", "text": g["text"], **got,
                     "corrected": [a for a in AXES if a in got], "submitters": g["submitters"]})
    incomplete = [r for r in rows if len(r["corrected"]) < len(AXES)]
    counts["incomplete"] = len(incomplete)
    filled_by = None
    if incomplete and fill == "skip":
        rows = [r for r in rows if len(r["corrected"]) == len(AXES)]
    elif incomplete:
        from zhenping.model.scorer import Scorer

        scorer = Scorer.from_pretrained(model_dir or default_model_dir())
        filled_by = scorer.model_version
        chunk = max(256, batch_size * 4)
        with tqdm(total=len(incomplete), unit=" comments", desc=f"filling with {filled_by}",
                  disable=not progress, file=sys.stderr) as bar:
            for i in range(0, len(incomplete), chunk):
                part = incomplete[i:i + chunk]
                for row, scores in zip(part, scorer.score([r["text"] for r in part], batch_size=batch_size)):
                    for axis, level in scores.levels.items():
                        row.setdefault(axis, level)
                bar.update(len(part))
    for row in rows:
        row["filled_by"] = filled_by if len(row["corrected"]) < len(AXES) else None

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            ordered = {k: row[k] for k in ("id", "source", "text", *AXES, "corrected", "filled_by", "submitters")}
            fh.write(json.dumps(ordered, ensure_ascii=False) + "\n")
    os.replace(tmp, out)
    counts.update({"rows": len(rows), "filled_by": filled_by, "out": str(out)})
    echo(f"{counts['records']:,} feedback records: {counts['rows']:,} comments written to {out}")
    if counts["without_text"]:
        echo(f"  {counts['without_text']:,} named their comment by id only (no text to train on): left out")
    if counts["held_out"]:
        echo(f"  {counts['held_out']:,} are on validation/test texts of {data_dir}: left out "
             "(--keep-held-out to include them)")
    if incomplete:
        how = f"uncorrected axes filled with {filled_by}'s levels" if fill == "model" else "left out (--fill skip)"
        echo(f"  {len(incomplete):,} comments had axes nobody corrected: {how}")
    return counts


@feedback_app.command("export")
def feedback_export_cmd(
    out: Path = typer.Option(Path("runs/feedback.jsonl"), "-o", "--out", help="The labelled JSONL file to write."),
    model: Optional[Path] = typer.Option(
        None, "--model", help="Model whose levels fill uncorrected axes (default: the store's current version, "
        "else the shipped model). A model store folder means its current version."),
    fill: Fill = typer.Option(Fill.model, "--fill", help="model: fill uncorrected axes with the model's levels; "
                              "skip: leave such comments out."),
    data: Optional[Path] = typer.Option(Path("runs/data"), "--data", help="Prepared splits whose validation and "
                                        "test texts are left out (ignored if absent)."),
    keep_held_out: bool = typer.Option(False, "--keep-held-out", help="Include feedback on validation/test texts."),
    database_url: Optional[str] = typer.Option(
        None, "--database-url", help="Feedback database (default: $ZHENPING_DATABASE_URL, else the SQLite file in "
        "$ZHENPING_DATA_DIR)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars on stderr."),
) -> None:
    """Write the collected feedback as a labelled file for `zhenping train --extra`."""
    from zhenping.api.db import FeedbackStore, StoreSettings
    from zhenping.model.scorer import ModelLoadError
    from zhenping.training.store import StoreError, resolve_model_dir

    settings = StoreSettings(**({"database_url": database_url} if database_url else {}))
    try:
        model_dir = resolve_model_dir(model) if model is not None else None
    except StoreError as exc:
        raise _fail(str(exc)) from None
    store = FeedbackStore(settings.url)
    try:
        export_feedback(out, store, model_dir, fill.value, data, keep_held_out,
                        echo=lambda m: typer.echo(m, err=True), progress=progress)
    except ModelLoadError as exc:
        raise _fail(f"{exc} (pass --model DIR, or --fill skip)", EXIT_MODEL) from None
    except ValueError as exc:
        raise _fail(str(exc)) from None
    finally:
        store.close()


@feedback_app.command("stats")
def feedback_stats_cmd(
    database_url: Optional[str] = typer.Option(None, "--database-url", help="Feedback database (default as for export)."),
) -> None:
    """Print the summary GET /v1/feedback/stats gives, as JSON."""
    from zhenping.api.db import FeedbackStore, StoreSettings

    settings = StoreSettings(**({"database_url": database_url} if database_url else {}))
    store = FeedbackStore(settings.url)
    try:
        typer.echo(json.dumps(store.stats(), ensure_ascii=False, indent=2))
    finally:
        store.close()


# ------------------------------------------------------------------ model store

_STORE_HELP = "Model store folder (default: $ZHENPING_MODEL_STORE, else runs/store)."


def promote_or_exit(
    model_dir: str | os.PathLike,
    store: str | os.PathLike | None = None,
    data_dir: str | os.PathLike = "runs/data",
    split: str = "test",
    version: str | None = None,
    tolerance: float | None = None,
    max_axis_drop: float | None = None,
    force: bool = False,
) -> None:
    """Run :func:`zhenping.training.store.promote` for a command; exit 1 when the candidate is not promoted."""
    from zhenping.model.scorer import ModelLoadError
    from zhenping.training.store import MAX_AXIS_DROP, TOLERANCE, StoreError, promote

    try:
        result = promote(
            model_dir, store, data_dir=data_dir, split=split, version=version,
            tolerance=TOLERANCE if tolerance is None else tolerance,
            max_axis_drop=MAX_AXIS_DROP if max_axis_drop is None else max_axis_drop,
            force=force, echo=typer.echo,
        )
    except (StoreError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from None
    except ModelLoadError as exc:
        raise _fail(str(exc), EXIT_MODEL) from None
    if not result.promoted:
        raise typer.Exit(EXIT_MODEL)


@app.command("promote")
def promote_cmd(
    model: Path = typer.Argument(..., help="The new scorer folder (as `zhenping train` exports it)."),
    store: Optional[Path] = typer.Option(None, "--store", help=_STORE_HELP),
    data: Path = typer.Option(Path("runs/data"), "--data", help="Prepared split files both models are scored on."),
    split: str = typer.Option("test", "--split", help="The split to compare on."),
    version: Optional[str] = typer.Option(None, "--version", help="Version name in the store (default: the "
                                          "model's model_version)."),
    tolerance: Optional[float] = typer.Option(None, "--tolerance", min=0.0,
                                              help="Mean Spearman ρ the new model may lose (default 0.005)."),
    max_axis_drop: Optional[float] = typer.Option(None, "--max-axis-drop", min=0.0,
                                                  help="Spearman ρ any one axis may lose (default 0.02)."),
    force: bool = typer.Option(False, "--force", help="Promote even if it is worse (the comparison is recorded)."),
) -> None:
    """Add a model to the store and make it current if it is not worse than the current one.

    Both are scored on the same split; exit code 1 when the new model is refused.
    """
    promote_or_exit(model, store, data, split, version, tolerance, max_axis_drop, force)


@app.command("rollback")
def rollback_cmd(
    store: Optional[Path] = typer.Option(None, "--store", help=_STORE_HELP),
    to: Optional[str] = typer.Option(None, "--to", help="Roll back further, to this earlier version."),
) -> None:
    """Make the version that was current before the current one current again.

    A running service picks the switch up when it restarts.
    """
    from zhenping.training.store import ModelStore, StoreError, store_root

    s = ModelStore(store_root(store))
    try:
        was, now = s.rollback(to)
    except StoreError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"rolled back {was} -> {now}; current -> {s.root / 'current'} (restart the service to serve it)")


@models_app.command("list")
def models_list_cmd(
    store: Optional[Path] = typer.Option(None, "--store", help=_STORE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the versions in the store, oldest first; * marks the current one."""
    from zhenping.training.store import ModelStore, StoreError, store_root

    s = ModelStore(store_root(store))
    try:
        versions = s.list()
    except StoreError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps([{"version": v.version, "current": v.current, "status": v.status, "added": v.added,
                                "test_mean_spearman": v.test_mean_spearman, "path": str(v.path)} for v in versions],
                              ensure_ascii=False, indent=2))
        return
    if not versions:
        typer.echo(f"model store {s.root} holds no versions; add one with `zhenping promote MODEL_DIR --store {s.root}`")
        return
    width = max(len("version"), *(len(v.version) for v in versions))
    typer.echo(f"  {'version':<{width}}  {'status':<16}  {'added':<24}  mean ρ")
    for v in versions:
        rho = "–" if v.test_mean_spearman is None else f"{v.test_mean_spearman:.3f}"
        typer.echo(f"{'*' if v.current else ' '} {v.version:<{width}}  {v.status:<16}  {v.added or '–':<24}  {rho}")


# ------------------------------------------------------------------ offline scoring


class Engine(str, Enum):
    local = "local"
    ray = "ray"


@app.command("score-dataset")
def score_dataset_cmd(
    src: str = typer.Argument(..., metavar="IN", help="Parquet, JSONL or CSV (.gz allowed for JSONL/CSV) with a "
                              "`text` column; other columns are kept."),
    dst: str = typer.Argument(..., metavar="OUT", help="Output file (.parquet, .jsonl or .csv); with --engine ray, "
                              "a folder (ending in /) gets one Parquet file per block."),
    engine: Engine = typer.Option(Engine.local, "--engine", help="local: stream chunks in this process; "
                                  "ray: Ray Data with an actor pool of scorers."),
    model: Optional[Path] = typer.Option(None, "--model", help="Model folder or model store (default: the "
                                         "shipped model)."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Texts per forward pass (and per Ray batch)."),
    num_actors: Optional[int] = typer.Option(None, "--num-actors", min=1, help="Scorer actors (ray engine), a fixed "
                                             "pool; default: autoscaling from 1 to what the cluster's CPUs hold with "
                                             "one CPU left for reading."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster to join, e.g. "
                                              "ray://head:10001 (default: $RAY_ADDRESS, else a local Ray)."),
    cpus_per_actor: float = typer.Option(1.0, "--cpus-per-actor", min=0.1, help="CPUs each scorer actor reserves "
                                         "(ray engine); its torch threads follow."),
    text_column: str = typer.Option("text", "--text-column", help="Column holding the comment."),
    chunk_size: int = typer.Option(4096, "--chunk-size", min=1, help="Rows read and scored at a time (local engine)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar on stderr."),
) -> None:
    """Score a whole dataset file; writes the input's columns plus scores and levels."""
    from zhenping.model.scorer import ModelLoadError
    from zhenping.training.score_dataset import DatasetError, score_dataset
    from zhenping.training.store import StoreError

    try:
        summary = score_dataset(
            src, dst, engine=engine.value, model_dir=model, batch_size=batch_size, num_actors=num_actors,
            ray_address=ray_address, cpus_per_actor=cpus_per_actor, text_column=text_column,
            chunk_size=chunk_size, progress=progress,
        )
    except (DatasetError, StoreError) as exc:
        raise _fail(str(exc)) from None
    except ModelLoadError as exc:
        raise _fail(str(exc), EXIT_MODEL) from None
    typer.echo(
        f"scored {summary['rows']:,} comments with {summary['model']} ({summary['engine']} engine) in "
        f"{summary['seconds']:.1f} s ({summary['comments_per_second']:,.0f}/s) -> {dst}", err=True
    )
    if summary.get("unscored"):
        typer.echo(f"{summary['unscored']:,} rows have no text (null, empty or white space): written with null "
                   "scores", err=True)
