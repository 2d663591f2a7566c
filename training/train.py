"""``zhenping train``: labelled data in, an evaluated, exported scorer out.

prepare (when the split files are missing) → fine-tune → export to a staging
folder → evaluate on the test split with the exported scorer, beside the
baselines and the model it started from → model card → rename into place.

Where the training rows come from:

* ``data_dir`` holds prepared split files: those, plus any ``extra_train`` files
  in the training split;
* else, with the corpora present: ``zhenping prepare`` (the shipped gold labels
  joined to the corpora) into ``data_dir``, plus ``extra_train`` as above;
* else (a plain install, no corpora): the ``extra_train`` files alone, split by a
  stable hash of each text into training rows and held-out validation and test
  rows (about 10 % each), prepared into ``<data_dir>-extra``. The base (by
  default the shipped model) is fine-tuned on them, and the new and the base
  model are both evaluated on the held-out test rows.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Callable

from zhenping.training.card import load_baselines, render_card
from zhenping.training.config import config_to_dict
from zhenping.training.export import add_levels_and_behaviour, make_scorer_config, swap_into_place, write_model_dir
from zhenping.training.finetune import FinetuneConfig, train

BASELINES = Path(__file__).resolve().parent / "results" / "baselines.json"
MIN_HELD_OUT = 2  # rows each in validation and test, for early stopping and a rank correlation


class TrainInputError(ValueError):
    """Training cannot start with the data given; the message says what to change."""


def training_data(cfg: FinetuneConfig, echo=None) -> tuple[FinetuneConfig, str]:
    """The config to train with and where its rows come from: ``"prepared"``,
    ``"gold"`` (prepared now from gold labels and corpora) or ``"extra-only"``.

    Raises:
        TrainInputError: no prepared data, no corpora and no ``extra_train`` file,
            or too few rows in the files to hold any out.
        zhenping.training.userdata.LabelFileError: a bad row in a user file.
    """
    import dataclasses

    from zhenping.training.corpora import corpora_root
    from zhenping.training.prepare import prepare

    echo = echo or (lambda m: print(m, file=sys.stderr))
    data_dir = Path(cfg.data_dir)
    if (data_dir / "train.jsonl").exists():
        return cfg, "prepared"
    try:
        corpora_root()
    except FileNotFoundError:
        corpora = False
    else:
        corpora = True
    if corpora:
        echo(f"{data_dir} has no split files: preparing them from the gold labels and the corpora")
        prepare(out=data_dir, echo=echo)
        return cfg, "gold"
    if not cfg.extra_train:
        raise TrainInputError(
            f"nothing to train on: {data_dir} has no prepared split files and no corpora were found; "
            "pass your labelled file with --extra FILE, or give the corpora with ZHENPING_CORPORA=DIR "
            "(`zhenping corpora download DIR` fetches them)")
    own = data_dir.with_name(f"{data_dir.name}-extra")
    echo(f"no corpora found: training on {', '.join(cfg.extra_train)} alone, "
         f"holding out validation and test rows by a hash of each text (prepared into {own})")
    manifest = prepare(extra=cfg.extra_train, out=own, use_gold=False, skip_invalid=cfg.skip_invalid, echo=echo)
    rows = manifest["counts"]["rows"]
    if min(rows.get("validation", 0), rows.get("test", 0)) < MIN_HELD_OUT:
        total = sum(rows.values())
        raise TrainInputError(
            f"{', '.join(cfg.extra_train)}: {total} distinct labelled rows leave {rows.get('validation', 0)} "
            f"for validation and {rows.get('test', 0)} for test, and training needs at least {MIN_HELD_OUT} "
            "of each (a hash of the text holds out about 10 % each); add rows (about 50 or more), "
            "or train with the gold labels by giving the corpora (ZHENPING_CORPORA=DIR)")
    return dataclasses.replace(cfg, data_dir=str(own), extra_train=None), "extra-only"


def base_scorer_dir(base: str) -> Path | None:
    """The base as an exported scorer folder (the shipped model, a trained model), else ``None``."""
    if base == "default":
        from zhenping.model.scorer import DEFAULT_MODEL_DIR

        return DEFAULT_MODEL_DIR
    path = Path(base).expanduser()
    return path if (path / "scorer_config.json").is_file() else None


def evaluate_scorer_dir(model_dir: Path, data_dir: str | Path, split: str = "test") -> dict:
    """Metrics of an exported scorer on a prepared split (nothing written)."""
    import numpy as np

    from zhenping.model.scorer import Scorer
    from zhenping.training.evaluate import evaluate
    from zhenping.training.prepare import load_split

    scorer = Scorer.from_pretrained(str(model_dir))
    axes = list(scorer.axes)
    data = load_split(data_dir, split, axes)
    scored = scorer.score(data.texts)
    pred = np.array([[getattr(s, a) for a in axes] for s in scored], dtype=np.float64)
    return evaluate(data.scores, pred, data.sources, axes, level_thresholds=scorer.level_thresholds)


def _pretrain_summary(base: str) -> dict | None:
    p = Path(base) / "pretrain_summary.json"
    return json.loads(p.read_text()) if p.is_file() else None


def run_train(
    cfg: FinetuneConfig,
    export_dir: str | Path,
    model_version: str | None = None,
    baselines: str | Path = BASELINES,
    extra_info: dict | None = None,
) -> dict:
    """Fine-tune, evaluate and export. Returns the test metrics."""
    from zhenping.training.prepare import read_manifest

    cfg, mode = training_data(cfg)
    data_dir = Path(cfg.data_dir)
    manifest = read_manifest(data_dir)
    t0 = time.time()
    model, tok, ft_info = train(cfg)
    version = model_version or time.strftime("zhenping-%Y%m%d-%H%M%S")
    info = {"finetune": ft_info, **(extra_info or {})}
    pre = _pretrain_summary(cfg.base)
    if pre:
        info.setdefault("pretrain", pre)
    mt = Path(cfg.base) / "multitask_summary.json"
    if mt.is_file():
        info.setdefault("multitask", json.loads(mt.read_text()))
    label_files = dict(manifest.get("label_files", {}))
    for spec, sha1 in ft_info.get("data_sha1", {}).items():  # --extra files joined at training time
        if spec.startswith("extra:"):
            label_files[Path(spec.removeprefix("extra:")).name] = sha1
    scorer_cfg = make_scorer_config(
        max_length=cfg.max_length,
        model_version=version,
        label_files=label_files,
        training_config=config_to_dict(cfg),
        base=cfg.base,
    )

    def add_metrics(staging: Path) -> dict:
        extra = {}
        base_dir = base_scorer_dir(cfg.base)
        if base_dir is not None:  # the model it started from, on the same held-out rows
            extra["base_on_test"] = {"dir": str(base_dir), **evaluate_scorer_dir(base_dir, data_dir, "test")}
        extra["data_mode"] = mode
        training = {k: v for k, v in info.items() if k != "finetune"}
        training["finetune"] = {k: v for k, v in ft_info.items() if k != "validation_history"}
        training["total_seconds"] = round(time.time() - t0, 1)
        extra["training"] = training
        return extra

    return export_scorer(model, tok, export_dir, scorer_cfg, data_dir, manifest, info, baselines, add_metrics)


def export_scorer(model, tokenizer, export_dir: str | Path, scorer_cfg: dict, data_dir: str | Path,
                  manifest: dict, info: dict, baselines: str | Path = BASELINES,
                  add_metrics: Callable[[Path], dict] | None = None) -> dict:
    """Export a trained scorer the way every training path does, and return its test metrics.

    The folder is written to a staging folder beside ``export_dir``: level cut points fitted on
    ``data_dir``'s validation split and the behavioural suite, the test split evaluated beside the
    baselines, ``add_metrics(staging)``'s keys merged into ``metrics.json``, the model card built
    from ``info`` (read after ``add_metrics`` ran, so it may fill it in), then the folder swapped
    into place: a scorer never sees half a model, and a failure leaves the old folder intact.
    """
    from zhenping.training.evaluate import evaluate_model

    export_dir = Path(export_dir).resolve()
    staging = export_dir.with_name(f".{export_dir.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        write_model_dir(model, tokenizer, staging, scorer_cfg)
        # Level cut points fitted on validation (scorer_config.json) and behaviour.json.
        behaviour = add_levels_and_behaviour(staging, data_dir)
        metrics = evaluate_model(staging, data_dir, "test", staging, baselines=baselines)
        if add_metrics is not None:
            metrics.update(add_metrics(staging))
        (staging / "metrics.json").write_text(json.dumps(metrics, ensure_ascii=False, indent=2) + "\n")
        base_metrics = load_baselines(baselines, "test", scorer_cfg["axes"])
        card = render_card(scorer_cfg, metrics, base_metrics, info, manifest, behaviour=behaviour)
        (staging / "README.md").write_text(card, encoding="utf-8")
        swap_into_place(staging, export_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    print(f"model exported to {export_dir}", file=sys.stderr)
    return metrics
