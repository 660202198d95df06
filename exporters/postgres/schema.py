"""Versioned schema migrations for the PostgreSQL exporter.

Migrations are the numbered ``migrations/NNNN_name.sql`` files, applied in order, each in
its own transaction, under an advisory lock so that two collectors starting together
do not race. Applied versions are recorded in ``tracetables_migrations``.

A migration that adds a view or a query function ends with ``SELECT tt_grant_reader_access();``
(0010), so the ``tracetables_reader`` role can read it; ``tests/test_reader_access.py``
reads every view as a reader and fails on one it cannot.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

import psycopg

logger = logging.getLogger(__name__)

_LOCK_KEY = 0x7472_6163_6574_6162  # "tracetab", fits a signed bigint
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered SQL file."""

    version: int
    name: str
    sql: str


def available_migrations() -> list[Migration]:
    """Every migration shipped with the package, in version order."""
    folder = resources.files("tracetables.exporters.postgres") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    return found


def applied_versions(conn: psycopg.Connection[tuple[object, ...]]) -> dict[int, str]:
    """Versions already applied to the database, with their names (empty if none)."""
    exists = conn.execute("SELECT to_regclass('tracetables_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return {}
    rows = conn.execute("SELECT version, name FROM tracetables_migrations ORDER BY version").fetchall()
    return {int(str(v)): str(n) for v, n in rows}


def migrate(dsn: str, target: int | None = None) -> list[Migration]:
    """Apply every pending migration (up to ``target``, when given); returns those applied now.

    Args:
        dsn: the database.
        target: the last version to apply (an older schema, for upgrade tests); None: all.

    Raises:
        psycopg.Error: the database is unreachable or a migration failed (that
            migration's transaction is rolled back; earlier ones stay).
    """
    applied_now: list[Migration] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS tracetables_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = applied_versions(conn)
            for migration in available_migrations():
                if migration.version in done or (target is not None and migration.version > target):
                    continue
                with conn.transaction():
                    conn.execute(migration.sql.encode("utf-8"))
                    conn.execute(
                        "INSERT INTO tracetables_migrations (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
                logger.info("applied migration %04d_%s", migration.version, migration.name)
                applied_now.append(migration)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now
