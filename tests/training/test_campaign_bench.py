"""The injected-campaign benchmark's building blocks, on small synthetic streams (no corpora)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from zhenping.model.campaign import CampaignConfig
from zhenping.model.campaign.likes import LikesModel
from zhenping.model.normalize import normalize_text
from zhenping.model.scorer import CommentScores
from zhenping.training import campaign_bench as cb

POOLS = {
    "ad": ["兼职日结,手机就能做,加微信abc123,月入过万不是梦", "还有四张送7天会员有人互关嘛,动态自取"],
    "stock_praise": ["质量非常好,与卖家描述的完全一致,非常满意,真的很喜欢", "物流很快,包装完好,味道不错,会回购的"],
    "slogan": ["#致敬一线医护# 致敬战斗在第一线的医护工作者们,大家加油", "#武汉加油# 我们一起等春天来,中国必胜"],
    "ai": ["在这个信息爆炸的时代,我们需要理性看待每一个观点", "总的来说,这是一个值得深入思考的问题,需要综合考虑"],
}


def stream(n: int = 400, netease: bool = True) -> cb.StreamFile:
    texts = [f"第{i % 97}条评论,今天也在听这首歌" if i % 5 else "好听" for i in range(n)]
    name = "netease_music_comments/x.csv.gz" if netease else "bilibili_danmaku_small/x.csv.gz"
    return cb.StreamFile(name, texts, [1000.0 + 30 * i for i in range(n)],
                         [i % 3 if netease else None for i in range(n)], True, 1000.0 + 30 * n)


ORDINARY = [{"text": "住了两晚,房间干净但隔音差", "source": "chnsenticorp_htl_all", "template": 0.0, "warmth": 0.67}]


def test_dodge_edits_are_seeded_and_change_the_text():
    text = POOLS["stock_praise"][0]
    a = [cb.dodge(text, np.random.default_rng(3), "【推荐】", 2) for _ in range(2)]
    assert a[0] == a[1]
    rng = np.random.default_rng(0)
    edited = [cb.dodge(text, rng, "【推荐】", 3)[0] for _ in range(30)]
    assert sum(e != text for e in edited) >= 25
    assert any("【推荐】" in e for e in edited)
    assert cb.dodge("ABC好", np.random.default_rng(0), "", 0) == ("ABC好", [])


def test_organic_authors_are_heavy_tailed():
    authors = cb.AuthorProcess(np.random.default_rng(0), "s").draw(5000)
    counts = Counter(authors)
    assert 0.5 < len(counts) / len(authors) < 0.7  # a new account for about NEW_AUTHOR of the comments
    assert sum(1 for c in counts.values() if c == 1) / len(counts) > 0.6  # most post once
    assert max(counts.values()) >= 20  # a few post a lot


def test_a_seed_injects_campaigns_of_known_membership_reproducibly():
    seed = cb.build_seed(7, "validation", stream(), POOLS, ["加油", "武汉加油"], ORDINARY)
    again = cb.build_seed(7, "validation", stream(), POOLS, ["加油", "武汉加油"], ORDINARY)
    assert [(i.raw, i.author, i.time) for i in seed.items] == [(i.raw, i.author, i.time) for i in again.items]
    kinds = Counter(i.kind for i in seed.items)
    assert kinds["stream"] == 400 and kinds["ordinary"] == 1 and kinds["chorus"] >= 30
    assert len(seed.campaigns) == cb.CAMPAIGNS
    for meta in seed.campaigns:
        copies = [i for i in seed.items if i.kind == "campaign" and i.group == meta["id"]]
        assert len(copies) == meta["copies"] and cb.MIN_COPIES <= meta["copies"] <= cb.MAX_COPIES
        assert len({i.author for i in copies}) == meta["authors"] >= min(3, meta["copies"])
        assert sorted(i.copy for i in copies) == list(range(1, meta["copies"] + 1))
    times = [i.time for i in seed.items]
    assert times == sorted(times)
    bursts = [i for i in seed.items if i.burst]
    assert bursts and all(i.kind == "campaign" and i.likes >= cb.BURST_LIKES[0] for i in bursts)
    danmaku = cb.build_seed(7, "validation", stream(netease=False), POOLS, ["加油"], [])
    assert not any(i.burst or i.likes is not None for i in danmaku.items)


def test_template_pools_split_in_halves_by_text():
    pool = [f"模板{i}" for i in range(200)]
    val, test = cb.split_pool(pool, "validation"), cb.split_pool(pool, "test")
    assert not set(val) & set(test) and len(val) + len(test) == 200 and 60 < len(val) < 140


class ConstantCache:
    key = "constant"

    def scores(self, texts):
        return [CommentScores(0.5, 0.3, 0.7 if "加微信" in t or "满意" in t else 0.3) for t in texts]


def test_the_detector_run_and_the_measures_fit_together():
    seed = cb.build_seed(11, "test", stream(), POOLS, ["加油"], ORDINARY)
    outcomes = cb.run_detector(seed, ConstantCache(), CampaignConfig())
    assert len(outcomes) == len(seed.items)
    big = max(seed.campaigns, key=lambda m: m["copies"])
    last = [o for o in outcomes if o.item.kind == "campaign" and o.item.group == big["id"]][-1]
    assert last.size >= 2 and len(last.features) == len(cb.FEATURES)
    likes = LikesModel(1.0, 0.4, -0.1, 4.0, 10, 8.0, -1.0)
    m = cb.measure([seed], [outcomes], likes)
    assert m["comments"] == len(seed.items) and m["campaigns"] == cb.CAMPAIGNS
    assert m["likes"]["bursts"] == sum(i.burst for i in seed.items)
    assert 0 <= m["organic_fold"] <= 1 and m["ordinary"] == 1
    assert set(cb._target_rows(m)[0][:2]) and len(cb._target_rows(m)) == len(cb.TARGETS) + 2


def test_decide_matches_the_action_policy():
    from zhenping.model.campaign.actions import ActionPolicy

    th = {"fold_template": 0.9, "review_template": 0.6, "fold_hostile": 1.01, "review_hostile": 0.8,
          "fold_campaign": 0.85, "review_campaign": 0.5}
    policy = ActionPolicy(**th)
    rng = np.random.default_rng(0)
    t, h, c = rng.random(500), rng.random(500), rng.random(500)
    fold, review = cb.decide(t, h, c, th)
    expected = [policy.decide(float(a), 1 - float(b), float(x)) for a, b, x in zip(t, h, c)]
    assert [("fold" if f else "review" if r else "pass") for f, r in zip(fold, review)] == expected


def _copy_rule_rows():
    """Validation arrays by hand: two campaigns the campaign score misses (long exact copies, many
    accounts), one it folds, an organic lyric quote (long, untemplated) and a chant (short, templated)."""
    rows = []  # (campaign key, organic, exact copies, length, authors, template mean, campaign score)
    for k in range(1, 21):
        rows.append(("1:0", False, k, 30, k, 0.6, 0.1))  # pasted stock review, 20 accounts
    for k in range(1, 13):
        rows.append(("2:0", False, k, 18, k, 0.5, 0.1))  # pasted slogan, 12 accounts
    for k in range(1, 9):
        rows.append(("3:0", False, k, 20, 4, 0.7, 0.95))  # folded by the campaign score already
    for k in range(1, 31):
        rows.append(("", True, k, 25, k, 0.2, 0.1))  # lyric quote: untemplated
    for k in range(1, 41):
        rows.append(("", True, k, 4, k, 0.9, 0.1))  # chant: short
    rows += [("", False, 1, 20, 1, 0.3, 0.0)] * 400  # everything else, once each
    n = len(rows)
    return {
        "campaign_key": np.array([r[0] for r in rows]), "campaign_member": np.array([r[0] != "" for r in rows]),
        "organic_repeat": np.array([r[1] for r in rows]), "ordinary": np.zeros(n, dtype=bool),
        "unlabelled": np.zeros(n, dtype=bool), "exact": np.array([r[2] for r in rows]),
        "length": np.array([r[3] for r in rows]), "authors": np.array([r[4] for r in rows]),
        "template_mean": np.array([r[5] for r in rows]), "campaign": np.array([r[6] for r in rows]),
        "text_fused": np.zeros(n), "hostile": np.zeros(n),
    }


def test_copy_rule_is_fitted_to_catch_missed_campaigns_and_spare_organic_repeats():
    th = {"fold_template": 1.01, "review_template": 1.01, "fold_hostile": 1.01, "review_hostile": 1.01,
          "fold_campaign": 0.87, "review_campaign": 0.6}
    val = _copy_rule_rows()
    groups = cb.CampaignGroups(val["campaign_key"])
    base, _ = cb.decide(val["text_fused"], val["hostile"], val["campaign"], th)
    assert groups.recall(base) == pytest.approx(1 / 3)
    rule = cb.fit_copy_rule(val, th)
    fold = base | ((val["exact"] >= rule["copies"]) & (val["length"] >= rule["length"])
                   & (val["authors"] >= rule["authors"]) & (val["template_mean"] >= rule["template"]))
    assert groups.recall(fold) == 1.0
    assert not fold[val["organic_repeat"]].any()
    # Among the rules that catch both and fold no organic repeat, the one folding the most copies.
    assert rule["copies"] == min(cb.COPY_GRID["copies"]) and rule["template"] > 0.2 and rule["length"] > 4
    # A templated lyric quote as long as the slogan: only the stock review's length sets it apart, and
    # the organic fold budget leaves the slogan missed.
    lyric = val["organic_repeat"] & (val["length"] == 25)
    val["template_mean"][lyric] = 0.6
    rule = cb.fit_copy_rule(val, th)
    assert rule["length"] == 30
    fold = base | ((val["exact"] >= rule["copies"]) & (val["length"] >= rule["length"])
                   & (val["authors"] >= rule["authors"]) & (val["template_mean"] >= rule["template"]))
    assert groups.recall(fold) == pytest.approx(2 / 3) and not fold[val["organic_repeat"]].any()
    # Nothing to gain: the rule stays off.
    val["campaign"][val["campaign_member"]] = 0.95
    assert cb.fit_copy_rule(val, th)["copies"] == 0


def test_ordinary_means_gold_template_at_most_1_and_warmth_at_least_1():
    assert cb.is_ordinary({"template": 1 / 3, "warmth": 1 / 3})
    assert not cb.is_ordinary({"template": 2 / 3, "warmth": 1.0})
    assert not cb.is_ordinary({"template": 0.0, "warmth": 0.0})


@pytest.mark.parametrize("text", ["１２３ＡＢＣ好评", "質量很好"])
def test_full_width_and_traditional_dodges_are_undone_by_normalisation(text):
    assert normalize_text(text) != text


def _threshold_rows():
    """Validation arrays by hand: two campaigns whose copies score 0.95 (500 copies) and 0.65 (10), an
    organic chant whose repeats score 0.5 to 0.89 (one point apart), and ordinary comments that score
    nothing."""
    rows = [("1:0", False, 0.95)] * 500 + [("2:0", False, 0.65)] * 10
    rows += [("", True, round(0.5 + 0.01 * k, 2)) for k in range(40)]
    rows += [("", True, 0.0)] * 2000 + [("", False, 0.0)] * 500
    n = len(rows)
    ordinary = np.zeros(n, dtype=bool)
    ordinary[-500:] = True
    return {
        "campaign_key": np.array([r[0] for r in rows]), "campaign_member": np.array([r[0] != "" for r in rows]),
        "organic_repeat": np.array([r[1] for r in rows]), "ordinary": ordinary,
        "unlabelled": np.zeros(n, dtype=bool), "campaign": np.array([r[2] for r in rows]),
        "text_fused": np.zeros(n), "hostile": np.zeros(n),
    }


def test_the_fold_threshold_is_the_highest_of_the_best_recall_within_the_budgets():
    val = _threshold_rows()
    gold = {"template": np.zeros(10), "hostile": np.zeros(10), "positive": np.arange(10) < 5,
            "ordinary": np.arange(10) >= 5}
    th = cb.fit_thresholds(val, gold)
    groups = cb.CampaignGroups(val["campaign_key"])
    fold, _ = cb.decide(val["text_fused"], val["hostile"], val["campaign"], th)
    # Folding both campaigns (at 0.65) would fold 25 chant repeats of 2,040 organic ones, over the
    # 0.8 % budget: the best recall is one campaign of two. The lowest threshold giving it (0.74: 16
    # repeats, 0.78 %, fold precision 500 of 516) and every one up to the campaign's 0.95 do; the
    # highest folds no organic repeat.
    assert groups.recall(fold) == pytest.approx(0.5)
    assert th["fold_campaign"] == pytest.approx(0.95)
    assert not fold[val["organic_repeat"]].any()


def test_targets_are_judged_on_exact_counts_not_rounded_rates():
    m = {"cluster_recall_ge5": 0.9545, "fold_precision": 0.9771, "organic_fold": 0.01, "organic_review": 0.0205,
         "ordinary_review": 0.0623, "ordinary_fold": 0.0, "median_copies_before_flag": 3,
         "likes": {"precision": 0.93, "recall": 0.99},
         "fractions": {"cluster_recall_ge5": [84, 88], "fold_precision": [3844, 3934], "organic_fold": [90, 8969],
                       "organic_review": [184, 8969], "ordinary_review": [73, 1172], "ordinary_fold": [0, 1172]}}
    rows = {label: (value, ok) for label, _, value, ok in cb._target_rows(m)}
    value, ok = rows["organic repeats folded"]
    assert not ok and value == "0.0100 (90 of 8,969)"  # 0.01003…: rounds to 0.0100 but is over 1 %
    assert rows["campaigns ≥ 5 copies: cluster recall (a copy folded)"][1]  # 84 of 88 = 0.9545 ≥ 0.95
    m["fractions"]["organic_fold"] = [89, 8969]
    assert {label: ok for label, _, _, ok in cb._target_rows(m)}["organic repeats folded"]
    del m["fractions"]  # results written before the counts: judged on the rates
    assert {label: ok for label, _, _, ok in cb._target_rows(m)}["organic repeats folded"]


def test_the_likes_flag_is_fitted_for_precision_and_recall_alike():
    # Rows (likes, quality, age hours, burst, campaign, request context). Organic comments earn
    # likes with quality; bursts sit far above. A few organic comments are as far above as the
    # weakest bursts, so no margin is 95% precise short of flagging almost nothing.
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(4000):
        q = float(rng.uniform(0, 2))
        rows.append((int(np.expm1(max(0.0, 0.5 + q + rng.normal(0, 0.5)))), q, 5.0, False, 0.0, 0.0))
    for k in range(60):  # organic comments that went viral
        rows.append((int(np.expm1(6.0 + 0.05 * k)), 0.5, 5.0, False, 0.0, 0.0))
    for k in range(600):  # bought likes on low-quality copies
        rows.append((int(np.expm1(5.0 + 4.0 * k / 600)), 0.2, 5.0, True, 0.0, 0.0))
    fitted = cb.fit_likes(rows)
    model = LikesModel(fitted["intercept"], fitted["quality"], fitted["log_age"], fitted["margin"],
                       fitted["min_likes"], fitted["default_age_hours"], fitted["campaign"], fitted["context"])
    pr = cb.likes_pr(model, rows)
    assert pr["precision"] >= 0.85 and pr["recall"] >= 0.85
    # No other margin of the grid does better on the lower of the two.
    for margin in np.round(np.arange(1.0, 8.01, 0.1), 2):
        other = cb.likes_pr(LikesModel(fitted["intercept"], fitted["quality"], fitted["log_age"], float(margin),
                                       fitted["min_likes"], fitted["default_age_hours"], fitted["campaign"],
                                       fitted["context"]), rows)
        assert min(other["precision"] or 0, other["recall"] or 0) <= min(pr["precision"], pr["recall"]) + 1e-9
