"""Runs a string of SQL statements and keeps every statement's result, in order.

The string goes to the server as one simple-protocol query, as ``psql -c`` sends it:
the statements run in one implicit transaction unless they hold their own ``BEGIN`` /
``COMMIT``. psycopg's ``execute`` raises on the first failing statement and drops the
results before it, so the results are read here from libpq one by one.
"""

from __future__ import annotations

import json
import select
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import pq
from psycopg.adapt import Transformer
from psycopg.errors import error_from_result

JSON_OIDS = frozenset({114, 3802})  # json, jsonb
TEXT_OIDS = frozenset({1186})  # interval: PostgreSQL's own text ("1 day 02:00:00"), not Python's


@dataclass(frozen=True, slots=True)
class JsonValue:
    """A json/jsonb cell, parsed (so a JSON ``null`` is not mistaken for SQL NULL)."""

    value: Any


@dataclass(frozen=True, slots=True)
class StatementResult:
    """What one statement returned.

    Attributes:
        status: the command tag, e.g. ``SELECT 2`` or ``INSERT 0 1``.
        columns: the column names; empty for a statement that returns no rows (INSERT).
        rows: the rows as Python values; json/jsonb cells are :class:`JsonValue`.
        copied: what a ``COPY ... TO STDOUT`` sent, as the server wrote it; else None.
    """

    status: str
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[Any, ...], ...] = ()
    copied: str | None = None

    @property
    def has_rows(self) -> bool:
        """Whether the statement returns a result set (a SELECT, ``RETURNING``)."""
        return bool(self.columns)


@dataclass(frozen=True, slots=True)
class SqlRun:
    """The results of the statements that ran, and the error that stopped the rest.

    Attributes:
        results: one per statement that succeeded, in order.
        error: the failing statement's error; None when every statement succeeded.
        statements: how many statements answered (the failed one included).
    """

    results: tuple[StatementResult, ...]
    error: psycopg.Error | None
    statements: int


def run_statements(conn: psycopg.Connection[Any], sql: str) -> SqlRun:
    """Send ``sql`` as one query on an idle autocommit connection; collect each result.

    Ctrl-C (SIGINT) while it runs cancels the query on the server: the statement under way
    fails with the server's "canceling statement" error, like any failing statement.
    """
    pgconn = conn.pgconn
    encoding = conn.info.encoding
    results: list[StatementResult] = []
    error: psycopg.Error | None = None
    answered = 0
    copied: str | None = None
    pgconn.nonblocking = 1  # as psycopg connects; the waits are _Wire's
    wire = _Wire(pgconn)
    pgconn.send_query(sql.encode(encoding))
    wire.flush()
    while (res := wire.next_result()) is not None:
        status = res.status
        if status == pq.ExecStatus.EMPTY_QUERY:
            continue
        if status == pq.ExecStatus.COPY_OUT:  # its result (``COPY n``) follows the data
            copied = wire.copy_out().decode(encoding, errors="backslashreplace")
            continue
        if status == pq.ExecStatus.COPY_IN:  # the server fails the statement: nothing after it runs
            wire.copy_end(b"COPY FROM STDIN cannot run through sql -c; use psql (tracetables sql)")
            continue
        answered += 1
        if status == pq.ExecStatus.COPY_BOTH:  # replication only; closing the connection ends it
            conn.close()
            error = psycopg.NotSupportedError("COPY BOTH cannot run through sql -c")
            break
        if status in (pq.ExecStatus.FATAL_ERROR, pq.ExecStatus.BAD_RESPONSE):
            error = error or error_from_result(res, encoding=encoding)
            continue
        if error is None:
            results.append(_result(conn, res, encoding, copied))
        copied = None
    return SqlRun(tuple(results), error, answered)


class _Wire:
    """libpq's asynchronous calls on psycopg's non-blocking connection, waiting in
    ``select`` so that a Ctrl-C is seen (and sent as a cancel request) while the server works."""

    def __init__(self, pgconn: pq.abc.PGconn) -> None:
        self._pgconn = pgconn
        self._cancelled = False

    def _wait(self, write: bool = False) -> None:
        sock = self._pgconn.socket
        try:
            select.select([sock], [sock] if write else [], [])
        except KeyboardInterrupt:
            if self._cancelled:  # a second Ctrl-C: stop waiting
                raise
            self._cancelled = True
            self._pgconn.get_cancel().cancel()

    def flush(self) -> None:
        """Send what libpq has queued."""
        while self._pgconn.flush() == 1:
            self._wait(write=True)
            self._pgconn.consume_input()

    def next_result(self) -> pq.abc.PGresult | None:
        """The next result of the query; None after the last."""
        while True:
            self._pgconn.consume_input()
            if not self._pgconn.is_busy():
                return self._pgconn.get_result()
            self._wait()

    def copy_out(self) -> bytes:
        """The data of a ``COPY ... TO STDOUT`` (its closing result is the next one)."""
        chunks: list[bytes] = []
        while True:
            size, data = self._pgconn.get_copy_data(1)
            if size < 0:  # -1: done; -2: failed, and the error is the next result
                return b"".join(chunks)
            if size == 0:
                self._wait()
                self._pgconn.consume_input()
            else:
                chunks.append(bytes(data))

    def copy_end(self, error: bytes) -> None:
        """End a ``COPY ... FROM STDIN`` as failed with ``error``."""
        while self._pgconn.put_copy_end(error) == 0:
            self._wait(write=True)
        self.flush()


def _result(conn: psycopg.Connection[Any], res: pq.abc.PGresult, encoding: str, copied: str | None) -> StatementResult:
    status = (res.command_status or b"").decode(encoding)
    if res.status != pq.ExecStatus.TUPLES_OK:
        return StatementResult(status, copied=copied)
    columns = tuple((res.fname(i) or b"").decode(encoding) for i in range(res.nfields))
    tx = Transformer(conn)
    tx.set_pgresult(res)
    rows: Sequence[tuple[Any, ...]] = tx.load_rows(0, res.ntuples, tuple)
    as_sent = [i for i in range(res.nfields) if res.ftype(i) in JSON_OIDS | TEXT_OIDS]
    if as_sent:
        rows = [_as_sent(res, r, row, as_sent, encoding) for r, row in enumerate(rows)]
    return StatementResult(status, columns, tuple(rows))


def _as_sent(res: pq.abc.PGresult, r: int, row: tuple[Any, ...], columns: list[int], encoding: str) -> tuple[Any, ...]:
    """``row`` with the cells of ``columns`` taken from the server's text: JSON parsed, the rest as is."""
    cells = list(row)
    for c in columns:
        raw = res.get_value(r, c)
        if raw is None:
            cells[c] = None
        else:
            text = bytes(raw).decode(encoding)
            cells[c] = JsonValue(json.loads(text)) if res.ftype(c) in JSON_OIDS else text
    return tuple(cells)
