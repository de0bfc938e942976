"""Database engine and schema migrations for the job registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text

MIGRATIONS = Path(__file__).parent / "migrations"
# PostgreSQL advisory lock key of the registry's migrations ("openeo" in ASCII).
MIGRATION_LOCK = 0x6F70656E656F


def make_engine(database_url: str) -> Engine:
    """An engine usable from several processes at once (API server, task workers)."""
    if database_url.startswith("sqlite"):
        path = database_url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(database_url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(database_url, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API read while a task writes; busy_timeout waits instead of failing.
    # synchronous=NORMAL: in WAL mode a commit then needs no fsync (checkpoints still sync);
    # the database stays consistent, only the last commits could be lost if the machine
    # itself went down. Every job log line is a commit, and a task writes dozens.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (idempotent)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Processes that start together (api-server replicas, a deployment's first tasks)
            # migrate one after the other: 3 of 4 concurrent first migrations failed on
            # PostgreSQL's catalog (duplicate key in pg_type) without it. Released at commit.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
