"""Opening the usage database and bringing its schema to the newest revision.

SQLite (the embedded default) is tuned for several processes on one file: WAL lets
readers work while one writer commits, `busy_timeout` makes a second writer wait for
the lock instead of failing, and `synchronous=NORMAL` in WAL mode loses nothing a
process had committed when it is killed (only a power cut may lose the last commits).
PostgreSQL needs nothing special: each statement below is atomic there as it is.
"""

from __future__ import annotations

import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_SECONDS = 30.0


def open_database(url: str) -> Engine:
    """An engine for `url` (``sqlite:///path`` or ``postgresql+psycopg://...``)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS})
        event.listen(engine, "connect", _tune_sqlite)
        path = engine.url.database
        if path and path != ":memory:":
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _tune_sqlite(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_SECONDS * 1000)}")
    cursor.close()


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: Engine, attempts: int = 3) -> str:
    """Apply every migration not applied yet; return the revision now in force.

    Two replicas starting at once on an empty database race on the first migration:
    the loser's transaction fails (table exists, lock timeout); by its retry the
    winner has committed and there is nothing left to do."""
    config = alembic_config()
    for attempt in range(attempts):
        try:
            with engine.begin() as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
            break
        except DBAPIError:
            if attempt == attempts - 1:
                raise
            time.sleep(1.0 + attempt)
    return current_revision(engine) or ""


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head() or ""
