"""Metrics and reports for any zhenping model: the one evaluation every model
(baselines, fine-tuned, exported) is measured with.

Scores are in [0, 1] (level / 3). Per axis: Spearman ρ, Pearson r and mean
absolute error. Two detection tasks read off the scores:

* ``template_ge2``: is the comment largely generic (gold template ≥ 2)? The
  predictor is the template score.
* ``hostile``: is the comment hostile (gold warmth level 0)? The predictor is
  ``1 - warmth``.

Each gets AUROC and average precision. The same metrics are computed per source;
a metric that is undefined on a subset (a constant column, a single class) is
``None`` rather than an error.

Levels: per axis, exact-level accuracy, balanced accuracy (mean recall over the
gold levels present), the share within one level and the confusion matrix of
gold against predicted level, with the model's calibrated cut points
(``level_thresholds``, see :mod:`zhenping.training.calibrate`) when it has them, else
``round(score * 3)``.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from zhenping.model.axes import AXES, LEVELS

TEMPLATE_POSITIVE = 2 / LEVELS - 1e-6  # gold template score at or above: "largely generic"
HOSTILE_LEVEL = 0  # gold warmth level of a hostile comment (score <= 0 + 1e-6)
HEADLINE = ("spearman", "pearson", "mae")


def _clean(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else round(x, 6)


def _as_2d(y, n_axes: int, name: str) -> np.ndarray:
    arr = np.asarray(y, dtype=np.float64)
    if arr.ndim == 1 and n_axes == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] != n_axes:
        raise ValueError(f"{name} must have shape (n, {n_axes}), got {arr.shape}")
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN")
    return arr


def _rank_metrics(t: np.ndarray, p: np.ndarray) -> dict:
    from scipy.stats import pearsonr, spearmanr

    out = {"spearman": None, "pearson": None, "mae": _clean(np.mean(np.abs(t - p))) if len(t) else None}
    # Correlation needs two rows and variation on both sides.
    if len(t) >= 2 and np.ptp(t) > 0 and np.ptp(p) > 0:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out["spearman"] = _clean(spearmanr(t, p).statistic)
            out["pearson"] = _clean(pearsonr(t, p).statistic)
    return out


def _detection(positive: np.ndarray, score: np.ndarray) -> dict:
    from sklearn.metrics import average_precision_score, roc_auc_score

    n_pos = int(positive.sum())
    out = {"auroc": None, "average_precision": None, "positives": n_pos, "n": int(len(positive))}
    if 0 < n_pos < len(positive):  # both classes present
        out["auroc"] = _clean(roc_auc_score(positive, score))
        out["average_precision"] = _clean(average_precision_score(positive, score))
    return out


def _block(t: np.ndarray, p: np.ndarray, axes: Sequence[str]) -> dict:
    block: dict = {"n": int(len(t))}
    for k, a in enumerate(axes):
        block[a] = _rank_metrics(t[:, k], p[:, k])
    if "template" in axes:
        k = axes.index("template")
        block["template_ge2"] = _detection(t[:, k] >= TEMPLATE_POSITIVE, p[:, k])
    if "warmth" in axes:
        k = axes.index("warmth")
        # Level 0 exactly: a text whose duplicate labels average above 0 is not counted,
        # as template 1.5 is not counted as template >= 2.
        hostile = t[:, k] <= HOSTILE_LEVEL / LEVELS + 1e-6
        block["hostile"] = _detection(hostile, 1.0 - p[:, k])
    return block


def _levels(scores, thresholds) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if thresholds is None:
        return np.clip(np.round(s * LEVELS), 0, LEVELS).astype(int)
    return (s[:, None] >= np.asarray(thresholds, dtype=np.float64)[None, :]).sum(axis=1).astype(int)


def level_metrics(y_true_scores, y_pred_scores, axes: Sequence[str] = AXES,
                  thresholds: Mapping[str, Sequence[float]] | None = None) -> dict:
    """Exact-level agreement per axis.

    Gold levels are ``round(gold score * 3)``; predicted levels come from
    ``thresholds[axis]`` (cut points ``[t1, t2, t3]``) where given, else from
    ``round(score * 3)``.

    Returns:
        ``{"mapping": "thresholds" | "round", "thresholds": {...} | None,
        <axis>: {"accuracy", "balanced_accuracy", "within_one", "confusion"}}``
        where ``confusion[gold][predicted]`` counts comments.

    Example:
        >>> level_metrics([[0.0], [1.0]], [[0.1], [0.7]], ["warmth"])["warmth"]["accuracy"]
        0.5
    """
    axes = list(axes)
    t = _as_2d(y_true_scores, len(axes), "y_true_scores")
    p = _as_2d(y_pred_scores, len(axes), "y_pred_scores")
    thresholds = dict(thresholds or {})
    out: dict = {"mapping": "thresholds" if thresholds else "round",
                 "thresholds": {a: list(v) for a, v in thresholds.items()} or None}
    for k, a in enumerate(axes):
        gold = np.clip(np.rint(t[:, k] * LEVELS), 0, LEVELS).astype(int)
        pred = _levels(p[:, k], thresholds.get(a))
        cm = np.zeros((LEVELS + 1, LEVELS + 1), dtype=int)
        np.add.at(cm, (gold, pred), 1)
        recalls = [cm[i, i] / cm[i].sum() for i in range(LEVELS + 1) if cm[i].sum()]
        out[a] = {
            "accuracy": _clean(np.mean(gold == pred)) if len(gold) else None,
            "balanced_accuracy": _clean(np.mean(recalls)) if recalls else None,
            "within_one": _clean(np.mean(np.abs(gold - pred) <= 1)) if len(gold) else None,
            "confusion": cm.tolist(),
        }
    return out


def evaluate(
    y_true_scores,
    y_pred_scores,
    sources: Sequence[str] | None = None,
    axes: Sequence[str] = AXES,
    level_thresholds: Mapping[str, Sequence[float]] | None = None,
) -> dict:
    """Compare predicted with gold scores, overall and per source.

    Args:
        y_true_scores: gold scores, shape ``(n, len(axes))``, in [0, 1].
        y_pred_scores: predicted scores, same shape.
        sources: the source of each row (corpus or file name), for the
            per-source breakdown.
        axes: the axis of each column.
        level_thresholds: the model's calibrated cut points per axis, if any.

    Returns:
        ``{"n", "axes", "overall": block, "by_source": {source: block},
        "levels": ..., "levels_round": ...}`` where a block is ``{"n", <axis>:
        {"spearman", "pearson", "mae"}, "template_ge2": {"auroc",
        "average_precision", "positives", "n"}, "hostile": {...}}``; undefined
        values are ``None``. ``levels`` is :func:`level_metrics` with the
        model's level mapping, ``levels_round`` with ``round(score * 3)`` (only
        when thresholds are given).

    Example:
        >>> m = evaluate([[0, 0, 1], [1, 1, 0]], [[0.1, 0.2, 0.9], [0.8, 0.7, 0.1]])
        >>> m["overall"]["warmth"]["spearman"]
        1.0
    """
    axes = list(axes)
    t = _as_2d(y_true_scores, len(axes), "y_true_scores")
    p = _as_2d(y_pred_scores, len(axes), "y_pred_scores")
    if t.shape != p.shape:
        raise ValueError(f"y_true_scores {t.shape} and y_pred_scores {p.shape} differ in shape")
    result = {"n": int(len(t)), "axes": axes, "overall": _block(t, p, axes), "by_source": {}}
    result["levels"] = level_metrics(t, p, axes, level_thresholds)
    if level_thresholds:
        result["levels_round"] = level_metrics(t, p, axes, None)
    if sources is not None:
        src = np.asarray(list(sources), dtype=object)
        if len(src) != len(t):
            raise ValueError(f"sources has {len(src)} entries for {len(t)} rows")
        for name in sorted(set(src)):
            mask = src == name
            result["by_source"][str(name)] = _block(t[mask], p[mask], axes)
    return result


def summary_row(metrics: dict) -> dict:
    """The headline numbers of one evaluation: Spearman per axis, MAE per axis,
    template and hostile AUROC (for tables comparing models)."""
    o = metrics["overall"]
    row = {}
    for a in metrics["axes"]:
        row[f"{a} ρ"] = o[a]["spearman"]
    for a in metrics["axes"]:
        row[f"{a} MAE"] = o[a]["mae"]
    if "template_ge2" in o:
        row["template≥2 AUROC"] = o["template_ge2"]["auroc"]
        row["template≥2 AP"] = o["template_ge2"]["average_precision"]
    if "hostile" in o:
        row["hostile AUROC"] = o["hostile"]["auroc"]
        row["hostile AP"] = o["hostile"]["average_precision"]
    return row


def _fmt(v) -> str:
    return "–" if v is None else f"{v:.3f}"


def comparison_table(models: Mapping[str, dict]) -> str:
    """A Markdown table of :func:`summary_row` for several models' metrics."""
    rows = {name: summary_row(m) for name, m in models.items()}
    cols = list(dict.fromkeys(c for r in rows.values() for c in r))
    lines = ["| model | n | " + " | ".join(cols) + " |", "|---|---:|" + "---:|" * len(cols)]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {models[name]['n']:,} | " + " | ".join(_fmt(r.get(c)) for c in cols) + " |"
        )
    return "\n".join(lines)


def per_axis_table(metrics: dict) -> str:
    """Markdown table: Spearman, Pearson and MAE per axis (overall)."""
    o = metrics["overall"]
    lines = ["| axis | Spearman ρ | Pearson r | MAE |", "|---|---:|---:|---:|"]
    for a in metrics["axes"]:
        m = o[a]
        lines.append(f"| {a} | {_fmt(m['spearman'])} | {_fmt(m['pearson'])} | {_fmt(m['mae'])} |")
    return "\n".join(lines)


def detection_table(metrics: dict) -> str:
    """Markdown table: AUROC and average precision of the detection tasks (overall)."""
    o = metrics["overall"]
    lines = ["| task | positives | AUROC | average precision |", "|---|---:|---:|---:|"]
    for task, label in (("template_ge2", "template ≥ 2 (by template score)"),
                        ("hostile", "hostile, warmth 0 (by 1 − warmth)")):
        if task in o:
            d = o[task]
            lines.append(f"| {label} | {d['positives']:,} of {d['n']:,} | {_fmt(d['auroc'])} | "
                         f"{_fmt(d['average_precision'])} |")
    return "\n".join(lines)


def level_table(metrics: dict) -> str:
    """Markdown table: exact-level accuracy, balanced accuracy and within-one per axis,
    with the round(score * 3) figures beside them when the model has thresholds."""
    lv = metrics.get("levels")
    if not lv:
        return ""
    rnd = metrics.get("levels_round")
    if rnd:
        lines = ["| axis | exact (round → calibrated) | balanced (round → calibrated) | within one level |",
                 "|---|---:|---:|---:|"]
        for a in metrics["axes"]:
            lines.append(f"| {a} | {_fmt(rnd[a]['accuracy'])} → {_fmt(lv[a]['accuracy'])} | "
                         f"{_fmt(rnd[a]['balanced_accuracy'])} → {_fmt(lv[a]['balanced_accuracy'])} | "
                         f"{_fmt(lv[a]['within_one'])} |")
    else:
        lines = ["| axis | exact-level accuracy | balanced accuracy | within one level |", "|---|---:|---:|---:|"]
        for a in metrics["axes"]:
            lines.append(f"| {a} | {_fmt(lv[a]['accuracy'])} | {_fmt(lv[a]['balanced_accuracy'])} | "
                         f"{_fmt(lv[a]['within_one'])} |")
    return "\n".join(lines)


def confusion_tables(metrics: dict) -> str:
    """Markdown: one gold × predicted level table per axis (the model's level mapping)."""
    lv = metrics.get("levels")
    if not lv:
        return ""
    parts = []
    for a in metrics["axes"]:
        cm = lv[a]["confusion"]
        head = f"| {a}: gold ↓ predicted → | " + " | ".join(str(j) for j in range(len(cm))) + " |"
        rows = [head, "|---|" + "---:|" * len(cm)]
        rows += [f"| {i} | " + " | ".join(f"{v:,}" for v in row) + " |" for i, row in enumerate(cm)]
        parts.append("\n".join(rows))
    return "\n\n".join(parts)


def level_mapping_note(metrics: dict) -> str:
    """One sentence saying how levels were read from scores."""
    lv = metrics.get("levels") or {}
    th = lv.get("thresholds")
    if not th:
        return "Levels are read as round(score × 3)."
    cuts = "; ".join(f"{a} {', '.join(f'{x:.3f}' for x in v)}" for a, v in th.items())
    return ("Levels are read through cut points fitted on the validation split (level = how many "
            f"cut points the score reaches): {cuts}. Arrows compare with round(score × 3).")


def per_source_table(metrics: dict) -> str:
    """Markdown table: rows and Spearman per axis, template and hostile AUROC per source."""
    axes = metrics["axes"]
    head = "| source | n | " + " | ".join(f"{a} ρ" for a in axes) + " | template≥2 AUROC | hostile AUROC |"
    lines = [head, "|---|---:|" + "---:|" * (len(axes) + 2)]
    for src, b in metrics["by_source"].items():
        cells = [_fmt(b[a]["spearman"]) for a in axes]
        cells.append(_fmt(b.get("template_ge2", {}).get("auroc")))
        cells.append(_fmt(b.get("hostile", {}).get("auroc")))
        lines.append(f"| {src} | {b['n']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------ plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def _draw_by_level(ax, t: np.ndarray, p: np.ndarray, axis: str) -> None:
    gold = np.rint(t * LEVELS).astype(int)
    data = [p[gold == k] for k in range(LEVELS + 1)]
    present = [k for k in range(LEVELS + 1) if len(data[k])]
    if present:
        ax.boxplot([data[k] for k in present], positions=present, widths=0.5, showfliers=False)
    rng = np.random.default_rng(0)  # jitter only; fixed so plots are reproducible
    for k in present:
        x = k + rng.uniform(-0.18, 0.18, size=len(data[k]))
        ax.scatter(x, data[k], s=4, alpha=0.25, color="tab:blue", linewidths=0)
    ax.plot(range(LEVELS + 1), [k / LEVELS for k in range(LEVELS + 1)], "--", color="gray",
            linewidth=0.8, label="level / 3")
    ax.set_xticks(range(LEVELS + 1))
    ax.set_xticklabels([f"{k}\n(n={len(data[k])})" for k in range(LEVELS + 1)])
    ax.set_xlim(-0.6, LEVELS + 0.6)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel(f"gold {axis} level")
    ax.set_ylabel(f"predicted {axis} score")
    ax.set_title("predicted score by gold level", fontsize=10)
    ax.legend(loc="upper left", fontsize=7)


def confusion_counts(t: np.ndarray, p: np.ndarray, thresholds: Sequence[float] | None = None) -> np.ndarray:
    """Counts of (gold level, predicted level); predicted levels through ``thresholds``
    (cut points) when given, else round(score * 3)."""
    gold = np.clip(np.rint(np.asarray(t) * LEVELS), 0, LEVELS).astype(int)
    pred = (_levels(np.asarray(p).ravel(), thresholds) if thresholds is not None
            else np.clip(np.rint(np.asarray(p) * LEVELS), 0, LEVELS).astype(int))
    cm = np.zeros((LEVELS + 1, LEVELS + 1), dtype=int)
    np.add.at(cm, (gold, pred), 1)
    return cm


def _draw_confusion(fig, ax, t: np.ndarray, p: np.ndarray, thresholds=None) -> None:
    cm = confusion_counts(t, p, thresholds)
    im = ax.imshow(cm, cmap="Blues")
    top = cm.max() or 1
    for i in range(LEVELS + 1):
        for j in range(LEVELS + 1):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                    color="white" if cm[i, j] > top / 2 else "black", fontsize=9)
    ax.set_xticks(range(LEVELS + 1))
    ax.set_yticks(range(LEVELS + 1))
    ax.set_xlabel("predicted level (score × 3, rounded)" if thresholds is None
                  else "predicted level (calibrated cut points)")
    ax.set_ylabel("gold level")
    ax.set_title("confusion of levels", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)


def plot_axis(t: np.ndarray, p: np.ndarray, axis: str, path: str | os.PathLike,
              thresholds: Sequence[float] | None = None) -> Path:
    """One PNG for an axis: predicted score by gold level (box and strip plot) beside
    the confusion matrix of levels (rounded, or through ``thresholds``)."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.6, 3.9), dpi=90,
                                      gridspec_kw={"width_ratios": [1.15, 1]})
    _draw_by_level(left, np.asarray(t), np.asarray(p), axis)
    _draw_confusion(fig, right, t, p, thresholds)
    if thresholds is not None:
        for x in thresholds:
            left.axhline(x, color="tab:orange", linewidth=0.7, linestyle=":")
    fig.suptitle(axis, fontsize=12)
    # fixed margins: cheaper than tight_layout, which draws the figure twice
    fig.subplots_adjust(left=0.07, right=0.96, bottom=0.2, top=0.86, wspace=0.3)
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def write_report(
    metrics: dict,
    y_true,
    y_pred,
    out_dir: str | os.PathLike,
    title: str,
    compare: Mapping[str, dict] | None = None,
    notes: str = "",
) -> Path:
    """Write ``metrics.json``, ``report.md`` and the plots into ``out_dir``.

    Args:
        metrics: the output of :func:`evaluate` for ``y_true``/``y_pred``.
        y_true: gold scores ``(n, axes)``.
        y_pred: predicted scores ``(n, axes)``.
        out_dir: folder to write (created).
        title: report heading, e.g. the model name and split.
        compare: other models' metrics on the same rows (e.g. the baselines),
            shown with this one in a comparison table.
        notes: Markdown appended under the heading (data, model version...).

    Returns:
        The path of ``report.md``.

    Example:
        >>> m = evaluate(y, p, sources)  # doctest: +SKIP
        >>> write_report(m, y, p, "runs/eval", "model on test")  # doctest: +SKIP
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    axes = metrics["axes"]
    t = _as_2d(y_true, len(axes), "y_true")
    p = _as_2d(y_pred, len(axes), "y_pred")
    payload = dict(metrics)
    if compare:
        payload["compare"] = {name: m for name, m in compare.items()}
    (out / "metrics.json").write_text(
        json.dumps(payload, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )

    parts = [f"# {title}", ""]
    if notes:
        parts += [notes.strip(), ""]
    parts += [f"Rows evaluated: {metrics['n']:,}.", "", "## Per axis", "", per_axis_table(metrics),
              "", "## Detection", "", detection_table(metrics), ""]
    if compare:
        models = {title: metrics, **compare}
        parts += ["## Comparison", "", comparison_table(models), ""]
    if metrics.get("levels"):
        parts += ["## Levels", "", level_mapping_note(metrics), "", level_table(metrics), "",
                  "Confusion of levels (rows: gold level, columns: predicted level):", "",
                  confusion_tables(metrics), ""]
    if metrics["by_source"]:
        parts += ["## Per source", "", "Metrics that are undefined for a source (one class, "
                  "constant scores) are shown as –.", "", per_source_table(metrics), ""]
    parts += ["## Plots", ""]
    cuts = (metrics.get("levels") or {}).get("thresholds") or {}
    parts += ["Left: predicted score for each gold level (box: quartiles; dots: comments; "
              "dashed: a perfect score" + ("; dotted: the level cut points" if cuts else "") + "). "
              "Right: gold level against predicted level ("
              + ("calibrated cut points" if cuts else "score × 3, rounded") + ").", ""]
    for k, a in enumerate(axes):
        png = plot_axis(t[:, k], p[:, k], a, out / f"{a}.png", cuts.get(a))
        parts += [f"![{a}]({png.name})", ""]
    report = out / "report.md"
    report.write_text("\n".join(parts), encoding="utf-8")
    return report


def evaluate_model(
    model_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    split: str,
    out_dir: str | os.PathLike,
    batch_size: int = 32,
    device: str = "cpu",
    baselines: str | os.PathLike | None = None,
) -> dict:
    """Score a prepared split with an exported model and write its report.

    The axes come from the loaded scorer. If ``baselines`` (a
    ``baselines.json``) holds metrics for the same split, they are shown in a
    comparison table.
    """
    from zhenping.model.scorer import Scorer  # loaded only when a model is evaluated
    from zhenping.training.prepare import load_split, read_manifest

    scorer = Scorer.from_pretrained(str(model_dir), device=device)
    axes = list(scorer.axes)
    data = load_split(data_dir, split, axes)
    scored = scorer.score(data.texts, batch_size=batch_size)
    if len(scored) != len(data):
        raise RuntimeError(f"scorer returned {len(scored)} results for {len(data)} texts")
    pred = np.array([[getattr(s, a) for a in axes] for s in scored], dtype=np.float64)
    metrics = evaluate(data.scores, pred, data.sources, axes,
                       level_thresholds=getattr(scorer, "level_thresholds", None))
    metrics["model"] = {"dir": str(model_dir), "id": getattr(scorer, "model_id", None),
                        "version": getattr(scorer, "model_version", None)}
    metrics["split"] = split
    try:
        manifest = read_manifest(data_dir)
        metrics["data"] = {"label_files": manifest.get("label_files", {})}
        rows = (manifest.get("counts") or {}).get("rows")
        if rows:  # kept for the model card, which may be rebuilt without the data folder
            metrics["data"]["rows"] = rows
    except FileNotFoundError:
        metrics["data"] = {}
    compare = {}
    if baselines and Path(baselines).is_file():
        stored = json.loads(Path(baselines).read_text(encoding="utf-8"))
        # Only numbers measured on the same prepared rows are comparable.
        same_data = stored.get("data", {}).get("label_files") == metrics["data"].get("label_files")
        for name, res in stored.get("models", {}).items():
            if same_data and split in res and res[split].get("axes") == axes:
                compare[f"{name} baseline"] = res[split]
    if compare:
        metrics["compare"] = compare
    title = f"{metrics['model']['version'] or Path(model_dir).name} on {split}"
    write_report(metrics, data.scores, pred, out_dir, title, compare=compare or None)
    return metrics
