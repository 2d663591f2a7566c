"""In-process app behaviour that a live server cannot show on demand: unexpected
errors (500), the loading window (503), a failed load, the drain, settings and auth helpers."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from zhenping.api.auth import key_matches
from zhenping.api.main import begin_drain, create_app
from zhenping.api.settings import Settings
from zhenping.model.axes import AXES, score_to_level
from tests.helpers import StubScorer


@dataclass(frozen=True)
class Scores:
    warmth: float
    substance: float
    template: float

    @property
    def levels(self):
        return {a: score_to_level(getattr(self, a)) for a in AXES}


class FakeScorer(StubScorer):
    """The Scorer interface with deterministic scores; optionally failing."""

    model_id = "fake"
    config = {"level_scale": 3, "normalization": "zhenping-nfkc-t2s-v1"}

    def __init__(self, fail: Exception | None = None, short_by: int = 0):
        self.fail = fail
        self.short_by = short_by
        self.seen: list[str] = []
        self.pass_budgets: list[int | None] = []

    def score_normalized(self, texts, batch_size=32, max_tokens=None):
        if self.fail is not None:
            raise self.fail
        self.seen.extend(texts)
        self.pass_budgets.append(max_tokens)
        out = [Scores(min(1.0, len(t) / 10), 0.5, 0.0) for t in texts]
        return out[: len(out) - self.short_by]


def settings(**kw) -> Settings:
    # Campaign detection adds fields to results; tests/api/test_campaign_api.py covers it.
    return Settings(**{"model_dir": "unused", "max_wait_ms": 0, "campaign": False, **kw})


BODY = {"comments": [{"text": "你好"}]}
INTERNAL = {"error": "internal server error", "error_type": "internal"}


@pytest.fixture()
def api_log():
    """Records of the service logger (it does not propagate to the root logger)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Keep()
    log = logging.getLogger("zhenping.api")
    log.addHandler(handler)
    yield records
    log.removeHandler(handler)


def test_scores_with_an_injected_scorer():
    scorer = FakeScorer()
    with TestClient(create_app(settings(campaign=False), scorer=scorer)) as client:
        response = client.post("/v1/score", json={"comments": [{"text": "12345", "id": "a"}, {"text": "  1  "}]})
    assert response.status_code == 200
    assert response.json() == {
        "model": "fake@v1",
        "results": [
            {"id": "a", "warmth": 0.5, "substance": 0.5, "template": 0.0,
             "levels": {"warmth": 2, "substance": 2, "template": 0}, "truncated": False},
            {"id": None, "warmth": 0.1, "substance": 0.5, "template": 0.0,
             "levels": {"warmth": 0, "substance": 2, "template": 0}, "truncated": False},
        ],
    }
    assert scorer.seen == ["1", "12345"]  # normalised once, shortest first
    assert scorer.pass_budgets == [2048]  # the default max_pass_tokens splits a call into forward passes


def test_pass_budget_and_workers_are_settings():
    scorer = FakeScorer()
    app = create_app(settings(max_pass_tokens=300, inference_workers=3, num_threads=1), scorer=scorer)
    with TestClient(app) as client:
        assert client.post("/v1/score", json=BODY).status_code == 200
        batching = client.get("/info").json()["batching"]
    assert scorer.pass_budgets == [300]
    assert batching["max_pass_tokens"] == 300
    assert batching["inference_workers"] == 3
    assert batching["threads_per_call"] == 1


def test_the_collectors_young_threshold_is_a_setting():
    import gc

    before = gc.get_threshold()
    try:
        gc.set_threshold(700, *before[1:])
        with TestClient(create_app(settings(gc_young_threshold=0), scorer=FakeScorer())):
            assert gc.get_threshold() == (700, *before[1:])  # 0: the interpreter's own
        with TestClient(create_app(settings(), scorer=FakeScorer())):
            assert gc.get_threshold() == (10_000, *before[1:])  # the default, set once the model is ready
        with TestClient(create_app(settings(gc_young_threshold=2500), scorer=FakeScorer())):
            assert gc.get_threshold() == (2500, *before[1:])
    finally:
        gc.set_threshold(*before)


def test_500_hides_internals_and_logs_the_traceback(api_log):
    app = create_app(settings(), scorer=FakeScorer(fail=RuntimeError("secret detail /srv/weights")))
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/v1/score", json=BODY)
        metrics = client.get("/metrics").text
    assert response.status_code == 500
    assert response.json() == INTERNAL
    assert "secret" not in response.text
    errors = [r for r in api_log if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].getMessage() == "unhandled error on POST /v1/score"
    assert "secret detail" in str(errors[0].exc_info[1])
    assert 'zhenping_http_requests_total{method="POST",route="/v1/score",status="500"} 1.0' in metrics


def test_500_when_the_scorer_returns_too_few_results():
    with TestClient(create_app(settings(), scorer=FakeScorer(short_by=1)), raise_server_exceptions=False) as client:
        response = client.post("/v1/score", json=BODY)
    assert response.status_code == 500
    assert response.json() == INTERNAL


def test_503_while_the_model_loads_then_200():
    release = threading.Event()

    def slow_loader(_settings):
        release.wait(10)
        return FakeScorer(), "torch"

    with TestClient(create_app(settings(api_keys="k"), loader=slow_loader)) as client:
        assert client.get("/health").status_code == 200
        for path in ("/ready", "/info"):
            response = client.get(path)
            assert response.status_code == 503
            assert response.json() == {"error": "model is still loading; retry shortly", "error_type": "not_ready"}
            assert response.headers["retry-after"] == "1"
        scored = client.post("/v1/score", json=BODY, headers={"X-API-Key": "k"})
        assert scored.status_code == 503 and scored.json()["error_type"] == "not_ready"
        assert "zhenping_ready 0.0" in client.get("/metrics").text
        release.set()
        deadline = time.monotonic() + 10
        while client.get("/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert client.post("/v1/score", json=BODY, headers={"X-API-Key": "k"}).status_code == 200
        assert "zhenping_ready 1.0" in client.get("/metrics").text


def test_failed_load_is_reported_and_reaches_the_failure_hook():
    reasons: list[str] = []

    def broken_loader(_settings):
        raise ValueError("model.safetensors is truncated")

    with TestClient(create_app(settings(), loader=broken_loader, on_load_failure=reasons.append)) as client:
        deadline = time.monotonic() + 10
        while not reasons:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        response = client.get("/ready")
    assert reasons == ["model.safetensors is truncated"]
    assert response.status_code == 503
    assert response.json() == {"error": "model failed to load: model.safetensors is truncated", "error_type": "not_ready"}


def test_draining_turns_ready_and_scoring_to_503():
    app = create_app(settings(), scorer=FakeScorer())
    with TestClient(app) as client:
        assert client.get("/ready").status_code == 200
        begin_drain(app)
        ready = client.get("/ready")
        scored = client.post("/v1/score", json=BODY)
        assert client.get("/health").status_code == 200
        assert client.get("/info").status_code == 200
    expected = {"error": "server is shutting down; retry on another instance", "error_type": "shutting_down"}
    assert ready.status_code == 503 and ready.json() == expected
    assert scored.status_code == 503 and scored.json() == expected


def test_text_is_logged_only_when_asked(api_log):
    logging.getLogger("zhenping").setLevel(logging.DEBUG)
    try:
        for log_text in (False, True):
            with TestClient(create_app(settings(log_text=log_text, log_level="debug"), scorer=FakeScorer())) as client:
                client.post("/v1/score", json={"comments": [{"text": f"隐私文本{log_text}"}]})
    finally:
        logging.getLogger("zhenping").setLevel(logging.INFO)
    logged = "\n".join(r.getMessage() for r in api_log)
    assert "隐私文本False" not in logged
    assert "隐私文本True" in logged


def test_cors_is_off_by_default():
    with TestClient(create_app(settings(), scorer=FakeScorer())) as client:
        response = client.get("/health", headers={"Origin": "http://anywhere.example"})
    assert "access-control-allow-origin" not in response.headers


# ----------------------------------------------------------------- settings and auth


def test_settings_from_environment(monkeypatch):
    monkeypatch.setenv("ZHENPING_API_KEYS", " k1, k2 ,,")
    monkeypatch.setenv("ZHENPING_CORS_ORIGINS", "https://a.example,https://b.example")
    monkeypatch.setenv("ZHENPING_MAX_COMMENTS", "32")
    monkeypatch.setenv("ZHENPING_BACKEND", "onnx")
    monkeypatch.setenv("ZHENPING_LOG_LEVEL", "WARNING")
    s = Settings()
    assert s.api_keys == ["k1", "k2"] and s.auth_enabled
    assert s.cors_origins == ["https://a.example", "https://b.example"]
    assert (s.max_comments, s.backend, s.log_level) == (32, "onnx", "warning")


def test_settings_defaults(monkeypatch):
    for name in [k for k in os.environ if k.startswith("ZHENPING_")]:
        monkeypatch.delenv(name)
    s = Settings()
    assert s.model_dir.parts[-2:] == ("model", "default")
    assert (s.max_comments, s.max_chars, s.strict_max_chars, s.max_body_bytes) == (256, 20000, False, 1 << 20)
    assert s.api_keys == [] and not s.auth_enabled and s.cors_origins == [] and s.log_text is False


@pytest.mark.parametrize(
    "kw,message",
    [
        ({"queue_size": 10, "max_comments": 20}, "queue_size (10) must be >= max_comments (20)"),
        ({"log_level": "loud"}, "log_level must be one of critical, error, warning, info, debug, got 'loud'"),
        ({"backend": "tensorrt"}, "Input should be 'auto', 'torch' or 'onnx'"),
        ({"max_chars": 0}, "Input should be greater than 0"),
    ],
)
def test_invalid_settings(kw, message):
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings(**kw)


def test_key_matches_compares_every_key():
    assert key_matches("k2", ["k1", "k2"])
    assert not key_matches("k", ["k1", "k2"])
    assert not key_matches("", ["k1"])
    assert key_matches("ключ", ["ключ"])


def test_worker_app_loads_before_taking_requests():
    calls: list[str] = []

    def loader(_settings):
        calls.append("load")
        return FakeScorer(), "torch"

    with TestClient(create_app(settings(), loader=loader, load_in_background=False)) as client:
        assert calls == ["load"]  # done by the time the app takes requests
        assert client.get("/ready").status_code == 200


def test_worker_app_with_a_broken_model_fails_startup():
    def loader(_settings):
        raise ValueError("config.json is not valid JSON")

    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        with TestClient(create_app(settings(), loader=loader, load_in_background=False)):
            pass


@pytest.mark.parametrize(
    "env,cores,expected",
    [
        ({}, 2, (2, 1)),  # one single-threaded call per core
        ({}, 8, (4, 2)),  # at most 4 calls; the cores shared among them
        ({}, 1, (1, 1)),
        ({"num_threads": 2}, 8, (4, 2)),
        ({"num_threads": 4}, 8, (2, 4)),
        ({"inference_workers": 1}, 2, (1, 2)),  # one call using both cores
        ({"inference_workers": 3, "num_threads": 5}, 2, (3, 5)),  # explicit values are kept
    ],
)
def test_workers_and_threads_follow_the_cores(monkeypatch, env, cores, expected):
    import zhenping.api.settings as mod

    monkeypatch.setattr(mod, "available_cores", lambda: cores)
    assert settings(**env).workers_and_threads == expected
