"""Real-server fixtures: `zhenping serve` in a subprocess on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]

API_KEYS = ("test-key-1", "test-key-2")

# The main test server: small limits so that each can be crossed cheaply.
MAIN_SETTINGS = {
    "ZHENPING_API_KEYS": ",".join(API_KEYS),
    "ZHENPING_MAX_COMMENTS": "8",
    "ZHENPING_MAX_CHARS": "50",
    "ZHENPING_MAX_BODY_BYTES": "4096",
    "ZHENPING_QUEUE_SIZE": "64",
    "ZHENPING_MAX_WAIT_MS": "2",
    "ZHENPING_MAX_BATCH_TOKENS": "512",
    "ZHENPING_CACHE_SIZE": "100",
    "ZHENPING_CORS_ORIGINS": "http://allowed.example",
    "ZHENPING_CAMPAIGN": "false",  # the model's scores only; tests/api/test_campaign_api.py covers campaigns
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_command(*args: str) -> list[str]:
    """`zhenping serve ...` through the interpreter running the tests."""
    return [sys.executable, "-c", "from zhenping.training.cli import app; app()", "serve", *args]


def server_env(settings: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZHENPING_")}
    env.update(
        {
            "ZHENPING_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(settings)
    return env


@dataclass
class RunningServer:
    process: subprocess.Popen
    base_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_server(model_dir: Path, log_path: Path, settings: dict[str, str] | None = None,
                 ready_timeout: float = 240.0, args: tuple[str, ...] = ()) -> RunningServer:
    """Start `zhenping serve` and wait until /ready answers 200.

    The generous timeout is for busy shared machines; an idle one is ready in seconds.
    The free port is found before the server binds it, so another process can take
    it in between: a server that could not bind is started again on another port.
    """
    for _ in range(4):
        try:
            return _start_server_once(model_dir, log_path, settings, ready_timeout, args)
        except PortTaken:
            continue
    raise RuntimeError(f"no free loopback port after 4 tries:\n{log_path.read_text(errors='replace')}")


class PortTaken(RuntimeError):
    """The server exited because its port was taken before it could bind."""


def _start_server_once(model_dir: Path, log_path: Path, settings: dict[str, str] | None,
                       ready_timeout: float, args: tuple[str, ...]) -> RunningServer:
    port = free_port()
    # Anything the server stores goes beside its log, never into the user's home.
    settings = {"ZHENPING_DATA_DIR": str(log_path.parent / "data"), **(settings or {})}
    log_file = open(log_path, "wb")
    process = subprocess.Popen(
        serve_command("--host", "127.0.0.1", "--port", str(port), "--model", str(model_dir), *args),
        cwd=ROOT,
        env=server_env(settings),
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    log_file.close()
    server = RunningServer(process, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            if "address already in use" in server.log().lower():
                raise PortTaken(port)
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{server.base_url}/ready", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"server not ready after {ready_timeout} s:\n{server.log()}")


@pytest.fixture(scope="session")
def api_server(tiny_model_dir, tmp_path_factory):
    """The main server (API keys on, small limits), shared by the whole session."""
    server = start_server(tiny_model_dir, tmp_path_factory.mktemp("server") / "main.log", MAIN_SETTINGS)
    yield server
    server.stop()


@pytest.fixture()
def client(api_server):
    with httpx.Client(base_url=api_server.base_url, timeout=30, headers={"X-API-Key": API_KEYS[0]}) as c:
        yield c


@pytest.fixture()
def anon(api_server):
    """A client that sends no API key."""
    with httpx.Client(base_url=api_server.base_url, timeout=30) as c:
        yield c
