"""Choose a distillation teacher on the validation split.

A teacher is one scorer or the plain average of several (the comma-separated
``pseudo_teacher`` / ``distill_teacher`` spec of fine-tuning and multi-task
training). Each candidate part scores the validation texts once; every
combination of up to ``--max_parts`` parts is then ranked by mean Spearman ρ:

    python -m zhenping.training.teacher_eval tfidf=runs/baselines/tfidf_ridge.joblib \\
        v3=runs/model_v3 v3d=runs/model_d --out training/results/teachers

writes ``teachers.md`` and ``teachers.json`` with the spec of the best
combination, ready to paste into a fine-tuning config. The choice reads validation
only. ``--test_after`` then scores the chosen teacher and each of its parts once on
the test split, for the record beside the student's test figures (shown, never
used to choose).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

from zhenping.model.axes import AXES
from zhenping.model.normalize import normalize_text
from zhenping.training.config import split_named


def part_scores(parts: dict[str, str], texts: list[str], max_length: int | None = None) -> dict[str, np.ndarray]:
    """Each named part's scores of ``texts``, shape (n, axes); scorer folders read
    ``max_length`` tokens per text (None: each export's own), as they do as the
    teacher of a fine-tune with that ``max_length``."""
    from zhenping.training.multitask import teacher_scores

    return {name: teacher_scores(spec, texts, max_length=max_length) for name, spec in parts.items()}


def rank_combinations(scores: dict[str, np.ndarray], gold: np.ndarray, max_parts: int) -> list[dict]:
    """Every average of 1..``max_parts`` parts with its Spearman ρ per axis, best first."""
    from zhenping.training.finetune import spearman_metrics

    names = list(scores)
    rows = []
    for k in range(1, min(max_parts, len(names)) + 1):
        for combo in itertools.combinations(names, k):
            avg = np.mean([scores[n] for n in combo], axis=0)
            m = spearman_metrics(avg, gold)
            rows.append({"parts": list(combo), **m})
    rows.sort(key=lambda r: -r["mean_spearman"])
    return rows


def split_texts_and_gold(data_dir: str, split: str) -> tuple[list[str], np.ndarray]:
    """A prepared split's normalised texts and gold scores, shape (n, axes)."""
    from zhenping.training.finetune import read_split

    rows = read_split(data_dir, split)
    return [normalize_text(r["text"]) for r in rows], np.asarray([[r[a] for a in AXES] for r in rows], dtype=np.float64)


def figures_on_test(chosen: list[str], parts: dict[str, str], data_dir: str, max_length: int | None) -> dict:
    """The chosen teacher (the average of ``chosen``) and each of its parts on the test
    split, as :func:`zhenping.training.evaluate.evaluate` blocks, named as in the report."""
    from zhenping.training.evaluate import evaluate

    texts, gold = split_texts_and_gold(data_dir, "test")
    scores = part_scores({n: parts[n] for n in chosen}, texts, max_length)
    named = {"teacher: " + " + ".join(chosen): np.mean([scores[n] for n in chosen], axis=0)}
    if len(chosen) > 1:
        named.update(scores)
    return {name: evaluate(gold, np.clip(s, 0.0, 1.0)) for name, s in named.items()}


def write_report(rows: list[dict], parts: dict[str, str], split: str, n: int, out: Path, top: int = 20,
                 max_length: int | None = None, test: dict | None = None) -> None:
    from zhenping.training.evaluate import comparison_table, summary_row

    best = rows[0]
    spec = ",".join(parts[p] for p in best["parts"])
    payload = {"split": split, "rows": n, "max_length": max_length, "parts": parts, "best": {**best, "spec": spec},
               "ranking": rows}
    if test:
        payload["test_after_choice"] = {name: {"n": m["n"], **summary_row(m)} for name, m in test.items()}
    out.with_suffix(".json").write_text(json.dumps(payload, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    lines = [f"# Teacher choice ({split} split, {n:,} comments)", "",
             "Candidates: " + ", ".join(f"`{k}` = `{v}`" for k, v in parts.items())
             + (f"; scorer folders read {max_length} tokens per comment" if max_length else ""), "",
             "| teacher (average of) | warmth ρ | substance ρ | template ρ | mean ρ |",
             "|---|---|---|---|---|"]
    for i, r in enumerate(rows[:top]):
        mark = " **(chosen)**" if i == 0 else ""
        lines.append(f"| {' + '.join(r['parts'])}{mark} | " + " | ".join(
            f"{r['spearman_' + a]:.4f}" for a in AXES) + f" | {r['mean_spearman']:.4f} |")
    lines += ["", f"Chosen spec: `{spec}`", ""]
    if test:
        lines += ["## The chosen teacher on the test split", "",
                  f"Scored once after the choice on {split}, for the record beside the student's test figures; "
                  "not used to choose (scores clipped to [0, 1]).", "", comparison_table(test), ""]
    out.with_suffix(".md").write_text("\n".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m zhenping.training.teacher_eval", description=__doc__.split("\n\n")[0])
    ap.add_argument("parts", nargs="+", metavar="NAME=SPEC",
                    help="a candidate part: a fitted baseline (.joblib), a scorer folder or a GPU teacher's scores")
    ap.add_argument("--data_dir", default="runs/data")
    ap.add_argument("--split", default="validation", choices=["validation", "train"],
                    help="the split to rank on (never test)")
    ap.add_argument("--max_parts", type=int, default=3)
    ap.add_argument("--max_length", type=int, default=None,
                    help="tokens a scorer folder reads per comment, as the teacher of a fine-tune with this "
                         "max_length (default: each export's own)")
    ap.add_argument("--out", default="training/results/teachers", help="output stem (.md and .json)")
    ap.add_argument("--test_after", action="store_true",
                    help="after the choice, score the chosen teacher and its parts once on the test split "
                         "and add their figures to the report (never used to choose)")
    args = ap.parse_args(argv)
    parts = {}
    for item in args.parts:
        try:
            name, spec = split_named(item, "NAME=SPEC")
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if "," in spec:
            print(f"error: {item!r}: give each part on its own; combinations are formed here", file=sys.stderr)
            return 2
        if not Path(spec).exists():
            print(f"error: {spec} not found", file=sys.stderr)
            return 2
        parts[name] = spec
    if args.max_length is not None and args.max_length < 2:
        print(f"error: --max_length must be at least 2, got {args.max_length}", file=sys.stderr)
        return 2
    try:
        texts, gold = split_texts_and_gold(args.data_dir, args.split)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        scores = part_scores(parts, texts, args.max_length)
    except ValueError as exc:  # a max_length beyond a model's positions
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ranking = rank_combinations(scores, gold, args.max_parts)
    test = None
    if args.test_after:
        try:
            test = figures_on_test(ranking[0]["parts"], parts, args.data_dir, args.max_length)
        except FileNotFoundError as exc:
            print(f"error: --test_after: {exc}", file=sys.stderr)
            return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_report(ranking, parts, args.split, len(texts), out, max_length=args.max_length, test=test)
    best = ranking[0]
    print(f"best teacher on {args.split}: {' + '.join(best['parts'])} mean ρ {best['mean_spearman']:.4f}")
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
