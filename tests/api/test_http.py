"""Every route and error code of the service, against a real `zhenping serve` process."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from zhenping.model.axes import AXES, score_to_level
from tests.api.conftest import API_KEYS, MAIN_SETTINGS, start_server
from tests.helpers import BATCHING_TOL

MAX_COMMENTS = int(MAIN_SETTINGS["ZHENPING_MAX_COMMENTS"])
MAX_CHARS = int(MAIN_SETTINGS["ZHENPING_MAX_CHARS"])
MAX_BODY = int(MAIN_SETTINGS["ZHENPING_MAX_BODY_BYTES"])

MISSING_KEY = "missing API key; send it as 'X-API-Key: <key>' or 'Authorization: Bearer <key>'"

TEXTS = ["沙发", "谢谢分享,挺有用的", "👍👍👍", "住了两晚:房间干净但隔音差,早餐种类少", "   ", "好評！！！"]


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    """In-process scores of the same model, to check the server's slicing and order."""
    from zhenping.model.scorer import Scorer

    scorer = Scorer.from_pretrained(tiny_model_dir)
    return lambda texts: scorer.score(texts)


def metric_value(text: str, name: str, labels: str = "") -> float:
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" ([0-9.e+-]+)"
    match = re.search(r"^" + pattern + r"$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def assert_error(response: httpx.Response, status: int, error_type: str, message: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "error_type"}
    assert body["error_type"] == error_type
    if message is not None:
        assert body["error"] == message
    return body


# ----------------------------------------------------------------- health & info


def test_health_is_200_without_a_key(anon):
    response = anon.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "alive"}


def test_ready_is_200_once_loaded(anon):
    response = anon.get("/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


def test_info_reports_model_limits_and_batching(anon):
    info = anon.get("/info").json()
    assert info["model_id"] == "model"
    assert info["model_version"] == "tiny-test"
    assert info["axes"] == list(AXES)
    assert info["level_scale"] == 3
    assert info["max_length"] == 64
    assert info["normalization"] == "zhenping-nfkc-t2s-v1"
    assert info["backend"] == "torch"
    assert info["auth_required"] is True
    assert info["limits"] == {"max_comments": MAX_COMMENTS, "max_chars": MAX_CHARS, "strict_max_chars": False,
                              "max_body_bytes": MAX_BODY}
    assert info["batching"]["max_batch_tokens"] == 512
    assert info["batching"]["max_wait_ms"] == 2.0
    assert info["batching"]["queue_size"] == 64
    assert info["cache"]["capacity"] == 100
    assert "test-key" not in json.dumps(info)


def test_openapi_and_docs(anon):
    spec = anon.get("/openapi.json").json()
    body_schema = spec["paths"]["/v1/score"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body_schema == {"$ref": "#/components/schemas/ScoreRequest"}
    assert spec["components"]["schemas"]["ScoreRequest"]["properties"]["comments"]["items"] == {
        "$ref": "#/components/schemas/Comment"
    }
    assert set(spec["paths"]) >= {"/v1/score", "/health", "/ready", "/info", "/metrics"}
    docs = anon.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
    # The pages' scripts and styles come from this server, not a CDN: the docs work offline.
    assert "cdn." not in docs.text and "/docs/assets/swagger-ui-bundle.js" in docs.text
    script = anon.get("/docs/assets/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.content) > 100_000
    assert anon.get("/docs/assets/swagger-ui.css").status_code == 200
    redoc = anon.get("/redoc")
    assert redoc.status_code == 200 and "/docs/assets/redoc.standalone.js" in redoc.text
    assert "cdn." not in redoc.text and "fonts.googleapis" not in redoc.text


def test_page_and_static_files(anon):
    page = anon.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "评分 Score" in page.text
    assert anon.get("/static/app.js").status_code == 200
    assert anon.get("/static/style.css").headers["content-type"].startswith("text/css")


# ----------------------------------------------------------------- scoring


def test_score_returns_one_result_per_comment_in_order(client, reference):
    comments = [{"text": t, "id": i} for i, t in enumerate(TEXTS)]
    comments[1]["id"] = "c-1"
    comments[2].pop("id")
    comments[3]["author_id"] = "u9"
    response = client.post("/v1/score", json={"comments": comments})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "model@tiny-test"
    assert [r["id"] for r in body["results"]] == [0, "c-1", None, 3, 4, 5]
    expected = reference(TEXTS)
    for result, ref in zip(body["results"], expected):
        assert {"id", *AXES, "levels"} <= set(result)
        for axis in AXES:
            assert 0.0 <= result[axis] <= 1.0
            assert result[axis] == pytest.approx(getattr(ref, axis), abs=BATCHING_TOL)
            assert result["levels"][axis] == score_to_level(result[axis])


@pytest.mark.parametrize("text", ["", "   \t\n ", "👍", "🎉🎉🎉🔥", "\u200b\u200b"])
def test_empty_whitespace_and_emoji_texts_get_scores(client, text):
    response = client.post("/v1/score", json={"comments": [{"text": text}]})
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    assert all(0.0 <= result[a] <= 1.0 for a in AXES)
    assert all(0 <= result["levels"][a] <= 3 for a in AXES)


def test_bearer_token_and_every_key_are_accepted(anon):
    body = {"comments": [{"text": "好听"}]}
    assert anon.post("/v1/score", json=body, headers={"Authorization": f"Bearer {API_KEYS[1]}"}).status_code == 200
    assert anon.post("/v1/score", json=body, headers={"X-API-Key": API_KEYS[1]}).status_code == 200


def test_concurrent_requests_each_get_their_own_slice(api_server, reference):
    texts = [f"第{i}条评论" + "好" * (i % 7) for i in range(40)]
    groups = [texts[i:i + 5] for i in range(0, len(texts), 5)]

    def send(group):
        with httpx.Client(base_url=api_server.base_url, headers={"X-API-Key": API_KEYS[0]}, timeout=30) as c:
            return c.post("/v1/score", json={"comments": [{"text": t} for t in group]})

    with ThreadPoolExecutor(len(groups)) as pool:
        responses = list(pool.map(send, groups))
    for group, response in zip(groups, responses):
        assert response.status_code == 200, response.text
        for result, ref in zip(response.json()["results"], reference(group)):
            assert result["warmth"] == pytest.approx(ref.warmth, abs=BATCHING_TOL)
            assert result["template"] == pytest.approx(ref.template, abs=BATCHING_TOL)


def test_repeats_are_answered_from_the_cache(client):
    comments = [{"text": "缓存测试 cache probe"}, {"text": "缓存测试 cache probe"}, {"text": "缓存測試 cache probe"}]
    first = client.post("/v1/score", json={"comments": comments})
    before = client.get("/metrics").text
    second = client.post("/v1/score", json={"comments": comments})
    after = client.get("/metrics").text
    scores = [[r[a] for a in AXES] for r in first.json()["results"]]
    assert [[r[a] for a in AXES] for r in second.json()["results"]] == scores
    assert scores[0] == scores[1] == scores[2]
    # Traditional and simplified spellings normalise to one text: one lookup, one hit.
    assert metric_value(after, "zhenping_cache_hits_total") - metric_value(before, "zhenping_cache_hits_total") == 1
    assert metric_value(after, "zhenping_cache_misses_total") == metric_value(before, "zhenping_cache_misses_total")


def test_metrics_exposition(client):
    client.post("/v1/score", json={"comments": [{"text": "指标"}]})
    client.get("/no-such-page")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert metric_value(text, "zhenping_http_requests_total", 'method="POST",route="/v1/score",status="200"') >= 1
    assert metric_value(text, "zhenping_http_requests_total", 'method="GET",route="unmatched",status="404"') >= 1
    for name in (
        "zhenping_http_request_duration_seconds_bucket",
        "zhenping_batch_size_texts_count",
        "zhenping_batch_tokens_count",
        "zhenping_queue_depth_texts",
        "zhenping_model_inference_seconds_count",
        "zhenping_comments_scored_total",
    ):
        assert re.search(rf"^{name}(\{{.*\}})? ", text, re.MULTILINE), name
    assert metric_value(text, "zhenping_ready") == 1.0


# ----------------------------------------------------------------- 4xx


def raw_post(c: httpx.Client, content: bytes, content_type: str | None = "application/json", **headers):
    if content_type is not None:
        headers["Content-Type"] = content_type
    return c.post("/v1/score", content=content, headers=headers)


def test_400_malformed_json(client):
    assert_error(raw_post(client, b'{"comments": [{"text": "a"}'), 400, "malformed_json",
                 "request body is not valid JSON: Expecting ',' delimiter at line 1 column 28")


def test_400_invalid_utf8(client):
    assert_error(raw_post(client, b'{"comments": [{"text": "\xe5\xa5"}]}'), 400, "invalid_utf8",
                 "request body is not valid UTF-8 (byte 0xe5 at offset 24)")


def test_400_empty_body(client):
    assert_error(raw_post(client, b""), 400, "empty_body")


def test_401_missing_key(anon):
    response = anon.post("/v1/score", json={"comments": [{"text": "a"}]})
    assert_error(response, 401, "unauthorized", MISSING_KEY)
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "headers,message",
    [
        ({"X-API-Key": "wrong"}, "invalid API key"),
        ({"Authorization": "Bearer test-key-1x"}, "invalid API key"),
        ({"Authorization": f"Basic {API_KEYS[0]}"}, MISSING_KEY),
    ],
)
def test_401_bad_key(anon, headers, message):
    response = anon.post("/v1/score", json={"comments": [{"text": "a"}]}, headers=headers)
    assert_error(response, 401, "unauthorized", message)


def test_401_comes_before_body_checks(anon):
    assert_error(raw_post(anon, b"not json", "text/plain"), 401, "unauthorized")


def test_404_unknown_route(client):
    assert_error(client.get("/v2/score"), 404, "not_found", "no route /v2/score; see /docs for the API")


def test_405_wrong_method(client):
    response = client.get("/v1/score")
    assert_error(response, 405, "method_not_allowed", "method GET is not allowed on /v1/score; use POST")
    assert response.headers["allow"] == "POST"
    assert_error(client.post("/health"), 405, "method_not_allowed")


def test_413_declared_body_too_large(client):
    body = json.dumps({"comments": [{"text": "长" * 40}] * 200}).encode()
    assert len(body) > MAX_BODY
    assert_error(raw_post(client, body), 413, "payload_too_large",
                 f"request body is larger than {MAX_BODY} bytes; send fewer or shorter comments per request")


def test_413_streamed_body_too_large(client):
    chunk = b" " * 1024

    def chunks():  # no Content-Length: the server must count what arrives
        yield b'{"comments": ['
        for _ in range(MAX_BODY // len(chunk) + 2):
            yield chunk
        yield b"]}"

    response = client.post("/v1/score", content=chunks(), headers={"Content-Type": "application/json"})
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "payload_too_large")


def test_413_too_many_comments(client):
    response = client.post("/v1/score", json={"comments": [{"text": "a"}] * (MAX_COMMENTS + 1)})
    assert_error(response, 413, "too_many_comments",
                 f"{MAX_COMMENTS + 1} comments in one request; the limit is {MAX_COMMENTS}, split the request")


def test_max_comments_is_accepted(client):
    response = client.post("/v1/score", json={"comments": [{"text": str(i)} for i in range(MAX_COMMENTS)]})
    assert response.status_code == 200
    assert len(response.json()["results"]) == MAX_COMMENTS


@pytest.mark.parametrize(
    "content_type,message",
    [
        ("text/plain", "Content-Type must be application/json, got 'text/plain'"),
        ("application/x-www-form-urlencoded", "Content-Type must be application/json, got 'application/x-www-form-urlencoded'"),
        ("application/json; charset=latin-1", "charset must be utf-8, got 'latin-1'"),
        (None, "missing Content-Type; send the body as application/json"),
    ],
)
def test_415_not_json(client, content_type, message):
    assert_error(raw_post(client, b'{"comments": [{"text": "a"}]}', content_type), 415, "unsupported_media_type", message)


def test_json_content_type_variants_are_accepted(client):
    for content_type in ("application/json; charset=utf-8", "application/vnd.api+json"):
        assert raw_post(client, b'{"comments": [{"text": "a"}]}', content_type).status_code == 200


@pytest.mark.parametrize(
    "body,message",
    [
        ({"comments": []}, "comments: List should have at least 1 item after validation, not 0"),
        ({}, "comments: Field required"),
        ({"comments": [{"id": 1}]}, "comments[0].text: Field required"),
        ({"comments": [{"text": "a"}, {"text": 5}]}, "comments[1].text: Input should be a valid string"),
        ({"comments": [{"text": None}]}, "comments[0].text: Input should be a valid string"),
        ({"comments": "abc"}, "comments: Input should be a valid list"),
        ([{"text": "a"}], "body: Input should be a valid dictionary or instance of ScoreRequest"),
        ({"texts": ["a"]}, "comments: Field required; texts: Extra inputs are not permitted"),
        ({"comments": [{"text": "a", "lang": "zh"}]}, "comments[0].lang: Extra inputs are not permitted"),
    ],
)
def test_422_validation_names_the_field(client, body, message):
    assert_error(client.post("/v1/score", json=body), 422, "validation_error", message)


def test_422_bad_id_type(client):
    body = assert_error(client.post("/v1/score", json={"comments": [{"text": "a", "id": 1.5}]}), 422, "validation_error")
    assert body["error"].startswith("comments[0].id")


def test_comments_over_max_chars_are_scored_on_their_start_and_marked(client, reference):
    long = "房间干净,早餐一般,隔音差。" * 10  # 130 characters, over this server's 50
    comments = [{"text": "短"}, {"text": long}, {"text": "x" * MAX_CHARS}]
    response = client.post("/v1/score", json={"comments": comments})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["truncated"] for r in results] == [False, True, False]
    # The first MAX_CHARS characters are what was scored.
    (ref,) = reference([long[:MAX_CHARS]])
    assert results[1]["warmth"] == pytest.approx(ref.warmth, abs=BATCHING_TOL)
    ranked = client.post("/v1/rank", json={"comments": comments})
    assert ranked.status_code == 200, ranked.text
    assert {r["index"]: r["truncated"] for r in ranked.json()["results"]} == {0: False, 1: True, 2: False}


@pytest.fixture(scope="module")
def strict_server(tiny_model_dir, tmp_path_factory):
    server = start_server(tiny_model_dir, tmp_path_factory.mktemp("strict") / "server.log",
                          {**MAIN_SETTINGS, "ZHENPING_STRICT_MAX_CHARS": "true"})
    yield server
    server.stop()


def test_strict_mode_refuses_comments_over_max_chars_naming_the_index(strict_server):
    comments = [{"text": "短"}, {"text": "长" * (MAX_CHARS + 1)}, {"text": "x" * MAX_CHARS}, {"text": "y" * 99}]
    with httpx.Client(base_url=strict_server.base_url, timeout=30, headers={"X-API-Key": API_KEYS[0]}) as c:
        assert c.get("/info").json()["limits"]["strict_max_chars"] is True
        assert_error(
            c.post("/v1/score", json={"comments": comments}),
            422,
            "comment_too_long",
            f"comments[1].text ({MAX_CHARS + 1} characters), comments[3].text (99 characters) over the limit of "
            f"{MAX_CHARS} characters per comment; shorten or split them",
        )
        assert c.post("/v1/score", json={"comments": comments[::2]}).status_code == 200


# ----------------------------------------------------------------- CORS


def test_cors_preflight_for_a_configured_origin(anon):
    response = anon.options(
        "/v1/score",
        headers={"Origin": "http://allowed.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type,x-api-key"},
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "http://allowed.example"
    other = anon.get("/health", headers={"Origin": "http://other.example"})
    assert "access-control-allow-origin" not in other.headers
