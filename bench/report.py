"""What a bench run measured, and the summary blocks printed at the end."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import math
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

import copy_ceiling
import loadgen
import projection_check
from procs import MachineCpu

from tracetables.collector.processors.config import BatchProcessorConfig
from tracetables.exporters.postgres.config import SendingQueueConfig

TARGET_RATIO = 0.50  # e2e >= 50 % of the COPY-alone ceiling
TARGET_PROJECTION_COST = 0.30  # projections cost at most 30 % of the throughput without them
TARGET_MASKING_RATIO = 0.70  # with masking on, at least 70 % of the throughput with it off


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
    projections: bool = True  # the exporter's setting in this run
    counts: dict[str, int] = field(default_factory=dict)  # projection_check.table_counts, same moment
    processors: tuple[str, ...] = ()  # the pipeline's processors before batch in this run

    @property
    def rate(self) -> float:
        return self.load.window_acked_spans / self.load.window_seconds

    @property
    def verified(self) -> bool:
        return self.stored >= self.load.total_acked_spans > 0

    def projection_checks(self) -> list[tuple[str, bool]]:
        exact = not self.load.errors and not self.load.rejected_spans
        return projection_check.check(self.counts, self.load.acked_counts, self.projections, exact)

    @property
    def ok(self) -> bool:
        return self.verified and self.collector_ok and all(ok for _, ok in self.projection_checks())


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list (0 if empty)."""
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, max(0, math.ceil(p * len(sorted_values)) - 1))]


def machine_facts() -> str:
    model = ""
    with contextlib.suppress(OSError):
        model = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "",
        )
    usable = len(os.sched_getaffinity(0))
    return f"nproc {usable} ({model or platform.machine()}), {platform.system()} {platform.release()}"


def _header(args: argparse.Namespace, server: dict[str, str], embedded: bool, per: str = "") -> list[str]:
    batch = BatchProcessorConfig()
    timeout = args.batch_timeout or f"{batch.timeout.total_seconds() * 1000:g}ms (default)"
    consumers = args.num_consumers or f"{SendingQueueConfig().num_consumers} (default)"
    attrs = f", {args.attributes} attributes/span" if args.workload == "raw" else ""
    return [
        f"parameters   {args.duration:g} s measured{per} after {args.warmup:g} s warm-up; {args.streams} streams x "
        f"{args.spans_per_request} spans/request{attrs}; batch timeout {timeout}; num_consumers {consumers}",
        f"machine      {machine_facts()}; Python {platform.python_version()}; the collector, PostgreSQL and "
        "the load generator share these CPUs",
        f"postgresql   {server['server_version']} ({'embedded' if embedded else '--dsn'}), fsync={server['fsync']}, "
        f"synchronous_commit={server['synchronous_commit']}, shared_buffers={server['shared_buffers']}",
    ]


def _workload(args: argparse.Namespace, e2e: E2eResult) -> str:
    return (
        f"workload     {args.workload}, {e2e.load.bytes_per_span:,.0f} bytes/span on the wire; spans by role: "
        f"{projection_check.role_mix(e2e.load.acked_counts)}"
    )


def _cpu(e2e: E2eResult, indent: str = "") -> list[str]:
    load, cpu, secs = e2e.load, e2e.cpu, e2e.load.window_seconds
    if not load.window_acked_spans:
        return []
    us, pg = 1e6 / load.window_acked_spans, cpu.postgres
    return [
        f"cpu, cores   {indent}collector {cpu.collector / secs:.2f}"
        + (f", postgres {pg / secs:.2f}" if pg is not None else "")
        + f", load generator {cpu.loadgen / secs:.2f}"
        + (
            f" (/proc/stat: machine busy {cpu.machine.busy / secs:.2f} of {cpu.machine.total / secs:.1f}"
            + (
                f", other processes {(cpu.machine.busy - cpu.collector - pg - cpu.loadgen) / secs:.2f}"
                if pg is not None
                else ""
            )
            + ")"
            if cpu.machine
            else ""
        ),
        f"cpu/span     {indent}collector {cpu.collector * us:.1f} us"
        + (f", postgres {pg * us:.1f} us" if pg is not None else "")
        + f", load generator {cpu.loadgen * us:.1f} us",
    ]


def _e2e(e2e: E2eResult, label: str = "e2e         ") -> list[str]:
    load, secs = e2e.load, e2e.load.window_seconds
    lat = sorted(load.window_latencies)
    errors = ", ".join(f"{k}: {v}" for k, v in sorted(load.errors.items())) or "none"
    return [
        f"{label} {e2e.rate:,.0f} spans/s sustained ({load.window_acked_spans:,} spans in "
        f"{load.window_ok_requests:,} OK requests completed in the {secs:g} s window)",
        f"latency      p50 {percentile(lat, 0.5) * 1e3:.0f} ms, p99 {percentile(lat, 0.99) * 1e3:.0f} ms, "
        f"max {(lat[-1] if lat else 0) * 1e3:.0f} ms per Export call",
        f"trend        spans/s by third of the window: {_thirds(load.window_acked_by_second)}",
        f"non-OK       {errors}; spans rejected via partial_success: {load.rejected_spans}",
        f"verified     SELECT count(*) FROM spans = {e2e.stored:,} {'>=' if e2e.verified else '<'} "
        f"{load.total_acked_spans:,} acknowledged -> {'OK' if e2e.verified else 'FAILED'}",
    ]


def _thirds(per_second: list[int]) -> str:
    """``41,200 / 39,800 / 40,100``: a throughput that falls over the window shows a growing cost."""
    n = len(per_second)
    cuts = [0, n // 3, 2 * n // 3, n]
    return " / ".join(f"{sum(per_second[a:b]) / (b - a):,.0f}" if b > a else "-" for a, b in itertools.pairwise(cuts))


def _checks(e2e: E2eResult) -> list[str]:
    """The projection checks, three to a line, failures flagged."""
    checks = e2e.projection_checks()
    verdict = "OK" if all(ok for _, ok in checks) else "FAILED"
    parts = [text if ok else f"{text} MISMATCH" for text, ok in checks]
    lines = [f"projections  {'on' if e2e.projections else 'off'}: {verdict}"]
    for i in range(0, len(parts), 3):
        lines.append("             " + "; ".join(parts[i : i + 3]))
    return lines


def _tail(args: argparse.Namespace, results: list[E2eResult]) -> list[str]:
    lines = []
    batch = BatchProcessorConfig()
    if args.streams * args.spans_per_request < batch.send_batch_size:
        lines.append(
            f"note         at most {args.streams} x {args.spans_per_request} spans in flight < "
            f"send_batch_size {batch.send_batch_size}: no batch ever fills"
        )
    for e2e in results:
        if e2e.collector_warnings:
            lines.append(
                f"collector    {len(e2e.collector_warnings)} warning/error log lines; first: "
                f"{e2e.collector_warnings[0]}"
            )
    if args.duration < 30:
        lines.append("note         --duration under 30 s: use >= 30 s for figures you report")
    return lines


def _print(title: str, lines: list[str]) -> None:
    print("\n" + f" {title} ".center(78, "="))
    print("\n".join(lines))
    print("=" * 78)


def summary(
    args: argparse.Namespace,
    e2e: E2eResult,
    ceilings: list[copy_ceiling.CeilingResult],
    server: dict[str, str],
    embedded: bool,
) -> bool:
    """Print the summary of a single run against the ceiling; True when the run is valid."""
    best = max(ceilings, key=lambda c: c.rows_per_second)
    ratio = e2e.rate / best.rows_per_second if best.rows_per_second else 0.0
    pipeline = [f"pipeline     [{', '.join([*e2e.processors, 'batch'])}] (processor defaults)"]
    lines = (
        _header(args, server, embedded)
        + [_workload(args, e2e)]
        + pipeline
        + _e2e(e2e)
        + _checks(e2e)
        + [
            f"ceiling      {best.rows_per_second:,.0f} rows/s, COPY alone over {best.connections} connection(s) "
            f"({best.rows:,} rows in {best.seconds:.1f} s); "
            + "; ".join(f"{c.connections} conn: {c.rows_per_second:,.0f} rows/s" for c in ceilings),
            f"ratio        e2e / ceiling = {ratio:.1%} (target >= {TARGET_RATIO:.0%}: "
            f"{'met' if ratio >= TARGET_RATIO else 'NOT met'})",
        ]
    )
    cpu = _cpu(e2e)
    if cpu:
        cpu[1] = (
            cpu[1].replace("cpu/span     ", "cpu/span     e2e: ")
            + "; COPY alone: "
            + (
                f"postgres {best.server_cpu_seconds / best.rows * 1e6:.1f} us/row, "
                if best.server_cpu_seconds is not None and best.rows
                else ""
            )
            + (f"client {best.client_cpu_seconds / best.rows * 1e6:.1f} us/row" if best.rows else "")
        )
    _print("tracetables ingest bench", lines + cpu + _tail(args, [e2e]))
    return e2e.ok


def compare_summary(
    args: argparse.Namespace, off: E2eResult, on: E2eResult, server: dict[str, str], embedded: bool
) -> bool:
    """Print both phases and the cost of projections; True when both runs are valid."""
    ratio = on.rate / off.rate if off.rate else 0.0
    cost = 1 - ratio
    lines = _header(args, server, embedded, " per phase") + [_workload(args, on)]
    for name, e2e in (("off", off), ("on", on)):
        lines += _e2e(e2e, f"e2e, {name:<3}    ") + _checks(e2e) + _cpu(e2e)
    lines.append(
        f"cost         projections cost = 1 - on/off = 1 - {on.rate:,.0f} / {off.rate:,.0f} = {cost:.1%} "
        f"(target <= {TARGET_PROJECTION_COST:.0%}: {'met' if cost <= TARGET_PROJECTION_COST else 'NOT met'})"
    )
    if off.cpu.postgres is not None and on.cpu.postgres is not None and off.rate and on.rate:
        pg_off = off.cpu.postgres / off.load.window_acked_spans * 1e6
        pg_on = on.cpu.postgres / on.load.window_acked_spans * 1e6
        lines.append(
            f"             postgres CPU per span: off {pg_off:.1f} us, on {pg_on:.1f} us "
            f"(+{pg_on - pg_off:.1f} us for the projections)"
        )
    _print("tracetables ingest bench: projections on vs off", lines + _tail(args, [off, on]))
    return off.ok and on.ok


def masking_summary(
    args: argparse.Namespace,
    off: E2eResult,
    on: E2eResult,
    masked_spans: int | None,
    server: dict[str, str],
    embedded: bool,
) -> bool:
    """Print both phases, the throughput ratio masking on / off and the collector's CPU per span."""
    ratio = on.rate / off.rate if off.rate else 0.0
    projections = "on" if on.projections else "off"
    lines = _header(args, server, embedded, " per phase") + [
        _workload(args, on),
        f"pipeline     off: [{', '.join([*off.processors, 'batch'])}]; on: [{', '.join([*on.processors, 'batch'])}]"
        f" (processor defaults); projections {projections} in both",
    ]
    for name, e2e in (("off", off), ("on", on)):
        lines += _e2e(e2e, f"e2e, {name:<3}    ") + _checks(e2e) + _cpu(e2e)
    if masked_spans is not None:
        lines.append(
            f"masked       {masked_spans:,} of {on.stored:,} spans stored with masking on carry "
            "tracetables.masked (the workload plants no secrets)"
        )
    lines.append(
        f"ratio        masking on / off = {on.rate:,.0f} / {off.rate:,.0f} = {ratio:.1%} "
        f"(target >= {TARGET_MASKING_RATIO:.0%}: {'met' if ratio >= TARGET_MASKING_RATIO else 'NOT met'})"
    )
    if off.load.window_acked_spans and on.load.window_acked_spans:
        c_off = off.cpu.collector / off.load.window_acked_spans * 1e6
        c_on = on.cpu.collector / on.load.window_acked_spans * 1e6
        lines.append(
            f"             collector CPU per span: off {c_off:.1f} us, on {c_on:.1f} us "
            f"(+{c_on - c_off:.1f} us for {' + '.join(on.processors) or 'nothing'})"
        )
        if off.cpu.postgres is not None and on.cpu.postgres is not None:
            lines.append(
                f"             postgres CPU per span: off {off.cpu.postgres / off.load.window_acked_spans * 1e6:.1f}"
                f" us, on {on.cpu.postgres / on.load.window_acked_spans * 1e6:.1f} us"
            )
    _print("tracetables ingest bench: masking on vs off", lines + _tail(args, [off, on]))
    return off.ok and on.ok
