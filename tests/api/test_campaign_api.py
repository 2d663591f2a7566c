"""Campaign detection and ranking in the service: /v1/score's added fields, /v1/rank."""

from __future__ import annotations

import threading
import time
from datetime import datetime

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from zhenping.api.main import create_app
from zhenping.api.settings import Settings
from zhenping.model.axes import AXES
from zhenping.model.scorer import CommentScores
from tests.helpers import StubScorer
from tests.redis_server import redis_client, redis_url  # noqa: F401 - fixtures

AD = "兼职日结,手机就能做,加微信abc123,月入过万不是梦"
AD_EDITS = ["兼职日结，手机就能做，加微信abc123，月入过万不是梦！", "兼职日结 手机就能做 加微信abc123 月入过万"]
ORDINARY = ["这首歌让我想起了高三的晚自习,那时候天天单曲循环", "第三集的配乐用得好,和剧情很搭", "住了两晚:房间干净但隔音差,早餐种类少"]

# Model scores of the texts above, as normalised (copies score like their original).
SCORES = {
    "这首歌让我想起了高三的晚自习,那时候天天单曲循环": CommentScores(0.8, 0.6, 0.2),
    "第三集的配乐用得好,和剧情很搭": CommentScores(0.5, 0.7, 0.1),
    "住了两晚:房间干净但隔音差,早餐种类少": CommentScores(0.4, 0.9, 0.1),
}
AD_SCORES = CommentScores(0.35, 0.1, 0.45)


class FakeScorer(StubScorer):
    """Deterministic scores: the table above, the ad's scores for anything else."""

    model_id = "fake"

    def score_normalized(self, texts, batch_size=32, max_tokens=None):
        return [SCORES.get(t, AD_SCORES) for t in texts]


# Fusion weights and action thresholds fixed here, so that the tests do not move
# when the shipped calibration is refitted.
FIXED = {"fusion_exact_weight": 0.3, "fusion_near_weight": 0.15, "action_fold_template": 0.8,
         "action_review_template": 0.6, "action_fold_hostile": 0.9, "action_review_hostile": 0.75}


def make_app(**kw):
    settings = Settings(**{"model_dir": "unused", "max_wait_ms": 0, **FIXED, **kw})
    return create_app(settings, scorer=FakeScorer())


@pytest.fixture()
def client():
    with TestClient(make_app()) as c:
        yield c


def comments(texts, **extra):
    return [{"text": t, **extra} for t in texts]


# ------------------------------------------------------------------ /v1/score


def test_pasted_copies_come_back_clustered_with_counts_evidence_and_a_higher_template(client):
    texts = [ORDINARY[0], AD, ORDINARY[1], AD, AD_EDITS[0], AD, AD_EDITS[1], ORDINARY[2]]
    response = client.post("/v1/score", json={"comments": [{"text": t, "id": i} for i, t in enumerate(texts)]})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    copies = [i for i, t in enumerate(texts) if t == AD]
    edits = [i for i, t in enumerate(texts) if t in AD_EDITS]
    ordinary = [i for i, t in enumerate(texts) if t in ORDINARY]

    cluster = results[copies[0]]["duplicates"]["cluster_id"]
    assert len(cluster) == 16 and all(results[i]["duplicates"]["cluster_id"] == cluster for i in copies + edits)
    assert [(results[i]["duplicates"]["exact_count"], results[i]["duplicates"]["near_count"]) for i in copies] == \
        [(2, 2)] * 3
    assert [(results[i]["duplicates"]["exact_count"], results[i]["duplicates"]["near_count"]) for i in edits] == \
        [(0, 4), (0, 4)]
    for i in ordinary:
        assert results[i]["duplicates"]["exact_count"] == results[i]["duplicates"]["near_count"] == 0
        assert results[i]["duplicates"]["cluster_id"] != cluster
        assert results[i]["evidence"] == []
        assert results[i]["template_fused"] == pytest.approx(results[i]["template"])
    assert min(results[i]["template_fused"] for i in copies + edits) > \
        max(results[i]["template_fused"] for i in ordinary)
    assert all(results[i]["template_fused"] > results[i]["template"] for i in copies + edits)
    evidence = results[copies[0]]["evidence"]
    assert {"kind": "stock_phrase", "category": "ad", "match": "兼职", "count": None} in evidence
    assert evidence[-2:] == [{"kind": "duplicate", "category": "exact", "match": None, "count": 2},
                             {"kind": "duplicate", "category": "near", "match": None, "count": 2}]
    assert {r["action"] for r in results} <= {"pass", "review", "fold"}
    first_seen = datetime.fromisoformat(results[0]["duplicates"]["first_seen"])
    assert first_seen.utcoffset().total_seconds() == 0
    assert "authors" not in response.json()  # no author ids sent


def test_the_models_fields_are_unchanged_by_campaign_detection(client):
    body = {"comments": comments([AD, AD, ORDINARY[0]])}
    with TestClient(make_app(campaign=False)) as plain:
        before = plain.post("/v1/score", json=body).json()
    after = client.post("/v1/score", json=body).json()
    assert before["model"] == after["model"]
    for old, new in zip(before["results"], after["results"]):
        assert set(old) == {"id", *AXES, "levels", "truncated"}
        assert set(new) == set(old) | {"duplicates", "template_fused", "evidence", "action", "campaign", "cluster",
                                       "suspicious_likes", "expected_likes"}
        assert {k: new[k] for k in old} == old


class WaitingScorer(FakeScorer):
    """Scores once the detector's window holds ``expect`` comments (or after 5 s), noting which:
    the window pass of a request must run while the model scores it."""

    def __init__(self, expect: int):
        self.expect, self.app, self.saw = expect, None, []

    def score_normalized(self, texts, batch_size=32, max_tokens=None):
        deadline = time.monotonic() + 5.0
        while len(self.app.state.campaign.window) < self.expect and time.monotonic() < deadline:
            time.sleep(0.001)
        self.saw.append(len(self.app.state.campaign.window))
        return super().score_normalized(texts, batch_size, max_tokens)


def test_the_window_pass_runs_while_the_model_scores():
    scorer = WaitingScorer(expect=3)
    app = create_app(Settings(model_dir="unused", max_wait_ms=0, cache_size=0, **FIXED), scorer=scorer)
    scorer.app = app
    with TestClient(app) as c:
        body = c.post("/v1/score", json={"comments": comments([AD, AD_EDITS[0], ORDINARY[0]])}).json()
    assert scorer.saw == [3]  # the three comments were in the window before the model answered
    assert [r["duplicates"]["near_count"] for r in body["results"]][:2] == [1, 1]
    assert body["results"][2]["cluster"]["size"] == 1


class BlockingScorer(FakeScorer):
    """Holds its first call until ``release`` is set."""

    def __init__(self):
        self.entered, self.release = threading.Event(), threading.Event()

    def score_normalized(self, texts, batch_size=32, max_tokens=None):
        if not self.entered.is_set():
            self.entered.set()
            self.release.wait(10)
        return super().score_normalized(texts, batch_size, max_tokens)


def test_a_request_refused_for_a_full_queue_adds_nothing_to_the_window():
    scorer = BlockingScorer()
    app = create_app(Settings(model_dir="unused", max_wait_ms=0, cache_size=0, queue_size=4, max_comments=4,
                              inference_workers=1, **FIXED), scorer=scorer)
    with TestClient(app) as c:
        answers = {}

        def post(name, texts):
            answers[name] = c.post("/v1/score", json={"comments": comments(texts)})

        first = threading.Thread(target=post, args=("first", [ORDINARY[0]]))
        first.start()
        assert scorer.entered.wait(10)  # the only model call is busy
        queued = threading.Thread(target=post, args=("queued", [ORDINARY[1], ORDINARY[2], AD, AD_EDITS[0]]))
        queued.start()
        deadline = time.monotonic() + 10
        while len(app.state.campaign.window) < 5 and time.monotonic() < deadline:
            time.sleep(0.001)
        refused = c.post("/v1/score", json={"comments": comments(["这条被拒的评论不该留在窗口里"])})
        assert refused.status_code == 429 and refused.json()["error_type"] == "queue_full"
        assert len(app.state.campaign.window) == 5  # the waiting requests' comments, not the refused one
        scorer.release.set()
        first.join(10)
        queued.join(10)
        assert answers["first"].status_code == 200 and answers["queued"].status_code == 200
        again = c.post("/v1/score", json={"comments": comments(["这条被拒的评论不该留在窗口里"])}).json()
    assert again["results"][0]["duplicates"]["exact_count"] == 0


def test_copies_are_counted_across_requests_and_a_rescored_id_is_not_counted_twice(client):
    first = client.post("/v1/score", json={"comments": [{"text": AD, "id": "c1"}]}).json()["results"][0]
    assert first["duplicates"]["exact_count"] == 0
    again = client.post("/v1/score", json={"comments": [{"text": AD, "id": "c1"}]}).json()["results"][0]
    assert again["duplicates"]["exact_count"] == 0  # the same comment, scored again
    copy = client.post("/v1/score", json={"comments": [{"text": AD_EDITS[0], "id": "c2"}]}).json()["results"][0]
    assert (copy["duplicates"]["exact_count"], copy["duplicates"]["near_count"]) == (0, 1)
    assert copy["duplicates"]["cluster_id"] == first["duplicates"]["cluster_id"]
    assert copy["duplicates"]["first_seen"] == first["duplicates"]["first_seen"]


def test_many_pasted_copies_are_folded_where_one_passes(client):
    one = client.post("/v1/rank", json={"comments": comments([AD])}).json()["results"][0]
    assert one["action"] == "pass"
    pasted = client.post("/v1/score", json={"comments": comments([AD] * 40)}).json()["results"]
    assert pasted[0]["duplicates"]["exact_count"] == 39
    by_copies = 1 - 0.55 * 40 ** -0.3  # 0.818, over 0.8; the campaign score raises it further
    assert pasted[0]["template_fused"] == pytest.approx(1 - (1 - by_copies) * (1 - pasted[0]["campaign"]))
    assert pasted[0]["action"] == "fold"


def test_author_summaries_cover_the_request_and_the_window(client):
    client.post("/v1/score", json={"comments": [{"text": AD, "author_id": "spammer"}]})
    response = client.post("/v1/score", json={"comments": [
        {"text": AD_EDITS[0], "author_id": "spammer"},
        {"text": ORDINARY[0], "author_id": "fan"},
        {"text": AD_EDITS[1], "author_id": "spammer"},
        {"text": ORDINARY[1]},
    ]})
    assert response.status_code == 200
    authors = response.json()["authors"]
    assert [a["author_id"] for a in authors] == ["spammer", "fan"]
    spammer, fan = authors
    assert spammer["comments"] == 3
    assert spammer["duplicate_rate"] == pytest.approx(2 / 3, abs=1e-6)  # the first had no copy yet
    assert spammer["template_rate"] == pytest.approx(2 / 3, abs=1e-6)  # copies lift the other two to level 2
    assert spammer["mean_warmth"] == pytest.approx(0.35) and spammer["mean_substance"] == pytest.approx(0.1)
    assert fan == {"author_id": "fan", "comments": 1, "template_rate": 0.0, "duplicate_rate": 0.0,
                   "mean_warmth": 0.8, "mean_substance": 0.6}


def test_author_summaries_can_be_turned_off():
    with TestClient(make_app(author_summaries=False)) as c:
        body = c.post("/v1/score", json={"comments": [{"text": AD, "author_id": "u1"}]}).json()
    assert "authors" not in body and "duplicates" in body["results"][0]


def test_window_size_setting_bounds_what_is_remembered():
    with TestClient(make_app(dup_window_size=2)) as c:
        for text in ORDINARY:
            c.post("/v1/score", json={"comments": [{"text": text}]})
        found = c.post("/v1/rank", json={"comments": comments(ORDINARY)}).json()["results"]
        assert len(c.app.state.campaign.window) == 2
    counts = {r["index"]: r["duplicates"]["exact_count"] for r in found}
    assert counts == {0: 0, 1: 1, 2: 1}  # the first left the window


def test_time_to_live_setting_forgets_old_comments():
    app = make_app(dup_ttl_seconds=60)
    now = [10_000.0]
    app.state.campaign.window.clock = lambda: now[0]
    with TestClient(app) as c:
        c.post("/v1/score", json={"comments": comments([AD])})
        now[0] += 30
        assert c.post("/v1/rank", json={"comments": comments([AD])}).json()["results"][0]["duplicates"][
            "exact_count"] == 1
        now[0] += 31
        assert c.post("/v1/rank", json={"comments": comments([AD])}).json()["results"][0]["duplicates"][
            "exact_count"] == 0


def test_campaign_detection_off_answers_the_models_scores_only():
    with TestClient(make_app(campaign=False)) as c:
        body = c.post("/v1/score", json={"comments": [{"text": AD, "author_id": "u"}] * 2}).json()
        assert c.app.state.campaign is None
    assert set(body) == {"model", "results"}
    assert all(set(r) == {"id", *AXES, "levels", "truncated"} for r in body["results"])


@pytest.mark.parametrize("campaign", [True, False])
def test_score_body_is_what_the_response_model_writes(campaign):
    # The route writes its body itself (no per-result model validation); it must be exactly what
    # ScoreResponse, validated and dumped with unset fields left out, would have written.
    from datetime import timezone

    from zhenping.api.schemas import ScoreResponse

    batch = [{"text": AD, "id": 1, "author_id": "bot1", "likes": 3000, "posted_at": "2026-01-02T03:04:05Z"},
             {"text": AD_EDITS[0], "id": "b", "author_id": "bot2", "likes": 0},
             {"text": AD_EDITS[1]}, {"text": ORDINARY[0], "author_id": "fan"}, {"text": "", "id": 5}]
    with TestClient(make_app(campaign=campaign)) as c:
        c.post("/v1/score", json={"comments": batch})
        response = c.post("/v1/score", json={"comments": batch})
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    body = response.json()
    expected = ScoreResponse.model_validate(body).model_dump(mode="json", exclude_unset=True)
    assert body == expected
    if campaign:
        first = body["results"][0]
        assert first["duplicates"]["exact_count"] == 0  # the same id and text: not counted twice
        assert body["results"][2]["duplicates"]["exact_count"] == 1  # no id: the earlier request's copy
        assert first["suspicious_likes"] is not None and body["results"][2]["suspicious_likes"] is None
        seen = datetime.fromisoformat(first["duplicates"]["first_seen"].replace("Z", "+00:00"))
        assert seen.tzinfo is not None and seen.utcoffset() == timezone.utc.utcoffset(None)
        assert [a["author_id"] for a in body["authors"]] == ["bot1", "bot2", "fan"]
    else:
        assert set(body) == {"model", "results"}


def test_extra_lexicon_adds_evidence(tmp_path):
    extra = tmp_path / "site.txt"
    extra.write_text("ad\t手机就能做\n", encoding="utf-8")
    with TestClient(make_app(lexicon_extra=str(extra))) as c:
        evidence = c.post("/v1/score", json={"comments": comments([AD])}).json()["results"][0]["evidence"]
    assert {"kind": "stock_phrase", "category": "ad", "match": "手机就能做", "count": None} in evidence


# ------------------------------------------------------------------ /v1/rank


def test_rank_orders_by_the_default_weights(client):
    texts = [AD, ORDINARY[0], ORDINARY[1], ORDINARY[2]]
    response = client.post("/v1/rank", json={"comments": [{"text": t, "id": f"c{i}"} for i, t in enumerate(texts)]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "fake@v1"
    assert body["weights"] == {"warmth": 1.0, "substance": 1.0, "template": -1.0}
    assert [r["id"] for r in body["results"]] == ["c3", "c1", "c2", "c0"]
    assert [r["rank"] for r in body["results"]] == [1, 2, 3, 4]
    assert [r["index"] for r in body["results"]] == [3, 1, 2, 0]
    assert body["results"][0]["quality"] == pytest.approx(0.4 + 0.9 - 0.1)
    assert body["results"][-1]["quality"] == pytest.approx(0.35 + 0.1 - 0.45)
    assert {"duplicates", "template_fused", "evidence", "action", *AXES, "levels"} <= set(body["results"][0])


def test_rank_weights_from_the_request_and_from_settings(client):
    texts = [ORDINARY[0], ORDINARY[2]]
    by_warmth = client.post("/v1/rank", json={"comments": comments(texts), "weights": {"warmth": 1}}).json()
    assert [r["index"] for r in by_warmth["results"]] == [0, 1]
    assert by_warmth["weights"] == {"warmth": 1.0, "substance": 0.0, "template": 0.0}
    with TestClient(make_app(rank_weights="substance=2")) as c:
        by_substance = c.post("/v1/rank", json={"comments": comments(texts)}).json()
    assert [r["index"] for r in by_substance["results"]] == [1, 0]
    assert by_substance["results"][0]["quality"] == pytest.approx(1.8)


def test_rank_sinks_pasted_copies_by_their_fused_template_score(client):
    client.post("/v1/score", json={"comments": comments([ORDINARY[1]] * 30)})
    ranked = client.post("/v1/rank", json={"comments": comments(ORDINARY)}).json()["results"]
    assert ranked[-1]["index"] == 1  # 30 copies of it in the window
    assert ranked[-1]["template_fused"] > ranked[-1]["template"]


def test_rank_reads_the_window_without_adding_to_it(client):
    for _ in range(3):
        found = client.post("/v1/rank", json={"comments": comments([AD])}).json()["results"][0]
        assert found["duplicates"]["exact_count"] == 0
    assert len(client.app.state.campaign.window) == 0


@pytest.mark.parametrize(
    "weights, status, error",
    [
        ({"humour": 1}, 422, {"error": "weights has unknown axis 'humour'; axes are warmth, substance, template",
                              "error_type": "invalid_weights"}),
        ({"warmth": 0, "template": 0}, 422, {"error": "weights are all zero; give at least one axis a weight",
                                              "error_type": "invalid_weights"}),
        ({"warmth": 5000}, 422, {"error": "weights.warmth must be between -1000 and 1000, got 5000.0",
                                 "error_type": "invalid_weights"}),
        ({"warmth": "1"}, 422, {"error": "weights.warmth: Input should be a valid number",
                                "error_type": "validation_error"}),
        ({"warmth": True}, 422, {"error": "weights.warmth: Input should be a valid number",
                                 "error_type": "validation_error"}),
        ([1, 2], 422, {"error": "weights: Input should be a valid dictionary", "error_type": "validation_error"}),
    ],
)
def test_bad_weights_are_refused_with_the_reason(client, weights, status, error):
    response = client.post("/v1/rank", json={"comments": comments([AD]), "weights": weights})
    assert response.status_code == status
    assert response.json() == error


def test_non_finite_weights_are_refused(client):
    raw = '{"comments": [{"text": "沙发"}], "weights": {"substance": Infinity}}'
    response = client.post("/v1/rank", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json() == {"error": "weights.substance must be a finite number, got inf",
                               "error_type": "invalid_weights"}


def test_rank_has_the_score_routes_limits_and_auth():
    with TestClient(make_app(max_comments=2, api_keys="k1")) as c:
        assert c.post("/v1/rank", json={"comments": comments(ORDINARY)}).status_code == 401
        headers = {"X-API-Key": "k1"}
        too_many = c.post("/v1/rank", json={"comments": comments(ORDINARY)}, headers=headers)
        assert too_many.status_code == 413
        assert too_many.json() == {"error": "3 comments in one request; the limit is 2, split the request",
                                   "error_type": "too_many_comments"}
        empty = c.post("/v1/rank", json={"comments": []}, headers=headers)
        assert empty.status_code == 422 and empty.json()["error_type"] == "validation_error"
        assert c.post("/v1/rank", content="{", headers={**headers, "content-type": "application/json"}
                      ).status_code == 400
        metrics = c.get("/metrics").text
    assert 'zhenping_http_requests_total{method="POST",route="/v1/rank",status="413"} 1.0' in metrics


def test_openapi_documents_rank_and_the_new_fields(client):
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/rank"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/RankRequest"}
    schemas = spec["components"]["schemas"]
    assert {"weights", "comments"} <= set(schemas["RankRequest"]["properties"])
    assert {"duplicates", "template_fused", "evidence", "action"} <= set(schemas["ScoreResult"]["properties"])
    assert "authors" in schemas["ScoreResponse"]["properties"]


# ------------------------------------------------------------------ settings


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"rank_weights": "warmth=1,humour=2"}, "weights has unknown axis 'humour'"),
        ({"rank_weights": "warmth"}, "expected axis=weight pairs such as 'warmth=1,template=-1', got 'warmth'"),
        ({"action_review_template": 0.99, "action_fold_template": 0.9},
         "action_review_template (0.99) must be <= action_fold_template (0.9)"),
        ({"lexicon_extra": "/nonexistent/phrases.txt"}, "lexicon file /nonexistent/phrases.txt does not exist"),
        ({"dup_threshold": 0}, "Input should be greater than 0"),
        ({"dup_backend": "memcached"}, "Input should be 'memory' or 'redis'"),
    ],
)
def test_invalid_campaign_settings(kw, message):
    with pytest.raises(ValidationError) as err:
        Settings(model_dir="unused", **kw)
    assert message in str(err.value)


# ------------------------------------------------------------------ Redis


@pytest.mark.redis
def test_replicas_share_one_window_through_redis(redis_client, redis_url):
    settings = {"dup_backend": "redis", "dup_redis_url": redis_url, "dup_redis_prefix": "test:api"}
    with TestClient(make_app(**settings)) as replica_a, TestClient(make_app(**settings)) as replica_b:
        replica_a.post("/v1/score", json={"comments": [{"text": AD, "id": 1, "author_id": "spammer"}]})
        found = replica_b.post("/v1/score", json={"comments": [{"text": AD, "id": 2, "author_id": "spammer"},
                                                               {"text": AD_EDITS[0], "id": 3}]}).json()
        seen = replica_a.post("/v1/rank", json={"comments": comments([AD])}).json()["results"][0]
    assert [(r["duplicates"]["exact_count"], r["duplicates"]["near_count"]) for r in found["results"]] == \
        [(1, 1), (0, 2)]
    assert found["authors"][0]["comments"] == 2
    assert seen["duplicates"]["exact_count"] == 2
    assert redis_client.zcard("test:api:order") == 3
    with TestClient(make_app(**settings)) as replica_c:
        info = replica_c.get("/info").json()["campaign"]
    assert (info["store"], info["core"], info["comments_held"]) == ("redis", None, 3)


def test_unreachable_redis_answers_503_without_internals(api_log):
    pytest.importorskip("redis")
    app = make_app(dup_backend="redis", dup_redis_url="redis://127.0.0.1:1/0")
    with TestClient(app) as c:
        response = c.post("/v1/score", json={"comments": comments([AD])})
    assert response.status_code == 503
    assert response.json() == {"error": "the duplicate window is unavailable; retry shortly",
                               "error_type": "window_unavailable"}
    assert response.headers["retry-after"] == "1"
    assert any("campaign window at redis 127.0.0.1:1/0 is unavailable" in r.getMessage() for r in api_log)
    with TestClient(app) as c:
        info = c.get("/info")
    assert info.status_code == 200 and info.json()["campaign"]["comments_held"] is None  # /info still answers


def test_info_shows_the_window(client):
    from zhenping.model.campaign.window import MemoryStore

    before = client.get("/info").json()["campaign"]
    assert before == {"store": "memory", "core": MemoryStore().index, "comments_held": 0,
                      "max_size": Settings(model_dir="unused").dup_window_size,
                      "ttl_seconds": Settings(model_dir="unused").dup_ttl_seconds}
    client.post("/v1/score", json={"comments": comments([AD, AD, ORDINARY[0]])})
    assert client.get("/info").json()["campaign"]["comments_held"] == 3
    with TestClient(make_app(campaign=False)) as off:
        assert off.get("/info").json()["campaign"] is None


@pytest.fixture()
def api_log():
    import logging

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Keep()
    log = logging.getLogger("zhenping.api")
    log.addHandler(handler)
    yield records
    log.removeHandler(handler)


def test_redis_passwords_are_not_printed():
    from zhenping.api.campaign import redacted_url

    assert redacted_url("redis://:s3cret@cache.internal:6380/2") == "redis://:***@cache.internal:6380/2"
    assert redacted_url("redis://app:s3cret@cache/0") == "redis://app:***@cache/0"
    assert redacted_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
