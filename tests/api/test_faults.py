"""Faults around `zhenping serve`: broken model folders, SIGTERM under load, a broken ONNX model.

What a client sees when the server is stopped with SIGTERM while busy:

* requests already received (queued or being scored) finish with 200;
* requests that reach the app after the signal get 503 ``shutting_down`` with
  ``Retry-After: 1`` (the listener is still open for a moment);
* once the listener is closed, new connections are refused (a transport
  error, not an HTTP answer): a load balancer retries them elsewhere.

The process then exits with status 0.
"""

from __future__ import annotations

import itertools
import json
import shutil
import signal
import subprocess
import threading
import time

import httpx
import pytest

from tests.api.conftest import ROOT, serve_command, server_env, start_server


def run_serve(model_dir, settings: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`zhenping serve --model DIR` to completion (a server that starts is stopped by the timeout)."""
    return subprocess.run(
        serve_command("--host", "127.0.0.1", "--port", "0", "--model", str(model_dir)),
        cwd=ROOT, env=server_env(settings or {}), capture_output=True, text=True, timeout=timeout,
    )


def copy_model(src, dst):
    shutil.copytree(src, dst)
    return dst


def last_line(stderr: str) -> str:
    return stderr.strip().splitlines()[-1]


# ----------------------------------------------------------------- broken model folders


def test_missing_config_json_refuses_to_start(tiny_model_dir, tmp_path):
    model = copy_model(tiny_model_dir, tmp_path / "m")
    (model / "config.json").unlink()
    result = run_serve(model)
    assert result.returncode == 1
    assert last_line(result.stderr) == (
        f"zhenping serve: model directory {model} is missing config.json; is it a complete export?")


def test_scorer_config_that_is_not_json_refuses_to_start(tiny_model_dir, tmp_path):
    model = copy_model(tiny_model_dir, tmp_path / "m")
    (model / "scorer_config.json").write_text('{"axes": ["warmth", ', encoding="utf-8")
    result = run_serve(model)
    assert result.returncode == 1
    assert last_line(result.stderr).startswith(f"zhenping serve: {model / 'scorer_config.json'} is not valid JSON: ")


def test_scorer_config_with_other_axes_refuses_to_start(tiny_model_dir, tmp_path):
    model = copy_model(tiny_model_dir, tmp_path / "m")
    config = json.loads((model / "scorer_config.json").read_text(encoding="utf-8"))
    config["axes"] = ["warmth", "substance", "toxicity"]
    (model / "scorer_config.json").write_text(json.dumps(config), encoding="utf-8")
    result = run_serve(model)
    assert result.returncode == 1
    assert last_line(result.stderr) == (
        "zhenping serve: model axes ['warmth', 'substance', 'toxicity'] differ from the service's "
        "['warmth', 'substance', 'template']")


def test_scorer_config_with_a_bad_max_length_refuses_to_start(tiny_model_dir, tmp_path):
    model = copy_model(tiny_model_dir, tmp_path / "m")
    config = json.loads((model / "scorer_config.json").read_text(encoding="utf-8"))
    config["max_length"] = "long"
    (model / "scorer_config.json").write_text(json.dumps(config), encoding="utf-8")
    result = run_serve(model)
    assert result.returncode == 1, result.stderr[-2000:]
    assert last_line(result.stderr) == (
        f"zhenping serve: cannot load the model from {model}: scorer_config.json of {model}: "
        "'max_length' must be an int >= 2, got 'long'")
    assert "Traceback" not in result.stderr


def test_max_length_beyond_the_models_positions_refuses_to_start(tiny_model_dir):
    result = run_serve(tiny_model_dir, {"ZHENPING_MAX_LENGTH": "500"})
    assert result.returncode == 1, result.stderr[-2000:]
    assert last_line(result.stderr) == (
        f"zhenping serve: cannot load the model from {tiny_model_dir}: max_length 500 is more than the 66 tokens "
        "this model has positions for (its max_position_embeddings is 66)")
    assert "Traceback" not in result.stderr


def test_max_length_setting_is_the_tokens_the_service_reads(tiny_model_dir, tmp_path):
    from zhenping.model.scorer import Scorer

    server = start_server(tiny_model_dir, tmp_path / "short.log", {"ZHENPING_MAX_LENGTH": "12",
                                                                   "ZHENPING_CAMPAIGN": "false"})
    try:
        assert httpx.get(f"{server.base_url}/info", timeout=10).json()["max_length"] == 12
        text = "质量很好物流很快" * 4  # 32 characters: more than 12 tokens
        got = httpx.post(f"{server.base_url}/v1/score", json={"comments": [{"text": text}]},
                         timeout=30).json()["results"][0]
    finally:
        server.stop()
    want = Scorer.from_pretrained(tiny_model_dir, max_length=12).score([text])[0]
    assert got["truncated"] is True
    for axis in ("warmth", "substance", "template"):
        assert got[axis] == pytest.approx(getattr(want, axis), abs=1e-4)


def test_truncated_safetensors_refuses_to_start(tiny_model_dir, tmp_path):
    # A copy cut short, as a full disk or an interrupted download leaves it.
    model = copy_model(tiny_model_dir, tmp_path / "m")
    weights = model / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    result = run_serve(model)
    assert result.returncode == 1, result.stderr[-2000:]
    line = last_line(result.stderr)
    assert line.startswith(f"zhenping serve: cannot load the model from {model}: {weights} is not a readable "
                           "safetensors file: ")
    assert "Traceback" not in result.stderr


# ----------------------------------------------------------------- ONNX backend


@pytest.fixture(scope="module")
def corrupt_onnx_dir(tiny_model_dir, tmp_path_factory):
    model = copy_model(tiny_model_dir, tmp_path_factory.mktemp("onnx") / "m")
    (model / "model.onnx").write_bytes(b"\x08\x07garbage, not a protobuf" * 50)
    return model


def test_corrupt_onnx_model_refuses_to_start_without_fallback(corrupt_onnx_dir):
    result = run_serve(corrupt_onnx_dir, {"ZHENPING_BACKEND": "onnx"})
    assert result.returncode == 1, result.stderr[-2000:]
    assert last_line(result.stderr).startswith(
        f"zhenping serve: cannot load the model from {corrupt_onnx_dir}: {corrupt_onnx_dir / 'model.onnx'} "
        "is not a loadable ONNX model: ")


def test_corrupt_onnx_model_falls_back_to_torch_when_allowed(corrupt_onnx_dir, tmp_path):
    settings = {"ZHENPING_BACKEND": "onnx", "ZHENPING_ONNX_FALLBACK": "true"}
    server = start_server(corrupt_onnx_dir, tmp_path / "fallback.log", settings)
    try:
        info = httpx.get(f"{server.base_url}/info", timeout=10).json()
        assert info["backend"] == "torch"
        response = httpx.post(f"{server.base_url}/v1/score", json={"comments": [{"text": "回退到PyTorch"}]}, timeout=30)
        assert response.status_code == 200
        assert "ONNX backend unavailable, scoring with PyTorch instead" in server.log()
    finally:
        server.stop()


# ----------------------------------------------------------------- SIGTERM under load


def test_sigterm_under_load_finishes_in_flight_requests_and_exits_0(tiny_model_dir, tmp_path):
    # A long batch wait holds the first requests in the queue: they are in
    # flight when the signal arrives, and the drain must score them at once.
    # The wait is long (20 s) so that a busy machine's slowness cannot pass for
    # waiting on the timer, nor the timer for a drain.
    settings = {"ZHENPING_MAX_WAIT_MS": "20000", "ZHENPING_CAMPAIGN": "false"}
    server = start_server(tiny_model_dir, tmp_path / "drain.log", settings)
    url = server.base_url
    in_flight = 16
    answers: dict[int, httpx.Response] = {}
    late: list[str] = []
    counter = itertools.count()

    def send(i: int) -> None:
        answers[i] = httpx.post(f"{url}/v1/score", json={"comments": [{"text": f"排队中的第{i}条"}]}, timeout=60)

    def keep_sending(stop: threading.Event) -> None:
        # New connections and one kept-alive connection, until the server is gone.
        with httpx.Client(base_url=url, timeout=30) as kept:
            while not stop.is_set():
                for client in (kept, None):
                    body = {"comments": [{"text": f"信号之后的第{next(counter)}条"}]}
                    try:
                        r = (kept.post("/v1/score", json=body) if client is kept
                             else httpx.post(f"{url}/v1/score", json=body, timeout=30))
                    except httpx.TransportError as exc:
                        late.append(type(exc).__name__)
                        continue
                    if r.status_code == 503:
                        assert r.json() == {"error": "server is shutting down; retry on another instance",
                                            "error_type": "shutting_down"}
                        assert r.headers["retry-after"] == "1"
                    late.append(str(r.status_code))
                time.sleep(0.02)

    try:
        threads = [threading.Thread(target=send, args=(i,)) for i in range(in_flight)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/info", timeout=10).json()["batching"]["queue_depth"] < in_flight:
            assert time.monotonic() < deadline, "the requests never reached the queue"
            time.sleep(0.02)

        stop = threading.Event()
        latecomer = threading.Thread(target=keep_sending, args=(stop,))
        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        latecomer.start()
        for t in threads:
            t.join(timeout=30)
        drained = time.monotonic() - signalled
        returncode = server.process.wait(timeout=30)
        stop.set()
        latecomer.join(timeout=30)
    finally:
        server.stop()

    assert sorted(answers) == list(range(in_flight))
    for i, response in answers.items():
        assert response.status_code == 200, response.text
        assert len(response.json()["results"]) == 1
    assert drained < 10, "queued requests waited for the batch timer instead of the drain"
    assert returncode == 0, server.log()[-3000:]
    # After the signal: 503 shutting_down while the listener is open, refused connections after.
    assert late, "no request was sent after the signal"
    assert set(late) <= {"503", "200", "ConnectError", "RemoteProtocolError", "ReadError"}, late
    assert not [s for s in late if s.startswith("5") and s != "503"]
    log = server.log()
    assert "scoring queue drained" in log
    assert "Traceback" not in log
