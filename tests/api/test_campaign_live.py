"""The campaign signal, actions and likes through a real `zhenping serve` (campaign detection on)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx
import pytest

from zhenping.model.campaign.config import CALIBRATION
from tests.api.conftest import start_server

AD = "兼职日结,手机就能做,加微信abc123,月入过万不是梦"
AD_EDITS = ["兼职日结，手机就能做，加微信abc123，月入过万不是梦！", "【福利】兼职日结 手机就能做 加微信abc123 月入过万"]
CHORUS = "好听"
ORDINARY = "这首歌让我想起了高三的晚自习,那时候天天单曲循环"

SETTINGS = {
    "ZHENPING_CAMPAIGN": "true",
    "ZHENPING_MAX_COMMENTS": "64",
    "ZHENPING_CACHE_SIZE": "0",
}


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    running = start_server(tiny_model_dir, tmp_path_factory.mktemp("campaign") / "serve.log", SETTINGS)
    yield running
    running.stop()


@pytest.fixture()
def client(server):
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        yield c


def ago(minutes: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(minutes=minutes)).isoformat()


def test_a_clear_campaign_folds_and_the_organic_chorus_does_not(client):
    ads = [{"text": [AD, *AD_EDITS][k % 3], "id": f"ad{k}", "author_id": f"bot{k % 6}"} for k in range(8)]
    chorus = [{"text": CHORUS, "id": f"ch{k}", "author_id": f"fan{k}"} for k in range(8)]
    response = client.post("/v1/score", json={"comments": ads + chorus})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    ad_results, chorus_results = results[:8], results[8:]
    last = ad_results[-1]["cluster"]
    assert (last["size"], last["authors"], last["variants"]) == (8, 6, 3)
    assert last["arrival_rate"] > 0 and 0 <= last["author_overlap"] <= 1
    assert all(r["campaign"] >= CALIBRATION["actions"]["fold_campaign"] for r in ad_results)
    assert {r["action"] for r in ad_results} == {"fold"}
    assert all(r["template_fused"] >= r["campaign"] for r in ad_results)
    assert all(r["campaign"] < CALIBRATION["actions"]["review_campaign"] for r in chorus_results)
    assert "fold" not in {r["action"] for r in chorus_results}
    assert chorus_results[-1]["cluster"]["size"] == 8


def test_a_lone_comment_has_campaign_zero_and_no_likes_flag(client):
    (result,) = client.post("/v1/score", json={"comments": [{"text": ORDINARY + "!!", "id": "lone"}]}).json()["results"]
    assert result["campaign"] == 0.0
    assert result["cluster"]["size"] == 1
    assert result["suspicious_likes"] is None and result["expected_likes"] is None


def test_a_like_burst_on_a_pasted_copy_is_suspicious_and_ordinary_likes_are_not(client):
    copies = [{"text": [AD, *AD_EDITS][k % 3], "id": f"burst{k}", "author_id": f"acct{k}", "likes": 0,
               "posted_at": ago(30)} for k in range(7)]
    copies[-1]["likes"] = 8000
    ordinary = {"text": ORDINARY, "id": "ord", "author_id": "reader", "likes": 3, "posted_at": ago(600)}
    response = client.post("/v1/score", json={"comments": [*copies, ordinary]})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert results[-2]["suspicious_likes"] is True
    assert results[-2]["expected_likes"] < 8000
    assert results[-1]["suspicious_likes"] is False
    assert all(r["suspicious_likes"] is False for r in results[:6])


def test_quality_engagement_order_discounts_likes_on_campaign_copies(client):
    comments = [
        {"text": AD, "id": "spam", "author_id": "acct1", "likes": 9000, "posted_at": ago(20)},
        {"text": AD_EDITS[0], "id": "spam2", "author_id": "acct2", "likes": 0},
        {"text": AD_EDITS[1], "id": "spam3", "author_id": "acct3", "likes": 0},
        {"text": AD, "id": "spam4", "author_id": "acct4", "likes": 0},
        {"text": AD, "id": "spam5", "author_id": "acct5", "likes": 0},
        {"text": ORDINARY, "id": "good", "author_id": "reader", "likes": 40, "posted_at": ago(300)},
    ]
    plain = client.post("/v1/rank", json={"comments": comments})
    assert plain.status_code == 200, plain.text
    assert plain.json()["order"] == "quality"
    assert "engagement" not in plain.json()["results"][0]
    response = client.post("/v1/rank", json={"comments": comments, "order": "quality_engagement"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["order"] == "quality_engagement"
    assert body["like_weight"] == pytest.approx(CALIBRATION["rank"]["like_weight"])
    results = body["results"]
    assert [r["rank"] for r in results] == list(range(1, 7))
    scores = [r["order_score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    for r in results:
        assert r["order_score"] == pytest.approx(r["quality"] + body["like_weight"] * r["engagement"])
    spam = next(r for r in results if r["id"] == "spam")
    assert spam["campaign"] >= CALIBRATION["actions"]["fold_campaign"]
    assert spam["engagement"] < 0.1 * __import__("math").log1p(9000)  # the 9,000 likes barely count
    # Ranking reads the window without adding to it: ranking again gives the same answer.
    again = client.post("/v1/rank", json={"comments": comments, "order": "quality_engagement"}).json()
    assert [r["id"] for r in again["results"]] == [r["id"] for r in results]


@pytest.mark.parametrize("comment, field", [
    ({"text": "x", "likes": -1}, "comments[0].likes"),
    ({"text": "x", "likes": "12"}, "comments[0].likes"),
    ({"text": "x", "posted_at": "yesterday"}, "comments[0].posted_at"),
])
def test_bad_likes_and_times_are_refused_naming_the_field(client, comment, field):
    response = client.post("/v1/score", json={"comments": [comment]})
    assert response.status_code == 422
    assert response.json()["error_type"] == "validation_error"
    assert field in response.json()["error"]


def test_unknown_order_is_refused(client):
    response = client.post("/v1/rank", json={"comments": [{"text": "x"}], "order": "likes"})
    assert response.status_code == 422
    assert "order" in response.json()["error"]


def test_openapi_documents_the_campaign_signal_and_likes(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    result = schemas["ScoreResult"]["properties"]
    for name in ("campaign", "cluster", "suspicious_likes", "expected_likes", "action", "template_fused"):
        assert name in result and result[name].get("description"), name
    cluster = schemas["Cluster"]["properties"]
    assert set(cluster) == {"size", "authors", "arrival_rate", "span_seconds", "template_mean", "variants",
                            "author_overlap"}
    assert {"likes", "posted_at"} <= set(schemas["Comment"]["properties"])
    assert "quality_engagement" in str(schemas["RankRequest"]["properties"]["order"])


def test_concurrent_requests_lose_no_copy(server):
    """Window passes run on worker threads while requests wait for the model: copies posted by
    many clients at once are all counted, in one cluster."""
    from concurrent.futures import ThreadPoolExecutor

    text = "限时秒杀!点我主页链接领取优惠券,先到先得,手慢无"

    def post(k: int) -> int:
        with httpx.Client(base_url=server.base_url, timeout=60) as c:
            comments = [{"text": text, "id": f"flash{k}-{j}", "author_id": f"acct{k}"} for j in range(4)]
            return c.post("/v1/score", json={"comments": comments}).status_code

    with ThreadPoolExecutor(12) as pool:
        codes = list(pool.map(post, range(12)))
    assert codes == [200] * 12
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        (found,) = c.post("/v1/rank", json={"comments": [{"text": text}]}).json()["results"]
    assert found["duplicates"]["exact_count"] == 48  # every copy of the twelve requests, none twice
    # The cluster as this comment would join it: the 48 copies and itself, an author of its own.
    assert (found["cluster"]["size"], found["cluster"]["authors"]) == (49, 13)
