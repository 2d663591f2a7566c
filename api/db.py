"""Where feedback is kept: the table, the database connection and the queries.

Feedback lives in one table, ``feedback``, through SQLAlchemy 2. By default the
database is a SQLite file, ``feedback.db`` in the data directory
(``ZHENPING_DATA_DIR``, default ``$XDG_DATA_HOME/zhenping`` or
``~/.local/share/zhenping``), opened in WAL mode with ``synchronous=FULL`` so
that an acknowledged submission survives a crash or a restart. Set
``ZHENPING_DATABASE_URL`` to use another database, e.g. PostgreSQL through
psycopg 3: ``postgresql://user:password@host:5432/zhenping``.

A record is identified by ``(comment_key, submitter)``, a unique constraint of
the table: ``comment_key`` is the SHA-256 of the normalised text when a text is
given, otherwise ``id:<comment id>``; an anonymous submitter is stored as ``""``.
Submitting again for the same comment and submitter updates that record.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    select,
    update,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError

from zhenping.model.axes import AXES, LEVELS
from zhenping.model.normalize import normalize_text

SQLITE_FILE = "feedback.db"
MAX_ID_CHARS = 200  # comment ids and submitter names
MAX_NOTE_CHARS = 2000
SUBMIT_ATTEMPTS = 3  # a concurrent first submission of the same key makes one insert fail; it is retried as an update


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/zhenping``, or ``~/.local/share/zhenping``."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "zhenping"


class StoreSettings(BaseSettings):
    """Where feedback is stored, read from ``ZHENPING_*`` environment variables.

    Example:
        >>> StoreSettings(data_dir="/tmp/zp").url
        'sqlite:////tmp/zp/feedback.db'
    """

    model_config = SettingsConfigDict(env_prefix="ZHENPING_", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir)  # folder of the SQLite database (created when missing)
    database_url: str = ""  # SQLAlchemy URL of another database; empty: SQLite file in data_dir

    @property
    def url(self) -> str:
        """The database URL in use."""
        if self.database_url.strip():
            return normalize_url(self.database_url.strip())
        return f"sqlite:///{(Path(self.data_dir).expanduser().absolute() / SQLITE_FILE)}"


def normalize_url(url: str) -> str:
    """Plain ``postgresql://`` and ``postgres://`` URLs are served by psycopg 3.

    Example:
        >>> normalize_url("postgres://u@db/zp")
        'postgresql+psycopg://u@db/zp'
    """
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def safe_url(url: str) -> str:
    """The URL with any password masked, for logs and messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as a placeholder, never echoed
        return "<unparsable database URL>"


metadata = MetaData()

feedback_table = Table(
    "feedback",
    metadata,
    Column("feedback_id", Integer, primary_key=True, autoincrement=True),
    Column("comment_key", String(80), nullable=False),  # sha256 of the normalised text, or "id:<comment id>"
    Column("submitter", String(MAX_ID_CHARS), nullable=False, server_default=""),  # "": anonymous
    Column("text", Text, nullable=True),  # as sent (the latest submission's, when one carried text)
    Column("text_sha256", String(64), nullable=True),  # of the normalised text
    Column("comment_id", String(MAX_ID_CHARS), nullable=True),
    *[Column(axis, SmallInteger, nullable=True) for axis in AXES],  # corrected level 0-3; NULL: not corrected
    Column("note", Text, nullable=True),
    Column("model_version", String(200), nullable=True),  # model served when the latest submission arrived
    Column("submissions", Integer, nullable=False, server_default="1"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("comment_key", "submitter", name="uq_feedback_comment_submitter"),
    *[CheckConstraint(f"{axis} BETWEEN 0 AND {LEVELS}", name=f"ck_feedback_{axis}_level") for axis in AXES],
    CheckConstraint(" OR ".join(f"{axis} IS NOT NULL" for axis in AXES), name="ck_feedback_some_level"),
)


def text_sha256(text: str) -> str:
    """SHA-256 (hex) of a text's normalised form: the key under which feedback on it is kept."""
    return hashlib.sha256(normalize_text(text).encode("utf-8")).hexdigest()


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL mode, FULL sync and a busy timeout, and its folder is created."""
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, hide_parameters=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    # hide_parameters: a database error names the statement, never the comment text it carried.
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, hide_parameters=True)

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn, _record):
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer; survives crashes
        cur.execute("PRAGMA synchronous=FULL")  # a committed submission is on disk before the reply
        cur.execute("PRAGMA busy_timeout=30000")  # ms a writer waits for another writer
        cur.close()

    return engine


def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands datetimes back without a zone; they are stored in UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


@dataclass(frozen=True)
class FeedbackRecord:
    """One stored feedback record; ``levels`` holds only the corrected axes."""

    feedback_id: int
    text: str | None
    comment_id: str | None
    text_sha256: str | None
    levels: dict[str, int]
    submitter: str | None
    note: str | None
    model_version: str | None
    submissions: int
    created_at: datetime
    updated_at: datetime

    def as_dict(self) -> dict:
        """JSON-ready: times as ISO 8601 strings in UTC."""
        return {
            "feedback_id": self.feedback_id,
            "text": self.text,
            "id": self.comment_id,
            "text_sha256": self.text_sha256,
            "levels": dict(self.levels),
            "submitter": self.submitter,
            "note": self.note,
            "model_version": self.model_version,
            "submissions": self.submissions,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


def _record(row) -> FeedbackRecord:
    m = row._mapping
    return FeedbackRecord(
        feedback_id=int(m["feedback_id"]),
        text=m["text"],
        comment_id=m["comment_id"],
        text_sha256=m["text_sha256"],
        levels={axis: int(m[axis]) for axis in AXES if m[axis] is not None},
        submitter=m["submitter"] or None,
        note=m["note"],
        model_version=m["model_version"],
        submissions=int(m["submissions"]),
        created_at=_utc(m["created_at"]),
        updated_at=_utc(m["updated_at"]),
    )


class FeedbackStore:
    """Feedback records in a database.

    Thread-safe (each call uses its own pooled connection and transaction).

    Args:
        url: a SQLAlchemy URL; tables are created when missing.

    Example:
        >>> store = FeedbackStore("sqlite:////tmp/zp/feedback.db")  # doctest: +SKIP
        >>> record, created = store.submit(text="默认好评", levels={"template": 3})  # doctest: +SKIP
    """

    def __init__(self, url: str):
        self.url = normalize_url(url)
        self.engine = make_engine(self.url)
        metadata.create_all(self.engine)

    @classmethod
    def from_settings(cls, settings: StoreSettings | None = None) -> "FeedbackStore":
        """The store the environment names (``ZHENPING_DATABASE_URL`` / ``ZHENPING_DATA_DIR``)."""
        return cls((settings or StoreSettings()).url)

    def close(self) -> None:
        """Close pooled connections (SQLite then folds its WAL file into the database)."""
        self.engine.dispose()

    def submit(
        self,
        *,
        levels: Mapping[str, int],
        text: str | None = None,
        comment_id: str | None = None,
        submitter: str | None = None,
        note: str | None = None,
        model_version: str | None = None,
    ) -> tuple[FeedbackRecord, bool]:
        """Store a correction, or update the record of the same comment and submitter.

        A repeat overwrites the axes it names and keeps the others, replaces the
        note when it carries one, and counts one more submission.

        Args:
            levels: corrected levels (0-3) of one or more axes.
            text: the comment text; it, when given, identifies the comment.
            comment_id: the caller's comment id; identifies the comment when no text is given.
            submitter: who corrected it; ``None`` or ``""`` for anonymous.
            note: free text.
            model_version: the model being served, for the record.

        Returns:
            ``(record, created)``: ``created`` is false when an existing record was updated.

        Raises:
            ValueError: no text and no id, no level, an unknown axis or a level out of range.
        """
        levels = dict(levels)
        unknown = [a for a in levels if a not in AXES]
        if unknown:
            raise ValueError(f"unknown axes {unknown}; axes are {list(AXES)}")
        if not levels:
            raise ValueError(f"give a corrected level for at least one axis of {list(AXES)}")
        for axis, level in levels.items():
            if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= LEVELS:
                raise ValueError(f"levels.{axis} must be an integer 0-{LEVELS}, got {level!r}")
        if text is None and comment_id is None:
            raise ValueError("give the comment's text, its id, or both")
        digest = text_sha256(text) if text is not None else None
        key = digest if digest is not None else f"id:{comment_id}"
        who = submitter or ""
        t = feedback_table
        where = (t.c.comment_key == key) & (t.c.submitter == who)
        for attempt in range(SUBMIT_ATTEMPTS):
            now = datetime.now(timezone.utc)
            changes = {
                **levels,
                "updated_at": now,
                "submissions": t.c.submissions + 1,
                "model_version": model_version,
            }
            for name, value in (("text", text), ("text_sha256", digest), ("comment_id", comment_id), ("note", note)):
                if value is not None:
                    changes[name] = value
            try:
                with self.engine.begin() as conn:
                    # Column-wise update: two submitters' concurrent repeats never lose each other's axes.
                    updated = conn.execute(update(t).where(where).values(**changes)).rowcount
                    created = updated == 0
                    if created:
                        conn.execute(
                            t.insert().values(
                                comment_key=key, submitter=who, text=text, text_sha256=digest,
                                comment_id=comment_id, note=note, model_version=model_version,
                                submissions=1, created_at=now, updated_at=now, **levels,
                            )
                        )
                    row = conn.execute(select(t).where(where)).one()
                return _record(row), created
            except IntegrityError:
                # Another request inserted the same key between our update and insert.
                if attempt == SUBMIT_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def count(self) -> int:
        """Records stored."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(feedback_table)).scalar_one())

    def stats(self) -> dict:
        """A summary: record count, distinct comments, corrected levels per axis, submitters, first and last time.

        Returns:
            ``{"count", "comments", "levels": {axis: {"0": n, .., "3": n}}, "corrected": {axis: n},
            "submitters", "anonymous", "first", "last"}`` (times ISO 8601 or ``None``).
        """
        t = feedback_table
        with self.engine.connect() as conn:
            head = conn.execute(
                select(
                    func.count(),
                    func.count(t.c.comment_key.distinct()),
                    func.min(t.c.created_at),
                    func.max(t.c.updated_at),
                )
            ).one()
            named = conn.execute(
                select(func.count(t.c.submitter.distinct())).where(t.c.submitter != "")
            ).scalar_one()
            anonymous = conn.execute(select(func.count()).where(t.c.submitter == "")).scalar_one()
            levels = {}
            for axis in AXES:
                col = t.c[axis]
                counts = dict(conn.execute(select(col, func.count()).where(col.is_not(None)).group_by(col)).all())
                levels[axis] = {str(k): int(counts.get(k, 0)) for k in range(LEVELS + 1)}
        first, last = _utc(head[2]), _utc(head[3])
        return {
            "count": int(head[0]),
            "comments": int(head[1]),
            "levels": levels,
            "corrected": {axis: sum(levels[axis].values()) for axis in AXES},
            "submitters": int(named),
            "anonymous": int(anonymous),
            "first": first.isoformat() if first else None,
            "last": last.isoformat() if last else None,
        }

    def records(self, batch: int = 1000) -> Iterator[FeedbackRecord]:
        """Every record, oldest first, read ``batch`` rows at a time."""
        t = feedback_table
        last_id = 0
        while True:
            with self.engine.connect() as conn:
                rows = conn.execute(
                    select(t).where(t.c.feedback_id > last_id).order_by(t.c.feedback_id).limit(batch)
                ).all()
            if not rows:
                return
            for row in rows:
                yield _record(row)
            last_id = int(rows[-1]._mapping["feedback_id"])


class LazyStore:
    """Opens the store on first use and keeps it; a failed open is retried on the next use.

    The service holds one of these, so a server that never receives feedback
    never creates a database, and a database that was down at start is picked
    up once it answers.
    """

    def __init__(self, settings: StoreSettings | None = None):
        self.settings = settings or StoreSettings()
        self._store: FeedbackStore | None = None
        self._lock = threading.Lock()

    @property
    def location(self) -> str:
        """The database URL, password masked."""
        return safe_url(self.settings.url)

    def get(self) -> FeedbackStore:
        """The open store; raises the database error when it cannot be opened."""
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = FeedbackStore(self.settings.url)
        return self._store

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
