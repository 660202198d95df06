"""Turning batches into binary COPY data: serialized OTLP in, a COPY stream out.

Building rows is the exporter's one per-span cost: every attribute walked, every value
encoded as JSON. In Python that is ≈ 14 µs a span; the compiled encoder
(``_fastrows.c``) reads the protobuf wire format directly and does it in ≈ 2 µs. A
batch is serialized (cheap, in C), encoded — in ``encoding_workers`` worker processes,
or in-process with 0 — and comes back as the exact bytes of a ``COPY … (FORMAT
BINARY)`` stream; the event loop only forwards them to PostgreSQL.

Workers are started with ``spawn``: forking a process that runs gRPC is unsafe.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from types import ModuleType

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from psycopg import postgres
from psycopg._copy_base import BinaryFormatter  # psycopg's own C-backed COPY row encoder
from psycopg.adapt import Transformer
from psycopg.pq import Format

from tracetables.collector.batch import SpanBatch
from tracetables.collector.errors import RetryableError

from .rows import COPY_TYPES, build_rows

try:
    _fastrows: ModuleType | None = importlib.import_module(f"{__package__}._fastrows")
except ImportError:  # a source tree nobody built: the Python reference takes over
    _fastrows = None

logger = logging.getLogger(__name__)

_OIDS = [postgres.types[name].oid for name in COPY_TYPES]


@dataclass(slots=True)
class EncodedBatch:
    """A batch as COPY data.

    Attributes:
        data: a whole binary COPY stream (header, rows, trailer) in ``rows.COLUMNS`` order.
        rows: how many rows it holds: one per span (none is refused for its content).
        keys: 25 bytes per span (with 16- and 8-byte ids), its ids and role, for ``tt_project``.
    """

    data: bytes
    rows: int
    keys: bytes = b""


def serialize(batch: SpanBatch) -> bytes:
    """The batch as ``ExportTraceServiceRequest`` bytes, reusing each message's cached
    serialization (see ``SpanBatch.serialized``)."""
    parts = []
    for i in range(len(batch.resource_spans)):
        body = batch.serialized(i)
        parts.append(b"\x0a" + _varint(len(body)))  # field 1, length-delimited
        parts.append(body)  # not concatenated here: join copies each body once
    return b"".join(parts)


def encode_request(payload: bytes) -> EncodedBatch:
    """Serialized request → COPY data. Runs in a worker process (or in-process).

    Uses the compiled encoder when it is built (it is, by every install), else the
    Python reference below; tests hold the two to byte-identical output.
    """
    if _fastrows is None:
        return encode_request_python(payload)
    data, rows, keys = _fastrows.encode(payload)
    return EncodedBatch(data, rows, keys)


def encode_request_python(payload: bytes) -> EncodedBatch:
    """The pure-Python encoder: ``build_rows`` and psycopg's binary row formatter."""
    request = ExportTraceServiceRequest.FromString(payload)
    rowset = build_rows(request.resource_spans)
    transformer = Transformer()
    transformer.set_dumper_types(_OIDS, Format.BINARY)
    formatter = BinaryFormatter(transformer)
    chunks = []
    for row in rowset.rows:
        if data := formatter.write_row(row):
            chunks.append(data)
    chunks.append(formatter.end())
    return EncodedBatch(b"".join(chunks), len(rowset.rows), bytes(rowset.keys))


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _warm_up() -> None:
    """Runs once in each new worker so the first batch does not pay for imports."""


class RowEncoder:
    """Encodes batches in ``workers`` processes (0: in the calling thread).

    Args:
        workers: worker processes; 0 encodes in-process.
    """

    def __init__(self, workers: int) -> None:
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def start(self) -> None:
        """Start the worker processes (blocking: each imports the encoder)."""
        if self._workers and self._pool is None:
            pool = ProcessPoolExecutor(self._workers, mp_context=multiprocessing.get_context("spawn"))
            for future in [pool.submit(_warm_up) for _ in range(self._workers)]:
                future.result(timeout=120)
            self._pool = pool

    async def encode(self, batch: SpanBatch) -> EncodedBatch:
        """Encode a batch.

        A worker that dies (killed, out of memory) breaks the pool: it is replaced and
        the batch encoded again once. Raises ``RetryableError`` if that fails too.
        """
        payload = serialize(batch)
        batch.release()  # the payload holds the bytes now; the batch waits for the commit without them
        for attempt in (1, 2):
            pool = self._pool
            if pool is None:
                return encode_request(payload)
            try:
                return await asyncio.get_running_loop().run_in_executor(pool, encode_request, payload)
            except BrokenProcessPool as exc:
                logger.error("an encoding worker died; starting new ones")
                if self._pool is pool:  # concurrent exports may have replaced it already
                    self._pool = None
                    pool.shutdown(wait=False, cancel_futures=True)
                    await asyncio.to_thread(self.start)
                if attempt == 2:
                    raise RetryableError("encoding workers keep dying; retry later") from exc
        raise AssertionError("unreachable")

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the live workers (for operators and tests)."""
        pool = self._pool
        processes = getattr(pool, "_processes", None) or {}
        return sorted(processes)

    def shutdown(self) -> None:
        """Stop the workers; safe to call twice."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=False)
