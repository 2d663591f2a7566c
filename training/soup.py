"""Weight averaging ("model soup", Wortsman et al., 2022): one scorer whose weights
are the average of several fine-tuned scorers of the same architecture and
tokenizer that share a pretrained ancestor, so their weights lie in one basin.
It costs nothing at inference (the same size and speed as each part) and often
scores better than any part.

    python -m zhenping.training.soup runs/model_v8b runs/model_v8c --out runs/model_v8 \\
        --data runs/data --version zhenping-small-v8

The result is exported like ``zhenping train`` exports: level cut points fitted
on the validation split, the behavioural suite, test metrics beside the
baselines and each part, and a model card. Its validation mean Spearman is
recorded where fine-tuning records it, so ``compare_models`` lists it beside the
parts. Keep it only if validation says so.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

from zhenping.model.axes import AXES

# config.json fields that must agree for weights to be averaged
SHAPE_FIELDS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                "vocab_size", "max_position_embeddings", "num_labels")


class SoupError(ValueError):
    """The models cannot be averaged; the message says which and why."""


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise SoupError(f"{path.parent} is not an exported scorer folder: {path.name} is missing")
    return json.loads(path.read_text(encoding="utf-8"))


def check_compatible(models: Sequence[str | Path]) -> None:
    """Raise :class:`SoupError` unless every folder has the same architecture, tokenizer
    vocabulary and axes as the first."""
    if len(models) < 2:
        raise SoupError("give at least two model folders to average")
    first = Path(models[0])
    cfg0 = _read_json(first / "config.json")
    sc0 = _read_json(first / "scorer_config.json")
    vocab0 = (first / "vocab.txt").read_bytes() if (first / "vocab.txt").is_file() else None
    for other in map(Path, models[1:]):
        cfg = _read_json(other / "config.json")
        diff = [f for f in SHAPE_FIELDS if cfg.get(f) != cfg0.get(f)]
        if diff:
            raise SoupError(f"{other} differs from {first} in {', '.join(f'{f} ({cfg.get(f)} vs {cfg0.get(f)})' for f in diff)}")
        if _read_json(other / "scorer_config.json").get("axes") != sc0.get("axes"):
            raise SoupError(f"{other} scores other axes than {first}")
        vocab = (other / "vocab.txt").read_bytes() if (other / "vocab.txt").is_file() else None
        if vocab != vocab0:
            raise SoupError(f"{other} has another tokenizer vocabulary than {first}")


def average_weights(models: Sequence[str | Path], weights: Sequence[float] | None = None) -> dict:
    """The weighted average (equal weights by default) of the folders' ``model.safetensors``."""
    import torch
    from safetensors.torch import load_file

    weights = list(weights) if weights is not None else [1.0 / len(models)] * len(models)
    if len(weights) != len(models) or any(w < 0 for w in weights) or abs(sum(weights) - 1.0) > 1e-6:
        raise SoupError(f"weights must be {len(models)} non-negative numbers summing to 1, got {weights}")
    total: dict[str, torch.Tensor] = {}
    dtypes: dict[str, torch.dtype] = {}
    for folder, w in zip(map(Path, models), weights):
        path = folder / "model.safetensors"
        if not path.is_file():
            raise SoupError(f"{folder} has no model.safetensors")
        state = load_file(str(path))
        if total and set(state) != set(total):
            raise SoupError(f"{folder} holds other tensors than {models[0]}")
        for name, tensor in state.items():
            if name in total and tensor.shape != total[name].shape:
                raise SoupError(f"{folder}: {name} has shape {tuple(tensor.shape)}, not {tuple(total[name].shape)}")
            dtypes.setdefault(name, tensor.dtype)
            value = tensor.double() * w if tensor.is_floating_point() else tensor
            total[name] = total[name] + value if (name in total and tensor.is_floating_point()) else value
    return {name: t.to(dtypes[name]) for name, t in total.items()}


def run_soup(models: Sequence[str | Path], out: str | Path, data_dir: str | Path = "runs/data",
             version: str | None = None, weights: Sequence[float] | None = None,
             baselines: str | Path | None = None) -> dict:
    """Average ``models`` and export the result to ``out`` (evaluated and carded as
    ``zhenping train`` does). Returns the test metrics."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from zhenping.training.export import make_scorer_config
    from zhenping.training.prepare import read_manifest
    from zhenping.training.train import BASELINES, evaluate_scorer_dir, export_scorer

    models = [str(m) for m in models]
    check_compatible(models)
    t0 = time.time()
    state = average_weights(models, weights)
    model = AutoModelForSequenceClassification.from_pretrained(models[0])
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if "position_ids" not in k]:
        raise SoupError(f"averaged weights do not fit {models[0]}'s architecture "
                        f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    tokenizer = AutoTokenizer.from_pretrained(models[0])
    manifest = read_manifest(data_dir)
    parts_cfg = _read_json(Path(models[0]) / "scorer_config.json")
    version = version or time.strftime("zhenping-soup-%Y%m%d-%H%M%S")
    used = list(weights) if weights is not None else [round(1.0 / len(models), 6)] * len(models)
    scorer_cfg = make_scorer_config(
        max_length=parts_cfg["max_length"], model_version=version,
        label_files=dict(manifest.get("label_files", {})),
        training_config={"soup": models, "weights": used}, base=models[0])

    info: dict = {}

    def add_metrics(staging: Path) -> dict:
        validation = evaluate_scorer_dir(staging, data_dir, "validation")
        parts = [{"dir": m, "validation_mean_spearman": _mean_spearman(evaluate_scorer_dir(Path(m), data_dir,
                                                                                             "validation"))}
                 for m in models]
        info["finetune"] = {"best_validation_mean_spearman": _mean_spearman(validation),
                            "config": scorer_cfg["training_config"], "validation_rows": validation["n"]}
        info["soup"] = {"parts": parts, "weights": used}
        return {"training": {**info, "total_seconds": round(time.time() - t0, 1)}}

    metrics = export_scorer(model, tokenizer, out, scorer_cfg, data_dir, manifest, info,
                            baselines or BASELINES, add_metrics)
    val_mean = info["finetune"]["best_validation_mean_spearman"]
    parts = info["soup"]["parts"]
    print(f"validation mean Spearman: soup {val_mean:.4f}; "
          + ", ".join(f"{p['dir']} {p['validation_mean_spearman']:.4f}" for p in parts), file=sys.stderr)
    return metrics


def _mean_spearman(metrics: dict) -> float:
    return sum(metrics["overall"][a]["spearman"] for a in AXES) / len(AXES)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m zhenping.training.soup",
                                description="Average the weights of fine-tuned scorers and export the result.")
    p.add_argument("models", nargs="+", help="exported scorer folders (same architecture and tokenizer)")
    p.add_argument("--out", required=True, help="folder for the averaged scorer")
    p.add_argument("--data", default="runs/data", help="prepared splits: levels fitted on validation, test measured")
    p.add_argument("--version", default=None, help="model version written into the export")
    p.add_argument("--weights", default=None, help="comma-separated weights summing to 1 (default: equal)")
    args = p.parse_args(argv)
    try:
        weights = [float(w) for w in args.weights.split(",")] if args.weights else None
    except ValueError:
        print(f"error: --weights {args.weights!r}: expected comma-separated numbers", file=sys.stderr)
        return 2
    if not (Path(args.data) / "validation.jsonl").is_file():
        print(f"error: {args.data} has no validation.jsonl; run `zhenping prepare --out {args.data}`", file=sys.stderr)
        return 2
    try:
        metrics = run_soup(args.models, args.out, args.data, args.version, weights)
    except SoupError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    o = metrics["overall"]
    print("test " + ", ".join(f"{a} ρ {o[a]['spearman']}" for a in AXES)
          + f"; template≥2 AUROC {o['template_ge2']['auroc']}, hostile AUROC {o['hostile']['auroc']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
