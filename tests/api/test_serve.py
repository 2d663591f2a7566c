"""`zhenping serve` lifecycle: refusing bad models, a full queue (429) and a graceful drain."""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import time

import httpx
import pytest

from tests.api.conftest import ROOT, serve_command, server_env, start_server


def run_serve(*args: str, settings: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        serve_command("--host", "127.0.0.1", "--port", "0", *args),
        cwd=ROOT,
        env=server_env(settings or {}),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_missing_model_dir_refuses_to_start(tmp_path):
    missing = tmp_path / "nope"
    started = time.monotonic()
    result = run_serve("--model", str(missing))
    assert result.returncode == 1
    assert f"model directory {missing} does not exist" in result.stderr
    assert time.monotonic() - started < 60  # checked before the model libraries load


def test_directory_that_is_not_an_export_refuses_to_start(tmp_path):
    result = run_serve("--model", str(tmp_path))
    assert result.returncode == 1
    assert f"model directory {tmp_path} is missing config.json, scorer_config.json" in result.stderr


def test_corrupt_weights_refuse_to_start(tiny_model_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"\x00not a safetensors file" * 10)
    result = run_serve("--model", str(broken))
    assert result.returncode == 1, result.stderr[-2000:]
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"zhenping serve: cannot load the model from {broken}: ")
    assert "model.safetensors" in last_line
    assert "Traceback" not in result.stderr  # a known load failure is reported in one line


def test_invalid_setting_refuses_to_start(tiny_model_dir):
    result = run_serve("--model", str(tiny_model_dir), settings={"ZHENPING_MAX_COMMENTS": "0", "ZHENPING_API_KEYS": "s3cret"})
    assert result.returncode == 2
    assert "ZHENPING_MAX_COMMENTS: Input should be greater than 0" in result.stderr
    assert "s3cret" not in result.stderr


def test_full_queue_answers_429_then_sigterm_drains_in_flight_work(tiny_model_dir, tmp_path):
    # One text fits the queue; a long batch wait keeps it there while a second
    # request arrives. SIGTERM must then flush the waiting batch at once.
    settings = {"ZHENPING_QUEUE_SIZE": "1", "ZHENPING_MAX_COMMENTS": "1", "ZHENPING_MAX_WAIT_MS": "60000"}
    server = start_server(tiny_model_dir, tmp_path / "queue.log", settings)
    try:
        first: dict = {}

        def send_first():
            started = time.monotonic()
            first["response"] = httpx.post(f"{server.base_url}/v1/score", json={"comments": [{"text": "第一条"}]},
                                           timeout=60)
            first["seconds"] = time.monotonic() - started

        thread = threading.Thread(target=send_first)
        thread.start()
        deadline = time.monotonic() + 20
        while httpx.get(f"{server.base_url}/info").json()["batching"]["queue_depth"] < 1:
            assert time.monotonic() < deadline, "first request never reached the queue"
            time.sleep(0.05)

        second = httpx.post(f"{server.base_url}/v1/score", json={"comments": [{"text": "第二条"}]}, timeout=10)
        assert second.status_code == 429
        assert second.json() == {
            "error": "scoring queue is full (1 of 1 texts waiting, 1 more requested); retry after 1 s",
            "error_type": "queue_full",
        }
        assert second.headers["retry-after"] == "1"
        metrics = httpx.get(f"{server.base_url}/metrics").text
        assert 'zhenping_http_requests_total{method="POST",route="/v1/score",status="429"} 1.0' in metrics

        server.process.send_signal(signal.SIGTERM)
        thread.join(timeout=30)
        assert first["response"].status_code == 200
        assert len(first["response"].json()["results"]) == 1
        assert first["seconds"] < 45  # flushed by the drain, not by the 60 s batch wait
        returncode = server.process.wait(timeout=30)
        assert returncode in (0, -signal.SIGTERM)
        log = server.log()
        assert "scoring queue drained" in log
        assert "第一条" not in log and "第二条" not in log  # comment text is not logged by default
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{server.base_url}/health", timeout=2)
    finally:
        server.stop()


def test_workers_share_the_cores_and_stop_cleanly(tiny_model_dir, tmp_path):
    from pathlib import Path

    from zhenping.api.settings import available_cores

    server = start_server(tiny_model_dir, tmp_path / "workers.log",
                          {"ZHENPING_NUM_THREADS": "0", "ZHENPING_CAMPAIGN": "false"}, args=("--workers", "2"))
    try:
        children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text().split()
        cmdlines = [Path(f"/proc/{c}/cmdline").read_bytes().replace(b"\0", b" ").decode() for c in children]
        workers = [c for c in cmdlines if "resource_tracker" not in c]
        assert len(workers) == 2, cmdlines  # two worker processes under the supervisor
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            for i in range(20):
                response = client.post("/v1/score", json={"comments": [{"text": f"第{i}条评论,谢谢分享"}]})
                assert response.status_code == 200, response.text
            batching = client.get("/info").json()["batching"]
        # Each process gets its share of the cores: one model call per core, one thread each.
        share = max(1, available_cores() // 2)
        assert batching["inference_workers"] == share
        assert batching["threads_per_call"] == 1
    finally:
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(timeout=60)
    assert code == 0, server.log()[-3000:]
