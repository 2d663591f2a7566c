"""ONNX backends of an exported model, checked against PyTorch on labelled data.

``check_backends`` exports ``model.onnx`` and ``model.int8.onnx`` into the model
folder, scores a prepared split with PyTorch, ONNX fp32 and ONNX int8, and
records the score differences and each backend's metrics in ``backends.json``.
A backend is kept only within the tolerance below; one that is not is deleted
from the folder, so the service can never pick it up.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

# The tolerance zhenping holds for serving a backend instead of PyTorch, on the
# labelled test split: largest and mean absolute score difference over all
# comments and axes, and the largest drop of any axis's Spearman correlation.
TOLERANCE = {"max_abs": 0.05, "mean_abs": 0.01, "spearman_drop": 0.01}


def check_backends(model_dir: str | os.PathLike, data_dir: str | os.PathLike = "runs/data",
                   split: str = "test", keep_fp32: bool = False) -> dict:
    """Export the ONNX files and measure them against PyTorch on ``split``.

    Args:
        model_dir: an exported scorer folder (written into).
        data_dir: the prepared splits.
        split: which split to score.
        keep_fp32: keep ``model.onnx`` beside the int8 file (it is as large as
            the PyTorch weights and no faster, so it is removed by default).

    Returns:
        The content written to ``backends.json``.
    """
    from zhenping.model.onnx_backend import export_onnx
    from zhenping.model.scorer import Scorer
    from zhenping.training.evaluate import evaluate
    from zhenping.training.prepare import load_split

    model_dir = Path(model_dir)
    export_onnx(model_dir, quantize=True)
    torch_scorer = Scorer.from_pretrained(str(model_dir))
    axes = list(torch_scorer.axes)
    data = load_split(data_dir, split, axes)

    def run(scorer) -> np.ndarray:
        return np.array([[getattr(s, a) for a in axes] for s in scorer.score(data.texts)], dtype=np.float64)

    ref = run(torch_scorer)
    ref_metrics = evaluate(data.scores, ref, None, axes)["overall"]
    report = {"split": split, "n": len(data), "tolerance": TOLERANCE, "backends": {}}
    for name, fname in (("onnx_fp32", "model.onnx"), ("onnx_int8", "model.int8.onnx")):
        scorer = Scorer.from_pretrained(str(model_dir), backend="onnx", onnx_file=fname)
        pred = run(scorer)
        diff = np.abs(pred - ref)
        m = evaluate(data.scores, pred, None, axes)["overall"]
        drop = max(ref_metrics[a]["spearman"] - m[a]["spearman"] for a in axes)
        within = (diff.max() <= TOLERANCE["max_abs"] and diff.mean() <= TOLERANCE["mean_abs"]
                  and drop <= TOLERANCE["spearman_drop"])
        report["backends"][name] = {
            "file": fname,
            "max_abs": round(float(diff.max()), 6),
            "mean_abs": round(float(diff.mean()), 6),
            "spearman": {a: m[a]["spearman"] for a in axes},
            "spearman_drop_max": round(float(drop), 6),
            "within_tolerance": bool(within),
            "bytes": (model_dir / fname).stat().st_size,
        }
    report["torch_spearman"] = {a: ref_metrics[a]["spearman"] for a in axes}
    for name, res in report["backends"].items():
        drop_file = not res["within_tolerance"] or (name == "onnx_fp32" and not keep_fp32)
        if drop_file:
            (model_dir / res["file"]).unlink(missing_ok=True)
            res["kept"] = False
        else:
            res["kept"] = True
    (model_dir / "backends.json").write_text(json.dumps(report, indent=2) + "\n")
    for name, res in report["backends"].items():
        print(f"{name}: max |Δ| {res['max_abs']:.4f}, mean |Δ| {res['mean_abs']:.5f}, "
              f"largest Spearman drop {res['spearman_drop_max']:.4f} -> "
              f"{'kept' if res['kept'] else 'removed'}", file=sys.stderr)
    return report


def backends_card_section(report: dict) -> str:
    """The model card's "Backends" section."""
    t = report["tolerance"]
    lines = [
        "## Backends",
        "",
        f"Scores of the ONNX Runtime backends against PyTorch on the {report['split']} split "
        f"({report['n']:,} comments, all three axes). A backend is shipped only when its largest "
        f"score difference is at most {t['max_abs']}, the mean at most {t['mean_abs']}, and no "
        f"axis's Spearman ρ drops by more than {t['spearman_drop']}.",
        "",
        "| backend | max abs diff | mean abs diff | largest ρ drop | shipped |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for name, r in report["backends"].items():
        lines.append(f"| {name} | {r['max_abs']:.4f} | {r['mean_abs']:.5f} | "
                     f"{r['spearman_drop_max']:.4f} | {'yes' if r['kept'] else 'no'} |")
    lines.append("")
    return "\n".join(lines)
