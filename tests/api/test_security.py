"""Security properties of the service, against real `zhenping serve` processes.

* weights load from safetensors only: pickle files are never unpickled unless
  the caller passes ``allow_pickle=True`` (the service never does);
* API keys: every scoring and feedback route needs one when keys are set, a
  wrong key of the right length is refused like any other (keys are compared
  with ``hmac.compare_digest``, see api/auth.py);
* CORS is off unless origins are configured;
* body limits apply before anything is parsed: a declared Content-Length over
  the limit is answered without reading the body, a chunked body is cut off
  as soon as it passes the limit;
* comment text never reaches the logs unless ZHENPING_LOG_TEXT=true, not even
  through a database error.
"""

from __future__ import annotations

import os
import pickle
import select
import shutil
import socket
import sqlite3
import subprocess
import time
import uuid

import httpx
import pytest

from tests.api.conftest import API_KEYS, MAIN_SETTINGS, ROOT, serve_command, server_env, start_server

MAIN_MAX_BODY = int(MAIN_SETTINGS["ZHENPING_MAX_BODY_BYTES"])
MISSING_KEY = "missing API key; send it as 'X-API-Key: <key>' or 'Authorization: Bearer <key>'"
BODY = {"comments": [{"text": "安全测试"}]}


def assert_error(response: httpx.Response, status: int, error_type: str, message: str | None = None) -> None:
    assert response.status_code == status, response.text[:500]
    body = response.json()
    assert body["error_type"] == error_type, body
    if message is not None:
        assert body["error"] == message


@pytest.fixture(scope="module")
def plain_server(tiny_model_dir, tmp_path_factory):
    """Defaults (no keys, no CORS, text not logged), debug logging to catch any leak."""
    tmp = tmp_path_factory.mktemp("plain")
    server = start_server(tiny_model_dir, tmp / "server.log",
                          {"ZHENPING_LOG_LEVEL": "debug", "ZHENPING_DATA_DIR": str(tmp / "data")})
    server.data_dir = tmp / "data"
    yield server
    server.stop()


# ----------------------------------------------------------------- pickle weights


class _Payload:
    """Unpickling this runs a shell command that leaves a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def write_evil_pickle(path, marker) -> None:
    with open(path, "wb") as fh:
        pickle.dump({"bert.embeddings.word_embeddings.weight": _Payload(marker)}, fh)


def test_pickle_weights_are_never_unpickled(tiny_model_dir, tmp_path):
    from zhenping.model.scorer import ModelLoadError, Scorer

    marker = tmp_path / "pwned"
    both = shutil.copytree(tiny_model_dir, tmp_path / "both")
    write_evil_pickle(both / "pytorch_model.bin", marker)
    scorer = Scorer.from_pretrained(both)  # safetensors is there: the pickle is ignored
    assert len(scorer.score(["好"])) == 1

    only = tmp_path / "only"
    shutil.copytree(tiny_model_dir, only, ignore=shutil.ignore_patterns("model.safetensors"))
    write_evil_pickle(only / "pytorch_model.bin", marker)
    with pytest.raises(ModelLoadError, match="holds pickle weights, which are refused: unpickling can run arbitrary code"):
        Scorer.from_pretrained(only)
    assert not marker.exists()


def test_serve_refuses_a_pickle_only_model(tiny_model_dir, tmp_path):
    import torch
    from safetensors.torch import load_file

    model = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, model, ignore=shutil.ignore_patterns("model.safetensors"))
    torch.save(load_file(tiny_model_dir / "model.safetensors"), model / "pytorch_model.bin")
    result = subprocess.run(
        serve_command("--host", "127.0.0.1", "--port", "0", "--model", str(model)),
        cwd=ROOT, env=server_env({}), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"zhenping serve: cannot load the model from {model}: {model / 'pytorch_model.bin'} "
                           "holds pickle weights, which are refused")


# ----------------------------------------------------------------- API keys


KEY = API_KEYS[0]


@pytest.mark.parametrize(
    "headers,message",
    [
        ({}, MISSING_KEY),
        ({"X-API-Key": ""}, MISSING_KEY),
        ({"X-API-Key": KEY[:-1] + "9"}, "invalid API key"),  # same length, last character differs
        ({"X-API-Key": "x" * len(KEY)}, "invalid API key"),  # same length, all different
        ({"X-API-Key": KEY[:-1]}, "invalid API key"),  # a prefix
        ({"X-API-Key": KEY + "0"}, "invalid API key"),  # the key and more
        ({"X-API-Key": KEY.upper()}, "invalid API key"),
        ({"X-API-Key": f"{API_KEYS[0]},{API_KEYS[1]}"}, "invalid API key"),
        ({"X-API-Key": b"\xff\xfe" + KEY.encode()}, "invalid API key"),  # not ASCII
        ({"Authorization": f"Basic {KEY}"}, MISSING_KEY),
        ({"Authorization": "Bearer"}, MISSING_KEY),
        ({"Authorization": f"Bearer {KEY[:-1]}9"}, "invalid API key"),
        ({"Cookie": f"api_key={KEY}"}, MISSING_KEY),
    ],
)
def test_wrong_keys_are_401(api_server, headers, message):
    response = httpx.post(f"{api_server.base_url}/v1/score", json=BODY, headers=headers, timeout=30)
    assert_error(response, 401, "unauthorized", message)
    assert response.headers["www-authenticate"] == 'Bearer realm="zhenping"'


def test_key_in_the_query_string_is_not_accepted(api_server):
    response = httpx.post(f"{api_server.base_url}/v1/score?api_key={KEY}", json=BODY, timeout=30)
    assert_error(response, 401, "unauthorized", MISSING_KEY)


@pytest.mark.parametrize("headers", [{"X-API-Key": KEY}, {"Authorization": f"Bearer {API_KEYS[1]}"},
                                     {"authorization": f"bearer {KEY}"}, {"Authorization": f"Bearer  {KEY}"}])
def test_right_keys_are_accepted(api_server, headers):
    assert httpx.post(f"{api_server.base_url}/v1/score", json=BODY, headers=headers, timeout=30).status_code == 200


@pytest.mark.parametrize("method,path", [("POST", "/v1/score"), ("POST", "/v1/rank"), ("POST", "/v1/feedback"),
                                         ("GET", "/v1/feedback/stats")])
def test_every_scoring_and_feedback_route_needs_a_key(api_server, method, path):
    response = httpx.request(method, f"{api_server.base_url}{path}", json=BODY, timeout=30,
                             headers={"X-API-Key": "test-key-9"})
    assert_error(response, 401, "unauthorized", "invalid API key")


@pytest.mark.parametrize("path", ["/health", "/ready", "/info", "/metrics", "/openapi.json", "/"])
def test_probes_docs_and_page_need_no_key(api_server, path):
    response = httpx.get(f"{api_server.base_url}{path}", timeout=30)
    assert response.status_code == 200
    assert KEY not in response.text


# ----------------------------------------------------------------- CORS


def test_cors_is_off_by_default(plain_server):
    origin = {"Origin": "http://evil.example"}
    url = plain_server.base_url
    scored = httpx.post(f"{url}/v1/score", json=BODY, headers=origin, timeout=30)
    assert scored.status_code == 200  # the request is served; the browser just cannot read it
    preflight = httpx.options(f"{url}/v1/score", timeout=30,
                              headers={**origin, "Access-Control-Request-Method": "POST"})
    assert_error(preflight, 405, "method_not_allowed")
    for response in (scored, preflight, httpx.get(f"{url}/info", headers=origin, timeout=30)):
        assert not [h for h in response.headers if h.startswith("access-control-")], response.headers


def test_cors_answers_configured_origins_only(api_server):
    url = api_server.base_url
    allowed = {"Origin": "http://allowed.example"}
    scored = httpx.post(f"{url}/v1/score", json=BODY, headers={**allowed, "X-API-Key": KEY}, timeout=30)
    assert scored.status_code == 200
    assert scored.headers["access-control-allow-origin"] == "http://allowed.example"
    assert "access-control-allow-credentials" not in scored.headers
    preflight = httpx.options(f"{url}/v1/score", timeout=30,
                              headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers
    other = httpx.post(f"{url}/v1/score", json=BODY, headers={"Origin": "http://evil.example", "X-API-Key": KEY},
                       timeout=30)
    assert "access-control-allow-origin" not in other.headers


# ----------------------------------------------------------------- body limits


def raw_request(base_url: str, head: bytes) -> socket.socket:
    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(head)
    return sock


def read_response(sock: socket.socket, timeout: float = 10) -> bytes:
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def test_declared_oversized_body_is_refused_without_reading_it(api_server):
    # Headers announce 1 GiB; not one byte of it is sent. A server that tried to
    # read the body would wait forever (read_response gives up after 10 s with
    # nothing); this one answers at once and closes.
    head = (b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"X-API-Key: " + KEY.encode() + b"\r\nContent-Length: 1073741824\r\n\r\n")
    with raw_request(api_server.base_url, head) as sock:
        response = read_response(sock)
    status_line, _, rest = response.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 413 Request Entity Too Large"
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b"connection: close" in headers.lower()
    assert body == (b'{"error": "request body is larger than %d bytes; send fewer or shorter comments per request", '
                    b'"error_type": "payload_too_large"}' % MAIN_MAX_BODY)


def test_chunked_body_is_cut_off_at_the_limit(api_server):
    head = (b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"X-API-Key: " + KEY.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b" " * 256
    framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
    sent = 0
    answered_at = None
    with raw_request(api_server.base_url, head + b'e\r\n{"comments": [\r\n') as sock:
        for _ in range(4096):  # up to 1 MiB, 256 times the limit
            readable, _, _ = select.select([sock], [], [], 0.005)
            if readable:
                answered_at = sent
                break
            try:
                sock.sendall(framed)
            except (BrokenPipeError, ConnectionResetError):
                answered_at = sent
                break
            sent += len(chunk)
        response = read_response(sock)
    assert answered_at is not None, "the server read 1 MiB without answering"
    assert answered_at < 16 * MAIN_MAX_BODY, answered_at
    assert response.startswith(b"HTTP/1.1 413 ")
    assert b'"error_type": "payload_too_large"' in response


def test_body_limit_holds_for_unauthenticated_callers(api_server):
    # The size check runs before authentication: no key, still no body read.
    response = httpx.post(f"{api_server.base_url}/v1/feedback", content=b"x" * (MAIN_MAX_BODY + 1),
                          headers={"Content-Type": "application/json"}, timeout=30)
    assert_error(response, 413, "payload_too_large")


# ----------------------------------------------------------------- logs


def exercise(base_url: str, marker: str) -> None:
    """Every route that takes comment text, with ``marker`` in the text, note, ids and bad bodies."""
    with httpx.Client(base_url=base_url, timeout=30) as c:
        assert c.post("/v1/score", json={"comments": [{"text": f"评论{marker}", "id": marker,
                                                        "author_id": marker}]}).status_code == 200
        assert c.post("/v1/rank", json={"comments": [{"text": f"排序{marker}"}]}).status_code == 200
        assert c.post("/v1/feedback", json={"text": f"反馈{marker}", "levels": {"warmth": 1}, "note": marker,
                                            "submitter": marker}).status_code == 201
        # A comment over the character limit is scored on its first MAX_CHARS characters.
        long = c.post("/v1/score", json={"comments": [{"text": marker * 600}]})
        assert long.status_code == 200 and long.json()["results"][0]["truncated"] is True
        assert c.post("/v1/score", json={"comments": [{"text": 1, "id": marker}]}).status_code == 422
        assert c.post("/v1/score", content=f'{{"comments": [{{"text": "{marker}"'.encode(),
                      headers={"Content-Type": "application/json"}).status_code == 400


def test_comment_text_is_not_logged_by_default(plain_server):
    marker = f"MARK{uuid.uuid4().hex}"
    exercise(plain_server.base_url, marker)
    time.sleep(0.5)  # let the log reach the file
    log = plain_server.log()
    assert '"POST /v1/score HTTP/1.1" 200' in log  # the requests were logged, at debug level even
    assert marker not in log


def test_database_errors_do_not_log_comment_text(plain_server):
    url = plain_server.base_url
    first = httpx.post(f"{url}/v1/feedback", json={"text": "先建表", "levels": {"warmth": 1}}, timeout=30)
    assert first.status_code in (200, 201)
    with sqlite3.connect(plain_server.data_dir / "feedback.db") as db:
        db.execute("CREATE TRIGGER refuse BEFORE INSERT ON feedback BEGIN SELECT RAISE(ABORT, 'disk on fire'); END")
    marker = f"MARK{uuid.uuid4().hex}"
    try:
        response = httpx.post(f"{url}/v1/feedback", json={"text": f"会失败{marker}", "levels": {"warmth": 2},
                                                         "note": marker}, timeout=30)
        # A refusal by the database (here a trigger) is a server fault: plain 500, no internals.
        assert_error(response, 500, "internal", "internal server error")
    finally:
        with sqlite3.connect(plain_server.data_dir / "feedback.db") as db:
            db.execute("DROP TRIGGER refuse")
    time.sleep(0.5)
    log = plain_server.log()
    assert "feedback database error" in log and "disk on fire" in log
    assert marker not in log


def test_comment_text_is_logged_when_asked(tiny_model_dir, tmp_path):
    server = start_server(tiny_model_dir, tmp_path / "server.log",
                          {"ZHENPING_LOG_TEXT": "true", "ZHENPING_CAMPAIGN": "false"})
    try:
        marker = f"MARK{uuid.uuid4().hex}"
        with httpx.Client(base_url=server.base_url, timeout=30) as c:
            assert c.post("/v1/score", json={"comments": [{"text": f"评论{marker}"}]}).status_code == 200
        time.sleep(0.5)
        assert f"scoring texts: ['评论{marker}']" in server.log()
    finally:
        server.stop()
