"""The long fuzz run: the suite's seeded mutator (tests/otlp_mutations.py) against
``tracetables serve`` on the packaged default config, for many requests.

tests/test_fuzz.py sends 3000 cases; this sends ``--requests`` (default 1,000,000) the
same way: ``--concurrency`` threads, each with its own Sender (one HTTP/1.1 connection,
one gRPC channel), every ``--control-every``-th request a valid one whose spans are looked
up by trace id at the end. Cases are made as they are sent, never held in a list.
The run stops at ``--max-seconds`` whatever is left.

    .venv/bin/python bench/fuzz.py [--requests 1000000] [--seed 14] [--concurrency 8]
                                   [--control-every 20] [--max-seconds 2400] [--dsn DSN] [--keep DIR]

Prints the answers per protocol, the answers outside the documented set (their bodies
kept in ``--keep``), tracebacks and ERROR lines in the collector log, the collector's RSS
before and after (and peak), requests/s, the control check, and what the run left in the
database (rows, pg_database_size). With ``--dsn`` the database's spans table grows: use a
scratch one.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the mutator and the serve helper live in tests/
    sys.path.insert(0, str(ROOT))

from tests.otlp_mutations import (  # noqa: E402
    CONTROL_SPANS,
    GRPC,
    HTTP,
    Case,
    Mutator,
    Sender,
    control_case,
    rejected_spans,
)
from tests.test_fuzz import ALLOWED, REGRESSIONS, serve_default  # noqa: E402
from tracetables.exporters.postgres.embedded import EmbeddedPostgres, EmbeddedPostgresConfig  # noqa: E402
from tracetables.exporters.postgres.schema import migrate  # noqa: E402

KEEP_BODIES = 20  # not-allowed answers whose bodies are written to --keep
LOG_LINES_SHOWN = 10


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--requests", type=int, default=1_000_000, help="requests to send (default 1,000,000)")
    p.add_argument("--seed", type=int, default=14, help="Mutator seed (default 14, the suite's)")
    p.add_argument("--concurrency", type=int, default=8, help="sending threads (default 8)")
    p.add_argument("--control-every", type=int, default=20, help="every Nth request is a valid one (default 20)")
    p.add_argument("--max-seconds", type=float, default=2400.0, help="stop sending after this long (default 2400)")
    p.add_argument("--dsn", help="scratch PostgreSQL database (default: a throwaway embedded server)")
    p.add_argument("--keep", type=Path, help="folder for the bodies of not-allowed answers (default: a temp dir)")
    args = p.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1 or args.control_every < 1 or args.max_seconds <= 0:
        p.error("--requests, --concurrency, --control-every and --max-seconds must be positive")
    return args


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of ``pid`` in KiB, from /proc/PID/status."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def plan(args: argparse.Namespace) -> Iterator[tuple[int, bytes | None, Case]]:
    """(index, control trace id or None, case), made lazily: the regression bodies over both
    transports first, then the mutator's cases with a valid one every --control-every-th."""
    i = 0
    for path in sorted(REGRESSIONS.glob("*.bin")):
        body = path.read_bytes()
        for transport in (HTTP, GRPC):
            yield i, None, Case(transport, f"regression.{path.stem}", body)
            i += 1
    mutator = Mutator(args.seed)
    for n in range(args.requests):
        if n % args.control_every == args.control_every - 1:
            trace_id, case = control_case(n // args.control_every)
            yield i, trace_id, case
        else:
            yield i, None, mutator.case()
        i += 1


class Run:
    """What the sending threads found, under one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answers: Counter[tuple[str, str]] = Counter()
        self.bad: list[tuple[int, Case, str]] = []
        self.bad_count = 0
        self.control_ids: list[bytes] = []
        self.control_failures: list[tuple[int, str, int]] = []
        self.sent = 0


def send_all(args: argparse.Namespace, http_port: int, grpc_port: int) -> tuple[Run, float]:
    run = Run()
    cases = plan(args)
    started = time.monotonic()
    deadline = started + args.max_seconds

    def work() -> None:
        sender = Sender(http_port, grpc_port)
        try:
            while time.monotonic() < deadline:
                with run.lock:  # the generator is not thread-safe: one next() at a time
                    item = next(cases, None)
                if item is None:
                    return
                i, trace_id, case = item
                answer, reply = sender.send(case)
                with run.lock:
                    run.sent += 1
                    run.answers[(case.transport, answer)] += 1
                    if trace_id is not None:
                        run.control_ids.append(trace_id)
                        ok = answer in ("200", "OK")
                        rejected = rejected_spans(case, reply) if ok else -1
                        if not ok or rejected:
                            run.control_failures.append((i, answer, rejected))
                    elif answer not in ALLOWED[case.transport]:
                        run.bad_count += 1
                        if len(run.bad) < KEEP_BODIES:
                            run.bad.append((i, case, answer))
        finally:
            sender.close()

    threads = [threading.Thread(target=work, name=f"fuzz-{n}", daemon=True) for n in range(args.concurrency)]
    for t in threads:
        t.start()
    for t in threads:  # a request times out after 30 s (Sender), so this is bounded
        t.join(timeout=max(0.0, deadline - time.monotonic()) + 120)
    if any(t.is_alive() for t in threads):
        print("WARNING: sending threads still running after the deadline")
    return run, time.monotonic() - started


def check_controls(dsn: str, control_ids: list[bytes]) -> tuple[int, int, dict[str, int]]:
    """(controls stored whole and masked, controls sent, the database's totals)."""
    stored_whole = 0
    with psycopg.connect(dsn) as conn:
        for start in range(0, len(control_ids), 5000):
            rows = conn.execute(
                "SELECT count(*) FROM (SELECT trace_id FROM spans WHERE trace_id = ANY(%s) GROUP BY trace_id"
                " HAVING count(*) = %s AND count(*) FILTER (WHERE attributes ? 'tracetables.masked'"
                " AND attributes::text NOT LIKE '%%alice@example.com%%') = %s) t",
                (control_ids[start : start + 5000], CONTROL_SPANS, CONTROL_SPANS),
            ).fetchone()
            stored_whole += int(rows[0]) if rows else 0
        total = conn.execute("SELECT count(*) FROM spans").fetchone()
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    totals = {"spans": int(total[0]) if total else -1, "bytes": int(size[0]) if size else -1}
    return stored_whole, len(control_ids), totals


def report(args: argparse.Namespace, run: Run, elapsed: float, log: str, keep: Path) -> bool:
    regressions = 2 * len(list(REGRESSIONS.glob("*.bin")))  # sent first, over both transports
    print(
        f"\nfuzz: seed {args.seed}, {run.sent:,} of {args.requests + regressions:,} requests"
        f" ({regressions} of them the regression bodies) in {elapsed:.0f} s ({run.sent / elapsed:.0f}/s)"
    )
    for transport in (HTTP, GRPC):
        print(f"  {transport}:")
        for (t, answer), count in sorted(run.answers.items()):
            if t == transport:
                mark = "" if answer in ALLOWED[t] else "   <- not documented"
                print(f"    {answer:24} {count:9,}{mark}")
    errors = Counter(
        {
            "HTTP 500": run.answers[(HTTP, "500")],
            "gRPC INTERNAL": run.answers[(GRPC, "INTERNAL")],
            "gRPC UNKNOWN": run.answers[(GRPC, "UNKNOWN")],
            "no answer": sum(c for (_, a), c in run.answers.items() if a.startswith("error ")),
        }
    )
    print("  errors: " + ", ".join(f"{k} {v:,}" for k, v in errors.items()))
    print(f"  answers outside the documented set (controls included): {run.bad_count:,}")
    for i, case, answer in run.bad:
        name = f"case-{i}-{case.transport}-{answer.replace(' ', '_')}.bin"
        (keep / name).write_bytes(case.body)
        print(f"    #{i} {case.transport} {case.mutation} -> {answer}: {case.body[:120].hex()}")
    print(f"  bodies kept in {keep}")
    tracebacks = log.count("Traceback")
    complaints = [line for line in log.splitlines() if " ERROR " in line or " CRITICAL " in line]
    print(f"  collector log: {tracebacks} tracebacks, {len(complaints)} ERROR/CRITICAL lines")
    for line in complaints[:LOG_LINES_SHOWN]:
        print(f"    {line[:300]}")
    if tracebacks:  # the first one, up to the next log line
        lines = log[log.index("Traceback") :].splitlines()
        end = next((n for n, line in enumerate(lines[1:], 1) if line[:1].isdigit()), len(lines))
        print("\n".join(lines[: min(end, 60)]))
    return not (run.bad_count or tracebacks or complaints or run.control_failures or sum(errors.values()))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="tt-fuzz-"))
    workdir.chmod(0o755)  # as root the embedded server runs unprivileged and must reach its data dir
    keep = args.keep or Path(tempfile.mkdtemp(prefix="tt-fuzz-keep-"))
    keep.mkdir(parents=True, exist_ok=True)
    try:
        with contextlib.ExitStack() as stack:
            if args.dsn:
                dsn = args.dsn
            else:
                server = EmbeddedPostgres(EmbeddedPostgresConfig(data_dir=workdir / "pg", durable=True))
                dsn = server.start()
                stack.callback(server.stop)
            migrate(dsn)
            served = serve_default(workdir, dsn)
            stack.callback(served.kill)
            pid = served.process.pid
            before = memory(pid)
            print(f"collector pid {pid}, OTLP/HTTP 127.0.0.1:{served.http_port}, gRPC 127.0.0.1:{served.grpc_port}")
            run, elapsed = send_all(args, served.http_port, served.grpc_port)
            after = memory(pid)
            exit_code = served.terminate()
            clean = report(args, run, elapsed, served.log(), keep)
            kib = "{:,} KiB".format
            print(
                f"  collector RSS: before {kib(before.get('VmRSS', -1))}, after {kib(after.get('VmRSS', -1))},"
                f" peak (VmHWM) {kib(after.get('VmHWM', -1))}; exit code {exit_code}"
            )
            stored, expected, totals = check_controls(dsn, run.control_ids)
            print(f"  control check: {stored:,}/{expected:,} valid requests stored whole and masked")
            failures = run.control_failures
            if failures:
                print(f"  controls not answered OK in full: {len(failures):,}, first {failures[:5]}")
            print(f"  left in the database: {totals['spans']:,} span rows, {totals['bytes'] / 2**20:,.0f} MiB")
            ok = clean and exit_code == 0 and stored == expected
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
