"""A fixed, seeded comment stream for campaign detection, and the detector's answers on it.

The stream exercises every path of :class:`zhenping.model.campaign.CampaignDetector`:
pasted copies and edited near copies of templates (some with ad phrases), exact
repeats, short organic repeats (好听, 666), one-character and empty texts, author
ids (some missing), comment ids seen again with the same text and with an edit,
like counts with and without ``posted_at``, reads without recording, and a
window small and short-lived enough that comments leave by size and by age.

``python -m tests.model.campaign_stream`` rewrites the recorded answers
(``campaign_stream_expected.json.gz``); do that only when a change is meant to
change the detector's answers.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import sys
from pathlib import Path

EXPECTED = Path(__file__).resolve().parent / "campaign_stream_expected.json.gz"

CHARS = "的一是了我不人在他有这个上们来到时大地为子中你说生国年着就那和要她出也得里后自以会家可下而过天去能对小多然于心学么之都好看起发当没成只如事把还用第样道想作种开美总从无情己面最女但现前些所同日手又行意动"
TEMPLATES_FIXED = [
    "兼职日结,手机就能做,加微信abc123,月入过万不是梦",
    "沙发!这首歌让我想起了高三的晚自习,那时候天天单曲循环",
    "好评好评,物流很快,质量不错,推荐购买",
    "在流量焦虑的当下,我们更需要回归内容本身",
]
SHORT = ["好听", "好听!!!", "666", "哈哈哈哈", "武汉加油", "武汉加油!", "顶", "a", "", "。。。"]
EDITS = ("!", "。", "~", "啊", "的", " ", "😂", "[doge]")

# A fixed configuration (not the shipped calibration), so the answers do not move when it is refitted.
CONFIG = {
    "exact_weight": 0.3, "near_weight": 0.15, "fold_template": 0.9, "review_template": 0.7, "fold_hostile": 0.95,
    "review_hostile": 0.8, "fold_campaign": 0.85, "review_campaign": 0.6,
    "copy_fold_copies": 0,  # the copy rule off: the answers were recorded before it (tests/model/test_campaign_signal.py)
    "campaign_weights": (("log_size", 0.8), ("log_authors", 0.3), ("author_share", -1.5), ("log_rate", 0.4),
                         ("template_mean", 0.5), ("variant_share", 1.0), ("author_overlap", -1.0),
                         ("log_length", 0.6), ("template_length", 0.2), ("lexicon_ad", 1.5), ("lexicon_ai", 0.7)),
    "campaign_intercept": -4.0, "campaign_min_size": 3, "likes_intercept": 0.1, "likes_quality": 0.5,
    "likes_log_age": 0.1, "likes_campaign": -2.0, "likes_margin": 2.5, "likes_min": 10,
    "likes_default_age_hours": 6.0,
}
WINDOW = {"max_size": 400, "ttl_seconds": 900.0}


def _edit(text: str, rng: random.Random) -> str:
    chars = list(text)
    for _ in range(rng.randint(1, 3)):
        op = rng.random()
        pos = rng.randrange(len(chars) + 1)
        if op < 0.5:
            chars.insert(pos, rng.choice(EDITS))
        elif op < 0.8 and chars:
            del chars[min(pos, len(chars) - 1)]
        else:
            chars.insert(pos, rng.choice(CHARS))
    return "".join(chars)


def requests(seed: int = 7, comments: int = 2500):
    """``(now, [(text, id, author_id, likes, posted_at)], scores, record)`` per request."""
    rng = random.Random(seed)
    templates = TEMPLATES_FIXED + ["".join(rng.choice(CHARS) for _ in range(rng.randint(6, 70))) for _ in range(36)]
    authors = [f"u{i}" for i in range(150)]
    posted: list[tuple[str, object]] = []
    now = 1_700_000_000.0
    made = 0
    next_id = 0
    while made < comments:
        size = rng.choice([1, 2, 5, 8, 16, 32, 32, 32, 40])
        batch = []
        for _ in range(size):
            r = rng.random()
            if r < 0.35:
                text = rng.choice(templates[:12] if rng.random() < 0.7 else templates)
                if rng.random() < 0.6:
                    text = _edit(text, rng)
            elif r < 0.5 and posted:
                text = rng.choice(posted)[0]
            elif r < 0.65:
                text = rng.choice(SHORT)
            else:
                text = "".join(rng.choice(CHARS) for _ in range(rng.randint(2, 50)))
            u = rng.random()
            if u < 0.08 and posted:  # an id seen before: the same text, or an edit
                old_text, cid = rng.choice(posted)
                text = old_text if rng.random() < 0.6 else _edit(old_text, rng)
            elif u < 0.15:
                cid = None
            else:
                cid = next_id if rng.random() < 0.5 else f"c{next_id}"
                next_id += 1
            author = None if rng.random() < 0.1 else authors[min(len(authors) - 1, int(rng.paretovariate(1.2)) - 1)]
            likes = None if rng.random() < 0.4 else (rng.randint(100, 5000) if rng.random() < 0.1 else rng.randint(0, 30))
            posted_at = None if likes is None or rng.random() < 0.5 else now - rng.uniform(0, 48 * 3600)
            batch.append((text, cid, author, likes, posted_at))
            if cid is not None:
                posted.append((text, cid))
        scores = []
        for text, *_ in batch:
            h = hashlib.blake2b(text.encode("utf-8"), digest_size=6).digest()
            scores.append((h[0] / 255, h[1] / 255, (h[2] / 255) ** 0.5))
        record = rng.random() > 0.05
        yield now, batch, scores, record
        made += size
        now += rng.choice([0.5, 2.0, 10.0, 30.0, 60.0, 120.0])


def run(seed: int = 7, comments: int = 2500, split: bool = False) -> list:
    """The detector's answers on the stream, as plain data; with ``split``, each request's
    window pass (``observe``) made first and handed to ``process_columns``, as the service does."""
    from zhenping.model.campaign import CampaignConfig, CampaignDetector, CampaignInput, WindowConfig
    from zhenping.model.normalize import normalize_text
    from zhenping.model.scorer import CommentScores

    detector = CampaignDetector.build(CampaignConfig(window=WindowConfig(**WINDOW), **CONFIG), clock=lambda: 0.0)
    out = []
    for now, batch, scores, record in requests(seed, comments):
        inputs = [CampaignInput(normalize_text(t), cid, a, lk, pa) for t, cid, a, lk, pa in batch]
        batch_scores = [CommentScores(*s) for s in scores]
        if split:
            columns = ([c.text for c in inputs], [c.id for c in inputs], [c.author_id for c in inputs],
                       [c.likes for c in inputs], [c.posted_at for c in inputs])
            observed = detector.observe(columns[0], columns[1], now=now, record=record)
            report = detector.process_columns(*columns, batch_scores, observed=observed)
        else:
            report = detector.process(inputs, batch_scores, now=now, record=record)
        results = []
        for r in report.results:
            d = r.duplicates
            results.append([d.exact_count, d.near_count, d.cluster_id, d.first_seen, d.seen_before,
                            r.template_fused, [e.as_dict() for e in r.evidence], r.action, r.campaign,
                            [r.cluster.size, r.cluster.authors, r.cluster.arrival_rate, r.cluster.span_seconds,
                             r.cluster.template_mean, r.cluster.variants, r.cluster.author_overlap],
                            r.suspicious_likes, r.expected_likes])
        out.append({"results": results, "authors": [a.as_dict() for a in report.authors]})
    return out


def load_expected() -> list:
    with gzip.open(EXPECTED, "rt", encoding="utf-8") as f:
        return json.load(f)


if __name__ == "__main__":  # pragma: no cover - rewrites the recorded answers
    with gzip.open(EXPECTED, "wt", encoding="utf-8") as f:
        json.dump(run(), f, ensure_ascii=False, separators=(",", ":"))
    print(f"wrote {EXPECTED}", file=sys.stderr)
