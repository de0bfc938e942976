"""The job registry and local accounts on a real SQLite database, migrated by Alembic."""

from pathlib import Path

import pytest
from sqlalchemy import inspect

from openeo_airflow.core.errors import CredentialsInvalid, JobNotFound, TokenInvalid
from openeo_airflow.core.models import JobStatus
from openeo_airflow.jobs.accounts import Accounts, check_password, hash_password
from openeo_airflow.jobs.database import make_engine, migrate
from openeo_airflow.jobs.registry import JobRegistry

GRAPH = {
    "process_graph": {"a": {"process_id": "add", "arguments": {"x": 1, "y": 2}, "result": True}}
}


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The same tests on the embedded database and on the production one."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'registry.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    migrate(engine)
    yield engine
    if request.param == "postgresql":
        # One server for the session: leave an empty schema for the next test.
        from openeo_airflow.jobs.tables import metadata

        with engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())
    engine.dispose()


def test_migration_creates_tables_and_is_idempotent(engine) -> None:  # type: ignore[no-untyped-def]
    migrate(engine)
    tables = set(inspect(engine).get_table_names())
    assert {"users", "tokens", "jobs", "job_logs", "alembic_version"} <= tables


def test_job_round_trip_and_ownership(engine) -> None:  # type: ignore[no-untyped-def]
    registry = JobRegistry(engine)
    job = registry.create("alice", GRAPH, title="t", job_options={"engine": "inline"})
    loaded = registry.get(job.id, "alice")
    assert loaded.process == GRAPH
    assert loaded.status is JobStatus.CREATED
    assert loaded.job_options == {"engine": "inline"}
    assert loaded.created.tzinfo is not None
    with pytest.raises(JobNotFound):
        registry.get(job.id, "bob")
    assert [j.id for j in registry.jobs_of("alice")] == [job.id]
    assert registry.jobs_of("bob") == []


def test_conditional_status_update_never_overrides_a_cancel(engine) -> None:  # type: ignore[no-untyped-def]
    registry = JobRegistry(engine)
    job = registry.create("alice", GRAPH)
    registry.set_status(job.id, JobStatus.CANCELED)
    moved = registry.set_status(
        job.id, JobStatus.ERROR, only_from=[JobStatus.QUEUED, JobStatus.RUNNING]
    )
    assert moved is False
    assert registry.get(job.id).status is JobStatus.CANCELED


def test_logs_offset_and_level(engine) -> None:  # type: ignore[no-untyped-def]
    registry = JobRegistry(engine)
    job = registry.create("alice", GRAPH)
    registry.add_log(job.id, "debug", "d")
    registry.add_log(job.id, "info", "i", stage="load")
    registry.add_log(job.id, "error", "e", stage="save")
    assert [e.message for e in registry.logs(job.id)] == ["d", "i", "e"]
    assert [e.message for e in registry.logs(job.id, level="info")] == ["i", "e"]
    first = registry.logs(job.id)[0]
    assert [e.message for e in registry.logs(job.id, offset=first.id)] == ["i", "e"]
    registry.delete(job.id)
    assert registry.logs(job.id) == []


def test_passwords_are_hashed_and_tokens_resolve(engine) -> None:  # type: ignore[no-untyped-def]
    stored = hash_password("s3cret")
    assert "s3cret" not in stored
    assert check_password("s3cret", stored)
    assert not check_password("wrong", stored)

    accounts = Accounts(engine)
    accounts.set_password("alice", "s3cret")
    token = accounts.login("alice", "s3cret")
    assert accounts.user_for_token(token).user_id == "alice"
    with pytest.raises(CredentialsInvalid):
        accounts.login("alice", "nope")
    with pytest.raises(CredentialsInvalid):
        accounts.login("mallory", "s3cret")
    with pytest.raises(TokenInvalid):
        accounts.user_for_token("forged")


def test_expired_tokens_are_rejected(engine) -> None:  # type: ignore[no-untyped-def]
    accounts = Accounts(engine, token_ttl_seconds=-1)
    accounts.set_password("alice", "pw")
    token = accounts.login("alice", "pw")
    with pytest.raises(TokenInvalid):
        accounts.user_for_token(token)


def test_sqlite_commits_without_fsync_in_wal_mode(tmp_path: Path) -> None:
    """Every job log line is a commit: WAL with synchronous=NORMAL (no fsync per commit)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'registry.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    engine.dispose()


def test_concurrent_first_migrations_on_postgresql_all_succeed(postgres_url: str) -> None:
    # Replicas of the api-server and the first tasks of a fresh deployment (or of an upgrade
    # with a new revision) each migrate on start, in processes of their own, at the same time.
    import subprocess
    import sys
    import time
    import uuid

    from sqlalchemy import create_engine, text

    name = f"fresh_{uuid.uuid4().hex[:8]}"
    server = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    server.dispose()
    url = postgres_url.rsplit("/", 1)[0] + f"/{name}"
    at = time.time() + 8  # after every process has imported
    code = (
        "import sys, time\n"
        "from openeo_airflow.jobs.database import make_engine, migrate\n"
        "engine = make_engine(sys.argv[1])\n"
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"
        "migrate(engine)\n"
    )
    starts = [
        subprocess.Popen(
            [sys.executable, "-c", code, url, str(at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outcomes = [(p.wait(timeout=120), p.communicate()[1][-300:]) for p in starts]
    assert [code for code, _ in outcomes] == [0] * 4, outcomes
    engine = make_engine(url)
    assert {"jobs", "job_logs", "alembic_version"} <= set(inspect(engine).get_table_names())
    engine.dispose()
