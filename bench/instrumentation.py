"""Cost of ``step()`` against a bare SDK span, with the same SDK pipeline, in one run.

Both sides use one ``TracerProvider`` with a ``BatchSpanProcessor`` and the OTLP/gRPC
exporter sending to a running collector (which writes to a throwaway PostgreSQL). The
bare side is ``tracer.start_as_current_span`` with the same attributes a step records,
its 1 KB state JSON-encoded by the caller; the step side is
``with step(node, type, state_before=state)``. Rounds alternate (bare, step, bare, …)
so drift on a shared machine hits both alike; the median round of each is reported.

    .venv/bin/python bench/instrumentation.py [--spans 20000] [--rounds 5] [--state-bytes 1024]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from procs import Collector, collector_config, free_port

from tracetables.exporters.postgres.embedded import EmbeddedPostgres, EmbeddedPostgresConfig
from tracetables.exporters.postgres.schema import migrate
from tracetables.instrumentation import step


def make_state(size: int) -> dict[str, str]:
    state: dict[str, str] = {}
    i = 0
    while len(json.dumps(state)) < size:
        state[f"field_{i}"] = f"value {i} " + "x" * 24
        i += 1
    return state


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans", type=int, default=20_000, help="spans per round and side")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--state-bytes", type=int, default=1024)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="tt-bench-inst-"))
    workdir.chmod(0o755)
    server = EmbeddedPostgres(EmbeddedPostgresConfig(data_dir=workdir / "pg", durable=True))
    dsn = server.start()
    collector: Collector | None = None
    try:
        migrate(dsn)
        port = free_port()
        config = workdir / "collector.yaml"
        config.write_text(collector_config(port, dsn))
        collector = Collector(config, workdir / "collector.log")
        collector.wait_ready(port)

        provider = TracerProvider(resource=Resource.create({"service.name": "bench-instrumentation"}))
        provider.add_span_processor(
            BatchSpanProcessor(
                OTLPSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True), max_queue_size=4 * args.spans
            )
        )
        tracer = provider.get_tracer("bench")
        state = make_state(args.state_bytes)

        def bare() -> None:
            attributes = {
                "flow.role": "step",
                "flow.node.id": "ask",
                "flow.node.type": "question",
                "session.id": "bench",
                "flow.step.number": 1,
                "flow.state.before": json.dumps(state),
            }
            with tracer.start_as_current_span("step ask", attributes=attributes):
                pass

        def ours() -> None:
            with step("ask", "question", state_before=state, session_id="bench", tracer_provider=provider):
                pass

        times: dict[str, list[float]] = {"bare": [], "step": []}
        for _ in range(args.rounds):
            for label, fn in (("bare", bare), ("step", ours)):
                began = time.perf_counter()
                for _ in range(args.spans):
                    fn()
                times[label].append((time.perf_counter() - began) / args.spans * 1e6)
                provider.force_flush(60_000)  # drain between rounds, outside the clock
        provider.shutdown()
        bare_us, step_us = statistics.median(times["bare"]), statistics.median(times["step"])
        print("===================== tracetables instrumentation bench =====================")
        print(
            f"parameters   {args.rounds} rounds x {args.spans} spans per side; state {len(json.dumps(state))} bytes"
            " of JSON; BatchSpanProcessor + OTLP/gRPC exporter to a running collector"
        )
        print(f"bare span    {bare_us:.1f} us per span (rounds: {', '.join(f'{t:.1f}' for t in times['bare'])})")
        print(f"step()       {step_us:.1f} us per span (rounds: {', '.join(f'{t:.1f}' for t in times['step'])})")
        verdict = "met" if step_us <= 1.5 * bare_us else "NOT met"
        print(f"ratio        step / bare = {step_us / bare_us:.2f}x (target <= 1.5x: {verdict})")
        print("==============================================================================")
        return 0
    finally:
        if collector is not None:
            collector.stop()
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
