"""Campaign detection: duplicate window, fusion, evidence, actions, author summaries."""

from __future__ import annotations

import hashlib
import itertools
import math
from collections import Counter

import numpy as np
import pytest

from zhenping.model.campaign import (
    ActionPolicy,
    AuthorWindow,
    CampaignConfig,
    CampaignDetector,
    CampaignInput,
    DuplicateWindow,
    EvidenceFinder,
    Fusion,
    WindowConfig,
    WindowItem,
)
from zhenping.model.campaign.authors import AuthorObservation, author_key
from zhenping.model.campaign.config import load_calibration
from zhenping.model.campaign.window import (
    Signer,
    WindowUnavailable,
    caller_key,
    dedup_form,
    lsh_params,
    shingle_form,
    visible_length,
)
from zhenping.model.normalize import normalize_text
from zhenping.model.scorer import CommentScores
from tests.helpers import needs_compiled_window
from tests.redis_server import redis_client, redis_url  # noqa: F401 - fixtures

# Real repeats: the most repeated danmaku and NetEase comments of the staged
# corpora (see shared/data/corpora/MANIFEST.md), and a contact-drop ad pasted
# with small edits the way ad campaigns dodge exact-match filters.
AD = "兼职日结,手机就能做,加微信abc123,月入过万不是梦"
AD_EDITS = [
    "兼职日结，手机就能做，加微信abc123，月入过万不是梦！",  # full-width punctuation and a "!"
    "兼职日结 手机就能做 加微信abc123 月入过万",  # spaces, tail dropped
    "兼职日结,手机就能做,加微信abc124,月入过万不是梦",  # one character changed
]
ORDINARY = [
    "这首歌让我想起了高三的晚自习,那时候天天单曲循环",
    "第三集的配乐用得好,和剧情很搭",
    "住了两晚:房间干净但隔音差,早餐种类少",
]


def norm(texts):
    return [normalize_text(t) for t in texts]


class Clock:
    def __init__(self, now: float = 1_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


# Fusion weights and thresholds fixed here, so that the tests do not move when
# the shipped calibration is refitted.
FIXED = {"exact_weight": 0.3, "near_weight": 0.15, "fold_template": 0.8, "review_template": 0.6,
         "fold_hostile": 0.9, "review_hostile": 0.75}


def detector(clock=None, **window) -> CampaignDetector:
    config = CampaignConfig(window=WindowConfig(**window), **FIXED)
    return CampaignDetector.build(config, clock=clock or Clock())


def scores(n, warmth=0.4, substance=0.3, template=0.3):
    return [CommentScores(warmth, substance, template)] * n


# ------------------------------------------------------------------ signatures and banding


def test_visible_length_counts_an_emoji_code_as_one_character():
    assert visible_length(dedup_form("[感冒][感冒][感冒]")) == 3
    assert visible_length(dedup_form("加油 [加油]!")) == 4
    assert visible_length("好听") == 2 and visible_length("") == 0
    # Brackets that are not a code (too long, unclosed, nested) count character by character.
    assert visible_length("[一二三四五六七八九]") == 11
    assert visible_length("[好") == 2 and visible_length("[[赞]]") == 3


def test_the_window_reports_visible_lengths():
    window = DuplicateWindow(WindowConfig(max_size=100))
    _, _, lengths = window.observe_texts(["渣男之歌[多多笑哭][多多笑哭]", "渣男之歌 哈哈"], [None, None], now=0.0)
    assert lengths == [6, 6]


def test_shingle_form_drops_what_campaigns_insert_to_dodge_filters():
    """Emoji, emoji codes, symbols and filler particles do not make a copy look new; a text of nothing
    but those keeps them, so emoji walls and 哈哈哈 still match their own repeats."""
    plain = shingle_form(dedup_form(normalize_text("质量很好就是因为好买了多次")))
    for dodged in ("💯质量很好啊[doge]就是因为好,买了多次~", "质量♪很好呀就是因为好👍买了多次呢", "质量很好!!!就是因为好…买了多次🙏"):
        assert shingle_form(dedup_form(normalize_text(dodged))) == plain.replace("了", ""), dodged
    assert shingle_form("😂😂😂") == "😂😂😂"
    assert shingle_form("[good][good]!") == "goodgood"
    assert shingle_form("哈哈哈哈") == "哈哈哈哈"
    assert shingle_form("") == ""


def test_forms_drop_case_space_and_punctuation_only_where_they_should():
    assert dedup_form(normalize_text("好评 好评 GOOD!")) == "好评好评good!"
    assert shingle_form("好评好评good!") == "好评好评good"
    assert shingle_form("👍👍👍") == "👍👍👍"  # an emoji wall keeps its emoji


@pytest.mark.parametrize("threshold", [0.5, 0.6, 0.7, 0.8])
def test_lsh_bands_fit_the_permutations_and_favour_recall(threshold):
    bands, rows = lsh_params(threshold, 64)
    assert bands * rows <= 64
    # A pair at the threshold becomes a candidate more often than not.
    assert 1 - (1 - threshold**rows) ** bands > 0.5
    assert lsh_params(0.6, 64) == (12, 5)


def test_short_texts_match_only_their_own_form():
    signer = Signer(WindowConfig())
    same = [signer.signature(shingle_form(dedup_form(t))) for t in ("好听", "好听!!!", "好听。")]
    assert all(signer.similarity(same[0], s) == 1.0 for s in same)
    assert signer.similarity(same[0], signer.signature("好看")) < 0.1
    assert signer.signature("") is None


# ------------------------------------------------------------------ the window


def test_pasted_copies_and_near_copies_form_one_cluster_with_right_counts():
    d = detector()
    texts = [ORDINARY[0], AD, ORDINARY[1], AD, *AD_EDITS, AD, ORDINARY[2]]
    report = d.process([CampaignInput(t) for t in norm(texts)], scores(len(texts)))
    dup = [r.duplicates for r in report.results]
    ad_rows = [i for i, t in enumerate(texts) if t == AD]
    edit_rows = [i for i, t in enumerate(texts) if t in AD_EDITS]
    ordinary_rows = [i for i, t in enumerate(texts) if t in ORDINARY]

    cluster = dup[ad_rows[0]].cluster_id
    assert cluster == hashlib.blake2b(dedup_form(normalize_text(AD)).encode(), digest_size=8).hexdigest()
    assert all(dup[i].cluster_id == cluster for i in ad_rows + edit_rows)
    for i in ad_rows:  # three pasted copies: two others each, and the three edits
        assert (dup[i].exact_count, dup[i].near_count) == (2, 3)
    # Each edit is near the three copies and the two other edits: the inserted
    # characters are what the shingle form drops.
    assert [(dup[i].exact_count, dup[i].near_count) for i in edit_rows] == [(0, 5), (0, 5), (0, 5)]
    for i in ordinary_rows:
        assert (dup[i].exact_count, dup[i].near_count) == (0, 0)
    assert len({dup[i].cluster_id for i in ordinary_rows} | {cluster}) == len(ordinary_rows) + 1
    assert len({dup[i].first_seen for i in range(len(texts))}) == 1  # all first seen now

    fused = [r.template_fused for r in report.results]
    assert min(fused[i] for i in ad_rows + edit_rows) > max(fused[i] for i in ordinary_rows)
    assert all(fused[i] == pytest.approx(0.3) for i in ordinary_rows)  # no copies: the model's score
    for i in ad_rows:
        kinds = {(e.kind, e.category) for e in report.results[i].evidence}
        assert {("stock_phrase", "ad"), ("duplicate", "exact"), ("duplicate", "near")} <= kinds
        assert [e.count for e in report.results[i].evidence if e.kind == "duplicate"] == [2, 3]
    assert all(not report.results[i].evidence for i in ordinary_rows)


def test_counts_carry_across_requests_and_new_near_copies_join_the_old_cluster():
    clock = Clock(1_000.0)
    d = detector(clock)
    first = d.process([CampaignInput(t) for t in norm([AD, AD])], scores(2)).results
    clock.now = 1_060.0
    later = d.process([CampaignInput(t) for t in norm([AD_EDITS[2], AD, "火钳刘明"])], scores(3)).results
    assert (later[0].duplicates.exact_count, later[0].duplicates.near_count) == (0, 3)
    assert (later[1].duplicates.exact_count, later[1].duplicates.near_count) == (2, 1)
    assert later[0].duplicates.cluster_id == first[0].duplicates.cluster_id
    assert later[0].duplicates.first_seen == 1_000.0
    assert later[2].duplicates.first_seen == 1_060.0
    assert len(d.window) == 5


def test_real_repeats_of_short_texts_are_exact_and_punctuation_variants_near():
    d = detector()
    texts = ["火钳刘明", "火钳刘明", "火钳刘明!!", "泰裤辣", "泰裤辣", "依托答辩", "好听", "好看"]
    dup = [r.duplicates for r in d.process([CampaignInput(t) for t in norm(texts)], scores(len(texts))).results]
    assert [(x.exact_count, x.near_count) for x in dup] == [
        (1, 1), (1, 1), (0, 2), (1, 0), (1, 0), (0, 0), (0, 0), (0, 0)]
    assert dup[0].cluster_id == dup[2].cluster_id != dup[3].cluster_id
    assert dup[6].cluster_id != dup[7].cluster_id


def test_window_evicts_the_oldest_beyond_its_size():
    window = DuplicateWindow(WindowConfig(max_size=3), clock=Clock())
    for text in ("一一一一", "二二二二", "三三三三", "四四四四"):
        window.observe([WindowItem(text)])
    assert len(window) == 3
    again = window.observe([WindowItem("一一一一"), WindowItem("四四四四")], record=False)
    assert [d.exact_count for d in again] == [0, 1]  # the first left, the last is still there
    assert window.store.distinct_texts == 3


def test_window_evicts_by_age_and_forgets_everything_it_indexed():
    clock = Clock(0.0)
    window = DuplicateWindow(WindowConfig(ttl_seconds=60), clock=clock)
    window.observe([WindowItem(t) for t in norm([AD, *AD_EDITS])])
    clock.now = 30.0
    window.observe([WindowItem(normalize_text(ORDINARY[0]))])
    clock.now = 61.0  # the first four are older than 60 s, the last is not
    assert len(window) == 5  # held until something evicts
    window.evict()
    assert len(window) == 1
    found = window.observe([WindowItem(normalize_text(AD))], record=False)[0]
    assert (found.exact_count, found.near_count, found.first_seen) == (0, 0, 61.0)
    clock.now = 200.0
    window.evict()
    assert len(window) == 0
    store = window.store
    assert store.distinct_texts == 0 and not store.bucket_sizes() and store.ids_held == 0  # nothing left behind


def test_a_comment_seen_again_under_its_id_is_not_counted_twice_and_an_edit_replaces_it():
    d = detector()
    first = d.process([CampaignInput(normalize_text(AD), id=7), CampaignInput(normalize_text(AD), id=8)], scores(2))
    assert [r.duplicates.exact_count for r in first.results] == [1, 1]
    again = d.process([CampaignInput(normalize_text(AD), id=7)], scores(1)).results[0].duplicates
    assert (again.exact_count, again.seen_before) == (1, True)
    assert len(d.window) == 2
    # id 7 edited into an ordinary comment: the ad now has no other copy.
    d.process([CampaignInput(normalize_text(ORDINARY[0]), id=7)], scores(1))
    check = d.process([CampaignInput(normalize_text(AD), id=8)], scores(1)).results[0].duplicates
    assert (check.exact_count, check.seen_before) == (0, True)
    # The same number as a string is another comment.
    other = d.process([CampaignInput(normalize_text(AD), id="8")], scores(1)).results[0].duplicates
    assert (other.exact_count, other.seen_before) == (1, False)
    assert caller_key(8) != caller_key("8")


def test_lookup_without_recording_leaves_the_window_unchanged():
    d = detector()
    d.process([CampaignInput(normalize_text(AD))], scores(1))
    for _ in range(3):
        found = d.process([CampaignInput(normalize_text(AD))], scores(1), record=False).results[0]
        assert found.duplicates.exact_count == 1
    assert len(d.window) == 1


def test_memory_stays_bounded_under_a_long_stream():
    window = DuplicateWindow(WindowConfig(max_size=200), clock=Clock())
    for i in range(0, 1_000, 50):
        window.observe([WindowItem(f"第{j}条评论的内容各不相同{j * 7}") for j in range(i, i + 50)])
    assert len(window) == 200
    assert window.store.distinct_texts == 200
    bands = window.signer.bands
    assert len(window.store.bucket_sizes()) <= 200 * bands


def test_window_settings_are_checked():
    with pytest.raises(ValueError, match=r"max_size must be > 0, got 0"):
        WindowConfig(max_size=0)
    with pytest.raises(ValueError, match=r"threshold must be in \(0, 1\], got 1.5"):
        WindowConfig(threshold=1.5)
    with pytest.raises(ValueError, match=r"ttl_seconds must be >= 0"):
        WindowConfig(ttl_seconds=-1)


# ------------------------------------------------------------------ fusion and actions


def test_fusion_keeps_unique_comments_and_rises_with_copies():
    fusion = Fusion(0.3, 0.15)
    assert fusion.fuse(0.42, 0, 0) == pytest.approx(0.42)
    values = [fusion.fuse(0.2, k, 0) for k in (0, 1, 10, 100, 10_000)]
    assert values == sorted(values) and values[-1] < 1.0
    assert fusion.fuse(0.2, 5, 0) > fusion.fuse(0.2, 0, 5) > fusion.fuse(0.2, 0, 0)
    assert fusion.fuse(1.0, 3, 3) == 1.0
    assert np.allclose(fusion.fuse_many([0.2, 0.5], [3, 0], [1, 0]), [fusion.fuse(0.2, 3, 1), 0.5])
    with pytest.raises(ValueError, match=r"exact_weight must be a finite number >= 0, got -1"):
        Fusion(-1, 0)


def test_shipped_calibration_is_complete():
    doc = load_calibration()
    config = CampaignConfig()
    assert config.exact_weight == doc["fusion"]["exact_weight"]
    assert config.fold_template == doc["actions"]["fold_template"]
    ActionPolicy(**doc["actions"])  # a valid policy


def test_actions_fold_review_and_pass():
    policy = ActionPolicy(fold_template=0.8, review_template=0.6, fold_hostile=0.9, review_hostile=0.7)
    assert policy.decide(template=0.85, warmth=0.5) == "fold"
    assert policy.decide(template=0.1, warmth=0.05) == "fold"
    assert policy.decide(template=0.65, warmth=0.5) == "review"
    assert policy.decide(template=0.1, warmth=0.25) == "review"
    assert policy.decide(template=0.59, warmth=0.31) == "pass"
    off = ActionPolicy(fold_template=2, review_template=2, fold_hostile=2, review_hostile=2)
    assert off.decide(1.0, 0.0) == "pass"
    with pytest.raises(ValueError, match=r"review_template \(0.9\) must be <= fold_template \(0.8\)"):
        ActionPolicy(fold_template=0.8, review_template=0.9, fold_hostile=0.9, review_hostile=0.7)
    with pytest.raises(ValueError, match=r"fold_hostile must be a number >= 0 \(above 1 turns the rule off\), got nan"):
        ActionPolicy(fold_template=0.8, review_template=0.6, fold_hostile=math.nan, review_hostile=0.7)


def test_pasted_copies_are_folded_where_a_unique_copy_passes():
    d = detector()
    unique = d.process([CampaignInput(normalize_text(AD))], scores(1, template=0.45), record=False).results[0]
    assert unique.action == "pass"
    batch = [CampaignInput(normalize_text(AD))] * 30
    pasted = d.process(batch, scores(30, template=0.45)).results[0]
    assert pasted.template_fused > 0.8
    assert pasted.action in ("review", "fold")


# ------------------------------------------------------------------ evidence


def test_evidence_names_stock_phrases_and_ai_markers():
    finder = EvidenceFinder.default()
    found = [(e.kind, e.category, e.match) for e in finder.find(normalize_text("在流量焦虑的当下,唯有深度赋能才能构建闭环"))]
    assert ("ai_marker", "ai_frame", "在流量焦虑的当下") in found
    assert ("ai_marker", "buzzword", "深度赋能") in found
    assert [e.match for e in finder.find("顶顶顶")] == ["顶顶"]
    assert finder.find("顶级") == []
    assert finder.find(normalize_text(ORDINARY[1])) == []


def test_evidence_reads_extra_lexicons(tmp_path):
    extra = tmp_path / "site.txt"
    extra.write_text("# our campaigns\nad\t代刷好评\nsite_slogan\t冲冲冲*必胜\n", encoding="utf-8")
    finder = EvidenceFinder.default([extra])
    assert [(e.category, e.match) for e in finder.find("代刷好评找我")] == [("ad", "代刷好评"), ("stock_praise", "好评")]
    assert ("ad", "代刷好评") not in [(e.category, e.match) for e in EvidenceFinder.default().find("代刷好评找我")]
    assert ("stock_phrase", "site_slogan", "冲冲冲!中国队必胜") in [
        (e.kind, e.category, e.match) for e in finder.find("冲冲冲!中国队必胜")]
    with pytest.raises(ValueError, match=r"lexicon file .*missing.txt does not exist"):
        EvidenceFinder.default([tmp_path / "missing.txt"])
    bad = tmp_path / "bad.txt"
    bad.write_text("ad 没有制表符\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.txt:1: expected '<category><TAB><phrase>'"):
        EvidenceFinder.default([bad])



def test_phrase_check_by_first_character_agrees_with_one_pattern_of_every_phrase(tmp_path):
    # A text is searched only with the patterns of the characters it holds (and of phrases that open
    # with a gap); one pattern of every category's phrases must find a phrase in exactly the same texts.
    import random
    import re

    extra = tmp_path / "site.txt"
    extra.write_text("site\t*必胜\nsite\t冲冲冲*必胜\nsite\t好\n", encoding="utf-8")
    rng = random.Random(5)
    for finder in (EvidenceFinder.default(), EvidenceFinder.default([extra])):
        one = re.compile("|".join(p.pattern for _, _, p, _, _ in finder._patterns if p is not None))
        phrases = sorted({e.match for e in finder.find("在流量焦虑的当下,唯有深度赋能才能构建闭环")} | {"沙发", "加微信"})
        pieces = [*phrases, *ORDINARY, "好", "的", "我", "必胜", "冲冲冲", "!", " ", "abc", "a"]
        texts = ["".join(rng.choice(pieces)[:rng.randint(1, 6)] for _ in range(rng.randint(1, 5))) for _ in range(500)]
        for text in [normalize_text(t).lower() for t in texts + list(ORDINARY)]:
            assert finder._any_phrase(text, set(text)) == (one.search(text) is not None), text


# ------------------------------------------------------------------ authors


def test_author_summaries_cover_the_request_and_the_window():
    clock = Clock(0.0)
    d = detector(clock, ttl_seconds=600)
    d.process([CampaignInput(normalize_text(AD), id=1, author_id="spammer"),
               CampaignInput(normalize_text(ORDINARY[0]), id=2, author_id="fan")],
              [CommentScores(0.3, 0.1, 0.7), CommentScores(0.8, 0.6, 0.1)])
    clock.now = 10.0
    report = d.process([CampaignInput(normalize_text(t), id=10 + i, author_id="spammer") for i, t in enumerate(AD_EDITS)]
                       + [CampaignInput(normalize_text(ORDINARY[1]), id=20, author_id="fan")],
                       [CommentScores(0.3, 0.1, 0.7)] * 3 + [CommentScores(0.6, 0.8, 0.1)])
    summary = {a.author_id: a for a in report.authors}
    assert list(summary) == ["spammer", "fan"]
    spammer, fan = summary["spammer"], summary["fan"]
    assert (spammer.comments, spammer.template_rate, spammer.duplicate_rate) == (4, 1.0, 0.75)
    assert spammer.mean_warmth == pytest.approx(0.3) and spammer.mean_substance == pytest.approx(0.1)
    assert (fan.comments, fan.template_rate, fan.duplicate_rate) == (2, 0.0, 0.0)
    assert fan.mean_warmth == pytest.approx(0.7) and fan.mean_substance == pytest.approx(0.7)
    # Seen again under the same id: not counted twice.
    again = d.process([CampaignInput(normalize_text(AD), id=1, author_id="spammer")], scores(1)).authors
    assert again[0].comments == 4
    # Out of the window by age: the summary empties.
    clock.now = 700.0
    gone = d.process([CampaignInput("新的评论来了", author_id="fan")], [CommentScores(0.5, 0.5, 0.2)], record=False)
    assert gone.authors[0].comments == 0


def test_author_window_is_bounded_by_the_window_size():
    authors = AuthorWindow(WindowConfig(max_size=5), clock=Clock())
    authors.add([AuthorObservation(author_key(f"u{i % 3}"), False, False, 0.5, 0.5) for i in range(12)])
    assert len(authors.store) == 5
    assert sum(s.comments for s in authors.summaries(["u0", "u1", "u2"])) == 5


def test_process_checks_lengths():
    with pytest.raises(ValueError, match=r"2 comments but 1 scores"):
        detector().process([CampaignInput("a"), CampaignInput("b")], scores(1))


# ------------------------------------------------------------------ Redis


def _redis_detector(client, clock, prefix="test:campaign", **window):
    from zhenping.model.campaign.redis_store import RedisAuthorStore, RedisStore

    config = CampaignConfig(window=WindowConfig(**window), **FIXED)
    return CampaignDetector.build(config, window_store=RedisStore(client, prefix),
                                  author_store=RedisAuthorStore(client, prefix), clock=clock)


def _scenario(d: CampaignDetector, clock: Clock) -> list:
    out = []
    texts = [ORDINARY[0], AD, *AD_EDITS, AD, "火钳刘明", "火钳刘明!"]
    report = d.process([CampaignInput(t, id=i, author_id=f"u{i % 2}") for i, t in enumerate(norm(texts))],
                       scores(len(texts)))
    out.append(report)
    clock.now += 30
    out.append(d.process([CampaignInput(normalize_text(AD), id=1, author_id="u1"),
                          CampaignInput(normalize_text(AD), id=99, author_id="u1")], scores(2)))
    clock.now += 100  # the first request leaves the window (ttl 120 s)
    out.append(d.process([CampaignInput(normalize_text(AD), author_id="u1")], scores(1)))
    return out


@pytest.mark.redis
def test_redis_window_gives_the_same_answers_as_memory(redis_client):
    memory_clock, redis_clock = Clock(5_000.0), Clock(5_000.0)
    memory = _scenario(detector(memory_clock, ttl_seconds=120, max_size=100), memory_clock)
    shared = _scenario(_redis_detector(redis_client, redis_clock, ttl_seconds=120, max_size=100), redis_clock)
    assert shared == memory
    assert shared[2].results[0].duplicates.exact_count == 1  # only the copy seen 100 s ago remains


@pytest.mark.redis
def test_replicas_sharing_redis_see_each_other(redis_client):
    clock = Clock(1_000.0)
    replica_a = _redis_detector(redis_client, clock)
    replica_b = _redis_detector(redis_client, clock)
    replica_a.process([CampaignInput(normalize_text(AD), id="a1", author_id="spammer")], scores(1))
    found = replica_b.process([CampaignInput(normalize_text(AD_EDITS[0]), id="b1", author_id="spammer")], scores(1))
    assert found.results[0].duplicates.near_count == 1
    assert found.authors[0].comments == 2
    assert len(replica_a.window) == 2
    other = _redis_detector(redis_client, clock, prefix="other:campaign")  # another prefix, another window
    assert other.process([CampaignInput(normalize_text(AD))], scores(1)).results[0].duplicates.exact_count == 0


@pytest.mark.redis
def test_redis_window_evicts_by_size_and_clears(redis_client):
    clock = Clock(0.0)
    d = _redis_detector(redis_client, clock, max_size=3)
    for text in ("一一一一", "二二二二", "三三三三", "四四四四"):
        d.process([CampaignInput(text)], scores(1))
    assert len(d.window) == 3
    assert d.window.store.distinct_texts == 3
    d.window.clear()
    d.authors.clear()
    assert len(d.window) == 0
    assert [k for k in redis_client.scan_iter(match="test:campaign:*")] == []


def test_unreachable_redis_is_reported_with_where():
    redis = pytest.importorskip("redis")
    from zhenping.model.campaign.redis_store import RedisStore

    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis(host="127.0.0.1", port=1, socket_timeout=0.2, socket_connect_timeout=0.2,
                         retry=Retry(NoBackoff(), 0))
    window = DuplicateWindow(WindowConfig(), store=RedisStore(client))
    with pytest.raises(WindowUnavailable, match=r"campaign window at redis 127.0.0.1:1/0 is unavailable"):
        window.observe([WindowItem("你好")])


# ------------------------------------------------------------------ real data


@pytest.mark.real_data
def test_bilibili_danmaku_stream_forms_clusters():
    from zhenping.training.corpora import corpora_root, get_file, iter_rows, row_text

    corpus, cf = get_file("bilibili_danmaku_small", "zhuosd_danmaku.csv.gz")
    path = corpora_root() / corpus.name / cf.name
    texts = [normalize_text(row_text(rec, cf)) for _, rec in itertools.islice(iter_rows(path, cf), 2000)]
    forms = [dedup_form(t) for t in texts]
    window = DuplicateWindow(WindowConfig(max_size=10_000), clock=Clock())
    found = []
    for start in range(0, len(texts), 200):  # requests of 200, like a busy comment section
        found += window.observe([WindowItem(t) for t in texts[start:start + 200]])
    sizes = Counter(d.cluster_id for d in found)
    top_cluster, top_size = sizes.most_common(1)[0]
    top_form, top_count = Counter(forms).most_common(1)[0]
    # The most pasted danmaku forms the largest cluster, at least as big as its exact repeats.
    assert top_size >= top_count >= 20
    assert top_form in {f for f, d in zip(forms, found) if d.cluster_id == top_cluster}
    # A later copy of it sees all the earlier ones.
    last = max(i for i, f in enumerate(forms) if f == top_form)
    assert found[last].exact_count >= top_count - 1
    # Exact counts agree with a plain count of earlier rows and the rest of each request.
    expected = []
    for start in range(0, len(forms), 200):
        upto = Counter(forms[:start + 200])
        expected += [upto[f] - 1 for f in forms[start:start + 200]]
    assert [d.exact_count for d in found] == expected
    assert sum(d.copies > 0 for d in found) > sum(n > 0 for n in expected)  # near copies add to exact ones
    assert len(window) == len(texts)


@pytest.mark.parametrize("index", ["python", pytest.param("compiled", marks=needs_compiled_window)])
def test_memory_store_columns_match_a_list_of_observations(index):
    # The in-process store keeps observations as parallel deques of plain values and a set of those
    # released early; a plain list of observation records, recomputed step by step, must agree with it
    # on every count, id, band and length through adds, id replacements, retirements and evictions.
    import random

    from zhenping.model.campaign.window import MemoryStore, NewObservation

    rng = random.Random(11)
    store = MemoryStore(index=index)
    held: list[dict] = []  # the straightforward window: one dict per observation, oldest first
    mapped: dict[int, dict] = {}  # caller -> its observation
    bands_of = {text: tuple(rng.sample(range(40), 3)) for text in range(30)}

    def release(obs):
        obs["live"] = False
        if obs["caller"] is not None and mapped.get(obs["caller"]) is obs:
            del mapped[obs["caller"]]

    now = 0.0
    for step in range(400):
        now += rng.choice([0.0, 1.0, 5.0])
        op = rng.random()
        if op < 0.6:
            batch = []
            for _ in range(rng.randint(1, 6)):
                text = rng.randrange(30)
                caller = None if rng.random() < 0.3 else rng.randrange(25)
                batch.append(NewObservation(caller, text, text, now, None, bands_of[text]))
            store.add(batch, now)
            for caller, text, *_ in batch:
                obs = {"time": now, "text": text, "caller": caller, "live": True}
                held.append(obs)
                if caller is not None:
                    if caller in mapped:
                        release(mapped[caller])
                    mapped[caller] = obs
        elif op < 0.75:
            callers = rng.sample(range(25), 4)
            store.retire(callers)
            for caller in callers:
                if caller in mapped:
                    release(mapped[caller])
        else:
            ttl, max_size = rng.choice([0.0, 20.0]), rng.randint(5, 40)
            store.evict(now, ttl, max_size)
            while held and (len(held) > max_size or (ttl > 0 and held[0]["time"] < now - ttl)):
                obs = held.pop(0)
                if obs["live"]:
                    release(obs)
        counts = Counter(obs["text"] for obs in held if obs["live"])
        assert len(store) == len(held), step
        assert store.distinct_texts == len(counts), step
        assert {k: r.count for k, r in store.texts(list(range(30))).items()} == dict(counts), step
        assert store.callers(list(range(25))) == {c: obs["text"] for c, obs in mapped.items()}, step
        assert store.ids_held == len(mapped), step
        expected_bands: dict[int, set[int]] = {}
        for text in counts:
            for band in bands_of[text]:
                expected_bands.setdefault(band, set()).add(text)
        assert store.band_members(list(range(40))) == expected_bands, step


def test_remembered_rounding_is_round():
    # Response fields round through a cache of recent values; every answer, a repeat or not, must be
    # round()'s own (the sign of a zero included).
    import random

    from zhenping.model.campaign.clusters import rounded

    rng = random.Random(2)
    values = [0.0, -0.0, 1.0, -1e-17, 5e-7, 0.5, 2.675, 1 / 3, *(rng.uniform(-5, 5) for _ in range(300)),
              *(rng.randint(0, 9) / rng.randint(1, 9) for _ in range(300))]
    for _ in range(2):
        for value in values:
            for digits in (3, 4, 6):
                assert repr(rounded(value, digits)) == repr(round(value, digits)), (value, digits)


def _flood(n: int = 150) -> list[str]:
    """``n`` variants of one long text: near duplicates of each other sharing most band keys."""
    base = "这家店的东西真的太好用了强烈推荐给大家买到就是赚到闭眼入不会后悔"
    return [f"{base}第{k}号" for k in range(n)]


def _flood_scenario(d: CampaignDetector, clock: Clock) -> list:
    out = []
    texts = norm(_flood())
    for start in range(0, len(texts), 25):
        chunk = texts[start:start + 25]
        out.append(d.process([CampaignInput(t, id=f"f{start + k}", author_id=f"a{k % 7}")
                              for k, t in enumerate(chunk)], scores(len(chunk))))
        clock.now += 5
    return out


def test_a_band_bucket_takes_at_most_band_texts_and_the_flood_still_clusters():
    from zhenping.model.campaign.window import BAND_TEXTS

    clock = Clock(1_000.0)
    d = detector(clock)
    reports = _flood_scenario(d, clock)
    sizes = d.window.store.bucket_sizes()
    assert max(sizes) == BAND_TEXTS  # the flood filled buckets up to the bound, not past it
    first = reports[0].results[0].duplicates.cluster_id
    last = reports[-1].results[-1]
    assert last.duplicates.cluster_id == first  # a late variant joins the first variant's cluster
    assert last.cluster.size == 150
    assert BAND_TEXTS <= last.duplicates.near_count < 150  # near copies counted through the full buckets


@pytest.mark.redis
def test_redis_bounds_band_buckets_as_memory_does(redis_client):
    memory_clock, redis_clock = Clock(5_000.0), Clock(5_000.0)
    memory = _flood_scenario(detector(memory_clock), memory_clock)
    shared = _flood_scenario(_redis_detector(redis_client, redis_clock), redis_clock)
    assert shared == memory
