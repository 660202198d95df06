"""Ingest benchmark: sustained OTLP/gRPC → PostgreSQL spans/s, against the COPY-alone ceiling.

One run: PostgreSQL (``--dsn`` or a throwaway durable embedded server) → the collector
as a child process (``tracetables serve``) → a load generator process keeping
``--streams`` Export calls in flight for ``--duration`` seconds after a warm-up → SQL
check that every acknowledged span is committed → collector stopped → the same kind of
rows COPY'd straight into a copy of ``spans`` (the ceiling) → a summary. See README.md.

    .venv/bin/python bench/ingest.py [--duration 30] [--streams 8] [--spans-per-request 512]
                                     [--attributes 10] [--dsn DSN] [--py-spy FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

import copy_ceiling
import loadgen
from procs import Collector, MachineCpu, collector_config, free_port, tree_cpu_seconds
from tracetables.collector.processors.config import BatchProcessorConfig
from tracetables.exporters.postgres.config import SendingQueueConfig
from tracetables.exporters.postgres.embedded import EmbeddedPostgres, EmbeddedPostgresConfig
from tracetables.exporters.postgres.schema import migrate

TARGET_RATIO = 0.50


@dataclass
class WindowCpu:
    """CPU seconds each party used during the measured window."""

    collector: float = 0.0
    postgres: float | None = None  # None: server not on this machine's /proc (--dsn)
    loadgen: float = 0.0
    machine: MachineCpu | None = None


@dataclass
class E2eResult:
    load: loadgen.LoadResult
    cpu: WindowCpu
    stored: int  # SELECT count(*) FROM spans, while the collector still ran
    collector_ok: bool
    collector_warnings: list[str]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--duration", type=float, default=30.0, help="measured seconds (default 30; report >= 30)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of load before measuring (default 3)")
    p.add_argument("--streams", type=int, default=8, help="concurrent Export calls in flight (default 8)")
    p.add_argument("--spans-per-request", type=int, default=512, help="spans per request (default 512)")
    p.add_argument("--attributes", type=int, default=10, help="attributes per span (default 10)")
    p.add_argument("--dsn", help="scratch PostgreSQL database; its spans table is EMPTIED (default: embedded)")
    p.add_argument("--batch-timeout", metavar="DURATION",
                   help="override processors.batch.timeout, e.g. 10ms (default: the project default)")
    p.add_argument("--encoding-workers", type=int, metavar="N",
                   help="override exporters.postgres.encoding_workers (default: the project default)")
    p.add_argument("--num-consumers", type=int, metavar="N",
                   help="override exporters.postgres.sending_queue.num_consumers (default: the project default)")
    p.add_argument("--ceiling-seconds", type=float, default=10.0, help="min seconds per ceiling measurement")
    p.add_argument("--py-spy", type=Path, metavar="FILE",
                   help="record the collector with py-spy (raw format) during the window; skews the figures")
    args = p.parse_args(argv)
    if min(args.duration, args.streams, args.spans_per_request) <= 0 or args.attributes < 0 or args.warmup < 0:
        p.error("--duration, --streams, --spans-per-request must be > 0; --attributes, --warmup >= 0")
    return args


def start_database(args: argparse.Namespace, workdir: Path, stack: contextlib.ExitStack) -> tuple[str, int | None]:
    """The DSN to use and, for the embedded server, the postmaster pid (for CPU accounting)."""
    if args.dsn:
        return args.dsn, None
    server = EmbeddedPostgres(EmbeddedPostgresConfig(data_dir=workdir / "pg", durable=True))
    dsn = server.start()
    stack.callback(server.stop)
    return dsn, int((workdir / "pg" / "postmaster.pid").read_text().split()[0])


def prepare_database(dsn: str) -> dict[str, str]:
    """Migrate, empty ``spans``, checkpoint; returns the server facts for the summary."""
    migrate(dsn)
    copy_ceiling.drop_table(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE spans")
        copy_ceiling.try_checkpoint(conn)
        return {name: str(conn.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]
                for name in ("server_version", "fsync", "synchronous_commit", "shared_buffers")}


def count_spans(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return int(conn.execute("SELECT count(*) FROM spans").fetchone()[0])  # type: ignore[index]


def start_py_spy(out: Path, pid: int, seconds: float, log: Path,
                 stack: contextlib.ExitStack) -> subprocess.Popen[bytes] | None:
    """Optional profile of the collector over the window (py-spy from PATH or next to python)."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not os.access(exe, os.X_OK):
        print("py-spy not found (pip install py-spy): not profiling", file=sys.stderr)
        return None
    cmd = [exe, "record", "--nonblocking", "--format", "raw", "-r", "100", "-d", str(max(1, int(seconds))),
           "-o", str(out), "-p", str(pid)]
    with log.open("wb") as sink:
        spy = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    stack.callback(_stop_process, spy)
    return spy


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def run_e2e(args: argparse.Namespace, dsn: str, postmaster: int | None, workdir: Path,
            stack: contextlib.ExitStack) -> E2eResult:
    """Collector up, load for warm-up + duration, count what is committed, collector down."""
    port = free_port()
    config = workdir / "collector.yaml"
    config.write_text(collector_config(port, dsn, args.batch_timeout, args.num_consumers, args.encoding_workers))
    collector = Collector(config, workdir / "collector.log")
    stack.callback(collector.stop)  # idempotent: also runs if anything below fails
    try:
        collector.wait_ready(port)
    except RuntimeError:
        print_tail(collector.log_lines(), "collector log")
        raise
    print(f"collector pid {collector.pid} serving OTLP/gRPC on 127.0.0.1:{port}")
    spec = loadgen.LoadSpec(port=port, streams=args.streams, spans_per_request=args.spans_per_request,
                            attributes=args.attributes, warmup=args.warmup, duration=args.duration)
    load, cpu = drive_load(spec, collector.pid, postmaster, args, workdir, stack)
    collector_alive = collector.proc.poll() is None
    stored = count_spans(dsn)  # before SIGTERM: acknowledged spans must already be committed
    status = collector.stop()
    lines = collector.log_lines()
    if not collector_alive or status != 0:
        print(f"collector died or exited badly (status {status})", file=sys.stderr)
        print_tail(lines, "collector log")
    warnings = [line for line in lines if " WARNING " in line or " ERROR " in line or "Traceback" in line]
    return E2eResult(load, cpu, stored, collector_alive and status == 0, warnings)


def drive_load(spec: loadgen.LoadSpec, collector_pid: int, postmaster: int | None, args: argparse.Namespace,
               workdir: Path, stack: contextlib.ExitStack) -> tuple[loadgen.LoadResult, WindowCpu]:
    """Run the load generator process; sample CPU when it opens and closes the window."""
    ctx = multiprocessing.get_context("spawn")
    reader, writer = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=loadgen.run, args=(spec, writer), name="tt-bench-load")
    proc.start()
    writer.close()
    stack.callback(lambda: proc.kill() if proc.is_alive() else None)
    marks: dict[str, tuple[float, float | None, MachineCpu]] = {}
    spy: subprocess.Popen[bytes] | None = None
    deadline = time.monotonic() + 120 + spec.warmup + spec.duration + spec.call_timeout
    result: loadgen.LoadResult | None = None
    while result is None:
        if time.monotonic() > deadline:
            raise RuntimeError("load generator did not finish in time")
        if not reader.poll(1.0):
            if not proc.is_alive() and not reader.poll():
                raise RuntimeError(f"load generator exited ({proc.exitcode}) without a result")
            continue
        kind, *payload = reader.recv()
        if kind == "ready":
            print(f"load generator ready: {spec.warmup:g} s warm-up, then {spec.duration:g} s measured")
        elif kind in ("window-start", "window-end"):
            pg = tree_cpu_seconds(postmaster) if postmaster else None
            marks[kind] = (tree_cpu_seconds(collector_pid), pg, MachineCpu.sample())  # with its encoding workers
            if kind == "window-start" and args.py_spy:
                spy = start_py_spy(args.py_spy, collector_pid, spec.duration, workdir / "py-spy.log", stack)
        elif kind == "error":
            raise RuntimeError(f"load generator failed: {payload[0]}")
        else:
            result = payload[0]
    proc.join(10)
    if spy is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            spy.wait(30)
        print(f"py-spy profile: {args.py_spy} (exit {spy.poll()})")
    (c0, p0, m0), (c1, p1, m1) = marks["window-start"], marks["window-end"]
    pg_cpu = p1 - p0 if p0 is not None and p1 is not None else None
    return result, WindowCpu(c1 - c0, pg_cpu, result.cpu_seconds_window, m1 - m0)


def print_tail(lines: list[str], what: str, n: int = 30) -> None:
    print(f"--- last {min(n, len(lines))} lines of the {what} ---", file=sys.stderr)
    for line in lines[-n:]:
        print(line, file=sys.stderr)


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list (0 if empty)."""
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, max(0, math.ceil(p * len(sorted_values)) - 1))]


def machine_facts() -> str:
    model = ""
    with contextlib.suppress(OSError):
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "")
    usable = len(os.sched_getaffinity(0))
    return f"nproc {usable} ({model or platform.machine()}), {platform.system()} {platform.release()}"


def run_ceilings(dsn: str, args: argparse.Namespace, min_rows: int, postmaster: int | None
                 ) -> list[copy_ceiling.CeilingResult]:
    """COPY alone over 1, then 2 connections (the exporter's default num_consumers)."""
    print("ceiling: building rows with build_rows (not timed)...")
    plan = copy_ceiling.copy_plan(dsn)
    bodies = copy_ceiling.row_bodies(plan, args.spans_per_request, args.attributes)
    probe: Callable[[], float] | None = (lambda: tree_cpu_seconds(postmaster)) if postmaster else None
    out = []
    for connections in (1, 2):
        res = copy_ceiling.measure(dsn, plan, bodies, connections, min_rows, args.ceiling_seconds, cpu_probe=probe)
        print(f"ceiling: {connections} connection(s): {res.rows:,} rows in {res.seconds:.1f} s = "
              f"{res.rows_per_second:,.0f} rows/s")
        out.append(res)
    copy_ceiling.drop_table(dsn)
    return out


def summary(args: argparse.Namespace, e2e: E2eResult, ceilings: list[copy_ceiling.CeilingResult],
            server: dict[str, str], embedded: bool) -> bool:
    """Print the summary block; True when the run is valid (every acknowledged span stored)."""
    load, cpu, secs = e2e.load, e2e.cpu, e2e.load.window_seconds
    lat = sorted(load.window_latencies)
    rate = load.window_acked_spans / secs
    best = max(ceilings, key=lambda c: c.rows_per_second)
    ratio = rate / best.rows_per_second if best.rows_per_second else 0.0
    verified = e2e.stored >= load.total_acked_spans > 0
    batch = BatchProcessorConfig()
    timeout = args.batch_timeout or f"{batch.timeout.total_seconds() * 1000:g}ms (default)"
    consumers = args.num_consumers or f"{SendingQueueConfig().num_consumers} (default)"
    errors = ", ".join(f"{k}: {v}" for k, v in sorted(load.errors.items())) or "none"
    lines = [
        f"parameters   {args.duration:g} s measured after {args.warmup:g} s warm-up; {args.streams} streams x "
        f"{args.spans_per_request} spans/request, {args.attributes} attributes/span; batch timeout {timeout}; "
        f"num_consumers {consumers}",
        f"machine      {machine_facts()}; Python {platform.python_version()}; the collector, PostgreSQL and "
        "the load generator share these CPUs",
        f"postgresql   {server['server_version']} ({'embedded' if embedded else '--dsn'}), fsync={server['fsync']}, "
        f"synchronous_commit={server['synchronous_commit']}, shared_buffers={server['shared_buffers']}",
        f"e2e          {rate:,.0f} spans/s sustained ({load.window_acked_spans:,} spans in "
        f"{load.window_ok_requests:,} OK requests completed in the {secs:g} s window)",
        f"latency      p50 {percentile(lat, .5) * 1e3:.0f} ms, p99 {percentile(lat, .99) * 1e3:.0f} ms, "
        f"max {(lat[-1] if lat else 0) * 1e3:.0f} ms per Export call",
        f"non-OK       {errors}; spans rejected via partial_success: {load.rejected_spans}",
        f"verified     SELECT count(*) FROM spans = {e2e.stored:,} {'>=' if verified else '<'} "
        f"{load.total_acked_spans:,} acknowledged -> {'OK' if verified else 'FAILED'}",
        f"ceiling      {best.rows_per_second:,.0f} rows/s, COPY alone over {best.connections} connection(s) "
        f"({best.rows:,} rows in {best.seconds:.1f} s); "
        + "; ".join(f"{c.connections} conn: {c.rows_per_second:,.0f} rows/s" for c in ceilings),
        f"ratio        e2e / ceiling = {ratio:.1%} (target >= {TARGET_RATIO:.0%}: "
        f"{'met' if ratio >= TARGET_RATIO else 'NOT met'})",
    ]
    if load.window_acked_spans:
        us = 1e6 / load.window_acked_spans
        pg = cpu.postgres
        lines.append(f"cpu, cores   collector {cpu.collector / secs:.2f}"
                     + (f", postgres {pg / secs:.2f}" if pg is not None else "")
                     + f", load generator {cpu.loadgen / secs:.2f}"
                     + (f" (/proc/stat: machine busy {cpu.machine.busy / secs:.2f} of {cpu.machine.total / secs:.1f})"
                        if cpu.machine else ""))
        lines.append(f"cpu/span     e2e: collector {cpu.collector * us:.1f} us"
                     + (f", postgres {pg * us:.1f} us" if pg is not None else "")
                     + f", load generator {cpu.loadgen * us:.1f} us; COPY alone: "
                     + (f"postgres {best.server_cpu_seconds / best.rows * 1e6:.1f} us/row, "
                        if best.server_cpu_seconds is not None and best.rows else "")
                     + f"client {best.client_cpu_seconds / best.rows * 1e6:.1f} us/row")
    if args.streams * args.spans_per_request < batch.send_batch_size:
        lines.append(f"note         at most {args.streams} x {args.spans_per_request} spans in flight < "
                     f"send_batch_size {batch.send_batch_size}: no batch ever fills")
    if e2e.collector_warnings:
        lines.append(f"collector    {len(e2e.collector_warnings)} warning/error log lines; first: "
                     f"{e2e.collector_warnings[0]}")
    if args.duration < 30:
        lines.append("note         --duration under 30 s: use >= 30 s for figures you report")
    print("\n" + " tracetables ingest bench ".center(78, "="))
    print("\n".join(lines))
    print("=" * 78)
    return verified and e2e.collector_ok


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    workdir = Path(tempfile.mkdtemp(prefix="tt-bench-"))
    workdir.chmod(0o755)  # as root the server runs unprivileged and must reach its data dir
    try:
        with contextlib.ExitStack() as stack:
            dsn, postmaster = start_database(args, workdir, stack)
            server = prepare_database(dsn)
            print(f"PostgreSQL {server['server_version']} ready ({'--dsn' if args.dsn else 'embedded, durable'})")
            e2e = run_e2e(args, dsn, postmaster, workdir, stack)
            print(f"e2e done: {e2e.load.window_acked_spans / args.duration:,.0f} spans/s; "
                  f"{e2e.stored:,} spans stored")
            ceilings = run_ceilings(dsn, args, e2e.stored, postmaster)
            ok = summary(args, e2e, ceilings, server, embedded=not args.dsn)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
