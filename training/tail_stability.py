"""How far one trailing mark moves a model's scores, on held-out comments.

The guidelines judge a comment by what it says: ``房间很干净,早餐种类也多`` and the same
text with ``😊`` or ``。`` after it have the same levels. A model that moves for such a
mark gives a ranking that a poster can shift by adding an emoji. This evaluation
appends marks to every comment of a prepared split and reports, per axis, the mean
absolute change of the score, the share of comments whose score moves by more than
0.1 and the share whose level changes (read through the model's own cut points).

Two sets of marks: ``seen`` are those fine-tuning may add with ``augment_tails``
(:data:`zhenping.training.finetune.TAILS`); ``unseen`` are other common marks, none of
them in that list, which show whether the model learnt to leave marks alone or
only the listed ones::

    python -m zhenping.training.tail_stability v7c=runs/model_v7c v8t=runs/model_v8t \\
        --data runs/data --split validation --out training/results/tail_stability
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np

from zhenping.model.axes import AXES
from zhenping.training.config import split_named
from zhenping.training.finetune import TAILS

UNSEEN_TAILS = ("!?", "~~~", "。。", "[赞]", "[哈哈]", "[强]", "[拜]", "[微笑]", "🎵", "👌", "😀", "✨", "🌹", "💪", "😁", "🤭")
MOVE = 0.1  # a score change larger than this counts as a move


def marked_texts(texts: list[str], tails: tuple[str, ...], seed: int) -> list[str]:
    """Each text with one mark of ``tails`` appended, drawn with a seeded generator."""
    rng = random.Random(seed)
    return [t.rstrip() + rng.choice(tails) for t in texts]


def stability(scorer, texts: list[str], tails: tuple[str, ...], seed: int = 0) -> dict:
    """Per axis: mean |change|, share moved by more than :data:`MOVE`, share whose level changes."""
    base = scorer.score(texts)
    marked = scorer.score(marked_texts(texts, tails, seed))
    out = {}
    for a in AXES:
        b = np.array([getattr(s, a) for s in base])
        m = np.array([getattr(s, a) for s in marked])
        lb = np.array([s.levels[a] for s in base])
        lm = np.array([s.levels[a] for s in marked])
        out[a] = {"mean_abs_change": round(float(np.abs(m - b).mean()), 4),
                  "moved": round(float((np.abs(m - b) > MOVE).mean()), 4),
                  "level_changed": round(float((lb != lm).mean()), 4)}
    return out


def evaluate(models: dict[str, str], data_dir: str, split: str = "validation", limit: int = 0) -> dict:
    """Stability of each model on ``split`` of a prepared folder, for seen and unseen marks."""
    from zhenping.model.scorer import Scorer

    path = Path(data_dir) / f"{split}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `zhenping prepare` first")
    texts = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if limit:
        texts = texts[:limit]
    results = {"split": split, "comments": len(texts), "move_threshold": MOVE,
               "seen_tails": list(TAILS), "unseen_tails": list(UNSEEN_TAILS), "models": {}}
    for name, folder in models.items():
        scorer = Scorer.from_pretrained(folder)
        results["models"][name] = {"model": folder,
                                   "seen": stability(scorer, texts, TAILS, seed=1),
                                   "unseen": stability(scorer, texts, UNSEEN_TAILS, seed=2)}
        print(f"tail stability: {name} done", file=sys.stderr)
    return results


def to_markdown(results: dict) -> str:
    lines = [f"# One trailing mark: how far scores move ({results['split']} split, {results['comments']:,} comments)",
             "",
             "Each comment scored as it is and with one mark appended. Per axis: mean |score change|, "
             f"share of comments moved by more than {results['move_threshold']}, share whose level changed. "
             "`seen`: marks fine-tuning may add (`augment_tails`); `unseen`: other marks, none of them in that list.",
             "",
             "| model | marks | " + " | ".join(f"{a} mean / moved / level" for a in AXES) + " |",
             "|---|---|" + "---:|" * len(AXES)]
    for name, r in results["models"].items():
        for kind in ("seen", "unseen"):
            cells = [f"{r[kind][a]['mean_abs_change']:.3f} / {r[kind][a]['moved']:.1%} / {r[kind][a]['level_changed']:.1%}"
                     for a in AXES]
            lines.append(f"| {name} | {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", metavar="NAME=FOLDER", help="exported model folders")
    ap.add_argument("--data", required=True, help="prepared data folder (from `zhenping prepare`)")
    ap.add_argument("--split", default="validation", choices=["validation", "test"])
    ap.add_argument("--limit", type=int, default=0, help="first N comments only (0: all)")
    ap.add_argument("--out", help="write OUT.md and OUT.json")
    args = ap.parse_args(argv)
    models = {}
    for spec in args.models:
        try:
            name, folder = split_named(spec, "NAME=FOLDER")
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if not (Path(folder) / "config.json").is_file():
            print(f"error: {folder} is not an exported model folder (no config.json)", file=sys.stderr)
            return 2
        models[name] = folder
    try:
        results = evaluate(models, args.data, args.split, args.limit)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    md = to_markdown(results)
    print(md)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out + ".md").write_text(md, encoding="utf-8")
        Path(args.out + ".json").write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
