"""Feedback on a real PostgreSQL server: a throwaway cluster (initdb + pg_ctl) in a
temporary folder on a free loopback port, removed afterwards.

Needs the PostgreSQL server binaries (Debian: ``apt-get install postgresql``) and
psycopg 3 (``pip install "psycopg[binary]"``); skipped with the reason otherwise.
Run as root, the cluster runs as the ``postgres`` user.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import httpx
import pytest

from zhenping.api.db import FeedbackStore
from tests.api.conftest import API_KEYS, free_port, start_server

pytestmark = pytest.mark.postgres

KEY = {"X-API-Key": API_KEYS[0]}
READY_TIMEOUT = 300  # s; see test_feedback.py


def _server_bin_dir() -> Path | None:
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


class Cluster:
    """A PostgreSQL cluster of its own: ``url`` connects as a trusted superuser."""

    def __init__(self, bin_dir: Path, user: str | None):
        self.bin_dir = bin_dir
        self.user = user  # run the server as this OS user (root may not run it)
        self.root = Path(tempfile.mkdtemp(prefix="zhenping-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        if user:
            uid = pwd.getpwnam(user)
            os.chown(self.root, uid.pw_uid, uid.pw_gid)
        self.url = f"postgresql://zhenping@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 180) -> None:
        result = subprocess.run([str(self.bin_dir / args[0]), *args[1:]], user=self.user, cwd=self.root,
                                capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise RuntimeError(f"{args[0]} failed ({result.returncode}): {result.stderr}\n{log}")

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "zhenping", "--auth=trust", "-E", "UTF8",
                  "--locale=C", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "120", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def pg():
    bin_dir = _server_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found; install them: apt-get install postgresql")
    if importlib.util.find_spec("psycopg") is None:
        pytest.skip('psycopg 3 is not installed: pip install "psycopg[binary]"')
    user = None
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres").pw_name
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the PostgreSQL server as")
    cluster = Cluster(bin_dir, user)
    try:
        cluster.init()
        cluster.start()
    except BaseException:
        cluster.remove()
        raise
    yield cluster
    try:
        cluster.stop()
    finally:
        cluster.remove()


@pytest.fixture()
def store(pg):
    store = FeedbackStore(pg.url)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE feedback RESTART IDENTITY")
    yield store
    store.close()


def test_store_on_postgres_is_idempotent_per_comment_and_submitter(store):
    rec, created = store.submit(text="默认好评", levels={"template": 3}, submitter="a", note="stock")
    assert created and rec.feedback_id == 1 and rec.created_at.tzinfo is not None
    again, created = store.submit(text="默认好评 ", levels={"warmth": 1}, submitter="a")
    assert not created and again.feedback_id == rec.feedback_id
    assert again.levels == {"warmth": 1, "template": 3} and again.note == "stock" and again.submissions == 2
    _, created = store.submit(comment_id="c-7", levels={"substance": 2})
    assert created
    stats = store.stats()
    assert stats["count"] == 2 and stats["comments"] == 2
    assert stats["levels"]["template"] == {"0": 0, "1": 0, "2": 0, "3": 1}
    assert stats["submitters"] == 1 and stats["anonymous"] == 1


def test_concurrent_first_submissions_on_postgres_make_one_record(store):
    results = []
    barrier = threading.Barrier(6)

    def submit():
        barrier.wait()
        results.append(store.submit(text="同时提交", levels={"warmth": 2}, submitter="race"))

    threads = [threading.Thread(target=submit) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(created for _, created in results) == [False] * 5 + [True]
    assert {rec.feedback_id for rec, _ in results} == {results[0][0].feedback_id}
    assert store.count() == 1 and next(store.records()).submissions == 6


def test_schema_on_postgres_has_the_unique_and_level_constraints(store):
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'feedback'::regclass ORDER BY conname"
        ).all()
    defs = dict(rows)
    assert defs["uq_feedback_comment_submitter"] == "UNIQUE (comment_key, submitter)"
    assert "warmth >= 0" in defs["ck_feedback_warmth_level"] and "warmth <= 3" in defs["ck_feedback_warmth_level"]


def test_service_keeps_feedback_in_postgres_across_restarts(pg, store, tiny_model_dir, tmp_path):
    settings = {"ZHENPING_DATABASE_URL": pg.url, "ZHENPING_API_KEYS": ",".join(API_KEYS),
                "ZHENPING_DATA_DIR": str(tmp_path / "unused")}
    server = start_server(tiny_model_dir, tmp_path / "server.log", settings, ready_timeout=READY_TIMEOUT)
    try:
        with httpx.Client(base_url=server.base_url, timeout=30, headers=KEY) as c:
            first = c.post("/v1/feedback", json={"text": "存进数据库", "levels": {"warmth": 3}, "submitter": "s"})
            assert first.status_code == 201, first.text
            again = c.post("/v1/feedback", json={"text": "存进数据库", "levels": {"substance": 1}, "submitter": "s"})
            assert again.status_code == 200
            assert again.json()["feedback_id"] == first.json()["feedback_id"]

            # The database restarts under the running service: the next request reconnects.
            pg.stop()
            pg.start()
            stats = c.get("/v1/feedback/stats")
            assert stats.status_code == 200, stats.text
            assert stats.json()["count"] == 1
            assert stats.json()["levels"]["substance"]["1"] == 1
    finally:
        server.stop()
    assert not (tmp_path / "unused").exists()  # with a database URL, no SQLite file is made
    (record,) = list(store.records())
    assert record.levels == {"warmth": 3, "substance": 1} and record.submitter == "s"
