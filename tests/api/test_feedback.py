"""Feedback routes against a live server whose feedback lives in a SQLite file,
and the store itself: idempotent submissions, restarts, crashes, concurrency."""

from __future__ import annotations

import signal
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy.exc import IntegrityError

from zhenping.api.db import SQLITE_FILE, FeedbackStore, StoreSettings, feedback_table, text_sha256
from zhenping.model.axes import AXES
from tests.api.conftest import API_KEYS, start_server

KEY = {"X-API-Key": API_KEYS[0]}
READY_TIMEOUT = 300  # s; a model load on a busy shared CI machine can take minutes


def feedback_settings(data_dir) -> dict[str, str]:
    return {"ZHENPING_DATA_DIR": str(data_dir), "ZHENPING_API_KEYS": ",".join(API_KEYS),
            "ZHENPING_MAX_CHARS": "50"}


@pytest.fixture(scope="module")
def feedback_server(tiny_model_dir, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("feedback-data")
    server = start_server(tiny_model_dir, data_dir / "server.log", feedback_settings(data_dir),
                          ready_timeout=READY_TIMEOUT)
    server.data_dir = data_dir
    yield server
    server.stop()


@pytest.fixture()
def fb(feedback_server):
    with httpx.Client(base_url=feedback_server.base_url, timeout=30, headers=KEY) as c:
        yield c


def assert_error(response: httpx.Response, status: int, error_type: str, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.json() == {"error": message, "error_type": error_type}


# ----------------------------------------------------------------- the routes


def test_first_submission_is_201_and_a_repeat_is_200_with_the_same_record(fb, feedback_server):
    body = {"text": "默认好评！", "id": "c-1", "levels": {"template": 3}, "submitter": "mod-1", "note": "stock"}
    first = fb.post("/v1/feedback", json=body)
    assert first.status_code == 201, first.text
    rec = first.json()
    assert rec["text"] == "默认好评！" and rec["id"] == "c-1" and rec["submitter"] == "mod-1"
    assert rec["levels"] == {"template": 3}
    assert rec["text_sha256"] == text_sha256("默认好评！")
    assert rec["model_version"] == "tiny-test"
    assert rec["submissions"] == 1 and rec["created_at"] == rec["updated_at"]

    # Same normalised text (full-width "！" is NFKC "!") and submitter: the same record, updated.
    again = fb.post("/v1/feedback", json={"text": "默认好评!", "levels": {"warmth": 1, "template": 2}, "submitter": "mod-1"})
    assert again.status_code == 200, again.text
    rec2 = again.json()
    assert rec2["feedback_id"] == rec["feedback_id"]
    assert rec2["levels"] == {"warmth": 1, "template": 2}  # named axes overwritten
    assert rec2["note"] == "stock" and rec2["id"] == "c-1"  # not sent: kept
    assert rec2["submissions"] == 2 and rec2["created_at"] == rec["created_at"]
    assert rec2["updated_at"] > rec["updated_at"]

    # Another submitter, or none, gets a record of their own.
    other = fb.post("/v1/feedback", json={"text": "默认好评！", "levels": {"template": 3}, "submitter": "mod-2"})
    anon = fb.post("/v1/feedback", json={"text": "默认好评！", "levels": {"template": 1}})
    assert (other.status_code, anon.status_code) == (201, 201)
    assert len({rec["feedback_id"], other.json()["feedback_id"], anon.json()["feedback_id"]}) == 3
    assert anon.json()["submitter"] is None


def test_a_comment_can_be_named_by_id_alone(fb):
    first = fb.post("/v1/feedback", json={"id": 9001, "levels": {"substance": 0}, "submitter": "mod-1"})
    assert first.status_code == 201, first.text
    assert first.json()["id"] == "9001" and first.json()["text"] is None and first.json()["text_sha256"] is None
    again = fb.post("/v1/feedback", json={"id": "9001", "levels": {"substance": 1}, "submitter": "mod-1"})
    assert again.status_code == 200
    assert again.json()["feedback_id"] == first.json()["feedback_id"]
    assert again.json()["levels"] == {"substance": 1}


def test_stats_summarise_what_is_stored(fb):
    fb.post("/v1/feedback", json={"text": "统计一", "levels": {"warmth": 3, "substance": 2}, "submitter": "stats-a"})
    fb.post("/v1/feedback", json={"text": "统计二", "levels": {"warmth": 0}, "submitter": "stats-b"})
    fb.post("/v1/feedback", json={"text": "统计三", "levels": {"warmth": 3}})
    response = fb.get("/v1/feedback/stats")
    assert response.status_code == 200, response.text
    stats = response.json()
    assert set(stats) == {"count", "comments", "levels", "corrected", "submitters", "anonymous", "first", "last"}
    assert stats["count"] >= 3 and stats["comments"] <= stats["count"]
    assert stats["levels"]["warmth"]["3"] >= 2 and stats["levels"]["warmth"]["0"] >= 1
    assert set(stats["levels"]) == set(AXES) and all(set(v) == {"0", "1", "2", "3"} for v in stats["levels"].values())
    assert stats["corrected"] == {a: sum(stats["levels"][a].values()) for a in AXES}
    assert stats["submitters"] >= 2 and stats["anonymous"] >= 1
    assert stats["first"] <= stats["last"]


@pytest.mark.parametrize(
    "body, error_type, message",
    [
        ({"levels": {"warmth": 1}}, "validation_error", "give the comment's text, its id, or both"),
        ({"text": "好", "levels": {}}, "validation_error",
         "levels: give a corrected level for at least one of ['warmth', 'substance', 'template']"),
        ({"text": "好"}, "validation_error", "levels: Field required"),
        ({"text": "好", "levels": {"warmth": 4}}, "validation_error", "levels.warmth: Input should be less than or equal to 3"),
        ({"text": "好", "levels": {"warmth": -1}}, "validation_error",
         "levels.warmth: Input should be greater than or equal to 0"),
        ({"text": "好", "levels": {"warmth": 1.5}}, "validation_error", "levels.warmth: Input should be a valid integer"),
        ({"text": "好", "levels": {"warmth": "2"}}, "validation_error", "levels.warmth: Input should be a valid integer"),
        ({"text": "好", "levels": {"warmth": True}}, "validation_error", "levels.warmth: Input should be a valid integer"),
        ({"text": "好", "levels": {"kindness": 2}}, "validation_error", "levels.kindness: Extra inputs are not permitted"),
        ({"text": "好", "levels": {"warmth": 1}, "rating": 5}, "validation_error", "rating: Extra inputs are not permitted"),
        ({"text": 5, "levels": {"warmth": 1}}, "validation_error", "text: Input should be a valid string"),
        ({"text": "  \u200b ", "levels": {"warmth": 1}}, "validation_error",
         "text is empty after normalisation; send the comment as posted"),
        ({"text": "长" * 51, "levels": {"warmth": 1}}, "comment_too_long", "text has 51 characters, over the limit of 50"),
        ({"text": "好", "levels": {"warmth": 1}, "submitter": "x" * 201}, "validation_error",
         "submitter: String should have at most 200 characters"),
        ({"text": "a\x00b", "levels": {"warmth": 1}}, "validation_error", "text contains a NUL character (U+0000)"),
        ({"id": 10 ** 201, "levels": {"warmth": 1}}, "validation_error", "id has 202 characters, over the limit of 200"),
    ],
)
def test_422_names_what_is_wrong(fb, body, error_type, message):
    assert_error(fb.post("/v1/feedback", json=body), 422, error_type, message)


def test_400_and_415_follow_the_service_error_body(fb):
    assert_error(fb.post("/v1/feedback", content=b'{"text": ', headers={"Content-Type": "application/json"}),
                 400, "malformed_json", "request body is not valid JSON: Expecting value at line 1 column 10")
    assert_error(fb.post("/v1/feedback", content=b"text=hi", headers={"Content-Type": "text/plain"}),
                 415, "unsupported_media_type", "Content-Type must be application/json, got 'text/plain'")


def test_feedback_needs_the_api_key(feedback_server):
    with httpx.Client(base_url=feedback_server.base_url, timeout=30) as anon:
        missing = anon.post("/v1/feedback", json={"text": "好", "levels": {"warmth": 1}})
        assert_error(missing, 401, "unauthorized",
                     "missing API key; send it as 'X-API-Key: <key>' or 'Authorization: Bearer <key>'")
        assert_error(anon.get("/v1/feedback/stats", headers={"Authorization": "Bearer nope"}),
                     401, "unauthorized", "invalid API key")


def test_concurrent_first_submissions_make_one_record(feedback_server):
    body = {"text": "并发同一条", "levels": {"warmth": 2}, "submitter": "race"}

    def send(_):
        with httpx.Client(base_url=feedback_server.base_url, timeout=30, headers=KEY) as c:
            return c.post("/v1/feedback", json=body)

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(send, range(8)))
    assert sorted(r.status_code for r in responses) == [200] * 7 + [201]
    assert len({r.json()["feedback_id"] for r in responses}) == 1
    assert max(r.json()["submissions"] for r in responses) == 8


def test_the_database_is_a_wal_mode_sqlite_file_in_the_data_dir(fb, feedback_server):
    fb.post("/v1/feedback", json={"text": "文件", "levels": {"warmth": 2}})
    path = feedback_server.data_dir / SQLITE_FILE
    assert path.is_file()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'feedback'").fetchone()[0]
    assert "CONSTRAINT uq_feedback_comment_submitter UNIQUE (comment_key, submitter)" in sql


def test_feedback_survives_a_restart_and_a_crash(tiny_model_dir, tmp_path):
    data_dir = tmp_path / "data"
    settings = feedback_settings(data_dir)
    server = start_server(tiny_model_dir, tmp_path / "1.log", settings, ready_timeout=READY_TIMEOUT)
    try:
        with httpx.Client(base_url=server.base_url, timeout=30, headers=KEY) as c:
            first = c.post("/v1/feedback", json={"text": "重启前", "levels": {"warmth": 3}, "submitter": "s"})
            assert first.status_code == 201
    finally:
        server.stop()  # SIGTERM: graceful
    assert not (data_dir / f"{SQLITE_FILE}-wal").exists()  # closed cleanly: the WAL is folded in

    server = start_server(tiny_model_dir, tmp_path / "2.log", settings, ready_timeout=READY_TIMEOUT)
    try:
        with httpx.Client(base_url=server.base_url, timeout=30, headers=KEY) as c:
            assert c.get("/v1/feedback/stats").json()["count"] == 1
            again = c.post("/v1/feedback", json={"text": "重启前", "levels": {"warmth": 2}, "submitter": "s"})
            assert again.status_code == 200
            assert again.json()["feedback_id"] == first.json()["feedback_id"]
            assert again.json()["submissions"] == 2
            crash = c.post("/v1/feedback", json={"text": "崩溃前", "levels": {"template": 0}, "submitter": "s"})
            assert crash.status_code == 201
    finally:
        server.process.send_signal(signal.SIGKILL)  # a crash: no shutdown code runs
        server.process.wait(timeout=10)

    # Every acknowledged submission is in the file (WAL included) that the next start opens.
    store = FeedbackStore(StoreSettings(data_dir=data_dir).url)
    try:
        records = {r.text: r for r in store.records()}
        assert set(records) == {"重启前", "崩溃前"}
        assert records["重启前"].levels == {"warmth": 2} and records["重启前"].submissions == 2
        assert records["崩溃前"].levels == {"template": 0}
    finally:
        store.close()


# ----------------------------------------------------------------- the store


def test_store_settings_default_to_a_sqlite_file_in_the_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ZHENPING_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.delenv("ZHENPING_DATABASE_URL", raising=False)
    assert StoreSettings().url == f"sqlite:///{tmp_path / 'd' / SQLITE_FILE}"
    monkeypatch.setenv("ZHENPING_DATABASE_URL", "postgresql://u:pw@db:5432/zp")
    assert StoreSettings().url == "postgresql+psycopg://u:pw@db:5432/zp"


def test_store_refuses_bad_submissions(tmp_path):
    store = FeedbackStore(f"sqlite:///{tmp_path / 'f.db'}")
    try:
        with pytest.raises(ValueError, match=r"unknown axes \['kindness'\]"):
            store.submit(text="好", levels={"kindness": 1})
        with pytest.raises(ValueError, match="levels.warmth must be an integer 0-3, got 7"):
            store.submit(text="好", levels={"warmth": 7})
        with pytest.raises(ValueError, match="give the comment's text, its id, or both"):
            store.submit(levels={"warmth": 1})
        with pytest.raises(ValueError, match="at least one axis"):
            store.submit(text="好", levels={})
        assert store.count() == 0
    finally:
        store.close()


def test_the_schema_enforces_one_record_per_comment_and_submitter(tmp_path):
    store = FeedbackStore(f"sqlite:///{tmp_path / 'f.db'}")
    try:
        rec, created = store.submit(text="唯一", levels={"warmth": 1}, submitter="a")
        assert created
        row = {"comment_key": text_sha256("唯一"), "submitter": "a", "warmth": 2, "created_at": rec.created_at,
               "updated_at": rec.created_at}
        with pytest.raises(IntegrityError), store.engine.begin() as conn:
            conn.execute(feedback_table.insert().values(**row))
        with pytest.raises(IntegrityError), store.engine.begin() as conn:
            conn.execute(feedback_table.insert().values(**{**row, "submitter": "b", "warmth": 5}))
        assert [r.levels for r in store.records()] == [{"warmth": 1}]
    finally:
        store.close()
