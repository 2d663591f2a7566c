"""Export a scorer directory: a standard Hugging Face sequence-classification
folder plus zhenping's ``scorer_config.json``, ``metrics.json`` and model card.

The directory is written to a temporary sibling and renamed into place, so a
crash never leaves half a model where the scorer looks.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
from pathlib import Path

from zhenping.model.axes import AXES, LEVELS
from zhenping.training.tokenizer import save_tokenizer

NORMALIZATION = "zhenping-nfkc-t2s-v1"


def library_versions() -> dict[str, str]:
    """Versions of the libraries a model directory depends on."""
    import tokenizers
    import torch
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
    }


def set_label_names(config) -> None:
    """Write the axes into a model config as a 3-label multi-label classifier."""
    config.num_labels = len(AXES)
    config.id2label = {i: a for i, a in enumerate(AXES)}
    config.label2id = {a: i for i, a in enumerate(AXES)}
    config.problem_type = "multi_label_classification"


def make_scorer_config(
    max_length: int,
    model_version: str,
    label_files: dict[str, str] | None = None,
    training_config: dict | None = None,
    **extra,
) -> dict:
    """The ``scorer_config.json`` content (see README: model directory)."""
    cfg = {
        "axes": list(AXES),
        "max_length": int(max_length),
        "level_scale": LEVELS,
        "score": "sigmoid(logit); level = round(score * level_scale)",
        "model_version": model_version,
        "normalization": NORMALIZATION,
        "label_files": dict(label_files or {}),
        "training_config": dict(training_config or {}),
        "versions": library_versions(),
    }
    cfg.update(extra)
    return cfg


def write_model_dir(
    model,
    tokenizer,
    out_dir: str | os.PathLike,
    scorer_config: dict,
    metrics: dict | None = None,
    card: str | None = None,
    extra_files: dict[str, str | os.PathLike] | None = None,
) -> Path:
    """Write a complete scorer directory atomically.

    Args:
        model: a ``PreTrainedModel`` for sequence classification with 3 labels.
        tokenizer: its tokenizer.
        out_dir: the final directory; an existing one is replaced only after the
            new one is complete.
        scorer_config: from :func:`make_scorer_config`.
        metrics: written to ``metrics.json`` when given.
        card: the model card, written to ``README.md`` when given.
        extra_files: ``{name_in_dir: source_path}`` copied in (reports, plots).

    Returns:
        The final directory.
    """
    out = Path(out_dir).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    set_label_names(model.config)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        save_tokenizer(tokenizer, tmp)
        _dump(tmp / "scorer_config.json", scorer_config)
        if metrics is not None:
            _dump(tmp / "metrics.json", metrics)
        if card is not None:
            (tmp / "README.md").write_text(card, encoding="utf-8")
        for name, src in (extra_files or {}).items():
            dst = tmp / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
        _make_readable(tmp)
        swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def swap_into_place(new: str | os.PathLike, out: str | os.PathLike) -> None:
    """Rename the finished folder ``new`` to ``out``, replacing any folder there.

    The old folder is renamed aside and deleted only once ``new`` is in place;
    if that rename fails, the old folder is put back, so ``out`` always holds a
    complete model. (Only a process killed between the two renames, a window of
    microseconds, leaves ``out`` missing, with the old model beside it as
    ``.<name>.old-<pid>``.)
    """
    new, out = Path(new), Path(out)
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
    try:
        new.rename(out)
    except BaseException:
        if old is not None and not out.exists():
            old.rename(out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _make_readable(folder: Path) -> None:
    """mkdtemp and some writers create owner-only files; a model folder is read by
    other users (the service's unprivileged account), so open it up like any install."""
    os.chmod(folder, 0o755)
    for p in folder.rglob("*"):
        os.chmod(p, 0o755 if p.is_dir() else 0o644)


def _dump(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def add_levels_and_behaviour(model_dir: str | os.PathLike, data_dir: str | os.PathLike,
                             echo=None) -> dict | None:
    """Finish an exported folder: fit the level cut points on ``data_dir``'s validation
    split into ``scorer_config.json`` (see :mod:`zhenping.training.calibrate`), then run the
    behavioural suite (:mod:`zhenping.training.behaviour`) and write ``behaviour.json``.

    Returns:
        The behavioural report (for :func:`zhenping.training.card.render_card`), or ``None``
        when the data folder has no validation split (nothing is then written).
    """
    import sys

    from zhenping.model.scorer import Scorer
    from zhenping.training.behaviour import BEHAVIOUR_FILE, run_suite, write_report
    from zhenping.training.calibrate import calibrate_model_dir

    echo = echo or (lambda m: print(m, file=sys.stderr))
    if not (Path(data_dir) / "validation.jsonl").is_file():
        echo(f"{data_dir} has no validation split: levels stay round(score * 3), no behavioural tests run")
        return None
    scorer = Scorer.from_pretrained(str(model_dir))
    calibrate_model_dir(model_dir, data_dir, scorer=scorer, echo=echo, measure_test=False)
    try:
        report = run_suite(scorer)
    except FileNotFoundError as err:  # an install without the cases file: calibrated, not tested
        echo(f"behavioural tests skipped: {err}")
        return None
    write_report(report, Path(model_dir) / BEHAVIOUR_FILE, scorer)
    echo(f"behavioural tests: {report['passed']} of {report['cases']} passed; "
         + ", ".join(f"{k} {v['pass_rate']:.0%}" for k, v in report["categories"].items()))
    return report
