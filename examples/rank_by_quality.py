"""Likes against quality: how a like-count ordering of comments compares with zhenping's.

Scores the NetEase Cloud Music hot comments (``netease_music_comments/
hot_comments.csv.gz``, which carries each comment's ``likedcount``) with
``zhenping score-dataset``'s local engine, orders them twice (by likes, and by
the weighted quality of :mod:`zhenping.model.ranking`: warmth + substance − template,
the copy-aware template score where copies are found) and prints:

* Spearman and Kendall rank correlation between likes and quality, and between
  likes and each axis;
* the overlap of the two top-k lists for several k, beside what chance gives;
* the first few comments of each ordering;

and saves a figure (likes against quality; top-k overlap against k) to the
path given. The corpus text and the figure stay on your machine: do not commit them.

Usage:
    python examples/rank_by_quality.py /tmp/likes_vs_quality.png
    python examples/rank_by_quality.py /tmp/plot.png --model runs/store --limit 3000 --top 5
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CORPUS, FILE = "netease_music_comments", "hot_comments.csv.gz"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("plot", type=Path, help="where to save the figure (.png, .pdf, .svg)")
    p.add_argument("--corpora", default=None, help="corpora folder (default: $ZHENPING_CORPORA or ../shared/data/corpora)")
    p.add_argument("--model", default=None, help="model folder or model store (default: the shipped model/default)")
    p.add_argument("--limit", type=int, default=None, help="score only the first N comments (a quicker check)")
    p.add_argument("--top", type=int, default=5, help="comments shown from the top of each ordering")
    p.add_argument("--ks", default="10,50,100,500,1000", help="top-k sizes for the overlap")
    p.add_argument("--batch-size", type=int, default=64)
    return p.parse_args(argv)


def read_comments(corpora: str | None, limit: int | None) -> tuple[list[str], list[int]]:
    """Texts and like counts of the hot comments, skipping empty texts and unreadable counts."""
    from zhenping.training.corpora import corpora_root, get_file, iter_rows, row_text

    corpus, cf = get_file(CORPUS, FILE)
    path = corpora_root(corpora) / corpus.name / cf.name
    if not path.is_file():
        raise SystemExit(f"{path} not found; fetch it with `zhenping corpora download` (corpus {CORPUS})")
    texts, likes = [], []
    for _, rec in iter_rows(path, cf):
        text = row_text(rec, cf)
        try:
            liked = int(float(rec.get("likedcount") or ""))
        except ValueError:
            continue
        if text.strip():
            texts.append(text)
            likes.append(liked)
        if limit and len(texts) >= limit:
            break
    return texts, likes


def score(texts: list[str], likes: list[int], model: str | None, batch_size: int) -> list[dict]:
    """Rows with the score columns of `zhenping score-dataset` (local engine)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from zhenping.training.score_dataset import score_dataset

    with tempfile.TemporaryDirectory(prefix="zhenping-rank-") as tmp:
        src, dst = Path(tmp) / "in.parquet", Path(tmp) / "out.parquet"
        pq.write_table(pa.table({"text": texts, "likedcount": likes}), src)
        summary = score_dataset(str(src), str(dst), model_dir=model, batch_size=batch_size)
        print(f"scored {summary['rows']:,} comments with {summary['model']} "
              f"({summary['comments_per_second']:,.0f}/s)")
        return pq.read_table(dst).to_pylist()


def overlap(order_a: list[int], order_b: list[int], k: int) -> float:
    """Share of the top-k of one ordering that is also in the top-k of the other."""
    return len(set(order_a[:k]) & set(order_b[:k])) / k


def main(argv=None) -> None:
    import numpy as np
    from scipy.stats import kendalltau, spearmanr

    from zhenping.model.axes import AXES
    from zhenping.model.ranking import DEFAULT_WEIGHTS, rank

    args = parse_args(argv)
    texts, likes = read_comments(args.corpora, args.limit)
    rows = score(texts, likes, args.model, args.batch_size)
    n = len(rows)
    ranked = rank(rows)  # best first; template_fused (copies counted) stands in for template
    quality = np.empty(n)
    for r in ranked:
        quality[r.index] = r.quality
    likes_arr = np.asarray(likes, dtype=float)
    by_likes = sorted(range(n), key=lambda i: (-likes[i], i))
    by_quality = [r.index for r in ranked]

    weights = " ".join(f"{w:+g}·{a}" for a, w in DEFAULT_WEIGHTS.items())
    print(f"\n{n:,} comments; quality = {weights} (template: copy-aware where copies were found)")
    print(f"likes vs quality: Spearman ρ {spearmanr(likes_arr, quality).statistic:+.3f}, "
          f"Kendall τ {kendalltau(likes_arr, quality).statistic:+.3f}")
    for axis in AXES:
        values = np.asarray([r[axis] for r in rows])
        print(f"likes vs {axis:<9}: Spearman ρ {spearmanr(likes_arr, values).statistic:+.3f}")

    ks = [k for k in (int(x) for x in args.ks.split(",")) if 0 < k <= n]
    print("\ntop-k overlap (share of the k most-liked that are also in the k best by quality; chance = k/n):")
    for k in ks:
        print(f"  k={k:<6} {overlap(by_likes, by_quality, k):6.1%}   chance {k / n:6.1%}")

    def show(title: str, order: list[int]) -> None:
        print(f"\n{title}")
        for place, i in enumerate(order[: args.top], 1):
            r = rows[i]
            levels = " ".join(f"{a[0]}{r[f'{a}_level']}" for a in AXES)
            text = r["text"].replace("\n", " ")
            print(f"  {place}. likes {likes[i]:>7,}  quality {quality[i]:+.2f}  [{levels}] "
                  f"{text[:60]}{'…' if len(text) > 60 else ''}")

    show("most liked:", by_likes)
    show("best by quality:", by_quality)
    plot(args.plot, likes_arr, quality, by_likes, by_quality, n)
    print(f"\nfigure saved to {args.plot}")


def plot(path: Path, likes, quality, by_likes, by_quality, n: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from scipy.stats import spearmanr

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    left.scatter(np.log10(likes + 1), quality, s=4, alpha=0.3, linewidths=0)
    left.set_xlabel("log10(likes + 1)")
    left.set_ylabel("quality (warmth + substance − template)")
    left.set_title(f"likes vs quality, Spearman ρ = {spearmanr(likes, quality).statistic:+.3f}", fontsize=10)
    ks = np.unique(np.geomspace(1, n, num=60).astype(int))
    right.plot(ks, [overlap(by_likes, by_quality, int(k)) for k in ks], label="likes vs quality")
    right.plot(ks, ks / n, "--", color="gray", label="chance (k / n)")
    right.set_xscale("log")
    right.set_ylim(0, 1.02)
    right.set_xlabel("k")
    right.set_ylabel("top-k overlap")
    right.set_title("how many of the k most-liked are among the k best", fontsize=10)
    right.legend(fontsize=8)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.14, top=0.9, wspace=0.25)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
