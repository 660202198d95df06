"""Ingest benchmark: sustained OTLP/gRPC → PostgreSQL spans/s, against the COPY-alone ceiling.

One run: PostgreSQL (``--dsn`` or a throwaway durable embedded server) → the collector
as a child process (``tracetables serve``) → a load generator process keeping
``--streams`` Export calls in flight for ``--duration`` seconds after a warm-up → SQL
check that every acknowledged span is committed (and projected) → collector stopped →
the same kind of rows COPY'd straight into a copy of ``spans`` (the ceiling) → a summary.

With ``--compare-projections`` (the default for ``--workload mixed``) the ceiling is
replaced by a second phase: the same load against a fresh collector with
``projections: false``, then with ``projections: true``, tables emptied in between, and
the cost of projections (1 - on/off) is reported. With ``--compare-masking`` the two
phases are masking off (processors ``[batch]``) and on (``[pii_masking,
webhook_redaction, batch]``, their defaults), projections alike in both, and the
throughput ratio on/off is reported. See README.md.

    .venv/bin/python bench/ingest.py [--duration 30] [--streams 8] [--spans-per-request 512]
                                     [--attributes 10] [--workload raw|mixed] [--[no-]compare-projections]
                                     [--compare-masking] [--[no-]projections] [--dsn DSN] [--py-spy FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import copy_ceiling
import loadgen
import projection_check
import psycopg
from mixed_payload import WORKLOADS
from procs import Collector, MachineCpu, collector_config, free_port, tree_cpu_seconds
from report import E2eResult, WindowCpu, compare_summary, masking_summary, summary

from tracetables.exporters.postgres.config import PostgresExporterConfig
from tracetables.exporters.postgres.embedded import EmbeddedPostgres, EmbeddedPostgresConfig
from tracetables.exporters.postgres.schema import migrate

MASKING_PROCESSORS = ("pii_masking", "webhook_redaction")  # as in the shipped default-config.yaml
DEFAULT_PROCESSORS = ("memory_limiter", "trace_level", *MASKING_PROCESSORS)  # default-config.yaml's chain before batch
KNOWN_PROCESSORS = frozenset(DEFAULT_PROCESSORS)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--duration", type=float, default=30.0, help="measured seconds (default 30; report >= 30)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of load before measuring (default 3)")
    p.add_argument("--streams", type=int, default=8, help="concurrent Export calls in flight (default 8)")
    p.add_argument("--spans-per-request", type=int, default=512, help="spans per request (default 512)")
    p.add_argument("--attributes", type=int, default=10, help="attributes per span, raw workload (default 10)")
    p.add_argument(
        "--workload",
        choices=WORKLOADS,
        default="raw",
        help="raw: generic service traces (default); mixed: conversation-flow traces with roles",
    )
    p.add_argument(
        "--compare-projections",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="measure with projections off, then on, instead of the COPY ceiling "
        "(default: on for --workload mixed, off for raw)",
    )
    p.add_argument(
        "--compare-masking",
        action="store_true",
        help="measure with processors [batch], then [pii_masking, webhook_redaction, batch], "
        "instead of the COPY ceiling or the projections comparison",
    )
    p.add_argument(
        "--processors",
        metavar="LIST",
        default="",
        help="processors before batch in a single run, comma-separated, each at its defaults; "
        "'default': memory_limiter,trace_level,pii_masking,webhook_redaction (default: none)",
    )
    p.add_argument(
        "--projections",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the exporter's projections setting, in every phase (default: the project default, on); "
        "not with --compare-projections",
    )
    p.add_argument("--dsn", help="scratch PostgreSQL database; its spans table is EMPTIED (default: embedded)")
    p.add_argument(
        "--batch-timeout",
        metavar="DURATION",
        help="override processors.batch.timeout, e.g. 10ms (default: the project default)",
    )
    p.add_argument(
        "--encoding-workers",
        type=int,
        metavar="N",
        help="override exporters.postgres.encoding_workers (default: the project default)",
    )
    p.add_argument(
        "--num-consumers",
        type=int,
        metavar="N",
        help="override exporters.postgres.sending_queue.num_consumers (default: the project default)",
    )
    p.add_argument("--ceiling-seconds", type=float, default=10.0, help="min seconds per ceiling measurement")
    p.add_argument(
        "--py-spy",
        type=Path,
        metavar="FILE",
        help="record the collector with py-spy (raw format) during the window; skews the figures",
    )
    args = p.parse_args(argv)
    if min(args.duration, args.streams, args.spans_per_request) <= 0 or args.attributes < 0 or args.warmup < 0:
        p.error("--duration, --streams, --spans-per-request must be > 0; --attributes, --warmup >= 0")
    if args.compare_masking and args.compare_projections:
        p.error("--compare-masking and --compare-projections are two different runs: choose one")
    names = [n.strip() for n in args.processors.split(",") if n.strip()]
    args.processors = DEFAULT_PROCESSORS if names == ["default"] else tuple(names)
    unknown = sorted(set(args.processors) - KNOWN_PROCESSORS)
    if unknown:
        p.error(f"--processors: unknown processor {unknown[0]!r}; known: default, {', '.join(DEFAULT_PROCESSORS)}")
    if args.processors and (args.compare_masking or args.compare_projections):
        p.error("--processors is for a single run (with --no-compare-projections for --workload mixed)")
    if args.compare_projections is None:
        args.compare_projections = args.workload == "mixed" and not args.compare_masking
    if args.compare_projections and args.projections is not None:
        p.error("--[no-]projections: --compare-projections runs both settings")
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
    """Migrate, empty ``spans`` and the projection tables, checkpoint; the server facts for the summary."""
    migrate(dsn)
    copy_ceiling.drop_table(dsn)
    empty_tables(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {
            name: str(conn.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]
            for name in ("server_version", "fsync", "synchronous_commit", "shared_buffers")
        }


def empty_tables(dsn: str) -> None:
    """Every table the collector writes emptied, then a checkpoint: each phase starts alike."""
    projection_check.truncate_all(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        copy_ceiling.try_checkpoint(conn)


def start_py_spy(
    out: Path, pid: int, seconds: float, log: Path, stack: contextlib.ExitStack
) -> subprocess.Popen[bytes] | None:
    """Optional profile of the collector over the window (py-spy from PATH or next to python)."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not os.access(exe, os.X_OK):
        print("py-spy not found (pip install py-spy): not profiling", file=sys.stderr)
        return None
    cmd = [
        exe,
        "record",
        "--nonblocking",
        "--format",
        "raw",
        "-r",
        "100",
        "-d",
        str(max(1, int(seconds))),
        "-o",
        str(out),
        "-p",
        str(pid),
    ]
    with log.open("wb") as sink:
        spy = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    stack.callback(_stop_process, spy)
    return spy


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def run_e2e(
    args: argparse.Namespace,
    dsn: str,
    postmaster: int | None,
    workdir: Path,
    stack: contextlib.ExitStack,
    projections: bool | None = None,
    tag: str = "",
    processors: Sequence[str] = (),
) -> E2eResult:
    """Collector up, load for warm-up + duration, count what is committed, collector down.

    ``projections`` sets the exporter's flag (None: the project default); ``processors``
    run before ``batch`` (default: none); ``tag`` names this phase's files.
    """
    port = free_port()
    config = workdir / f"collector{tag}.yaml"
    config.write_text(
        collector_config(
            port, dsn, args.batch_timeout, args.num_consumers, args.encoding_workers, projections, processors
        )
    )
    collector = Collector(config, workdir / f"collector{tag}.log")
    stack.callback(collector.stop)  # idempotent: also runs if anything below fails
    try:
        collector.wait_ready(port)
    except RuntimeError:
        print_tail(collector.log_lines(), "collector log")
        raise
    print(f"collector pid {collector.pid} serving OTLP/gRPC on 127.0.0.1:{port}")
    spec = loadgen.LoadSpec(
        port=port,
        streams=args.streams,
        spans_per_request=args.spans_per_request,
        attributes=args.attributes,
        warmup=args.warmup,
        duration=args.duration,
        workload=args.workload,
    )
    spy_out = args.py_spy.with_name(args.py_spy.name + tag) if args.py_spy and tag else args.py_spy
    load, cpu = drive_load(spec, collector.pid, postmaster, spy_out, workdir, stack)
    collector_alive = collector.proc.poll() is None
    counts = projection_check.table_counts(dsn)  # before SIGTERM: acknowledged spans must already be committed
    status = collector.stop()
    lines = collector.log_lines()
    if not collector_alive or status != 0:
        print(f"collector died or exited badly (status {status})", file=sys.stderr)
        print_tail(lines, "collector log")
    warnings = [line for line in lines if " WARNING " in line or " ERROR " in line or "Traceback" in line]
    on = PostgresExporterConfig().projections if projections is None else projections
    return E2eResult(
        load, cpu, counts["spans"], collector_alive and status == 0, warnings, on, counts, tuple(processors)
    )


def drive_load(
    spec: loadgen.LoadSpec,
    collector_pid: int,
    postmaster: int | None,
    py_spy: Path | None,
    workdir: Path,
    stack: contextlib.ExitStack,
) -> tuple[loadgen.LoadResult, WindowCpu]:
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
            if kind == "window-start" and py_spy:
                spy = start_py_spy(py_spy, collector_pid, spec.duration, workdir / "py-spy.log", stack)
        elif kind == "error":
            raise RuntimeError(f"load generator failed: {payload[0]}")
        else:
            result = payload[0]
    proc.join(10)
    if spy is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            spy.wait(30)
        print(f"py-spy profile: {py_spy} (exit {spy.poll()})")
    (c0, p0, m0), (c1, p1, m1) = marks["window-start"], marks["window-end"]
    pg_cpu = p1 - p0 if p0 is not None and p1 is not None else None
    return result, WindowCpu(c1 - c0, pg_cpu, result.cpu_seconds_window, m1 - m0)


def print_tail(lines: list[str], what: str, n: int = 30) -> None:
    print(f"--- last {min(n, len(lines))} lines of the {what} ---", file=sys.stderr)
    for line in lines[-n:]:
        print(line, file=sys.stderr)


def run_ceilings(
    dsn: str, args: argparse.Namespace, min_rows: int, postmaster: int | None
) -> list[copy_ceiling.CeilingResult]:
    """COPY alone over 1, then 2 connections (the exporter's default num_consumers)."""
    print("ceiling: building rows with build_rows (not timed)...")
    plan = copy_ceiling.copy_plan(dsn)
    bodies = copy_ceiling.row_bodies(plan, args.spans_per_request, args.attributes, workload=args.workload)
    probe: Callable[[], float] | None = (lambda: tree_cpu_seconds(postmaster)) if postmaster else None
    out = []
    for connections in (1, 2):
        res = copy_ceiling.measure(dsn, plan, bodies, connections, min_rows, args.ceiling_seconds, cpu_probe=probe)
        print(
            f"ceiling: {connections} connection(s): {res.rows:,} rows in {res.seconds:.1f} s = "
            f"{res.rows_per_second:,.0f} rows/s"
        )
        out.append(res)
    copy_ceiling.drop_table(dsn)
    return out


def compare_projections(
    args: argparse.Namespace,
    dsn: str,
    postmaster: int | None,
    workdir: Path,
    stack: contextlib.ExitStack,
    server: dict[str, str],
) -> bool:
    """The same load twice, each against a fresh collector on emptied tables: off, then on."""
    phases: list[E2eResult] = []
    for projections in (False, True):
        if phases:
            empty_tables(dsn)
        tag = f"-projections-{'on' if projections else 'off'}"
        print(f"phase: projections {'on' if projections else 'off'}")
        e2e = run_e2e(args, dsn, postmaster, workdir, stack, projections, tag)
        print(f"phase done: {e2e.rate:,.0f} spans/s; {e2e.stored:,} spans stored")
        phases.append(e2e)
    return compare_summary(args, phases[0], phases[1], server, embedded=not args.dsn)


def compare_masking(
    args: argparse.Namespace,
    dsn: str,
    postmaster: int | None,
    workdir: Path,
    stack: contextlib.ExitStack,
    server: dict[str, str],
) -> bool:
    """The same load twice, each against a fresh collector on emptied tables: masking off, then on."""
    phases: list[E2eResult] = []
    for processors in ((), MASKING_PROCESSORS):
        if phases:
            empty_tables(dsn)
        name = "on" if processors else "off"
        print(f"phase: masking {name} (processors: {', '.join([*processors, 'batch'])})")
        e2e = run_e2e(args, dsn, postmaster, workdir, stack, args.projections, f"-masking-{name}", processors)
        print(f"phase done: {e2e.rate:,.0f} spans/s; {e2e.stored:,} spans stored")
        phases.append(e2e)
    masked = count_masked_spans(dsn)
    return masking_summary(args, phases[0], phases[1], masked, server, embedded=not args.dsn)


def count_masked_spans(dsn: str) -> int | None:
    """Spans stored with a ``tracetables.masked`` summary (something was masked in them); None if too slow."""
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SET statement_timeout = '180s'")
            row = conn.execute("SELECT count(*) FROM spans WHERE attributes ? 'tracetables.masked'").fetchone()
            return int(row[0]) if row else None
    except psycopg.Error as exc:
        print(f"counting masked spans failed: {exc}", file=sys.stderr)
        return None


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
            if args.compare_masking:
                ok = compare_masking(args, dsn, postmaster, workdir, stack, server)
            elif args.compare_projections:
                ok = compare_projections(args, dsn, postmaster, workdir, stack, server)
            else:
                e2e = run_e2e(args, dsn, postmaster, workdir, stack, args.projections, processors=args.processors)
                print(f"e2e done: {e2e.rate:,.0f} spans/s; {e2e.stored:,} spans stored")
                ceilings = run_ceilings(dsn, args, e2e.stored, postmaster)
                ok = summary(args, e2e, ceilings, server, embedded=not args.dsn)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
