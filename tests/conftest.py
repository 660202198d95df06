"""Shared fixtures: a real PostgreSQL, and a real collector on ephemeral loopback ports.

``TRACETABLES_TEST_DSN`` points the suite at an existing database (it must be one the
tests may empty); otherwise a throwaway cluster is started from the machine's
PostgreSQL binaries for the session.
"""

from __future__ import annotations

import os

# Before anything imports the collector: every reuse of a batch's cached serialization is
# checked, so a processor that changes a message without SpanBatch.changed fails the suite.
os.environ["TRACETABLES_CHECK_ENCODED"] = "1"

import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.collector_harness import RunningCollector, start_collector
from tracetables.exporters.postgres.schema import migrate


@pytest.fixture(scope="session")
def session_dsn() -> Iterator[str]:
    """A migrated database for the whole session."""
    dsn = os.environ.get("TRACETABLES_TEST_DSN")
    if dsn:
        migrate(dsn)
        yield dsn
        return
    from tracetables.exporters.postgres.embedded import EmbeddedPostgres, EmbeddedPostgresConfig

    base = Path(tempfile.mkdtemp(prefix="tt-test-pg-"))
    base.chmod(0o755)  # the unprivileged server user must reach its data dir when we are root
    server = EmbeddedPostgres(EmbeddedPostgresConfig(data_dir=base / "data", durable=False))
    dsn = server.start()
    try:
        migrate(dsn)
        yield dsn
    finally:
        server.stop()


@pytest.fixture
def dsn(session_dsn: str) -> str:
    """The session database, emptied of data before the test."""
    with psycopg.connect(session_dsn, autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public'"
                " AND tablename <> 'tracetables_migrations'"
            ).fetchall()
        ]
        if tables:
            conn.execute(f"TRUNCATE {', '.join(tables)}")
    return session_dsn


@pytest.fixture
def conn(dsn: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A connection to the emptied database."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        yield connection


@pytest.fixture
def collector(dsn: str) -> Iterator[RunningCollector]:
    """A collector with the default config, on ephemeral loopback ports, writing to ``dsn``."""
    running = start_collector(dsn)
    try:
        yield running
    finally:
        running.stop()
