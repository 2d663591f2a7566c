"""`/ready` tells the truth: 503 with the reason while a dependency of scoring is down.

A live server with the shared duplicate window in Redis, started while nothing
listens on Redis's port: scoring answers 503 ``window_unavailable`` and so does
readiness; once Redis is up, both answer 200.
"""

from __future__ import annotations

import shutil
import subprocess
import time

import httpx
import pytest

from tests.api.conftest import ROOT, free_port, serve_command, server_env

pytestmark = pytest.mark.redis


def wait_for(url: str, timeout: float = 240.0) -> None:
    """Wait until the model is loaded (``/info`` 200), whatever ``/ready`` says."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer 200 in {timeout} s")


def test_ready_is_503_while_the_redis_window_is_down(tiny_model_dir, tmp_path):
    pytest.importorskip("redis")
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    redis_port, port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    settings = {"ZHENPING_DUP_BACKEND": "redis", "ZHENPING_DUP_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
                "ZHENPING_DATA_DIR": str(tmp_path / "data")}
    log = open(tmp_path / "serve.log", "wb")
    server = subprocess.Popen(serve_command("--host", "127.0.0.1", "--port", str(port), "--model", str(tiny_model_dir)),
                              cwd=ROOT, env=server_env(settings), stdout=log, stderr=subprocess.STDOUT)
    redis_server = None
    try:
        wait_for(f"{base}/info")
        ready = httpx.get(f"{base}/ready", timeout=10)
        assert ready.status_code == 503, ready.text
        body = ready.json()
        assert body["error_type"] == "dependency_unavailable"
        assert body["error"].startswith("the duplicate window (ZHENPING_DUP_BACKEND=redis) cannot be reached at "
                                        f"redis://127.0.0.1:{redis_port}/0: ")
        assert ready.headers["retry-after"] == "1"
        score = httpx.post(f"{base}/v1/score", json={"comments": [{"text": "沙发"}]}, timeout=30)
        assert score.status_code == 503 and score.json()["error_type"] == "window_unavailable"
        assert httpx.get(f"{base}/health", timeout=10).status_code == 200  # alive, just not ready

        redis_server = subprocess.Popen([binary, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                         "--appendonly", "no", "--dir", str(tmp_path)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while httpx.get(f"{base}/ready", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "/ready stayed 503 after Redis came up"
            time.sleep(0.3)
        score = httpx.post(f"{base}/v1/score", json={"comments": [{"text": "沙发"}]}, timeout=30)
        assert score.status_code == 200, score.text
        assert score.json()["results"][0]["duplicates"]["exact_count"] == 0
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
        if redis_server is not None:
            redis_server.terminate()
            redis_server.wait(timeout=10)


def test_ready_does_not_check_redis_with_the_memory_window(api_server):
    assert httpx.get(f"{api_server.base_url}/ready", timeout=10).status_code == 200
