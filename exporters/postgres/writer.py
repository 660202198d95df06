"""One PostgreSQL connection that writes row sets with COPY, idempotently.

Each write is one transaction. The common case — spans never seen before — is a single
``COPY spans … FROM STDIN (FORMAT BINARY)`` under a savepoint: PostgreSQL's cheapest
way in. When that COPY meets a key already stored (a client retried, or spans came
twice), the savepoint is rolled back and the rows go the careful way instead: COPY into
a per-session temporary table, then one ``INSERT INTO spans … SELECT … ON CONFLICT DO
NOTHING``. Spans are immutable, so a span delivered twice — in one batch or two, in any
order — leaves the row it left the first time. There is no per-span round trip.

Then, in the same transaction, ``tt_project(keys)`` (migrations/0003) maps the batch's
spans with a role into the projection tables: one more statement per batch.
"""

from __future__ import annotations

import logging

import psycopg
from psycopg import errors, sql

from tracetables.collector.errors import PermanentError, RetryableError

from .rows import COLUMNS, COPY_TYPES, JSON_COLUMNS

logger = logging.getLogger(__name__)

_STAGE = "tracetables_spans_stage"
# Columns whose wire type differs from the stored type (see rows.COPY_TYPES).
_STAGE_TYPES = {**{c: "jsonb" for c in JSON_COLUMNS}, "start_time": "timestamptz", "end_time": "timestamptz"}
_COLUMN_LIST = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))

STAGE_DDL = sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ({}) ON COMMIT DELETE ROWS").format(
    sql.Identifier(_STAGE),
    sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(_STAGE_TYPES.get(c, t)))
        for c, t in zip(COLUMNS, COPY_TYPES, strict=True)
    ),
)
COPY_DIRECT_SQL = sql.SQL("COPY spans ({}) FROM STDIN (FORMAT BINARY)").format(_COLUMN_LIST)
COPY_STAGE_SQL = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(sql.Identifier(_STAGE), _COLUMN_LIST)
INSERT_SQL = sql.SQL(
    "INSERT INTO spans ({cols}) SELECT {cols} FROM {stage} ON CONFLICT (trace_id, span_id) DO NOTHING"
).format(cols=_COLUMN_LIST, stage=sql.Identifier(_STAGE))

PROJECT_SQL = "SELECT tt_project(%b)"


class SpanWriter:
    """Writes row sets over one connection, reconnecting after a failure.

    Not safe for concurrent use: the exporter gives each writer one batch at a time.

    Attributes:
        fallbacks: writes that met an existing key and took the ON CONFLICT path.
    """

    def __init__(self, dsn: str, connect_timeout: float = 5.0, projections: bool = True) -> None:
        self._dsn = dsn
        self._projections = projections
        self._connect_timeout = connect_timeout
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self.fallbacks = 0

    async def write(self, data: bytes, rows: int, keys: bytes = b"") -> int:
        """Write a binary COPY stream of ``rows`` rows in one transaction.

        ``keys`` (the encoder's ids and roles) are projected in the same transaction.
        Returns the number of spans newly stored.

        Raises:
            RetryableError: the database is unreachable or the write was interrupted.
            PermanentError: the database refused the data itself.
        """
        try:
            conn = await self._connection()
            async with conn.transaction():
                async with conn.cursor() as cur:
                    try:
                        async with conn.transaction():  # a savepoint: undone alone on a duplicate
                            await _copy(cur, COPY_DIRECT_SQL, data)
                        written = rows
                    except errors.UniqueViolation:
                        self.fallbacks += 1
                        await _copy(cur, COPY_STAGE_SQL, data)
                        await cur.execute(INSERT_SQL)
                        written = cur.rowcount
                    if keys and self._projections:
                        await cur.execute(PROJECT_SQL, (keys,), prepare=True)
                    return written
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
            # Projection statements are short and planned per session; JIT compiling them
            # cost more than running them (bench/ingest, mixed workload).
            await conn.execute("SET jit = off")
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


async def _copy(cur: psycopg.AsyncCursor[tuple[object, ...]], statement: sql.Composed, data: bytes) -> None:
    async with cur.copy(statement) as copy:
        await copy.write(data)  # a whole binary COPY stream, header to trailer


def _first_line(exc: BaseException) -> str:
    # psycopg's message may quote the offending value in its DETAIL/CONTEXT lines; the
    # first line names the problem only.
    return str(exc).split("\n", 1)[0][:200]
