"""The COPY-alone ceiling: how fast PostgreSQL takes the same rows with nothing else to do.

Rows come from the project's own ``build_rows`` over the same kind of requests the load
generator sends; everything that is not PostgreSQL's COPY — decoding, ``build_rows``,
JSON to jsonb-binary, timestamps, fresh ids — happens before the clock starts. Timed:
``COPY bench_copy_ceiling (...) FROM STDIN (FORMAT BINARY)`` straight into a copy of
``spans`` (same PK, index, checks and defaults), one transaction (one commit, one WAL
flush) per 8192 rows, over 1 or more connections, each in its own thread.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from mixed_payload import workload_templates
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from psycopg import sql

from tracetables.exporters.postgres.rows import COLUMNS, COPY_TYPES, build_rows

TABLE = "bench_copy_ceiling"
TXN_ROWS = 8192  # the batch processor's default send_batch_size
PASS_TXNS = 128  # at most ~1M prepared rows in memory at once


@dataclass(frozen=True)
class CopyPlan:
    """The COPY statement and field types: exactly the exporter's (``rows.COLUMNS``).

    ``build_rows`` already yields rows in binary COPY form for ``spans`` (jsonb as its
    binary input, timestamptz as int8 microseconds since 2000), so the ceiling sends
    them as they are.
    """

    @property
    def statement(self) -> sql.Composed:
        return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            sql.Identifier(TABLE), sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
        )

    @property
    def types(self) -> tuple[str, ...]:
        return COPY_TYPES


def copy_plan(dsn: str) -> CopyPlan:
    """The plan for the current schema (kept as a function for the caller's sake)."""
    return CopyPlan()


Row = tuple[Any, ...]


@dataclass
class CeilingResult:
    connections: int
    rows: int
    seconds: float  # wall time of the COPY transactions only
    client_cpu_seconds: float  # this process's CPU during them (psycopg's row encoding)
    server_cpu_seconds: float | None = None  # PostgreSQL's, when a probe was given

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def row_bodies(
    plan: CopyPlan, spans_per_request: int, attributes: int, templates: int = 64, seed: int = 2, workload: str = "raw"
) -> list[Row]:
    """Rows without their (trace_id, span_id), ready for binary COPY into the ceiling table."""
    bodies: list[Row] = []
    for tpl in workload_templates(workload, seed, templates, spans_per_request, attributes):
        request = ExportTraceServiceRequest.FromString(tpl.fresh())
        bodies.extend(row[2:] for row in build_rows(request.resource_spans).rows)
    return bodies


def with_fresh_ids(bodies: list[Row], count: int) -> list[Row]:
    """``count`` rows cycling over ``bodies``, each with a new random (trace_id, span_id)."""
    rnd = os.urandom(24 * count)
    n = len(bodies)
    return [(rnd[24 * i : 24 * i + 16], rnd[24 * i + 16 : 24 * i + 24]) + bodies[i % n] for i in range(count)]


def reset_table(dsn: str) -> None:
    """A fresh, empty ceiling table shaped like ``spans``; then a checkpoint if allowed."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(TABLE)))
        conn.execute(sql.SQL("CREATE TABLE {} (LIKE spans INCLUDING ALL)").format(sql.Identifier(TABLE)))
        try_checkpoint(conn)


def drop_table(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(TABLE)))


def try_checkpoint(conn: psycopg.Connection[Any]) -> None:
    """Start timed phases with no dirty buffers left by the previous one (needs privileges)."""
    try:
        conn.execute("CHECKPOINT")
    except psycopg.errors.InsufficientPrivilege:
        pass


def _copy_pass(
    dsn: str, plan: CopyPlan, rows: list[Row], connections: int, deadline: float
) -> tuple[int, float, float]:
    """COPY ``rows`` in TXN_ROWS transactions over ``connections`` threads: (rows, wall s, CPU s)."""
    chunks: queue.SimpleQueue[list[Row]] = queue.SimpleQueue()
    for i in range(0, len(rows), TXN_ROWS):
        chunks.put(rows[i : i + TXN_ROWS])
    ready = threading.Barrier(connections + 1)
    written = [0] * connections
    failures: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                ready.wait(timeout=60)
                while time.monotonic() < deadline:  # bounded even if the server crawls
                    try:
                        chunk = chunks.get_nowait()
                    except queue.Empty:
                        return
                    with conn.transaction(), conn.cursor() as cur, cur.copy(plan.statement) as copy:
                        copy.set_types(plan.types)
                        for row in chunk:
                            copy.write_row(row)
                    written[index] += len(chunk)
        except BaseException as exc:
            failures.append(exc)
            ready.abort()

    threads = [threading.Thread(target=worker, args=(i,), name=f"copy-{i}") for i in range(connections)]
    for t in threads:
        t.start()
    try:
        ready.wait(timeout=60)  # every connection is open before the clock starts
    except threading.BrokenBarrierError:
        pass
    cpu0, t0 = time.process_time(), time.monotonic()
    for t in threads:
        t.join()
    seconds, cpu = time.monotonic() - t0, time.process_time() - cpu0
    if failures:
        raise failures[0]
    return sum(written), seconds, cpu


def measure(
    dsn: str,
    plan: CopyPlan,
    bodies: list[Row],
    connections: int,
    min_rows: int,
    min_seconds: float,
    max_seconds: float = 300.0,
    cpu_probe: Callable[[], float] | None = None,
) -> CeilingResult:
    """COPY at least ``min_rows`` rows and for at least ``min_seconds`` (fresh ids each pass).

    ``cpu_probe`` returns PostgreSQL's CPU seconds so far; sampled around each timed pass.
    """
    reset_table(dsn)
    result = CeilingResult(connections, 0, 0.0, 0.0, 0.0 if cpu_probe else None)
    deadline = time.monotonic() + max_seconds
    want = max(min_rows, 16 * TXN_ROWS)
    while time.monotonic() < deadline:  # passes: the first sized by rows, later ones by the measured rate
        count = min(-(-want // TXN_ROWS), PASS_TXNS) * TXN_ROWS  # bounded memory per pass
        rows = with_fresh_ids(bodies, count)  # not timed
        server0 = cpu_probe() if cpu_probe else 0.0
        done, seconds, cpu = _copy_pass(dsn, plan, rows, connections, deadline)
        if cpu_probe and result.server_cpu_seconds is not None:
            result.server_cpu_seconds += cpu_probe() - server0
        result.rows += done
        result.seconds += seconds
        result.client_cpu_seconds += cpu
        short_rows, short_secs = min_rows - result.rows, min_seconds - result.seconds
        if short_rows <= 0 and short_secs <= 0:
            break
        want = max(short_rows, int(result.rows_per_second * short_secs * 1.1), TXN_ROWS)
    return result
