"""Overload benchmark: offer N times what the collector can store, and see how it answers.

Per protocol (OTLP/gRPC, then OTLP/HTTP protobuf), against a fresh ``tracetables serve``
on the default processor chain (memory_limiter, trace_level, pii_masking,
webhook_redaction, batch) into PostgreSQL (``--dsn`` or a throwaway durable embedded
server):

1. **capacity**: ``--capacity-streams`` calls kept in flight for ``--capacity-seconds``;
   the spans acknowledged per second are what the collector stores at most.
2. **overload**: ``--overload`` times that rate, open loop, for ``--duration`` seconds.
   The load is many clients that behave like OTel SDK exporters: each has its own
   connection (gRPC channel or HTTP/1.1 keep-alive connection), one request in flight,
   a ``--deadline`` per request, and no retries (each answer is only recorded). Requests
   are due at even intervals; a client still waiting when its next one is due skips it
   (counted as ``skipped``: the offered rate fell short by that much).

Printed per protocol: the answers (gRPC codes / HTTP statuses), latency percentiles of
acknowledged and of refused requests, CANCELLED and other non-answers, the batch write
time from the collector's own ``tracetables_batch_commit_seconds``, and the check that
every acknowledged span is stored and nothing refused was (``spans`` rows = spans
acknowledged, the table emptied first). The target: acknowledged p99 within
``max_queue_wait`` (2 s, the default) plus one batch write, and 0 CANCELLED.

    .venv/bin/python bench/overload.py [--protocol grpc|http|both] [--overload 3]
                                       [--duration 30] [--spans-per-request 512] [--dsn DSN]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing
import re
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import grpc
import psycopg
from ingest import DEFAULT_PROCESSORS, empty_tables, prepare_database, print_tail, start_database
from mixed_payload import WORKLOADS, workload_templates
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from otlp_payload import Template
from procs import Collector, collector_config, free_port

from tracetables.collector._confmap import parse_duration

EXPORT_PATH = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
MAX_QUEUE_WAIT = 2.0  # processors.batch.max_queue_wait's default, which the config here keeps


@dataclass(frozen=True)
class Phase:
    protocol: str  # "grpc" | "http"
    port: int
    workload: str
    spans_per_request: int
    deadline: float
    duration: float
    streams: int = 0  # closed loop: this many calls kept in flight
    rate: float = 0.0  # open loop: requests per second offered
    clients: int = 0  # open loop: this many SDK-like clients


@dataclass
class Outcome:
    sent: int = 0
    skipped: int = 0  # open loop: due while the client was still waiting
    answers: dict[str, int] = field(default_factory=dict)  # "OK", "RESOURCE_EXHAUSTED", "200", "429", ...
    acked_spans: int = 0  # spans of OK answers less partial_success.rejected_spans
    acked_latency: list[float] = field(default_factory=list)
    refused_latency: list[float] = field(default_factory=list)
    seconds: float = 0.0


def run_phase(phase: Phase) -> Outcome:
    """Process entry point (a ``spawn`` child, so the load has its own interpreter)."""
    templates = workload_templates(phase.workload, 7, 32, phase.spans_per_request, 10)
    return asyncio.run(_phase(phase, templates))


class _Client:
    """One SDK-like exporter: its own connection, one request at a time."""

    def __init__(self, phase: Phase) -> None:
        self.phase = phase
        self._channel: grpc.aio.Channel | None = None
        self._session: aiohttp.ClientSession | None = None
        if phase.protocol == "grpc":
            self._channel = grpc.aio.insecure_channel(f"127.0.0.1:{phase.port}")
            self._export = self._channel.unary_unary(EXPORT_PATH)
        else:
            connector = aiohttp.TCPConnector(limit=1)
            timeout = aiohttp.ClientTimeout(total=phase.deadline)
            self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)
            self._url = f"http://127.0.0.1:{phase.port}/v1/traces"

    async def send(self, template: Template, out: Outcome) -> None:
        body = template.fresh()
        started = time.monotonic()
        out.sent += 1
        reply: bytes | None = None
        if self._channel is not None:
            try:
                reply = await self._export(body, timeout=self.phase.deadline)
                answer = "OK"
            except grpc.aio.AioRpcError as exc:
                answer = exc.code().name
        else:
            assert self._session is not None
            try:
                headers = {"Content-Type": "application/x-protobuf"}
                async with self._session.post(self._url, data=body, headers=headers) as response:
                    data = await response.read()
                    answer = str(response.status)
                    if response.status == 200:
                        reply = data
            except (aiohttp.ClientError, TimeoutError) as exc:
                answer = f"error {type(exc).__name__}"
        elapsed = time.monotonic() - started
        out.answers[answer] = out.answers.get(answer, 0) + 1
        if reply is not None:
            rejected = ExportTraceServiceResponse.FromString(reply).partial_success.rejected_spans
            out.acked_spans += template.span_count - rejected
            out.acked_latency.append(elapsed)
        elif answer in ("RESOURCE_EXHAUSTED", "UNAVAILABLE", "429", "503"):
            out.refused_latency.append(elapsed)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        if self._session is not None:
            await self._session.close()


async def _phase(phase: Phase, templates: list[Template]) -> Outcome:
    out = Outcome()
    clients = [_Client(phase) for _ in range(phase.streams or phase.clients)]
    began = time.monotonic()
    end = began + phase.duration

    async def closed_loop(index: int, client: _Client) -> None:
        n = index
        while time.monotonic() < end:
            await client.send(templates[n % len(templates)], out)
            n += len(clients)

    async def open_loop(index: int, client: _Client) -> None:
        # Request k is due at began + k / rate; this client owns k = index, index + C, ...
        k, step = index, len(clients)
        while True:
            due = began + k / phase.rate
            if due >= end:
                return
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
            elif now - due > 1.0 / phase.rate * step:  # missed a whole turn: the SDK would have dropped it
                out.skipped += 1
                k += step
                continue
            await client.send(templates[k % len(templates)], out)
            k += step

    loop = closed_loop if phase.streams else open_loop
    try:
        # Bounded: no request starts after `end`, and each ends within its deadline.
        await asyncio.wait_for(
            asyncio.gather(*(loop(i, c) for i, c in enumerate(clients))), timeout=phase.duration + phase.deadline + 10
        )
    finally:
        out.seconds = time.monotonic() - began
        await asyncio.gather(*(c.close() for c in clients))
    return out


def percentile(values: list[float], p: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def commit_seconds(metrics_port: int) -> tuple[int, float, float]:
    """(batches, mean seconds, p99 interpolated in its bucket) of ``tracetables_batch_commit_seconds``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    buckets: list[tuple[float, float]] = []
    total = count = 0.0
    for line in text.splitlines():
        if not line.startswith("tracetables_batch_commit_seconds"):
            continue
        value = float(line.rsplit(" ", 1)[1])
        if line.startswith("tracetables_batch_commit_seconds_bucket"):
            match = re.search(r'le="([^"]+)"', line)
            if match:
                buckets.append((float(match.group(1)), value))
        elif line.startswith("tracetables_batch_commit_seconds_sum"):
            total += value
        elif line.startswith("tracetables_batch_commit_seconds_count"):
            count += value
    p99 = math.nan  # linear inside the bucket that holds the 99th percentile
    below_le = below_n = 0.0
    for le, n in sorted(buckets):
        if count and n >= 0.99 * count:
            p99 = le if math.isinf(le) else below_le + (le - below_le) * (0.99 * count - below_n) / max(n - below_n, 1)
            break
        below_le, below_n = le, n
    return int(count), (total / count if count else math.nan), p99


def stored_spans(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM spans").fetchone()
    return int(row[0]) if row else 0


def run_protocol(args: argparse.Namespace, protocol: str, dsn: str, workdir: Path, stack: contextlib.ExitStack) -> bool:
    empty_tables(dsn)
    grpc_port, http_port, metrics_port = free_port(), free_port(), free_port()
    config = workdir / f"collector-{protocol}.yaml"
    text = collector_config(
        grpc_port, dsn, processors=DEFAULT_PROCESSORS, http_port=http_port, metrics_port=metrics_port
    )
    if args.max_queue_wait is not None:
        text = text.replace("  batch: {}", f'  batch: {{max_queue_wait: "{args.max_queue_wait}"}}', 1)
    config.write_text(text)
    collector = Collector(config, workdir / f"collector-{protocol}.log")
    stack.callback(collector.stop)
    collector.wait_ready(grpc_port)
    collector.wait_ready(http_port)
    port = grpc_port if protocol == "grpc" else http_port
    ctx = multiprocessing.get_context("spawn")
    common = {
        "protocol": protocol,
        "port": port,
        "workload": args.workload,
        "spans_per_request": args.spans_per_request,
        "deadline": args.deadline,
    }
    with ctx.Pool(1) as pool:
        capacity = pool.apply(
            run_phase, (Phase(**common, duration=args.capacity_seconds, streams=args.capacity_streams),)
        )
        capacity_rate = capacity.acked_spans / capacity.seconds
        rate = args.overload * capacity_rate / args.spans_per_request
        clients = min(args.max_clients, max(8, math.ceil(rate * (MAX_QUEUE_WAIT + 1.0))))
        print(
            f"{protocol}: capacity {capacity_rate:,.0f} spans/s ({capacity.answers}); offering {args.overload:g}x ="
            f" {rate:.1f} requests/s of {args.spans_per_request} spans from {clients} clients for {args.duration:g} s"
        )
        load = pool.apply(run_phase, (Phase(**common, duration=args.duration, rate=rate, clients=clients),))
    batches, commit_mean, commit_p99 = commit_seconds(metrics_port)
    stored = stored_spans(dsn)  # before SIGTERM: every acknowledged span is committed already
    status = collector.stop()
    lines = collector.log_lines()
    acked = capacity.acked_spans + load.acked_spans
    cancelled = load.answers.get("CANCELLED", 0) + capacity.answers.get("CANCELLED", 0)
    p99 = percentile(load.acked_latency, 99)
    budget = (
        MAX_QUEUE_WAIT
        if args.max_queue_wait is None
        else parse_duration(args.max_queue_wait, "--max-queue-wait").total_seconds()
    )
    target = budget + commit_p99
    print(f"\n{protocol}, {args.overload:g}x overload, {load.seconds:.1f} s")
    print(f"  offered       {load.sent + load.skipped:,} requests ({load.sent:,} sent, {load.skipped:,} skipped)")
    print(f"  sent/s        {load.sent / args.duration:.1f}")
    for answer, n in sorted(load.answers.items(), key=lambda kv: -kv[1]):
        print(f"  {answer:20} {n:7,}  {n / max(1, load.sent):6.1%}")
    print(f"  acked spans/s {load.acked_spans / args.duration:,.0f}")
    for name, values in (("acknowledged", load.acked_latency), ("refused", load.refused_latency)):
        ps = " ".join(f"p{p} {percentile(values, p):.3f}" for p in (50, 90, 99))
        print(f"  {name:13} latency s: {ps}  max {max(values, default=math.nan):.3f}")
    print(f"  batch writes  {batches:,}, mean {commit_mean:.3f} s, p99 ~ {commit_p99:.3f} s")
    print(f"  stored        {stored:,} spans of {acked:,} acknowledged (capacity phase included)")
    warnings = [line for line in lines if " ERROR " in line or "Traceback" in line]
    if warnings or status != 0:
        print_tail(lines, f"collector log (exit {status})")
    met = p99 <= target and cancelled == 0 and stored == acked and status == 0 and not warnings
    print(
        f"  target        acked p99 {p99:.3f} s <= {target:.3f} s, CANCELLED {cancelled} == 0, stored == acked: "
        f"{'met' if met else 'NOT met'}"
    )
    return met


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--protocol", choices=("grpc", "http", "both"), default="both")
    p.add_argument("--overload", type=float, default=3.0, help="offered load / measured capacity (default 3)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of overload (default 30)")
    p.add_argument("--capacity-seconds", type=float, default=10.0, help="seconds of the capacity phase (default 10)")
    p.add_argument("--capacity-streams", type=int, default=8, help="calls in flight when measuring capacity")
    p.add_argument("--spans-per-request", type=int, default=512, help="spans per request (default 512, the SDK's)")
    p.add_argument("--deadline", type=float, default=10.0, help="per-request deadline, s (default 10, the SDK's)")
    p.add_argument("--max-clients", type=int, default=1000, help="upper bound on the clients (default 1000)")
    p.add_argument(
        "--max-queue-wait", help="override processors.batch.max_queue_wait, e.g. 0s: off (default: the project's 2s)"
    )
    p.add_argument("--workload", choices=WORKLOADS, default="mixed")
    p.add_argument("--dsn", help="scratch PostgreSQL database; its tables are EMPTIED (default: embedded)")
    args = p.parse_args(argv)
    if args.duration <= 0 or args.duration > 600 or args.capacity_seconds <= 0 or args.overload <= 0:
        p.error("--duration must be in (0, 600], --capacity-seconds and --overload positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    protocols = ("grpc", "http") if args.protocol == "both" else (args.protocol,)
    with tempfile.TemporaryDirectory(prefix="tt-overload-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        workdir.chmod(0o755)  # as root the server runs unprivileged and must reach its data dir
        dsn, _ = start_database(args, workdir, stack)
        prepare_database(dsn)
        results = [run_protocol(args, protocol, dsn, workdir, stack) for protocol in protocols]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
