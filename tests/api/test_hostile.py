"""Hostile and broken request bodies against a real `zhenping serve` with the default limits.

Each payload gets either a 4xx with the exact status and error type, or valid
scores; never a 5xx and never a hang (every request has a client timeout).
After each one the server must still be ready, and at the end its log must
hold no traceback.

| payload                                   | answer                            |
|-------------------------------------------|-----------------------------------|
| body over max_body_bytes                  | 413 payload_too_large             |
| 10,000 comments                           | 413 too_many_comments             |
| a 1 MB comment (ASCII)                    | 200, first 20,000 chars, truncated|
| a 1 MB comment (Chinese, 3 MB of UTF-8)   | 413 payload_too_large             |
| invalid / overlong UTF-8, a UTF-8 BOM     | 400 invalid_utf8 / malformed_json |
| 100,000 levels of [                       | 400 malformed_json                |
| wrong types, NaN, 1e400                   | 422 validation_error              |
| a raw NUL byte in a string                | 400 malformed_json                |
| an escaped NUL (\\u0000) in a text        | 200                               |
| empty body                                | 400 empty_body                    |
| empty, blank, emoji-only, zero-width,     | 200                               |
| right-to-left, mixed-script texts         |                                   |
| a 100-digit id / a 5,000-digit id         | 200 (echoed) / 400 malformed_json |
| a lone surrogate escape (\\ud800)          | 400 invalid_unicode               |
| duplicate keys                            | 200, the last value wins          |
"""

from __future__ import annotations

import json

import httpx
import pytest

from zhenping.model.axes import AXES, score_to_level
from tests.api.conftest import start_server

MAX_BODY = 1 << 20  # the service's defaults
MAX_COMMENTS = 256
MAX_CHARS = 20000
TIMEOUT = httpx.Timeout(60.0, connect=10.0)  # a hang fails the test instead of blocking it
ROUTES = ("/v1/score", "/v1/rank", "/v1/feedback")


@pytest.fixture(scope="module")
def hostile_server(tiny_model_dir, tmp_path_factory):
    """A server with the default limits, campaign detection and feedback on, no API keys."""
    tmp = tmp_path_factory.mktemp("hostile")
    server = start_server(tiny_model_dir, tmp / "server.log", {"ZHENPING_DATA_DIR": str(tmp / "data")})
    yield server
    server.stop()
    log = server.log()
    assert "Traceback" not in log and "unhandled error" not in log, log[-4000:]


@pytest.fixture()
def http(hostile_server):
    with httpx.Client(base_url=hostile_server.base_url, timeout=TIMEOUT) as c:
        yield c
    # Whatever the payload did, the server still answers and still scores.
    assert hostile_server.process.poll() is None, "the server exited"
    with httpx.Client(base_url=hostile_server.base_url, timeout=TIMEOUT) as c:
        assert c.get("/ready").status_code == 200
        assert c.post("/v1/score", json={"comments": [{"text": "还活着吗"}]}).status_code == 200


def post(c: httpx.Client, body: bytes, path: str = "/v1/score", **headers) -> httpx.Response:
    return c.post(path, content=body, headers={"Content-Type": "application/json", **headers})


def assert_error(response: httpx.Response, status: int, error_type: str, message: str | None = None) -> str:
    assert response.status_code == status, response.text[:500]
    body = response.json()
    assert set(body) == {"error", "error_type"}
    assert body["error_type"] == error_type, body
    if message is not None:
        assert body["error"] == message
    return body["error"]


def assert_scores(response: httpx.Response, n: int) -> list[dict]:
    assert response.status_code == 200, response.text[:500]
    results = response.json()["results"]
    assert len(results) == n
    for result in results:
        for axis in AXES:
            assert 0.0 <= result[axis] <= 1.0
            assert result["levels"][axis] == score_to_level(result[axis])
    return results


def comments(*texts: str) -> bytes:
    return json.dumps({"comments": [{"text": t} for t in texts]}, ensure_ascii=False).encode("utf-8")


# ----------------------------------------------------------------- size


def test_body_over_the_limit_is_413(http):
    body = comments("好") + b" " * MAX_BODY
    assert_error(post(http, body), 413, "payload_too_large",
                 f"request body is larger than {MAX_BODY} bytes; send fewer or shorter comments per request")


def test_ten_thousand_comments_are_413(http):
    body = comments(*(f"第{i}条" for i in range(10_000)))
    assert len(body) < MAX_BODY
    assert_error(post(http, body), 413, "too_many_comments",
                 f"10000 comments in one request; the limit is {MAX_COMMENTS}, split the request")


def test_one_megabyte_comment_is_scored_on_its_start(http):
    body = comments("x" * 1_000_000)
    assert len(body) < MAX_BODY
    (result,) = assert_scores(post(http, body), 1)
    assert result["truncated"] is True
    assert_error(post(http, json.dumps({"text": "x" * 1_000_000, "levels": {"warmth": 1}}).encode(), "/v1/feedback"),
                 422, "comment_too_long", f"text has 1000000 characters, over the limit of {MAX_CHARS}")


def test_a_long_review_does_not_sink_its_batch(http):
    # A 2,809-character hotel review among 63 short comments: every comment is
    # scored; the long one was read up to the model's max_length tokens.
    review = ("入住三晚,前台办理很快,房间在十二楼,视野开阔能看到江景。床垫偏硬但枕头有两种可选,"
              "卫生间干湿分离,热水稳定。早餐中西式都有,小笼包和豆浆不错,咖啡一般。隔音略差,"
              "走廊推车声早上六点就能听到。停车场收费每天四十元,离地铁站步行八分钟。")
    review = (review * 40)[:2809]
    texts = [f"第{i}条:还不错" for i in range(63)]
    texts.insert(17, review)
    results = assert_scores(post(http, comments(*texts)), 64)
    assert [r["truncated"] for r in results] == [i == 17 for i in range(64)]


def test_one_megabyte_chinese_comment_is_413(http):
    body = comments("好" * 350_000)  # 3 bytes a character: over 1 MiB
    assert len(body) > MAX_BODY
    assert_error(post(http, body), 413, "payload_too_large")


def test_largest_legal_request_is_scored(http):
    # As many comments as allowed, each as long as the body limit leaves room for.
    per_comment = MAX_BODY // MAX_COMMENTS - 20
    texts = [("x" * (per_comment - 4)) + f"{i:04d}" for i in range(MAX_COMMENTS)]
    body = comments(*texts)
    assert len(body) < MAX_BODY
    assert_scores(post(http, body), MAX_COMMENTS)


# ----------------------------------------------------------------- encoding


@pytest.mark.parametrize("path", ROUTES)
def test_invalid_utf8_is_400(http, path):
    assert_error(post(http, b'{"comments": [{"text": "\xff\xfe"}]}', path), 400, "invalid_utf8",
                 "request body is not valid UTF-8 (byte 0xff at offset 24)")


def test_overlong_utf8_is_400(http):
    # "/" spelled in two bytes: a classic filter bypass, refused by a strict decoder.
    assert_error(post(http, b'{"comments": [{"text": "\xc0\xaf"}]}'), 400, "invalid_utf8",
                 "request body is not valid UTF-8 (byte 0xc0 at offset 24)")


def test_utf8_byte_order_mark_is_400(http):
    assert_error(post(http, b"\xef\xbb\xbf" + comments("好")), 400, "malformed_json",
                 "request body is not valid JSON: Unexpected UTF-8 BOM (decode using utf-8-sig) at line 1 column 1")


@pytest.mark.parametrize("path", ROUTES)
def test_lone_surrogate_escape_is_400(http, path):
    field = "text" if path == "/v1/feedback" else "comments[0].id"
    body = (b'{"text": "\\ud800", "levels": {"warmth": 1}}' if path == "/v1/feedback"
            else b'{"comments": [{"text": "a", "id": "x\\udfffy"}]}')
    assert_error(post(http, body, path), 400, "invalid_unicode",
                 f"{field} holds a lone UTF-16 surrogate escape (\\ud800-\\udfff without its pair); "
                 "send whole Unicode characters")


def test_surrogate_pairs_are_whole_characters(http):
    # ensure_ascii encoders (and JavaScript) spell emoji as surrogate pairs.
    body = b'{"comments": [{"text": "\\ud83d\\udc4d\\ud83d\\udc4d", "id": "\\ud83c\\udf89"}]}'
    (result,) = assert_scores(post(http, body), 1)
    assert result["id"] == "🎉"


# ----------------------------------------------------------------- structure


@pytest.mark.parametrize("path", ROUTES)
def test_100000_levels_of_nesting_are_400(http, path):
    assert_error(post(http, b"[" * 100_000, path), 400, "malformed_json",
                 "request body is nested too deeply; send a flat JSON object")


def test_balanced_deep_nesting_is_400(http):
    assert_error(post(http, b"[" * 100_000 + b"]" * 100_000), 400, "malformed_json",
                 "request body is nested too deeply; send a flat JSON object")


def test_nesting_the_parser_accepts_is_422(http):
    body = b'{"comments": [' + b"[" * 500 + b"]" * 500 + b"]}"
    assert_error(post(http, body), 422, "validation_error",
                 "comments[0]: Input should be a valid dictionary or instance of Comment")


@pytest.mark.parametrize(
    "body,message",
    [
        (b'{"comments": [{"text": 123}]}', "comments[0].text: Input should be a valid string"),
        (b'{"comments": [{"text": ["a"]}]}', "comments[0].text: Input should be a valid string"),
        (b'{"comments": [{"text": true}]}', "comments[0].text: Input should be a valid string"),
        (b'{"comments": {"text": "a"}}', "comments: Input should be a valid list"),
        (b'{"comments": null}', "comments: Input should be a valid list"),
        (b'"comments"', "body: Input should be a valid dictionary or instance of ScoreRequest"),
        (b"null", "body: Input should be a valid dictionary or instance of ScoreRequest"),
        (b"12345", "body: Input should be a valid dictionary or instance of ScoreRequest"),
        (b'{"comments": [{"text": "a", "id": true}]}',
         "comments[0].id.str: Input should be a valid string; comments[0].id.int: Input should be a valid integer"),
        (b'{"comments": [{"text": "a", "id": 1e400}]}',
         "comments[0].id.str: Input should be a valid string; comments[0].id.int: Input should be a valid integer"),
        (b'{"comments": [{"text": "a", "id": NaN}]}',
         "comments[0].id.str: Input should be a valid string; comments[0].id.int: Input should be a valid integer"),
        (b'{"comments": [{"text": "a", "author_id": -Infinity}]}',
         "comments[0].author_id: Input should be a valid string"),
    ],
)
def test_wrong_types_are_422(http, body, message):
    assert_error(post(http, body), 422, "validation_error", message)


def test_thousands_of_bad_fields_get_a_short_answer(http):
    body = json.dumps({"comments": [{"text": i} for i in range(MAX_COMMENTS)]}).encode()
    message = assert_error(post(http, body), 422, "validation_error")
    assert message.startswith("comments[0].text: Input should be a valid string; comments[1].text")
    assert message.endswith(f"; and {MAX_COMMENTS - 10} more")


def test_infinite_rank_weight_is_422(http):
    body = b'{"comments": [{"text": "a"}], "weights": {"warmth": 1e999}}'
    assert_error(post(http, body, "/v1/rank"), 422, "invalid_weights", "weights.warmth must be a finite number, got inf")


@pytest.mark.parametrize("path", ROUTES)
def test_5000_digit_number_is_400(http, path):
    body = b'{"comments": [{"text": "a", "id": ' + b"9" * 5000 + b"}]}"
    assert_error(post(http, body, path), 400, "malformed_json",
                 "request body holds a number with more than 4300 digits")


def test_100_digit_id_is_echoed(http):
    big = 10**100 + 7
    (result,) = assert_scores(post(http, b'{"comments": [{"text": "a", "id": %d}]}' % big), 1)
    assert result["id"] == big


def test_duplicate_keys_last_value_wins(http):
    body = '{"comments": [{"text": "甲"}], "comments": [{"text": "乙", "text": "丙", "id": 1}, {"text": "丁"}]}'
    results = assert_scores(post(http, body.encode()), 2)
    reference = assert_scores(post(http, comments("丙", "丁")), 2)
    assert results[0]["id"] == 1
    assert [r["warmth"] for r in results] == [r["warmth"] for r in reference]


def test_same_id_on_two_texts_twice(http):
    # The second request repeats an id already in the duplicate window with its
    # old text and a new one; it once gave a negative duplicate count and a 500.
    first = json.dumps({"comments": [{"text": "同一个编号第一段", "id": "dup-id"}]}, ensure_ascii=False).encode()
    assert_scores(post(http, first), 1)
    second = json.dumps({"comments": [{"text": "同一个编号第一段", "id": "dup-id"},
                                      {"text": "完全不同的第二段", "id": "dup-id"}]}, ensure_ascii=False).encode()
    for result in assert_scores(post(http, second), 2):
        assert result["duplicates"]["exact_count"] >= 0


# ----------------------------------------------------------------- empty and odd texts


def test_empty_body_is_400(http):
    assert_error(post(http, b""), 400, "empty_body",
                 'request body is empty; send {"comments": [{"text": "..."}]}')


def test_raw_nul_byte_is_400(http):
    assert_error(post(http, b'{"comments": [{"text": "a\x00b"}]}'), 400, "malformed_json",
                 "request body is not valid JSON: Invalid control character at line 1 column 26")


@pytest.mark.parametrize(
    "text",
    [
        "",
        " \t\r\n\u3000\u00a0",  # blank, with full-width and no-break spaces
        "a\u0000b\u0000",  # escaped NUL characters
        "\u0001\u0007\u001b[31m",  # control characters and a terminal escape
        "😀🎉👍🏽👨‍👩‍👧‍👦🇨🇳",  # emoji only: modifiers, ZWJ sequence, flag
        "\u200b\u200c\u200d\u2060\ufeff",  # zero-width characters only
        "好\u200b评\u200d好\u2060评",  # zero-width characters inside a text
        "\u202e评好认默\u202c",  # right-to-left override
        "مرحبا بالعالم שלום עולם",  # Arabic and Hebrew
        "Hello 你好 Привет こんにちは 안녕 नमस्ते 123 ①②③ ｆｕｌｌ",  # mixed scripts and widths
        "Z̴̧̛̛̲͚̞̯̙̞̬͓͎̭̀̓̈́͐̃̈ä̸͖̺̬̦̣͍̪̦́̈́̀̿l̵̡̨̰̠͈̗͙̈́̋͌̏͝g̵̛̛̣̞̗̼̞̳͎̺̦̐̀͐o̴̧̩̣̲̪̜̓̈́",  # stacked combining marks
        "\U0010ffff\U000e0001\ue000",  # a noncharacter, a tag, private use
        "<script>alert(1)</script>' OR 1=1; --",  # markup and SQL as plain text
    ],
)
def test_odd_texts_get_scores(http, text):
    (result,) = assert_scores(post(http, comments(text)), 1)
    assert result["id"] is None


def test_odd_texts_in_feedback_and_rank(http):
    body = json.dumps({"text": "😀\u200b\u202eمرحبا", "levels": {"warmth": 2}}, ensure_ascii=False).encode()
    assert post(http, body, "/v1/feedback").status_code in (200, 201)
    ranked = post(http, comments("", "😀", "\u202e好评"), "/v1/rank")
    assert ranked.status_code == 200
    assert sorted(r["index"] for r in ranked.json()["results"]) == [0, 1, 2]
