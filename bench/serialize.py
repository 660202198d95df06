"""Serialization microbench: µs per span through the processors and the encoder, in-process.

The path a request takes in the collector after decoding, without the sockets and the
database: ``trace_level``, ``pii_masking`` and ``webhook_redaction`` (as the default
pipeline builds them; ``memory_limiter`` only reads a flag), the batch processor's merge,
then the postgres exporter's encoder (``serialize`` and the compiled ``encode_request``).
Each of the three processors' gates reads the serialized ``ResourceSpans``, and so does
the encoder: this measures what that costs, and what reusing the bytes saves.

    .venv/bin/python bench/serialize.py [--workload mixed|raw] [--requests 8] [--spans 512] [--reps 21]

Requests are the ingest bench's own (``--workload``), decoded afresh before each timed
pass (the processors change messages in place); GC is off while timing; the best pass of
``--reps`` is reported, with the median. See README.md.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable

from masking import workload_batches
from mixed_payload import WORKLOADS
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans

from tracetables.collector.batch import SpanBatch
from tracetables.collector.processors.pii_masking import PiiMaskingConfig, PiiMaskingProcessor
from tracetables.collector.processors.trace_level import TraceLevelConfig, TraceLevelProcessor
from tracetables.collector.processors.webhook_redaction import WebhookRedactionConfig, WebhookRedactionProcessor
from tracetables.exporters.postgres.encoder import encode_request, serialize

Pass = Callable[[list[SpanBatch]], int]
SERIALIZED: list[int] = []  # serializations of the last merged batch, where the tree counts them


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--workload", choices=WORKLOADS, default="mixed", help="the ingest bench's requests (default mixed)")
    p.add_argument("--requests", type=int, default=8, help="requests merged into one export (default 8)")
    p.add_argument("--spans", type=int, default=512, help="spans per request (default 512)")
    p.add_argument("--reps", type=int, default=21, help="timed passes per variant (default 21)")
    p.add_argument("--seed", type=int, default=7, help="seed of the requests (default 7)")
    args = p.parse_args(argv)
    if min(args.requests, args.spans, args.reps) <= 0:
        p.error("--requests, --spans and --reps must be > 0")
    return args


def full_path() -> Pass:
    """Processors on each request, merge, encode: what the collector does per export."""
    steps = [
        TraceLevelProcessor(TraceLevelConfig(tracing_config="")),
        PiiMaskingProcessor(PiiMaskingConfig()),
        WebhookRedactionProcessor(WebhookRedactionConfig()),
    ]

    def run(batches: list[SpanBatch]) -> int:
        done = []
        for batch in batches:
            for step in steps:
                batch = step(batch)
            done.append(batch)
        merged = SpanBatch.merge(done)
        rows = encode_request(serialize(merged)).rows
        SERIALIZED[:] = [getattr(merged, "serializations", -1)]
        return rows

    return run


def encoder_only(batches: list[SpanBatch]) -> int:
    """Merge and encode, no processors: the encoder's own serialization and encoding."""
    return encode_request(serialize(SpanBatch.merge(batches))).rows


def serialize_once(batches: list[SpanBatch]) -> int:
    """One ``SerializeToString`` of every ``ResourceSpans``: the unit the path pays n times."""
    n = 0
    for batch in batches:
        for rs in batch.resource_spans:
            n += len(rs.SerializeToString())
    return n


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    encoded = workload_batches(args.workload, args.seed, args.requests, args.spans)
    spans = sum(b.spans for b in encoded)

    def fresh() -> list[SpanBatch]:
        return [SpanBatch([ResourceSpans.FromString(x) for x in b.encoded], b.spans) for b in encoded]

    variants: list[tuple[str, Pass]] = [
        ("processors + encoder", full_path()),
        ("encoder alone", encoder_only),
        ("one serialization", serialize_once),
    ]
    times: dict[str, list[float]] = {name: [] for name, _ in variants}
    rows = full_path()(fresh())  # warm-up, and the row count to check
    if rows != spans:
        print(f"the encoder made {rows} rows of {spans} spans", file=sys.stderr)
        return 1
    for _ in range(args.reps):
        for name, run in variants:
            batches = fresh()
            gc.disable()
            t0 = time.perf_counter()
            run(batches)
            elapsed = time.perf_counter() - t0
            gc.enable()
            times[name].append(elapsed / spans * 1e6)
    rs_count = sum(len(b.encoded) for b in encoded)
    print(
        f"serialization bench: {args.workload} workload, {args.requests} requests x {args.spans} spans "
        f"({rs_count} ResourceSpans), best of {args.reps} passes, fresh messages each"
    )
    for name, _ in variants:
        print(f"{name:<22} {min(times[name]):6.2f} us/span  median {statistics.median(times[name]):6.2f}")
    count = SERIALIZED[0] if SERIALIZED else -1
    print(
        "serializations         "
        + (
            f"{count / rs_count:.1f} per ResourceSpans on the full path"
            if count >= 0
            else "not counted by this tree (before SpanBatch.serialized: 4 per ResourceSpans)"
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
