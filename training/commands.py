"""Data subcommands of `zhenping`: corpora, prepare, evaluate, baselines.

Heavy libraries (pandas, sklearn, matplotlib, torch) are imported inside the
commands so that `zhenping --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

# This module's subcommands; zhenping/cli.py adds them to the `zhenping` command.
app = typer.Typer()

corpora_app = typer.Typer(
    help="List the registered public corpora or download them.", no_args_is_help=True
)
app.add_typer(corpora_app, name="corpora")


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


# ------------------------------------------------------------------ corpora


def corpus_rows(root: Path, corpus) -> tuple[int, int, int]:
    """(rows, files present, files registered) of one corpus under ``root``."""
    from zhenping.training.corpora import iter_rows

    rows = present = 0
    for cf in corpus.files:
        path = root / corpus.name / cf.name
        if not path.exists():
            continue
        present += 1
        for _ in iter_rows(path, cf):
            rows += 1
    return rows, present, len(corpus.files)


@corpora_app.command("list")
def corpora_list(
    corpora: Optional[Path] = typer.Option(
        None, "--corpora", help="Corpora folder (default: $ZHENPING_CORPORA or ../shared/data/corpora)."
    ),
    count: bool = typer.Option(True, "--count/--no-count", help="Count the rows of local files."),
) -> None:
    """List every registered corpus: license, rows present locally, whether zhenping uses it."""
    from zhenping.training.corpora import CORPORA, corpora_root

    try:
        root: Path | None = corpora_root(corpora)
    except FileNotFoundError:
        root = None
    typer.echo(f"corpora folder: {root if root else 'none found (pass --corpora DIR)'}")
    name_w = max(len(n) for n in CORPORA)
    typer.echo(f"{'corpus':<{name_w}}  {'usable':<6}  {'files':>5}  {'rows':>9}  license")
    total = 0
    for c in CORPORA.values():
        if root is None:
            rows, present, n_files = 0, 0, len(c.files)
        elif count:
            rows, present, n_files = corpus_rows(root, c)
        else:
            present = sum((root / c.name / f.name).exists() for f in c.files)
            rows, n_files = -1, len(c.files)
        total += max(rows, 0)
        rows_s = "–" if rows < 0 else f"{rows:,}"
        typer.echo(
            f"{c.name:<{name_w}}  {'yes' if c.usable else 'no':<6}  {present:>2}/{n_files:<2}  "
            f"{rows_s:>9}  {c.license}"
        )
    if count and root is not None:
        typer.echo(f"{'total':<{name_w}}  {'':<6}  {'':>5}  {total:>9,}")


@corpora_app.command("download")
def corpora_download(
    dest: Path = typer.Argument(..., help="Folder to write <corpus>/<file> into."),
    base_url: Optional[str] = typer.Option(
        None, "--base-url", help="Mirror to use instead of https://raw.githubusercontent.com."
    ),
    corpus: Optional[List[str]] = typer.Option(
        None, "--corpus", help="Only this corpus (repeatable)."
    ),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds per request."),
) -> None:
    """Fetch the public originals of the usable corpora into DEST (files already there are kept)."""
    from zhenping.training.corpora import CORPORA, download

    unknown = [c for c in corpus or [] if c not in CORPORA]
    if unknown:
        _fail(f"unknown corpus {unknown}; known: {sorted(CORPORA)}", 2)
    excluded = [c for c in corpus or [] if not CORPORA[c].usable]
    if excluded:
        _fail(f"{excluded} excluded: the license does not allow zhenping to use "
              f"{'it' if len(excluded) == 1 else 'them'} ({CORPORA[excluded[0]].license})", 2)
    report = download(dest, corpora=corpus or None, base_url=base_url, timeout=timeout)
    width = max((len(k) for k in report), default=0)
    for key, status in report.items():
        typer.echo(f"{key:<{width}}  {status}")
    counts = {k: sum(1 for s in report.values() if s.split(":")[0] == k)
              for k in ("ok", "exists", "manual", "error")}
    typer.echo(
        f"{counts['ok']} downloaded, {counts['exists']} already present, "
        f"{counts['manual']} to stage by hand, {counts['error']} failed"
    )
    if counts["error"]:
        raise typer.Exit(1)


# ------------------------------------------------------------------ prepare


@app.command("prepare")
def prepare_cmd(
    corpora: Optional[Path] = typer.Option(None, "--corpora", help="Corpora folder."),
    gold: Optional[Path] = typer.Option(None, "--gold", help="Folder with gold_v*.jsonl."),
    extra: Optional[List[str]] = typer.Option(
        None, "--extra",
        help="Your labelled file (JSONL, CSV, Parquet, a save_to_disk folder or a Hugging Face "
        "dataset name); repeatable.",
    ),
    no_gold: bool = typer.Option(False, "--no-gold", help="Use only the --extra files."),
    skip_invalid: bool = typer.Option(
        False, "--skip-invalid", help="Drop invalid rows of --extra files instead of stopping."
    ),
    strict: bool = typer.Option(
        False, "--strict", help="Stop if a gold id's corpus row is missing or its text changed."
    ),
    scale: str = typer.Option(
        "auto", "--scale", help="How --extra files give axis values: auto, levels (0-3) or scores ([0,1])."
    ),
    out: Path = typer.Option(Path("runs/data"), "--out", help="Output folder."),
) -> None:
    """Join labels to corpora, merge duplicates and write train/validation/test JSONL."""
    from zhenping.training.prepare import PrepareError, prepare
    from zhenping.training.userdata import SCALES, LabelFileError, error_line

    if scale not in SCALES:
        _fail(f"--scale must be one of {list(SCALES)}, got {scale!r}", 2)
    try:
        prepare(corpora=corpora, gold=gold, extra=extra or [], out=out,
                skip_invalid=skip_invalid, strict=strict, scale=scale, use_gold=not no_gold,
                echo=typer.echo)
    except LabelFileError as exc:
        _fail(error_line(exc, "--skip-invalid"), 2)
    except PrepareError as exc:
        _fail(str(exc))
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc).splitlines()[0], 2)


# ------------------------------------------------------------------ evaluate


@app.command("evaluate")
def evaluate_cmd(
    model: Path = typer.Option(..., "--model", help="Exported model folder (what Scorer loads)."),
    data: Path = typer.Option(Path("runs/data"), "--data", help="Folder written by `zhenping prepare`."),
    split: str = typer.Option("test", "--split", help="train, validation or test."),
    out: Path = typer.Option(..., "--out", help="Folder for metrics.json, report.md and plots."),
    batch_size: int = typer.Option(32, "--batch-size", help="Texts per forward pass."),
    device: str = typer.Option("cpu", "--device", help="torch device, e.g. cpu or cuda."),
    baselines: Path = typer.Option(
        Path("training/results/baselines.json"), "--baselines",
        help="Baseline metrics to compare with (skipped if absent or from other data).",
    ),
) -> None:
    """Score a prepared split with a model and write its metrics and report."""
    from zhenping.training.evaluate import comparison_table, evaluate_model
    from zhenping.training.splits import SPLITS

    if split not in SPLITS:
        _fail(f"--split must be one of {list(SPLITS)}, got {split!r}", 2)
    if batch_size <= 0:
        _fail(f"--batch-size must be > 0, got {batch_size}", 2)
    try:
        metrics = evaluate_model(model, data, split, out, batch_size=batch_size, device=device,
                                 baselines=baselines)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc).splitlines()[0], 2)
    typer.echo(comparison_table({f"model on {split}": metrics, **metrics.get("compare", {})}))
    typer.echo(f"wrote {out / 'metrics.json'} and {out / 'report.md'}")


# ------------------------------------------------------------------ baselines


@app.command("baselines")
def baselines_cmd(
    data: Path = typer.Option(Path("runs/data"), "--data", help="Folder written by `zhenping prepare`."),
    out: Path = typer.Option(Path("training/results"), "--out", help="Folder for baselines.json and .md."),
    models_dir: Path = typer.Option(
        Path("runs/baselines"), "--models-dir", help="Folder for the fitted models and reports."
    ),
    reports: bool = typer.Option(True, "--reports/--no-reports", help="Write a full report per model."),
) -> None:
    """Fit the rules and TF-IDF baselines and measure them on validation and test."""
    from zhenping.training.baselines import run_baselines

    try:
        run_baselines(data, out, models_dir, echo=typer.echo, reports=reports)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc).splitlines()[0], 2)
