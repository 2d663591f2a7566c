"""Calibrated levels: per-axis cut points from score to level, fitted on validation.

A model's score is trained toward level / 3, but the nearest level,
``round(score * 3)``, is not the best reading of it: a model that compresses
its scores toward the middle (common on the rare top and bottom levels) shows
level 3 or 0 too seldom. :func:`fit_thresholds` picks three monotone cut points
``t1 <= t2 <= t3`` per axis (level = how many of them the score reaches) that
maximise exact-level agreement with the gold levels of the validation split:

* ``criterion="accuracy"`` (the default): the share of comments whose level is
  exactly right. Exact, by dynamic programming over every monotone cut of the
  sorted scores; as ``round(score * 3)`` is one such cut, the fitted cut points
  never do worse than it on the rows they were fitted on.
* ``criterion="balanced"``: the mean over levels of the share of that level's
  comments read right (each level weighted equally), which shows rare levels
  more often at some cost in plain accuracy.

Scores themselves are unchanged; the cut points go into the model folder's
``scorer_config.json`` as ``"level_thresholds": {axis: [t1, t2, t3]}`` and
``Scorer`` reads levels through them (``CommentScores.levels``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from zhenping.model.axes import LEVELS, check_level_thresholds

CRITERIA = ("accuracy", "balanced")
ROUND_THRESHOLDS = [(k - 0.5) / LEVELS for k in range(1, LEVELS + 1)]  # what round(score * 3) amounts to


def gold_levels(scores) -> np.ndarray:
    """Gold levels 0-3 from gold scores (level / 3; averaged duplicates round to the nearest)."""
    return np.clip(np.rint(np.asarray(scores, dtype=np.float64) * LEVELS), 0, LEVELS).astype(int)


def apply_thresholds(scores, thresholds: Sequence[float] | None) -> np.ndarray:
    """Levels 0-3 for an array of scores: ``round(score * 3)`` without thresholds,
    else the number of cut points at or below each score (as ``score_to_level``)."""
    s = np.asarray(scores, dtype=np.float64)
    if thresholds is None:
        # round half to even, like Python's round() in score_to_level
        return np.clip(np.round(s * LEVELS), 0, LEVELS).astype(int)
    return (s[..., None] >= np.asarray(thresholds, dtype=np.float64)).sum(axis=-1).astype(int)


def fit_thresholds(scores, levels, criterion: str = "accuracy") -> list[float]:
    """Three monotone cut points ``[t1, t2, t3]`` that best read ``scores`` as ``levels``.

    Args:
        scores: predicted scores in [0, 1], shape ``(n,)``.
        levels: gold levels 0-3, shape ``(n,)``.
        criterion: ``"accuracy"`` (exact-level accuracy) or ``"balanced"`` (mean
            per-level recall over the levels present).

    Returns:
        ``[t1, t2, t3]``, non-decreasing, in [0, 1]. Each cut lies midway between
        two neighbouring distinct scores (0 or 1 at the ends), so equal scores
        always get the same level. Among equally good cuts the one closest to
        ``round(score * 3)``'s is taken.

    Raises:
        ValueError: unknown criterion, mismatched lengths, no rows, or levels
            outside 0-3.

    Example:
        >>> fit_thresholds([0.1, 0.2, 0.4, 0.5, 0.6, 0.9], [0, 0, 1, 1, 2, 3])
        [0.3, 0.55, 0.75]
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {list(CRITERIA)}, got {criterion!r}")
    s = np.asarray(scores, dtype=np.float64).ravel()
    g = np.asarray(levels).ravel()
    if len(s) != len(g):
        raise ValueError(f"scores has {len(s)} rows and levels {len(g)}")
    if len(s) == 0:
        raise ValueError("cannot fit thresholds on no rows")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    if not np.isin(g, np.arange(LEVELS + 1)).all():
        raise ValueError(f"levels must be integers 0-{LEVELS}, got {sorted(set(g.tolist()) - set(range(LEVELS + 1)))}")
    g = g.astype(int)
    order = np.argsort(s, kind="stable")
    s, g = s[order], g[order]
    n = len(s)
    if criterion == "accuracy":
        w = np.ones(n)
    else:
        counts = np.bincount(g, minlength=LEVELS + 1).astype(float)
        w = 1.0 / counts[g]
    # cum[k][i]: weight of level-k rows among the first i sorted rows.
    cum = np.zeros((LEVELS + 1, n + 1))
    for k in range(LEVELS + 1):
        cum[k, 1:] = np.cumsum(w * (g == k))
    # A cut at position i puts rows [0, i) below it; ties must not be split.
    allowed = np.ones(n + 1, dtype=bool)
    allowed[1:n] = s[1:] > s[:-1]
    # Cut values, and a small preference for cuts near round(score*3)'s, which only
    # decides between equally good solutions (far below the weight of one row).
    value = np.empty(n + 1)
    value[0] = 0.0
    value[n] = 1.0 if s[-1] >= 1.0 else (s[-1] + 1.0) / 2
    value[1:n] = (s[:-1] + s[1:]) / 2
    value = np.clip(value, 0.0, 1.0)
    eps = 1e-9  # far below any real difference in gain (at least 1/n² of a weight)

    # Gain of a solution with cuts c1 <= c2 <= c3:
    #   cum0[c1] + (cum1[c2] - cum1[c1]) + (cum2[c3] - cum2[c2]) + (cum3[n] - cum3[c3]),
    # maximised left to right with running maxima (O(n) per level).
    neg = -np.inf
    prev_best = np.where(allowed, 0.0, neg)  # best gain of levels below the current cut, cut at i
    choices = []
    for k in range(LEVELS):
        penalty = eps * np.abs(value - ROUND_THRESHOLDS[k])
        # Gain of rows of level k below cut i, given the previous cut at j <= i:
        # cum_k[i] - cum_k[j] + prev_best[j].
        cand = np.where(allowed, prev_best - cum[k], neg)
        best_j = np.empty(n + 1, dtype=int)
        run_val, run_j = neg, 0
        for i in range(n + 1):
            if cand[i] > run_val:
                run_val, run_j = cand[i], i
            best_j[i] = run_j
        cur = np.where(allowed, cand[best_j] + cum[k] - penalty, neg)
        choices.append(best_j)
        prev_best = cur
    final = prev_best + (cum[LEVELS, n] - cum[LEVELS])
    final = np.where(allowed, final, neg)
    cuts = [int(np.argmax(final))]
    for k in range(LEVELS - 1, 0, -1):
        cuts.append(int(choices[k][cuts[-1]]))
    cuts.reverse()
    return [round(float(value[c]), 6) for c in cuts]


def level_accuracy(scores, levels, thresholds: Sequence[float] | None = None) -> float:
    """Share of rows whose level (through ``thresholds``, or rounding) equals the gold level."""
    pred = apply_thresholds(scores, thresholds)
    return float(np.mean(pred == np.asarray(levels))) if len(pred) else float("nan")


def fit_all(pred_scores: np.ndarray, gold_scores: np.ndarray, axes: Sequence[str],
            criterion: str = "accuracy") -> dict[str, list[float]]:
    """:func:`fit_thresholds` for each axis (columns of ``(n, len(axes))`` score arrays)."""
    gold = gold_levels(gold_scores)
    return {a: fit_thresholds(pred_scores[:, k], gold[:, k], criterion) for k, a in enumerate(axes)}


def write_thresholds(model_dir: str | os.PathLike, thresholds: dict[str, list[float]] | None,
                     fitted_on: dict | None = None) -> Path:
    """Write (or, with ``None``, remove) ``level_thresholds`` in a model folder's
    ``scorer_config.json``, atomically (a temporary file renamed over the old one)."""
    path = Path(model_dir) / "scorer_config.json"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    if thresholds is None:
        cfg.pop("level_thresholds", None)
        cfg.pop("level_calibration", None)
        cfg["score"] = "sigmoid(logit); level = round(score * level_scale)"
    else:
        cfg["level_thresholds"] = check_level_thresholds(thresholds, tuple(cfg["axes"]))
        if fitted_on is not None:
            cfg["level_calibration"] = fitted_on
        cfg["score"] = ("sigmoid(logit); level = how many of level_thresholds[axis] are <= score "
                        "(round(score * level_scale) for an axis without thresholds)")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(cfg, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path


def score_split(scorer, data_dir: str | os.PathLike, split: str, batch_size: int = 64):
    """Gold and predicted scores ``(n, axes)`` of one prepared split."""
    from zhenping.training.prepare import load_split

    axes = list(scorer.axes)
    data = load_split(data_dir, split, axes)
    scored = scorer.score(data.texts, batch_size=batch_size)
    pred = np.array([[getattr(s, a) for a in axes] for s in scored], dtype=np.float64).reshape(len(data), len(axes))
    return data, pred


def calibrate_model_dir(
    model_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    criterion: str = "accuracy",
    write: bool = True,
    batch_size: int = 64,
    backend: str = "torch",
    scorer=None,
    echo: Callable[[str], None] | None = None,
    measure_test: bool = True,
) -> dict:
    """Fit level cut points on a data folder's validation split and write them into
    the model folder's ``scorer_config.json``.

    Also measures the test split (when the data folder has one and ``measure_test``)
    before and after, and, when the folder's ``metrics.json`` was measured on that
    test split, adds the calibrated level metrics to it and rebuilds the model card.
    ``scorer``: an already loaded scorer of ``model_dir`` (its ``level_thresholds``
    are set to the fitted ones when written).

    Returns:
        ``{"thresholds", "criterion", "validation": {axis: {"before", "after"}},
        "test": {...} or None, "written": bool}`` (accuracies are exact-level
        accuracy; "before" is ``round(score * 3)``).
    """
    from zhenping.model.scorer import Scorer
    from zhenping.training.evaluate import level_metrics

    echo = echo or (lambda _msg: None)
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {list(CRITERIA)}, got {criterion!r}")
    model_dir = Path(model_dir)
    if scorer is None:
        scorer = Scorer.from_pretrained(str(model_dir), backend=backend)
    axes = list(scorer.axes)
    val, val_pred = score_split(scorer, data_dir, "validation", batch_size)
    thresholds = fit_all(val_pred, val.scores, axes, criterion)
    result: dict = {"thresholds": thresholds, "criterion": criterion, "written": False}

    def measure(data, pred) -> dict:
        before = level_metrics(data.scores, pred, axes, None)
        after = level_metrics(data.scores, pred, axes, thresholds)
        return {a: {"before": before[a]["accuracy"], "after": after[a]["accuracy"],
                    "balanced_before": before[a]["balanced_accuracy"],
                    "balanced_after": after[a]["balanced_accuracy"]} for a in axes} | {"n": len(data)}

    result["validation"] = measure(val, val_pred)
    test = None
    if measure_test and (Path(data_dir) / "test.jsonl").is_file():
        test, test_pred = score_split(scorer, data_dir, "test", batch_size)
        result["test"] = measure(test, test_pred)
    else:
        result["test"] = None
    for split in ("validation", "test"):
        r = result[split]
        if r is None:
            continue
        echo(f"{split} ({r['n']:,} comments), exact-level accuracy round(score*3) -> thresholds "
             f"(balanced accuracy in brackets):")
        for a in axes:
            echo(f"  {a:<10} {r[a]['before']:.3f} -> {r[a]['after']:.3f}   "
                 f"[{r[a]['balanced_before']:.3f} -> {r[a]['balanced_after']:.3f}]")
    for a in axes:
        echo(f"thresholds {a}: {', '.join(f'{t:.3f}' for t in thresholds[a])}")
    if write:
        from zhenping.training.prepare import read_manifest

        try:
            label_files = read_manifest(data_dir).get("label_files", {})
        except FileNotFoundError:
            label_files = {}
        write_thresholds(model_dir, thresholds, {
            "split": "validation", "rows": len(val), "criterion": criterion, "label_files": label_files,
            "validation_accuracy": {a: {"round": result["validation"][a]["before"],
                                        "thresholds": result["validation"][a]["after"]} for a in axes},
        })
        result["written"] = True
        scorer.level_thresholds = check_level_thresholds(thresholds, tuple(axes))
        echo(f"wrote level_thresholds into {model_dir / 'scorer_config.json'}")
        if test is not None:
            _update_metrics(model_dir, test, test_pred, axes, thresholds, data_dir, echo)
    return result


def _update_metrics(model_dir: Path, test, test_pred, axes, thresholds, data_dir, echo) -> None:
    """Put the calibrated level metrics into the folder's metrics.json (if it measured this
    test split) and rebuild its card."""
    from zhenping.training.evaluate import level_metrics

    mpath = model_dir / "metrics.json"
    if not mpath.is_file():
        return
    metrics = json.loads(mpath.read_text(encoding="utf-8"))
    if not isinstance(metrics, dict) or "overall" not in metrics:
        return
    if metrics.get("split", "test") != "test" or metrics.get("n") != len(test):
        echo(f"{mpath} was measured on other rows ({metrics.get('n')} rather than {len(test)}); "
             "its level metrics are left as they are")
        return
    metrics["levels"] = level_metrics(test.scores, test_pred, axes, thresholds)
    metrics["levels_round"] = level_metrics(test.scores, test_pred, axes, None)
    tmp = mpath.with_name(f".{mpath.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(metrics, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.chmod(tmp, 0o644)
    os.replace(tmp, mpath)
    echo(f"updated the test-split level metrics in {mpath}")
    from zhenping.training.card import rerender_card
    from zhenping.training.prepare import read_manifest

    try:
        manifest = read_manifest(data_dir)
    except FileNotFoundError:
        manifest = None
    rerender_card(model_dir, manifest)
    echo(f"rebuilt {model_dir / 'README.md'}")
