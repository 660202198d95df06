"""One PostgreSQL connection that writes row sets: COPY into a staging table, one INSERT.

Each write is one transaction: ``COPY … FROM STDIN (FORMAT BINARY)`` into a per-session
temporary table, then a single ``INSERT INTO spans … SELECT … ON CONFLICT DO NOTHING``.
Spans are immutable, so a span delivered twice — in one batch or two, in any order —
leaves the row it left the first time. There is no per-span round trip.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import psycopg
from psycopg import sql

from tracetables.collector.errors import PermanentError, RetryableError

from .rows import COLUMNS, COPY_TYPES, JSON_COLUMNS, Row

logger = logging.getLogger(__name__)

_STAGE = "tracetables_spans_stage"


def _stage_ddl() -> sql.Composed:
    cols = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in zip(COLUMNS, COPY_TYPES)
    )
    return sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ({}) ON COMMIT DELETE ROWS").format(
        sql.Identifier(_STAGE), cols
    )


def _copy_sql() -> sql.Composed:
    return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(_STAGE), sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
    )


def _insert_sql() -> sql.Composed:
    select = [
        sql.SQL("{}::jsonb").format(sql.Identifier(c)) if c in JSON_COLUMNS else sql.Identifier(c) for c in COLUMNS
    ]
    return sql.SQL(
        "INSERT INTO spans ({cols}, start_time, end_time) SELECT {select},"
        " tt_unix_nano_to_timestamptz(start_time_unix_nano), tt_unix_nano_to_timestamptz(end_time_unix_nano)"
        " FROM {stage} ON CONFLICT (trace_id, span_id) DO NOTHING"
    ).format(
        cols=sql.SQL(", ").join(map(sql.Identifier, COLUMNS)),
        select=sql.SQL(", ").join(select),
        stage=sql.Identifier(_STAGE),
    )


STAGE_DDL = _stage_ddl()
COPY_SQL = _copy_sql()
INSERT_SQL = _insert_sql()


class SpanWriter:
    """Writes row sets over one connection, reconnecting after a failure.

    Not safe for concurrent use: the exporter gives each writer one batch at a time.
    """

    def __init__(self, dsn: str, connect_timeout: float = 5.0) -> None:
        self._dsn = dsn
        self._connect_timeout = connect_timeout
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None

    async def write(self, rows: Sequence[Row]) -> int:
        """Write rows in one transaction; returns the number of spans newly stored.

        Raises:
            RetryableError: the database is unreachable or the write was interrupted.
            PermanentError: the database refused the data itself.
        """
        try:
            conn = await self._connection()
            async with conn.transaction():
                async with conn.cursor() as cur:
                    async with cur.copy(COPY_SQL) as copy:
                        copy.set_types(COPY_TYPES)
                        for row in rows:
                            await copy.write_row(row)
                    await cur.execute(INSERT_SQL)
                    return cur.rowcount
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            raise PermanentError(f"PostgreSQL refused the spans: {type(exc).__name__}: {_first_line(exc)}") from exc
        except psycopg.Error as exc:
            await self.close()
            raise RetryableError(f"PostgreSQL unavailable: {type(exc).__name__}") from exc
        except OSError as exc:
            await self.close()
            raise RetryableError(f"PostgreSQL unavailable: {exc.strerror or type(exc).__name__}") from exc

    async def _connection(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        if self._conn is None or self._conn.closed:
            conn = await psycopg.AsyncConnection.connect(
                self._dsn, autocommit=True, connect_timeout=max(1, int(self._connect_timeout))
            )
            await conn.execute(STAGE_DDL)
            self._conn = conn
        return self._conn

    async def close(self) -> None:
        """Close the connection; safe to call twice."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            try:
                await conn.close()
            except psycopg.Error:  # already broken: nothing to flush
                pass


def _first_line(exc: BaseException) -> str:
    # psycopg's message may quote the offending value in its DETAIL/CONTEXT lines; the
    # first line names the problem only.
    return str(exc).split("\n", 1)[0][:200]
