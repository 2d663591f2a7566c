"""优质互动榜 on real like counts: how `order=quality_engagement` reorders NetEase hot comments.

Scores the NetEase Cloud Music hot comments (``netease_music_comments/
hot_comments.csv.gz``: real like counts and posting times), streams them
through campaign detection in posting order (copies across songs form clusters),
and compares three orderings of the same comments:

* **likes**: like count alone (what a plain 热评 list shows);
* **quality**: weighted quality (``/v1/rank``'s default order);
* **quality_engagement**: quality + like_weight × log(1 + likes), the likes
  discounted on templated and campaign comments and cut to their expectation
  when ``suspicious_likes`` is set (``/v1/rank?order=quality_engagement``).

Prints rank correlations, top-k overlaps, how many of the most-liked comments
lose their place and why (templated, campaign, suspicious likes), and the first
few comments of each ordering. The corpus text stays on your machine.

Usage:
    python examples/rank_by_engagement.py --limit 3000
    python examples/rank_by_engagement.py --model runs/store --top 10
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CORPUS, FILE = "netease_music_comments", "hot_comments.csv.gz"
BATCH = 32


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpora", default=None, help="corpora folder (default: $ZHENPING_CORPORA or ../shared/data/corpora)")
    p.add_argument("--model", default=None, help="exported scorer folder (default: the shipped model/default)")
    p.add_argument("--limit", type=int, default=3000, help="comments read, in posting order (0: all)")
    p.add_argument("--top", type=int, default=5, help="comments shown from the top of each ordering")
    p.add_argument("--ks", default="10,50,100,500", help="top-k sizes for the overlaps")
    return p.parse_args(argv)


def read_comments(corpora: str | None, limit: int) -> list[tuple[str, int, float]]:
    """``(text, likes, posted_at seconds)`` in posting order, skipping empty texts and unreadable rows."""
    from zhenping.training.corpora import corpora_root, get_file, iter_rows, row_text

    corpus, cf = get_file(CORPUS, FILE)
    path = corpora_root(corpora) / corpus.name / cf.name
    if not path.is_file():
        raise SystemExit(f"{path} not found; fetch it with `zhenping corpora download` (corpus {CORPUS})")
    rows = []
    for _, rec in iter_rows(path, cf):
        text = row_text(rec, cf)
        try:
            likes = int(float(rec.get("likedcount") or ""))
            posted = float(rec.get("time") or "") / 1000.0
        except ValueError:
            continue
        if text.strip():
            rows.append((text, likes, posted))
    rows.sort(key=lambda r: r[2])
    return rows[-limit:] if limit else rows


def main(argv=None) -> None:
    import numpy as np
    from scipy.stats import spearmanr

    from zhenping.model.campaign import CampaignConfig, CampaignDetector, CampaignInput
    from zhenping.model.campaign.likes import engagement, rank_by_engagement
    from zhenping.model.normalize import normalize_text
    from zhenping.model.ranking import DEFAULT_WEIGHTS, quality
    from zhenping.model.scorer import Scorer

    args = parse_args(argv)
    rows = read_comments(args.corpora, args.limit)
    model_dir = args.model or str(ROOT / "model" / "default")
    scorer = Scorer.from_pretrained(model_dir, backend="onnx", fallback_to_torch=True)
    texts = [normalize_text(t) for t, _, _ in rows]
    scores = scorer.score_normalized(texts, batch_size=64)
    config = CampaignConfig()
    detector = CampaignDetector.build(config)
    crawl = max(p for _, _, p in rows)  # the file's newest comment: about when the likes were counted
    results = []
    for start in range(0, len(rows), BATCH):
        chunk = rows[start:start + BATCH]
        inputs = [CampaignInput(texts[start + k], start + k, None, likes, posted) for k, (_, likes, posted) in
                  enumerate(chunk)]
        results += detector.process(inputs, scores[start:start + BATCH], now=max(crawl, chunk[-1][2])).results
    n = len(rows)
    likes = np.array([r[1] for r in rows], dtype=float)
    items = [{"warmth": s.warmth, "substance": s.substance, "template": s.template, "template_fused": r.template_fused}
             for s, r in zip(scores, results)]
    qualities = [quality(i, DEFAULT_WEIGHTS) for i in items]
    engaged = [engagement(int(likes[k]), results[k].expected_likes, results[k].suspicious_likes,
                          results[k].template_fused, results[k].campaign) for k in range(n)]
    by_likes = sorted(range(n), key=lambda k: (-likes[k], k))
    by_quality = sorted(range(n), key=lambda k: (-qualities[k], k))
    by_engagement = [k for k, _ in rank_by_engagement(items, qualities, engaged, config.rank_like_weight)]
    place = {k: p for p, k in enumerate(by_engagement)}

    print(f"\n{n:,} NetEase hot comments, scored with {scorer.model_id}@{scorer.model_version}; "
          f"like_weight {config.rank_like_weight:g}")
    flagged = [k for k in range(n) if results[k].suspicious_likes]
    folded = [k for k in range(n) if results[k].action == "fold"]
    campaigns = [k for k in range(n) if results[k].campaign >= config.review_campaign]
    print(f"suspicious_likes: {len(flagged):,} ({len(flagged) / n:.1%}); campaign score ≥ review threshold: "
          f"{len(campaigns):,}; folded: {len(folded):,}")
    order_engagement = np.empty(n)
    order_engagement[by_engagement] = np.arange(n)
    print(f"Spearman ρ, likes vs quality: {spearmanr(likes, qualities).statistic:+.3f}; likes vs the "
          f"quality_engagement order: {spearmanr(likes, -order_engagement).statistic:+.3f}")
    for k in (int(x) for x in args.ks.split(",")):
        if 0 < k <= n:
            top = set(by_likes[:k])
            print(f"  top {k:<4}: most-liked also in quality_engagement top-{k}: "
                  f"{len(top & set(by_engagement[:k])) / k:6.1%}; in quality top-{k}: "
                  f"{len(top & set(by_quality[:k])) / k:6.1%}")
    k = min(100, n)
    dropped = [i for i in by_likes[:k] if place[i] >= k]
    reasons = {"suspicious likes": sum(bool(results[i].suspicious_likes) for i in dropped),
               "campaign": sum(results[i].campaign >= config.review_campaign for i in dropped),
               "templated (fused ≥ 0.67)": sum(results[i].template_fused >= 2 / 3 for i in dropped)}
    print(f"of the {k} most-liked, {len(dropped)} leave the quality_engagement top {k}: "
          + ", ".join(f"{name} {c}" for name, c in reasons.items()))

    def show(title: str, order: list[int]) -> None:
        print(f"\n{title}")
        for p, i in enumerate(order[: args.top], 1):
            r = results[i]
            text = rows[i][0].replace("\n", " ")
            flags = "".join([" [suspicious likes]" if r.suspicious_likes else "",
                             f" [campaign {r.campaign:.2f}]" if r.campaign >= config.review_campaign else ""])
            print(f"  {p}. likes {int(likes[i]):>7,}  quality {qualities[i]:+.2f}  engagement {engaged[i]:.2f}"
                  f"{flags}  {text[:50]}{'…' if len(text) > 50 else ''}")

    show("most liked:", by_likes)
    show("优质互动榜 (quality_engagement):", by_engagement)
    if not math.isfinite(sum(qualities)):
        raise SystemExit("non-finite quality")


if __name__ == "__main__":
    main()
