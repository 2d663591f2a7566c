"""A throwaway redis-server on a free loopback port, for tests marked ``redis``.

Tests skip (not fail) when the ``redis-server`` binary or the ``redis`` package
is missing.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """URL of a private redis-server (no persistence), started once per session."""
    pytest.importorskip("redis", reason="the redis package is not installed (pip install 'zhenping[redis]')")
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    import redis

    workdir = tmp_path_factory.mktemp("redis")
    # The free port is found before redis binds it, so another process can take it in
    # between: a server that exits at once is started again on another port.
    for _ in range(4):
        port = _free_port()
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        url = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis.from_url(url, socket_timeout=1)
        deadline = time.monotonic() + 60  # generous: a busy shared machine starts it slowly
        ready = False
        while not ready and process.poll() is None and time.monotonic() < deadline:
            try:
                ready = bool(client.ping())
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        if ready:
            break
        process.kill()
        process.wait(timeout=10)
    else:
        pytest.skip("redis-server did not start on a free loopback port after 4 tries")
    yield url
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture()
def redis_client(redis_url):
    """A client of the session's server, with an empty database."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    client.flushdb()
    yield client
    client.close()
