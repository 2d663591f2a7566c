"""Duplicate evidence on real repeated text: fusion and actions, fitted and measured.

Run ``python -m zhenping.training.campaign_eval`` (after ``zhenping prepare`` and
``zhenping baselines``; ``--model DIR`` to use an exported scorer instead of
the TF-IDF baseline). It:

1. streams each corpus file of the repeat-heavy sources (Bilibili danmaku; the
   NetEase latest-comment pools, where ad spam is pasted) through the duplicate
   window (the service's default size and time-to-live), in posting order where
   the file has a time column, in requests of ``--batch`` comments, and keeps for
   each gold-labelled row the duplicate counts in three views: at the labelled
   row's own arrival; at every arrival of its text (labels are judged on text, so
   each copy carries the label; up to ten arrivals, each text weighing 1 in all);
   and every other copy in the whole file (a later re-check);
2. fits the fusion weights (``model/campaign/fusion.py``) on the validation
   rows of those sources, every arrival, by least squares against the gold template
   score, and compares on the test rows template ρ and template ≥ 2 AUROC/AP of
   the model alone, the fused score, and a logistic model on
   ``[logit(model), log1p(exact), log1p(near)]``;
3. chooses the action thresholds on the validation split (all sources; fused
   template score where duplicates were measured): fold at the lowest threshold
   with precision ≥ 0.9, review at the highest with recall ≥ 0.8 (and precision
   ≥ 0.5 when reachable), and reports precision and recall of fold and review on
   the test split;
4. writes ``training/results/campaign.json`` and ``campaign.md`` and, with
   ``--write-calibration``, the fitted fusion weights to
   ``model/campaign/calibration.json``, which the service's defaults read (the
   action thresholds there come from ``training/campaign_bench.py``; the ones
   chosen here are reported only).

No comment text is written: only counts, ids and metrics.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from zhenping.model.axes import AXES, LEVELS
from zhenping.model.campaign.config import CALIBRATION_FILE, WindowConfig
from zhenping.model.campaign.fusion import Fusion
from zhenping.model.campaign.window import DuplicateWindow, WindowItem, caller_key, dedup_form
from zhenping.model.normalize import normalize_text

DEFAULT_STREAMS: dict[str, tuple[str, ...] | None] = {
    "bilibili_danmaku_small": None,  # every file
    "netease_music_comments": ("latest_comments_rgn.csv.gz", "latest_comments_xue.csv.gz",
                               "latest_comments_zms.csv.gz"),
}
DEFAULT_BASELINE = Path("runs/baselines/tfidf_ridge.joblib")
DEFAULT_OUT = Path("training/results")
DEFAULT_CACHE = Path("runs/campaign/streams.json")  # stream counts do not depend on the model: reruns reuse them
BOOTSTRAP = 1000  # resamples of the test texts for confidence intervals of the fusion's change
BATCH = 32  # comments per simulated request
FOLD_PRECISION = 0.9  # fold: lowest threshold reaching this precision on validation
REVIEW_RECALL = 0.8  # review: highest threshold keeping this recall on validation...
REVIEW_PRECISION = 0.5  # ...provided precision stays at least this (else: best recall at this precision)
MIN_FLAGGED = 5  # a threshold must flag at least this many validation rows to count
WEIGHT_GRID = np.round(np.arange(0.0, 2.001, 0.05), 2)  # fusion weights searched
THRESHOLDS = np.round(np.arange(0.30, 1.001, 0.01), 2)  # action thresholds searched
OFF = 1.01  # a threshold no score reaches: the rule is off
MAX_ARRIVALS = 10  # arrivals of one labelled text measured (first, last, evenly spaced between)
TEMPLATE_POSITIVE = 2 / LEVELS - 1e-6
HOSTILE_MAX = 1e-6  # gold warmth score of a hostile comment (level 0)


# ------------------------------------------------------------------ streaming


def posting_time(rec: dict) -> float | None:
    """Seconds since the epoch from a row's time column, if it has one."""
    value = rec.get("time")
    if value not in (None, ""):
        try:
            return float(value) / 1000.0  # NetEase: milliseconds
        except ValueError:
            return None
    value = rec.get("弹幕时间")
    if value:
        try:
            return datetime.strptime(value, "%Y-%m-%d %H:%M:%S").timestamp()
        except ValueError:
            return None
    return None


def spread(seq: Sequence, k: int) -> list:
    """At most ``k`` items of ``seq``: the first, the last and evenly spaced between."""
    if len(seq) <= k:
        return list(seq)
    return [seq[int(round(j))] for j in np.linspace(0, len(seq) - 1, k)]


@dataclass
class FileStream:
    """What streaming one corpus file found; counts are ``(exact, near)`` pairs."""

    name: str
    rows: int
    distinct: int
    timed: bool
    seconds: float = 0.0
    with_copies_at_arrival: int = 0
    clusters_with_copies: int = 0
    largest_cluster: int = 0
    labelled: dict[int, tuple[int, int]] = field(default_factory=dict)  # gold row -> at its own arrival
    arrivals: dict[int, list[tuple[int, int]]] = field(default_factory=dict)  # gold row -> at its text's arrivals
    whole_file: dict[int, tuple[int, int]] = field(default_factory=dict)  # gold row -> every other copy

    def summary(self) -> dict:
        return {"file": self.name, "rows": self.rows, "distinct_texts": self.distinct, "posting_order": self.timed,
                "rows_with_copies_at_arrival": self.with_copies_at_arrival,
                "clusters_with_copies": self.clusters_with_copies, "largest_cluster": self.largest_cluster,
                "gold_rows": len(self.labelled), "seconds": round(self.seconds, 1)}

    def to_json(self) -> dict:
        doc = dict(self.__dict__)
        for name in ("labelled", "arrivals", "whole_file"):
            doc[name] = {str(k): v for k, v in doc[name].items()}
        return doc

    @classmethod
    def from_json(cls, doc: dict) -> "FileStream":
        doc = dict(doc)
        doc["labelled"] = {int(k): tuple(v) for k, v in doc["labelled"].items()}
        doc["whole_file"] = {int(k): tuple(v) for k, v in doc["whole_file"].items()}
        doc["arrivals"] = {int(k): [tuple(x) for x in v] for k, v in doc["arrivals"].items()}
        return cls(**doc)


def _stream_key(path: Path, gold_rows: set[int], window: WindowConfig, batch: int) -> dict:
    """What a cached stream must match to be reused."""
    return {"file": f"{path.parent.name}/{path.name}", "bytes": path.stat().st_size, "gold_rows": sorted(gold_rows),
            "window": {k: getattr(window, k) for k in ("max_size", "ttl_seconds", "threshold", "num_perm",
                                                        "shingle", "seed")},
            "batch": batch, "max_arrivals": MAX_ARRIVALS}


def stream_file(path: Path, cf, gold_rows: set[int], window: WindowConfig, batch: int = BATCH,
                norm_cache: dict[str, str] | None = None, max_arrivals: int = MAX_ARRIVALS) -> FileStream:
    """Stream one corpus file through a fresh window and keep the gold rows' counts.

    Rows are sent in posting order when every row has a posting time (which then
    drives the time-to-live), in file order otherwise (one second apart). A gold
    row's text is followed through all its exact copies: ``arrivals`` holds the
    counts at up to ``max_arrivals`` of them.
    """
    from zhenping.training.corpora import iter_rows, row_text

    started = time.perf_counter()
    cache = norm_cache if norm_cache is not None else {}
    rows = []
    for i, rec in iter_rows(path, cf):
        raw = row_text(rec, cf)
        text = cache.get(raw)
        if text is None:
            text = cache[raw] = normalize_text(raw)
        rows.append((i, text, posting_time(rec)))
    timed = bool(rows) and all(t is not None for _, _, t in rows)
    if timed:
        rows.sort(key=lambda r: (r[2], r[0]))
    else:
        rows = [(i, text, float(k)) for k, (i, text, _) in enumerate(rows)]
    forms = {i: dedup_form(text) for i, text, _ in rows}
    gold_forms = {forms[i] for i in gold_rows if i in forms}
    occurrences: dict[str, list[tuple[int, int]]] = {f: [] for f in gold_forms}
    out = FileStream(path.name, len(rows), len(set(forms.values())), timed)
    arrival = DuplicateWindow(window)
    whole = DuplicateWindow(WindowConfig(max_size=max(1, len(rows)), ttl_seconds=0, threshold=window.threshold,
                                         num_perm=window.num_perm, shingle=window.shingle, seed=window.seed))
    sizes: Counter = Counter()  # comments per cluster, over the whole file
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        items = [WindowItem(text, caller_key(i)) for i, text, _ in chunk]
        now = chunk[-1][2]
        found = arrival.observe(items, now=now)
        sizes.update(d.cluster_id for d in whole.observe(items, now=now))
        for (i, _, _), dup in zip(chunk, found):
            counts = (dup.exact_count, dup.near_count)
            out.with_copies_at_arrival += dup.copies > 0
            if forms[i] in occurrences:
                occurrences[forms[i]].append(counts)
            if i in gold_rows:
                out.labelled[i] = counts
    # Every other copy in the file: look the gold rows up again by id, adding nothing.
    keys = sorted(out.labelled)
    texts = {i: text for i, text, _ in rows if i in gold_rows}
    final = whole.observe([WindowItem(texts[i], caller_key(i)) for i in keys], now=rows[-1][2] if rows else 0.0,
                          record=False)
    for i, dup in zip(keys, final):
        out.whole_file[i] = (dup.exact_count, dup.near_count)
        out.arrivals[i] = spread(occurrences[forms[i]], max_arrivals)
    out.clusters_with_copies = sum(1 for n in sizes.values() if n > 1)
    out.largest_cluster = max(sizes.values(), default=0)
    out.seconds = time.perf_counter() - started
    return out


# ------------------------------------------------------------------ weighted metrics


def _weighted_ranks(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    xs, ws = x[order], w[order]
    cum = np.cumsum(ws)
    ranks = np.empty_like(cum)
    start = 0
    while start < len(xs):
        end = start
        while end + 1 < len(xs) and xs[end + 1] == xs[start]:
            end += 1
        before = cum[start - 1] if start else 0.0
        ranks[start:end + 1] = before + (cum[end] - before) / 2  # mid-rank of a tie group, by weight
        start = end + 1
    out = np.empty_like(ranks)
    out[order] = ranks
    return out


def weighted_spearman(t, p, w=None) -> float | None:
    """Spearman's ρ with row weights (Pearson correlation of weighted mid-ranks)."""
    t, p = np.asarray(t, dtype=np.float64), np.asarray(p, dtype=np.float64)
    w = np.ones(len(t)) if w is None else np.asarray(w, dtype=np.float64)
    if len(t) < 3 or np.ptp(t) == 0 or np.ptp(p) == 0:
        return None
    rt, rp = _weighted_ranks(t, w), _weighted_ranks(p, w)
    mt, mp = np.average(rt, weights=w), np.average(rp, weights=w)
    cov = np.average((rt - mt) * (rp - mp), weights=w)
    var = np.sqrt(np.average((rt - mt) ** 2, weights=w) * np.average((rp - mp) ** 2, weights=w))
    return round(float(cov / var), 4) if var > 0 else None


def _detection(positive, score, w=None) -> dict:
    from sklearn.metrics import average_precision_score, roc_auc_score

    positive = np.asarray(positive, dtype=bool)
    w = np.ones(len(positive)) if w is None else np.asarray(w, dtype=np.float64)
    out = {"texts": round(float(w.sum()), 1), "positives": round(float(w[positive].sum()), 1),
           "auroc": None, "average_precision": None}
    if 0 < positive.sum() < len(positive):
        out["auroc"] = round(float(roc_auc_score(positive, score, sample_weight=w)), 4)
        out["average_precision"] = round(float(average_precision_score(positive, score, sample_weight=w)), 4)
    return out


def template_metrics(gold_template, score, w=None) -> dict:
    """Template ρ and template ≥ 2 detection of one score column, rows weighted by ``w``."""
    gold = np.asarray(gold_template, dtype=np.float64)
    return {"spearman": weighted_spearman(gold, score, w), "template_ge2": _detection(gold >= TEMPLATE_POSITIVE,
                                                                                       score, w)}


@dataclass
class View:
    """Rows to measure on: each labelled row once, or spread over its arrivals (weights sum to 1 per row)."""

    row: np.ndarray  # index into the split
    exact: np.ndarray
    near: np.ndarray
    weight: np.ndarray

    def take(self, mask_rows: np.ndarray) -> "View":
        keep = mask_rows[self.row]
        return View(self.row[keep], self.exact[keep], self.near[keep], self.weight[keep])


def build_view(n: int, per_row: dict[int, list[tuple[int, int]]]) -> View:
    """A view with ``per_row[k]`` samples for row ``k`` (one ``(0, 0)`` sample for rows not streamed)."""
    row, exact, near, weight = [], [], [], []
    for k in range(n):
        samples = per_row.get(k) or [(0, 0)]
        for e, m in samples:
            row.append(k)
            exact.append(e)
            near.append(m)
            weight.append(1.0 / len(samples))
    return View(np.array(row, dtype=int), np.array(exact, dtype=float), np.array(near, dtype=float),
                np.array(weight))


def fit_fusion(model, exact, near, gold, weight=None) -> tuple[Fusion, float]:
    """Least-squares fusion weights on a grid (weighted rows); returns the fusion and its MSE."""
    weight = np.ones(len(gold)) if weight is None else weight
    best = None
    for a in WEIGHT_GRID:
        for b in WEIGHT_GRID:
            fused = Fusion(float(a), float(b)).fuse_many(model, exact, near)
            mse = float(np.average((fused - gold) ** 2, weights=weight))
            # Ties (no copies among the rows) keep the smallest weights.
            if best is None or mse < best[0] - 1e-12:
                best = (mse, float(a), float(b))
    return Fusion(best[1], best[2]), best[0]


def _logit_features(model, exact, near) -> np.ndarray:
    m = np.clip(np.asarray(model, dtype=np.float64), 1e-4, 1 - 1e-4)
    return np.column_stack([np.log(m / (1 - m)), np.log1p(exact), np.log1p(near)])


def precision_recall(flag, positive, w=None) -> dict:
    """Precision and recall of a flag, rows weighted by ``w`` (labelled texts)."""
    flag = np.asarray(flag, dtype=bool)
    positive = np.asarray(positive, dtype=bool)
    w = np.ones(len(flag)) if w is None else np.asarray(w, dtype=np.float64)
    flagged, pos, tp = float(w[flag].sum()), float(w[positive].sum()), float(w[flag & positive].sum())
    return {"flagged": round(flagged, 1), "positives": round(pos, 1), "true_positives": round(tp, 1),
            "precision": round(tp / flagged, 4) if flagged else None,
            "recall": round(tp / pos, 4) if pos else None}


def choose_thresholds(score, positive, w=None) -> tuple[float, float]:
    """Fold and review thresholds for one reason on validation rows.

    Fold: the lowest threshold whose precision is at least ``FOLD_PRECISION``
    (flagging at least ``MIN_FLAGGED``); above 1 (off) when none is. Review: the
    highest threshold at or below fold whose recall is at least
    ``REVIEW_RECALL`` while precision is at least ``REVIEW_PRECISION``; when no
    threshold has both, the one with the best recall at that precision; fold's
    when none reaches that precision.
    """
    score = np.asarray(score, dtype=np.float64)
    table = {float(t): precision_recall(score >= t, positive, w) for t in THRESHOLDS}
    fold = OFF
    for t in table:
        row = table[t]
        if row["flagged"] >= MIN_FLAGGED and (row["precision"] or 0) >= FOLD_PRECISION:
            fold = t
            break
    candidates = [t for t in table if t <= fold and table[t]["flagged"] >= MIN_FLAGGED
                  and (table[t]["precision"] or 0) >= REVIEW_PRECISION]
    both = [t for t in candidates if (table[t]["recall"] or 0) >= REVIEW_RECALL]
    if both:
        review = max(both)
    elif candidates:
        review = max(candidates, key=lambda t: (table[t]["recall"] or 0, t))
    else:
        review = fold
    return fold, review


def bootstrap_change(view: View, gold: np.ndarray, model: np.ndarray, fusion: Fusion, n: int = BOOTSTRAP,
                     seed: int = 0) -> dict:
    """95% intervals of fused minus model template ρ and AUROC, resampling texts."""
    rng = np.random.default_rng(seed)
    texts = np.unique(view.row)
    members = {k: np.flatnonzero(view.row == k) for k in texts}
    fused = fusion.fuse_many(model[view.row], view.exact, view.near)
    from sklearn.metrics import roc_auc_score

    deltas = {"spearman": [], "auroc": []}
    for _ in range(n):
        pick = np.concatenate([members[k] for k in rng.choice(texts, size=len(texts))])
        g, w = gold[view.row[pick]], view.weight[pick]
        m, f = model[view.row[pick]], fused[pick]
        rho_m, rho_f = weighted_spearman(g, m, w), weighted_spearman(g, f, w)
        if rho_m is not None and rho_f is not None:
            deltas["spearman"].append(rho_f - rho_m)
        positive = g >= TEMPLATE_POSITIVE
        if 0 < positive.sum() < len(positive):
            deltas["auroc"].append(roc_auc_score(positive, f, sample_weight=w)
                                   - roc_auc_score(positive, m, sample_weight=w))
    return {k: {"mean": round(float(np.mean(v)), 4), "ci95": [round(float(np.percentile(v, 2.5)), 4),
                                                              round(float(np.percentile(v, 97.5)), 4)]}
            for k, v in deltas.items() if v} | {"resamples": n, "view": "every arrival"}


# ------------------------------------------------------------------ the stage


def _model_scores(texts: Sequence[str], model_dir: str | None, baseline: Path) -> tuple[np.ndarray, str]:
    if model_dir:
        from zhenping.model.scorer import Scorer

        scorer = Scorer.from_pretrained(model_dir)
        scored = scorer.score(list(texts))
        return np.array([[getattr(s, a) for a in AXES] for s in scored]), f"{scorer.model_id}@{scorer.model_version}"
    from zhenping.training.baselines import TfidfRidgeBaseline

    if not baseline.is_file():
        raise FileNotFoundError(f"{baseline} does not exist; run `zhenping baselines` or pass --model DIR")
    model = TfidfRidgeBaseline.load(baseline)
    return model.predict(list(texts)), f"tfidf_ridge baseline ({baseline})"


def run(data_dir: str | os.PathLike = "runs/data", model_dir: str | None = None,
        baseline: str | os.PathLike = DEFAULT_BASELINE, streams: dict | None = None,
        out: str | os.PathLike = DEFAULT_OUT, batch: int = BATCH, write_calibration: bool = False,
        calibration_path: str | os.PathLike = CALIBRATION_FILE, corpora: str | None = None,
        cache_path: str | os.PathLike | None = DEFAULT_CACHE, bootstrap: int = BOOTSTRAP,
        echo: Callable[[str], None] = print) -> dict:
    """Stream, fit, measure and write the results (see the module docstring).

    Streamed counts are kept in ``cache_path`` (``None``: no cache) and reused
    while the file, its gold rows and the window settings are unchanged, so a
    rerun with another model does not stream again.
    """
    from zhenping.training.corpora import CORPORA, corpora_root
    from zhenping.training.prepare import load_split, read_manifest, versions

    if batch <= 0:
        raise ValueError(f"batch must be > 0, got {batch}")
    streams = DEFAULT_STREAMS if streams is None else streams
    splits = {s: load_split(data_dir, s) for s in ("validation", "test")}
    root = corpora_root(corpora)
    window = WindowConfig()

    # Gold rows of the streamed files: (corpus, file) -> {row: (split, index in split)}
    wanted: dict[tuple[str, str], dict[int, tuple[str, int]]] = {}
    for split, data in splits.items():
        for k, rid in enumerate(data.ids):
            name, _, row = rid.rpartition(":")
            corpus, _, fname = name.partition("/")
            if corpus in streams and (streams[corpus] is None or fname in streams[corpus]) and row.isdigit():
                wanted.setdefault((corpus, fname), {})[int(row)] = (split, k)

    found = {s: {"labelled": {}, "arrivals": {}, "whole_file": {}} for s in splits}
    cache_path = Path(cache_path) if cache_path is not None else None
    stream_cache = {}
    if cache_path is not None and cache_path.is_file():
        stream_cache = json.loads(cache_path.read_text(encoding="utf-8"))
    files = []
    for corpus, names in streams.items():
        cache: dict[str, str] = {}
        for cf in CORPORA[corpus].files:
            if names is not None and cf.name not in names:
                continue
            path = root / corpus / cf.name
            if not path.is_file():
                raise FileNotFoundError(f"{path} does not exist; stage the corpus or pass --corpora DIR")
            gold = wanted.get((corpus, cf.name), {})
            key = _stream_key(path, set(gold), window, batch)
            hit = stream_cache.get(key["file"])
            if hit is not None and hit["key"] == key:
                result = FileStream.from_json(hit["stream"])
                echo(f"reused the streamed counts of {corpus}/{cf.name} from {cache_path}")
            else:
                result = stream_file(path, cf, set(gold), window, batch, cache)
                stream_cache[key["file"]] = {"key": key, "stream": result.to_json()}
                if cache_path is not None:
                    cache_path.parent.mkdir(parents=True, exist_ok=True)
                    cache_path.write_text(json.dumps(stream_cache) + "\n", encoding="utf-8")
            files.append({"corpus": corpus, **result.summary()})
            echo(f"streamed {corpus}/{cf.name}: {result.rows:,} rows, {result.with_copies_at_arrival:,} with copies "
                 f"at arrival, {len(gold)} gold rows ({result.seconds:.0f} s)")
            for row, (split, k) in gold.items():
                if row in result.labelled:
                    found[split]["labelled"][k] = [result.labelled[row]]
                    found[split]["arrivals"][k] = result.arrivals[row]
                    found[split]["whole_file"][k] = [result.whole_file[row]]

    preds, model_name = {}, None
    for split, data in splits.items():
        preds[split], model_name = _model_scores(data.texts, model_dir, Path(baseline))
    t_col, w_col = AXES.index("template"), AXES.index("warmth")
    views = {s: {name: build_view(len(splits[s]), found[s][name]) for name in found[s]} for s in splits}
    streamed = {s: np.isin(np.arange(len(splits[s])), list(found[s]["labelled"])) for s in splits}

    # Fusion, fitted on the validation texts of the streamed files, at each of their arrivals.
    v = splits["validation"]
    fit_view = views["validation"]["arrivals"].take(streamed["validation"])
    fusion, mse = fit_fusion(preds["validation"][fit_view.row, t_col], fit_view.exact, fit_view.near,
                             v.scores[fit_view.row, t_col], fit_view.weight)
    echo(f"fusion fitted on {int(streamed['validation'].sum())} validation texts: exact_weight "
         f"{fusion.exact_weight}, near_weight {fusion.near_weight} (MSE {mse:.4f})")
    from sklearn.linear_model import LogisticRegression

    logistic = LogisticRegression(C=1.0).fit(
        _logit_features(preds["validation"][fit_view.row, t_col], fit_view.exact, fit_view.near),
        v.scores[fit_view.row, t_col] >= TEMPLATE_POSITIVE, sample_weight=fit_view.weight)

    # Fusion on test, per source group and view.
    te = splits["test"]
    sources = np.array(te.sources, dtype=object)
    groups = {"all streamed": streamed["test"]}
    for corpus in streams:
        groups[corpus] = streamed["test"] & (sources == corpus)
    fusion_table = {}
    for group, mask in groups.items():
        entry = {"texts": int(mask.sum())}
        base = views["test"]["labelled"].take(mask)
        entry["model"] = template_metrics(te.scores[base.row, t_col], preds["test"][base.row, t_col])
        for name in ("labelled", "arrivals", "whole_file"):
            view = views["test"][name].take(mask)
            m = preds["test"][view.row, t_col]
            entry[f"fused_{name}"] = template_metrics(
                te.scores[view.row, t_col], fusion.fuse_many(m, view.exact, view.near), view.weight)
            entry[f"with_copies_{name}"] = round(float(view.weight[(view.exact + view.near) > 0].sum()), 1)
        view = views["test"]["arrivals"].take(mask)
        entry["logistic_arrivals"] = template_metrics(
            te.scores[view.row, t_col],
            logistic.predict_proba(_logit_features(preds["test"][view.row, t_col], view.exact, view.near))[:, 1]
            if len(view.row) else np.zeros(0), view.weight)
        fusion_table[group] = entry
    fusion_table["all streamed"]["bootstrap"] = bootstrap_change(
        views["test"]["arrivals"].take(streamed["test"]), te.scores[:, t_col], preds["test"][:, t_col], fusion,
        n=bootstrap)

    # Do copies mean template? Labelled texts of the streamed files (both splits), by copies in their file.
    signal = {}
    gold_all = np.concatenate([splits[s].scores[streamed[s], t_col] for s in splits])
    has = np.concatenate([np.array([sum(found[s]["whole_file"][k][0]) > 0 for k in np.flatnonzero(streamed[s])],
                                   dtype=bool) for s in splits])
    for name, mask in (("with_copies", has), ("without_copies", ~has)):
        signal[name] = {"texts": int(mask.sum()),
                        "mean_gold_template_level": round(float(gold_all[mask].mean() * LEVELS), 3)
                        if mask.any() else None,
                        "share_template_ge2": round(float((gold_all[mask] >= TEMPLATE_POSITIVE).mean()), 3)
                        if mask.any() else None}

    # Actions: thresholds on validation (every labelled text, at its arrivals), measured on test.
    def action_inputs(split):
        view = views[split]["arrivals"]
        data = splits[split]
        tmpl = fusion.fuse_many(preds[split][view.row, t_col], view.exact, view.near)
        host = 1 - preds[split][view.row, w_col]
        return (view, tmpl, host, data.scores[view.row, t_col] >= TEMPLATE_POSITIVE,
                data.scores[view.row, w_col] <= HOSTILE_MAX)

    view, tmpl, host, gold_tmpl, gold_host = action_inputs("validation")
    fold_t, review_t = choose_thresholds(tmpl, gold_tmpl, view.weight)
    fold_h, review_h = choose_thresholds(host, gold_host, view.weight)
    thresholds = {"fold_template": fold_t, "review_template": review_t, "fold_hostile": fold_h,
                  "review_hostile": review_h}
    echo("action thresholds from validation: " + ", ".join(f"{k} {x:g}" for k, x in thresholds.items()))
    actions = {}
    for split in ("validation", "test"):
        view, tmpl, host, gold_tmpl, gold_host = action_inputs(split)
        w = view.weight
        fold = (tmpl >= fold_t) | (host >= fold_h)
        review = ~fold & ((tmpl >= review_t) | (host >= review_h))
        actions[split] = {
            "texts": len(splits[split]),
            "counts": {"pass": round(float(w[~fold & ~review].sum()), 1), "review": round(float(w[review].sum()), 1),
                       "fold": round(float(w[fold].sum()), 1)},
            "fold": {"any": precision_recall(fold, gold_tmpl | gold_host, w),
                     "template rule vs template≥2": precision_recall(tmpl >= fold_t, gold_tmpl, w),
                     "hostile rule vs hostile": precision_recall(host >= fold_h, gold_host, w)},
            "review or fold": {"any": precision_recall(fold | review, gold_tmpl | gold_host, w),
                               "template rule vs template≥2": precision_recall(tmpl >= review_t, gold_tmpl, w),
                               "hostile rule vs hostile": precision_recall(host >= review_h, gold_host, w)},
        }

    manifest = read_manifest(data_dir)
    results = {
        "model": model_name,
        "data": {"dir": str(data_dir), "label_files": manifest.get("label_files", {}),
                 "rows": {s: len(d) for s, d in splits.items()}},
        "window": {"max_size": window.max_size, "ttl_seconds": window.ttl_seconds, "threshold": window.threshold,
                   "num_perm": window.num_perm, "shingle": window.shingle, "batch": batch,
                   "max_arrivals": MAX_ARRIVALS},
        "streams": files,
        "fusion": {"exact_weight": fusion.exact_weight, "near_weight": fusion.near_weight,
                   "fitted_on_texts": int(streamed["validation"].sum()), "validation_mse": round(mse, 5),
                   "logistic": {"coef": [round(float(c), 4) for c in logistic.coef_[0]],
                                "intercept": round(float(logistic.intercept_[0]), 4)}},
        "copies_and_gold_template": signal,
        "fusion_test": fusion_table,
        "actions": {"thresholds": thresholds,
                    "rules": {"fold_precision": FOLD_PRECISION, "review_recall": REVIEW_RECALL,
                              "review_precision": REVIEW_PRECISION, "min_flagged": MIN_FLAGGED},
                    **actions},
        "versions": versions(),
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "campaign.json").write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (out / "campaign.md").write_text(markdown(results), encoding="utf-8")
    echo(f"wrote {out / 'campaign.json'}, {out / 'campaign.md'}")
    if write_calibration:
        # Only the fusion weights: the campaign model, the action thresholds and the likes model are
        # fitted by training/campaign_bench.py, on ground truth that knows which copies are campaigns.
        target = Path(calibration_path)
        doc = json.loads((target if target.is_file() else Path(CALIBRATION_FILE)).read_text(encoding="utf-8"))
        doc["fusion"] = {"exact_weight": fusion.exact_weight, "near_weight": fusion.near_weight}
        doc.setdefault("fitted", {})["fusion"] = {"by": "training/campaign_eval.py", "model": model_name,
                                                  "label_files": manifest.get("label_files", {}),
                                                  "results": "training/results/campaign.md"}
        target.write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        echo(f"wrote {calibration_path}")
    return results


# ------------------------------------------------------------------ report


def _f(x) -> str:
    return "–" if x is None else f"{x:.3f}"


def _pr(row: dict) -> str:
    return f"{_f(row['precision'])} | {_f(row['recall'])} | {row['flagged']:,.1f}"


def markdown(r: dict) -> str:
    w = r["window"]
    fu = r["fusion"]
    lines = [
        "# Copy-paste campaigns: duplicate evidence, fusion and actions",
        "",
        "Generated by `python -m zhenping.training.campaign_eval`. Model score: "
        f"**{r['model']}**. Gold labels: " + ", ".join(f"`{k}`" for k in r["data"]["label_files"]) + "; prepared rows "
        + ", ".join(f"{s} {n:,}" for s, n in r["data"]["rows"].items()) + ".",
        "",
        "Each corpus file below was streamed through its own duplicate window (posting order where the file has "
        f"a time column, file order otherwise) in requests of {w['batch']} comments. The window is the "
        f"service's default: {w['max_size']:,} comments, time-to-live {w['ttl_seconds']:g} s, near-duplicate "
        f"threshold {w['threshold']} (estimated Jaccard of character {w['shingle']}-gram sets, "
        f"{w['num_perm']} MinHash permutations).",
        "",
        "## Streams",
        "",
        "| file | rows | distinct texts | posting order | rows with copies at arrival | clusters with copies | "
        "largest cluster | gold rows (val+test) | seconds |",
        "|---|---:|---:|:-:|---:|---:|---:|---:|---:|",
    ]
    for s in r["streams"]:
        lines.append(f"| {s['corpus']}/{s['file']} | {s['rows']:,} | {s['distinct_texts']:,} | "
                     f"{'yes' if s['posting_order'] else 'no'} | {s['rows_with_copies_at_arrival']:,} | "
                     f"{s['clusters_with_copies']:,} | {s['largest_cluster']:,} | {s['gold_rows']} | {s['seconds']} |")
    sig = r["copies_and_gold_template"]
    lines += ["", "## Do copies mean template?", "",
              "Labelled texts of the streamed files (validation and test), by whether other copies of them are in "
              "their file:", "",
              "| texts | n | mean gold template level | share template ≥ 2 |", "|---|---:|---:|---:|"]
    for key, label in (("with_copies", "with copies"), ("without_copies", "without copies")):
        lines.append(f"| {label} | {sig[key]['texts']} | {_f(sig[key]['mean_gold_template_level'])} | "
                     f"{_f(sig[key]['share_template_ge2'])} |")
    lines += ["", "## Fusion", "",
              "`template_fused = 1 - (1 - m) · (1 + exact)^-a · (1 + near)^-b`, with `m` the model's template "
              "score. The labelled rows were mostly sampled as the first copy of their text, which sees no copies at "
              "arrival; but labels are judged on text, so every copy of a labelled text carries its label. Three "
              "views of the same labelled texts:", "",
              "- **labelled row**: the counts when the labelled row itself arrived;",
              f"- **every arrival**: the counts at each arrival of the labelled text (up to {w['max_arrivals']}: "
              "first, last, evenly spaced between), each text weighing 1 in all (what the service outputs over the "
              "stream);",
              "- **whole file**: every other copy in the file (what a later re-check sees).", "",
              f"Fitted on the {fu['fitted_on_texts']} validation texts of the streamed files, every-arrival view, "
              f"by weighted least squares against the gold template score: **a = {fu['exact_weight']:g}, "
              f"b = {fu['near_weight']:g}** (validation MSE {fu['validation_mse']}). The logistic row is "
              "P(template ≥ 2) from `[logit(m), log1p(exact), log1p(near)]` fitted on the same rows "
              f"(coefficients {fu['logistic']['coef']}, intercept {fu['logistic']['intercept']}); it ranks but "
              "does not keep the level scale, so the service ships the power rule.", "",
              "Test split, labelled texts of the streamed files (texts with copies: in the view's weighting):", "",
              "| texts | score | n | texts with copies | template ρ | template≥2 AUROC | template≥2 AP |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for group, t in r["fusion_test"].items():
        rows = [("model", "model alone", "–"),
                ("fused_labelled", "fused, labelled row", t["with_copies_labelled"]),
                ("fused_arrivals", "fused, every arrival", t["with_copies_arrivals"]),
                ("fused_whole_file", "fused, whole file", t["with_copies_whole_file"]),
                ("logistic_arrivals", "logistic, every arrival", t["with_copies_arrivals"])]
        for key, label, copies in rows:
            m = t[key]
            lines.append(f"| {group} | {label} | {t['texts']} | {copies} | {_f(m['spearman'])} | "
                         f"{_f(m['template_ge2']['auroc'])} | {_f(m['template_ge2']['average_precision'])} |")
    boot = r["fusion_test"]["all streamed"].get("bootstrap")
    if boot:
        lines += ["", f"Change from the model alone to the fused score, every arrival, all streamed test texts "
                  f"({boot['resamples']} bootstrap resamples of texts, 95% interval): template ρ "
                  f"{boot['spearman']['mean']:+.3f} [{boot['spearman']['ci95'][0]:+.3f}, "
                  f"{boot['spearman']['ci95'][1]:+.3f}], template≥2 AUROC {boot['auroc']['mean']:+.3f} "
                  f"[{boot['auroc']['ci95'][0]:+.3f}, {boot['auroc']['ci95'][1]:+.3f}]."]
    a = r["actions"]
    th = a["thresholds"]
    rules = a["rules"]
    lines += ["", "## Actions", "",
              "A comment is folded when its fused template score reaches `fold_template` or its hostility "
              "(1 − warmth) reaches `fold_hostile`; sent to review when either reaches the review threshold; "
              "passed otherwise. Thresholds chosen on the validation split (every labelled text, at its arrivals "
              f"where its file was streamed): fold at the lowest threshold with precision ≥ {rules['fold_precision']}"
              f", review at the highest with recall ≥ {rules['review_recall']} while precision ≥ "
              f"{rules['review_precision']} (the best recall at that precision when both cannot hold); a threshold "
              f"must flag at least {rules['min_flagged']} texts. A threshold above 1 means none reached the target: "
              "that rule is off.", "",
              f"**fold_template {th['fold_template']:g}, review_template {th['review_template']:g}, "
              f"fold_hostile {th['fold_hostile']:g}, review_hostile {th['review_hostile']:g}.**", ""]
    for split in ("test", "validation"):
        s = a[split]
        c = s["counts"]
        lines += [f"{split.capitalize()} split ({s['texts']:,} labelled texts): pass {c['pass']:,}, review "
                  f"{c['review']:,}, fold {c['fold']:,}.", "",
                  "| action | against | precision | recall | texts flagged |", "|---|---|---:|---:|---:|"]
        for action in ("fold", "review or fold"):
            for against, row in s[action].items():
                label = "template≥2 or hostile" if against == "any" else against
                lines.append(f"| {action} | {label} | {_pr(row)} |")
        lines.append("")
    lines += ["Positives: template ≥ 2 is gold template level 2-3; hostile is gold warmth level 0. Counts are "
              "labelled texts; a streamed text's weight is shared by its measured arrivals.", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:  # pragma: no cover - thin CLI
    parser = argparse.ArgumentParser(prog="python -m zhenping.training.campaign_eval", description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="runs/data", help="prepared splits folder (zhenping prepare)")
    parser.add_argument("--model", default=None, help="exported scorer directory (default: the TF-IDF baseline)")
    parser.add_argument("--baseline", default=str(DEFAULT_BASELINE), help="TF-IDF baseline file (zhenping baselines)")
    parser.add_argument("--corpora", default=None, help="corpora folder (default: $ZHENPING_CORPORA or ../shared)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="results folder")
    parser.add_argument("--batch", type=int, default=BATCH, help="comments per simulated request")
    parser.add_argument("--streams", default=None,
                        help="comma-separated corpus or corpus/file names to stream (default: danmaku and the "
                             "NetEase latest-comment pools)")
    parser.add_argument("--cache", default=str(DEFAULT_CACHE),
                        help="file of streamed counts reused by later runs; '' for none")
    parser.add_argument("--write-calibration", action="store_true",
                        help="write the fitted fusion weights and thresholds to model/campaign/calibration.json")
    args = parser.parse_args(argv)
    run(args.data, args.model, args.baseline, streams=parse_streams(args.streams), out=args.out, batch=args.batch,
        write_calibration=args.write_calibration, corpora=args.corpora, cache_path=args.cache or None)


def parse_streams(spec: str | None) -> dict[str, tuple[str, ...] | None] | None:
    """``"bilibili_danmaku_small,netease_music_comments/new_comments.csv.gz"`` -> streams; ``None`` -> default.

    Raises:
        ValueError: an unknown corpus or file, naming it.
    """
    from zhenping.training.corpora import CORPORA, get_file

    if not spec:
        return None
    out: dict[str, list[str] | None] = {}
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        corpus, _, fname = part.partition("/")
        if corpus not in CORPORA:
            raise ValueError(f"unknown corpus {corpus!r} in --streams; known: {sorted(CORPORA)}")
        if fname:
            get_file(corpus, fname)
            if out.get(corpus, []) is not None:
                out.setdefault(corpus, []).append(fname)
        else:
            out[corpus] = None
    return {c: (tuple(f) if f is not None else None) for c, f in out.items()}


if __name__ == "__main__":  # pragma: no cover
    main()
