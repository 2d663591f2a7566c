"""Model-checking subcommands of `zhenping`: behaviour (behavioural tests) and
calibrate (level cut points fitted on the validation split)."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn, Optional

import typer

# This module's subcommands; zhenping/cli.py adds them to the `zhenping` command.
app = typer.Typer()


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _manifest(data: Path | None, model_dir: Path) -> dict | None:
    """The prepare manifest of ``data`` for the card's rows-per-split table, when it
    describes the labels the model was trained on (same label files)."""
    import json

    from zhenping.training.prepare import read_manifest

    if data is None:
        return None
    try:
        manifest = read_manifest(data)
    except FileNotFoundError:
        return None
    try:
        trained_on = json.loads((model_dir / "scorer_config.json").read_text(encoding="utf-8")).get("label_files")
    except (OSError, ValueError):
        return None
    if trained_on and manifest.get("label_files") != trained_on:
        return None
    return manifest


def _rerender(model_dir: Path, data: Path | None) -> None:
    """Rebuild the card of a folder whose metrics.json holds test metrics (an export)."""
    import json

    try:
        metrics = json.loads((model_dir / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if not isinstance(metrics, dict) or "overall" not in metrics:
        return
    from zhenping.training.card import rerender_card

    rerender_card(model_dir, _manifest(data, model_dir))
    typer.echo(f"rebuilt the model card {model_dir / 'README.md'}")


@app.command("behaviour")
def behaviour_cmd(
    model: Path = typer.Option(..., "--model", help="Exported model folder (what Scorer loads)."),
    cases: Optional[Path] = typer.Option(None, "--cases", help="Cases file (JSON lines; default: the shipped "
                                         "training/behaviour_cases.jsonl)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Where behaviour.json goes (default: the model folder)."),
    failures: int = typer.Option(10, "--failures", help="Failures to print (all are written to the file)."),
    card: bool = typer.Option(True, "--card/--no-card", help="Rebuild the model folder's card with the results "
                              "(only when behaviour.json goes into the model folder)."),
    data: Optional[Path] = typer.Option(Path("runs/data"), "--data", help="Prepared data, for the card's "
                                        "rows-per-split table (skipped if it holds other labels)."),
    backend: str = typer.Option("torch", "--backend", help="torch, onnx or auto."),
    batch_size: int = typer.Option(64, "--batch-size", help="Texts per forward pass."),
) -> None:
    """Run the behavioural test suite (CheckList-style: minimum functionality,
    invariance, directional) and print pass rates per category.

    An evaluation, not a gate: the exit code is 0 whatever the pass rates.
    """
    from zhenping.model.scorer import ModelLoadError, Scorer
    from zhenping.training.behaviour import BEHAVIOUR_FILE, CaseError, load_cases, report_table, run_suite, write_report

    if batch_size <= 0:
        _fail(f"--batch-size must be > 0, got {batch_size}", 2)
    try:
        scorer = Scorer.from_pretrained(str(model), backend=backend)
        case_list = load_cases(cases, scorer.axes)
    except (ModelLoadError, CaseError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    report = run_suite(scorer, case_list, batch_size=batch_size)
    typer.echo(report_table(report))
    for f in report["failures"][:max(failures, 0)]:
        variant = f" → {f['variant']}" if "variant" in f else ""
        typer.echo(f"FAIL {f['id']} [{f['category']}] {f['text']}{variant}: expected {f['expected']}, "
                   f"got {f['got']}")
    if len(report["failures"]) > max(failures, 0):
        typer.echo(f"... {len(report['failures']) - max(failures, 0)} more failures in the file")
    target = out if out is not None else model / BEHAVIOUR_FILE
    write_report(report, target, scorer, cases)
    typer.echo(f"wrote {target}")
    if card and target.resolve().parent == model.resolve():
        _rerender(model, data)


@app.command("calibrate")
def calibrate_cmd(
    model: Path = typer.Option(..., "--model", help="Exported model folder; its scorer_config.json gets the "
                               "level thresholds."),
    data: Path = typer.Option(Path("runs/data"), "--data", help="Folder written by `zhenping prepare` "
                              "(thresholds are fitted on its validation split, checked on test)."),
    criterion: str = typer.Option("accuracy", "--criterion", help="accuracy (exact-level accuracy) or "
                                  "balanced (mean per-level recall)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the fit and the accuracies, write nothing."),
    remove: bool = typer.Option(False, "--remove", help="Remove the thresholds (back to round(score * 3))."),
    backend: str = typer.Option("torch", "--backend", help="torch, onnx or auto (what scores the splits)."),
    batch_size: int = typer.Option(64, "--batch-size", help="Texts per forward pass."),
) -> None:
    """Fit per-axis level cut points on the validation split and write them into the
    model folder: `levels` then come from the cut points instead of round(score * 3).

    Prints exact-level accuracy before (rounding) and after (cut points) on validation
    and test. Scores do not change. Also updates the folder's metrics.json level
    metrics and model card when they describe the same test split.
    """
    from zhenping.model.scorer import ModelLoadError
    from zhenping.training.calibrate import CRITERIA, calibrate_model_dir, write_thresholds

    if criterion not in CRITERIA:
        _fail(f"--criterion must be one of {list(CRITERIA)}, got {criterion!r}", 2)
    if batch_size <= 0:
        _fail(f"--batch-size must be > 0, got {batch_size}", 2)
    if not (model / "scorer_config.json").is_file():
        _fail(f"{model} is not a model folder (no scorer_config.json)")
    if remove:
        write_thresholds(model, None)
        typer.echo(f"removed level_thresholds from {model / 'scorer_config.json'}; levels are round(score * 3)")
        return
    try:
        calibrate_model_dir(model, data, criterion=criterion, write=not dry_run, batch_size=batch_size,
                            backend=backend, echo=typer.echo)
    except (ModelLoadError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
