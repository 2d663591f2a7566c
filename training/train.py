"""``zhenping train``: labelled data in, an evaluated, exported scorer out.

prepare (when the split files are missing or extra label files are given) →
fine-tune → export to a staging folder → evaluate on the test split with the
exported scorer, beside the baselines → model card → rename into place.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from training.card import load_baselines, render_card
from training.config import config_to_dict
from training.export import add_levels_and_behaviour, make_scorer_config, swap_into_place, write_model_dir
from training.finetune import FinetuneConfig, train

BASELINES = Path(__file__).resolve().parent / "results" / "baselines.json"


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
    from training.prepare import prepare, read_manifest

    data_dir = Path(cfg.data_dir)
    if not (data_dir / "train.jsonl").exists():
        print(f"{data_dir} has no split files: preparing them", file=sys.stderr)
        prepare(out=data_dir)
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
    scorer_cfg = make_scorer_config(
        max_length=cfg.max_length,
        model_version=version,
        label_files=manifest.get("label_files", {}),
        training_config=config_to_dict(cfg),
        base=cfg.base,
    )
    export_dir = Path(export_dir).resolve()
    staging = export_dir.with_name(f".{export_dir.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        write_model_dir(model, tok, staging, scorer_cfg)
        # Level cut points fitted on validation (scorer_config.json) and behaviour.json.
        behaviour = add_levels_and_behaviour(staging, data_dir)

        from training.evaluate import evaluate_model

        metrics = evaluate_model(staging, data_dir, "test", staging, baselines=baselines)
        metrics["training"] = {k: v for k, v in info.items() if k != "finetune"}
        metrics["training"]["finetune"] = {k: v for k, v in ft_info.items() if k != "validation_history"}
        metrics["training"]["total_seconds"] = round(time.time() - t0, 1)
        (staging / "metrics.json").write_text(json.dumps(metrics, ensure_ascii=False, indent=2) + "\n")
        base_metrics = load_baselines(baselines, "test", scorer_cfg["axes"])
        card = render_card(scorer_cfg, metrics, base_metrics, info, manifest, behaviour=behaviour)
        (staging / "README.md").write_text(card, encoding="utf-8")

        # Swap the finished folder into place: the scorer never sees half a model.
        swap_into_place(staging, export_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    print(f"model exported to {export_dir}", file=sys.stderr)
    return metrics
