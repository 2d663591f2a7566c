"""The campaign signal: cluster evidence over the window, the campaign score, actions and likes."""

from __future__ import annotations

import math

import pytest

from zhenping.model.campaign import CampaignConfig, CampaignDetector, CampaignInput, WindowConfig
from zhenping.model.campaign.actions import ActionPolicy, CopyRule
from zhenping.model.campaign.clusters import FEATURES, CampaignModel, ClusterEvidence, ClusterWindow
from zhenping.model.campaign.config import CALIBRATION, load_calibration
from zhenping.model.campaign.likes import LikesModel, engagement, like_context, rank_by_engagement
from zhenping.model.scorer import CommentScores

AD = "兼职日结,手机就能做,加微信abc123,月入过万不是梦"
AD_EDITS = ["兼职日结，手机就能做，加微信abc123，月入过万不是梦！", "【福利】兼职日结 手机就能做 加微信abc123 月入过万"]
CHORUS = "好听"
SCORES = CommentScores(0.4, 0.2, 0.6)


def detector(**kw) -> CampaignDetector:
    return CampaignDetector.build(CampaignConfig(window=WindowConfig(max_size=1000), authors=False, **kw),
                                  clock=lambda: 1000.0)


def test_cluster_window_counts_size_authors_variants_and_rate():
    window = ClusterWindow(100, 0)
    window.add([("c", 1, 10, 0.8), ("c", 2, 11, 0.6), ("c", None, 10, 0.4)], now=0.0)
    (ev,) = window.observe_batch([("c", 1, 12, 0.2)], ["c"], now=3600.0)
    assert (ev.size, ev.authors, ev.variants) == (4, 3, 3)  # the anonymous comment is an author of its own
    assert ev.template_mean == pytest.approx(0.5)
    assert ev.arrival_rate == pytest.approx(4.0)  # 4 comments over the hour since the oldest
    assert ev.span_seconds == pytest.approx(3600.0)


def test_cluster_window_read_without_recording_leaves_it_unchanged():
    window = ClusterWindow(100, 0)
    window.add([("c", 1, 10, 0.5)], now=0.0)
    (ev,) = window.observe_batch([("c", 2, 10, 0.5), ("c", 3, 10, 0.5)], ["c"], now=1.0, record=False)
    assert ev.size == 3
    assert len(window) == 1
    (again,) = window.observe_batch([], ["c"], now=2.0)
    assert (again.size, again.authors) == (1, 1)


def test_cluster_window_forgets_by_size_and_age():
    window = ClusterWindow(3, 10.0)
    window.add([("a", 1, 1, 0.5), ("a", 2, 1, 0.5)], now=0.0)
    window.add([("b", 3, 2, 0.5)] * 2, now=5.0)
    assert len(window) == 3  # the oldest left by size
    (a, b) = window.observe_batch([], ["a", "b"], now=12.0)  # a's last one left by age
    assert a.size == 1 and b.size == 2
    window.observe_batch([], ["b"], now=100.0)
    assert len(window) == 0


def test_author_overlap_counts_authors_seen_in_other_clusters():
    window = ClusterWindow(100, 0)
    window.add([("x", 1, 1, 0.5), ("x", 2, 1, 0.5), ("y", 1, 2, 0.5), ("y", 3, 2, 0.5)], now=0.0)
    (x,) = window.observe_batch([], ["x"], now=0.0)
    assert x.author_overlap == pytest.approx(0.5)  # author 1 also posted into y (2 comments)


def test_author_overlap_matches_a_scan_of_the_window_as_comments_come_and_go():
    import random

    from zhenping.model.campaign.clusters import OVERLAP_SCAN

    rng = random.Random(11)
    window = ClusterWindow(10_000, 50.0)  # short-lived: comments leave by age (before the batch is added)
    now = 0.0
    for step in range(400):
        now += rng.choice([0.5, 1.0, 5.0, 20.0])
        batch = [(f"c{rng.randint(0, 25)}", rng.choice([None, *range(12)]), rng.randint(0, 3), 0.5)
                 for _ in range(rng.randint(1, 6))]
        clusters = sorted({c for c, *_ in batch})
        record = rng.random() > 0.2
        got = window.observe_batch(batch, clusters, now, record=record)
        if not record:  # a read: the window is as it was, the answers were over it and the batch
            continue
        state = window._clusters
        for cluster, ev in zip(clusters, got):
            rec = state.get(cluster)
            if rec is None or rec.count < 2 or not rec.authors:
                continue
            scanned = list(rec.authors)[:OVERLAP_SCAN]
            # (a cluster that has only ever held one comment has no author container: count first)
            hits = sum(any(other.count >= 2 and a in other.authors for c, other in state.items() if c != cluster)
                       for a in scanned)
            assert ev.author_overlap == pytest.approx(hits / len(scanned)), (step, cluster)


def test_campaign_model_checks_its_inputs_and_is_zero_below_min_size():
    model = CampaignModel({"log_size": 1.0}, -2.0, min_size=3)
    small = ClusterEvidence(2, 2, 100.0, 60.0, 0.9, 2, 0.0)
    assert model.score(small, 20) == 0.0
    big = ClusterEvidence(30, 20, 100.0, 60.0, 0.9, 2, 0.0)
    assert model.score(big, 20) == pytest.approx(1 / (1 + math.exp(-(math.log(30) - 2.0))))
    with pytest.raises(ValueError, match="unknown feature 'size'"):
        CampaignModel({"size": 1.0}, 0.0)
    with pytest.raises(ValueError, match="min_size must be an int >= 2"):
        CampaignModel({}, 0.0, min_size=1)


def test_shipped_calibration_names_every_feature_and_threshold():
    doc = load_calibration()
    assert set(doc["campaign"]["weights"]) <= set(FEATURES)
    ActionPolicy(**doc["actions"])
    assert doc["actions"]["review_campaign"] <= doc["actions"]["fold_campaign"]
    LikesModel(**{k: v for k, v in doc["likes"].items()})


def test_a_pasted_campaign_from_many_authors_folds_and_the_organic_chorus_does_not():
    det = detector()
    ads = [CampaignInput([AD, *AD_EDITS][k % 3], f"a{k}", f"bot{k % 6}") for k in range(8)]
    chorus = [CampaignInput(CHORUS, f"h{k}", f"user{k}") for k in range(8)]
    report = det.process(ads + chorus, [SCORES] * 16, now=1000.0)
    ad_results, chorus_results = report.results[:8], report.results[8:]
    assert ad_results[-1].cluster.size == 8 and ad_results[-1].cluster.authors == 6
    assert ad_results[-1].cluster.variants == 3
    assert min(r.campaign for r in ad_results) >= CALIBRATION["actions"]["fold_campaign"]
    assert {r.action for r in ad_results} == {"fold"}
    assert all(r.template_fused >= r.campaign for r in ad_results)
    assert max(r.campaign for r in chorus_results) < CALIBRATION["actions"]["review_campaign"]
    assert "fold" not in {r.action for r in chorus_results}


def test_a_lone_comment_has_no_campaign_score():
    (result,) = detector().process([CampaignInput(AD, 1, "u1")], [SCORES], now=1000.0).results
    assert result.campaign == 0.0
    assert result.cluster.size == 1
    assert result.suspicious_likes is None and result.expected_likes is None


def test_campaign_thresholds_drive_the_action():
    off = detector(fold_campaign=1.01, review_campaign=1.01, fold_template=1.01, review_template=1.01,
                   fold_hostile=1.01, review_hostile=1.01, copy_fold_copies=0)
    ads = [CampaignInput(AD, f"a{k}", f"bot{k}") for k in range(8)]
    assert {r.action for r in off.process(ads, [SCORES] * 8, now=1000.0).results} == {"pass"}
    # The copy rule alone folds the same eight pasted copies from eight accounts.
    copies = detector(fold_campaign=1.01, review_campaign=1.01, fold_template=1.01, review_template=1.01,
                      fold_hostile=1.01, review_hostile=1.01, copy_fold_copies=6, copy_fold_length=20,
                      copy_fold_authors=5, copy_fold_template=0.0)
    actions = [copies.process([ad], [SCORES], now=1000.0 + k).results[0].action for k, ad in enumerate(ads)]
    assert actions == ["pass"] * 5 + ["fold"] * 3  # from the sixth copy on
    with pytest.raises(ValueError, match="review_campaign"):
        ActionPolicy(1.01, 1.01, 1.01, 1.01, fold_campaign=0.5, review_campaign=0.8)


REVIEW = "裤子很满意,很舒服,男朋友很喜欢,显得腿很长,大大的满意"  # a stock review, 26 characters
RULE = {"copy_fold_copies": 15, "copy_fold_length": 10, "copy_fold_authors": 8, "copy_fold_template": 0.45}
NO_CAMPAIGN_FOLD = {"fold_campaign": 1.01, "review_campaign": 1.01}  # only the copy rule can fold


def _one_a_time(det, texts, scores, authors):
    """Each comment in its own request, five minutes apart: actions in arrival order."""
    return [det.process([CampaignInput(t, f"c{k}", a)], [scores], now=1000.0 + 300 * k).results[0].action
            for k, (t, a) in enumerate(zip(texts, authors))]


def test_long_exact_copies_from_many_accounts_fold_from_the_rules_copy_count():
    templated = CommentScores(0.6, 0.3, 0.6)
    actions = _one_a_time(detector(**RULE, **NO_CAMPAIGN_FOLD), [REVIEW] * 20, templated,
                          [f"acct{k}" for k in range(20)])
    assert "fold" not in actions[:14]
    assert actions[14:] == ["fold"] * 6  # the 15th copy and after
    off = _one_a_time(detector(**{**RULE, "copy_fold_copies": 0}, **NO_CAMPAIGN_FOLD), [REVIEW] * 20, templated,
                      [f"acct{k}" for k in range(20)])
    assert "fold" not in off


def test_the_copy_rule_spares_chants_untemplated_text_and_a_single_account():
    templated, plain = CommentScores(0.6, 0.3, 0.6), CommentScores(0.6, 0.3, 0.2)
    many = [f"acct{k}" for k in range(20)]
    chant = _one_a_time(detector(**RULE, **NO_CAMPAIGN_FOLD), ["武汉加油!"] * 20, templated, many)
    assert "fold" not in chant  # 4 characters: shorter than the rule's length
    untemplated = _one_a_time(detector(**RULE, **NO_CAMPAIGN_FOLD), [REVIEW] * 20, plain, many)
    assert "fold" not in untemplated  # a fan copypasta the text model does not find templated
    lone = _one_a_time(detector(**RULE, **NO_CAMPAIGN_FOLD), [REVIEW] * 20, templated, ["acct0", "acct1"] * 10)
    assert "fold" not in lone  # two accounts, under the rule's eight


def test_copy_rule_checks_its_settings_and_the_shipped_one_is_fitted():
    assert CopyRule(copies=3, length=5, authors=2, template=0.5).applies(3, 5, 2, 0.5)
    assert not CopyRule(copies=3, length=5, authors=2, template=0.5).applies(2, 5, 2, 0.5)
    with pytest.raises(ValueError, match="copies must be 0 \\(off\\) or >= 2"):
        CopyRule(copies=1)
    with pytest.raises(ValueError, match="length must be an int >= 0, got -1"):
        CopyRule(copies=5, length=-1)
    with pytest.raises(ValueError, match="template must be a number in \\[0, 1\\], got 1.5"):
        CopyRule(copies=5, template=1.5)
    shipped = load_calibration()["copy_rule"]
    rule = CopyRule(**shipped)
    # Off when the fit found no candidate raising recall within the budgets; when on, "many accounts",
    # not a pair of repeats.
    assert not rule.on or (rule.authors >= 3 and rule.copies >= 5), shipped


def test_like_bursts_on_low_quality_copies_are_suspicious_and_ordinary_likes_are_not():
    model = LikesModel(0.2, 0.5, 0.3, margin=3.0, min_likes=20, default_age_hours=24.0)
    assert model.suspicious(3000, quality=-0.3, age_hours=1.0)
    assert not model.suspicious(3, quality=0.8, age_hours=48.0)
    assert not model.suspicious(15, quality=-0.3, age_hours=0.0)  # under min_likes
    assert model.expected(0.0, 0.0) == pytest.approx(math.expm1(0.2))
    assert model.age_hours(None, 1e9) == 24.0
    assert model.age_hours(1000.0, 1000.0 + 7200) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="min_likes must be an int >= 0"):
        LikesModel(0, 0, 0, 1.0, -1, 1.0)


def test_detector_flags_likes_with_the_comments_age():
    det = detector(likes_intercept=0.0, likes_quality=0.5, likes_log_age=0.3, likes_margin=3.0, likes_min=20,
                   likes_default_age_hours=24.0)
    report = det.process([CampaignInput(AD, 1, "u1", likes=5000, posted_at=1000.0 - 600),
                          CampaignInput("第三集的配乐用得好,和剧情很搭", 2, "u2", likes=2, posted_at=0.0)],
                         [SCORES, CommentScores(0.8, 0.7, 0.1)], now=1000.0)
    burst, ordinary = report.results
    assert burst.suspicious_likes is True and burst.expected_likes < 5
    assert ordinary.suspicious_likes is False


def test_engagement_discounts_templated_campaign_and_suspicious_likes():
    assert engagement(100, 2.0, False, 0.0, 0.0) == pytest.approx(math.log(101))
    assert engagement(100, 2.0, True, 0.0, 0.0) == pytest.approx(math.log(3))  # cut to the expectation
    assert engagement(100, None, None, 0.5, 0.5) == pytest.approx(math.log(101) * 0.25)
    assert engagement(None, None, None, 0.0, 0.0) == 0.0
    order = rank_by_engagement([0, 1, 2], [0.5, 0.2, 0.5], [0.0, 10.0, 0.0], like_weight=0.1)
    assert [i for i, _ in order] == [1, 0, 2]


def test_a_hot_thread_sets_a_higher_expectation_than_a_stream_of_new_comments():
    assert like_context([None, 5]) == 0.0  # too few counts to set a context
    assert like_context([0, 0, 0, 99]) == 0.0
    assert like_context([9, 99, 999]) == pytest.approx(math.log(100))
    det = detector(likes_intercept=0.5, likes_quality=0.5, likes_log_age=0.0, likes_margin=3.0, likes_min=20,
                   likes_default_age_hours=24.0, likes_campaign=-1.0, likes_context=1.0)
    thread = [CampaignInput(f"第{k}条热评,写得真好,我也有同感", k, f"u{k}", likes=4000 + k) for k in range(6)]
    results = det.process(thread, [CommentScores(0.6, 0.5, 0.2)] * 6, now=1000.0).results
    assert not any(r.suspicious_likes for r in results)  # thousands of likes are ordinary in a 热评 list
    alone = det.process([CampaignInput("第九条热评,写得真好", 9, "u9", likes=4000)], [CommentScores(0.6, 0.5, 0.2)],
                        now=1000.0).results[0]
    assert alone.suspicious_likes  # the same count with nothing around it is far above expectation
