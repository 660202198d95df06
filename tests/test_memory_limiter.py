"""The ``memory_limiter`` processor: its state machine with a fake memory, its config rules,
its answers through real receivers, and a real ``tracetables serve`` under a flood."""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2

from tests.collector_harness import BASE_CONFIG, start_collector
from tests.otlp_wire import EXPORT_PATH, http_post, make_request, make_span
from tests.test_cli import Served, child_env, free_ports, tracetables_argv
from tracetables.collector.batch import SpanBatch
from tracetables.collector.component import CreateSettings, Kind
from tracetables.collector.components import REGISTRY
from tracetables.collector.config import load_config, parse_config
from tracetables.collector.errors import ConfigError, OverloadedError
from tracetables.collector.processors import _memstat
from tracetables.collector.processors.memory_limiter import REFUSED_MESSAGE, MemoryLimiter
from tracetables.collector.processors.memory_limiter_config import MemoryLimiterConfig

MIB = 1024 * 1024
BAD_CONFIGS = Path(__file__).parent / "testdata" / "config"
ML = "processors.memory_limiter"


class FakeMemory:
    """An RSS the test sets, and a garbage collector that can make it drop."""

    def __init__(self, rss_mib: float) -> None:
        self.rss = int(rss_mib * MIB)
        self.after_gc: float | None = None  # MiB a forced collection leaves, None: no change
        self.collections = 0

    def set(self, rss_mib: float) -> None:
        self.rss = int(rss_mib * MIB)

    def read(self) -> int:
        return self.rss

    def collect(self) -> None:
        self.collections += 1
        if self.after_gc is not None:
            self.rss = int(self.after_gc * MIB)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_limiter(memory: FakeMemory, clock: FakeClock | None = None, **config: Any) -> MemoryLimiter:
    """A limiter on ``memory``: by default hard 100 MiB, spike 20 MiB, so soft 80 MiB."""
    settings: dict[str, Any] = {"limit_mib": 100, "spike_limit_mib": 20, **config}
    return MemoryLimiter(
        MemoryLimiterConfig(**settings), read_rss=memory.read, gc_hook=memory.collect, clock=clock or FakeClock()
    )


def batch(spans: int = 3) -> SpanBatch:
    return SpanBatch([], spans)


class TestStateMachine:
    def test_accepts_below_the_soft_limit(self) -> None:
        """Below soft (limit − spike) a batch passes unchanged, and nothing is collected."""
        memory = FakeMemory(79)
        limiter = make_limiter(memory)
        assert (limiter.hard_limit, limiter.soft_limit) == (100 * MIB, 80 * MIB)
        for _ in range(5):
            limiter.check()
        given = batch()
        assert limiter(given) is given
        assert not limiter.refusing
        assert memory.collections == 0
        assert (limiter.refused_batches, limiter.refused_spans) == (0, 0)

    def test_refuses_at_the_soft_limit_with_a_retry_hint_and_counts(self) -> None:
        """At the soft limit every batch is refused with OverloadedError, retry after one check interval; counted."""
        memory = FakeMemory(80)
        limiter = make_limiter(memory, check_interval=timedelta(milliseconds=1500))
        limiter.check()
        assert limiter.refusing
        for spans in (3, 5):
            with pytest.raises(OverloadedError) as info:
                limiter(batch(spans))
            assert info.value.retry_after == 1.5
            assert str(info.value) == REFUSED_MESSAGE
        assert (limiter.refused_batches, limiter.refused_spans) == (2, 8)

    def test_accepts_again_once_below_the_soft_limit(self) -> None:
        """Refusing ends at the first check that finds memory below soft again."""
        memory = FakeMemory(90)
        limiter = make_limiter(memory)
        limiter.check()
        assert limiter.refusing
        memory.set(79.9)
        with pytest.raises(OverloadedError):
            limiter(batch())  # no syscall per batch: the flag holds until the next check
        limiter.check()
        assert not limiter.refusing
        assert limiter(batch()).span_count == 3
        assert limiter.refused_batches == 1

    def test_forces_gc_at_the_hard_limit_and_rereads(self) -> None:
        """At the hard limit a collection is forced; if it frees enough, data is accepted at once."""
        memory = FakeMemory(100)
        memory.after_gc = 50
        limiter = make_limiter(memory)
        limiter.check()
        assert memory.collections == 1
        assert not limiter.refusing
        assert limiter.rss == 50 * MIB

    def test_refuses_when_the_forced_gc_does_not_help(self) -> None:
        """A collection that frees too little leaves the limiter refusing."""
        memory = FakeMemory(130)
        memory.after_gc = 95
        limiter = make_limiter(memory)
        limiter.check()
        assert memory.collections == 1
        assert limiter.refusing

    def test_one_collection_per_check_at_most(self) -> None:
        """Above hard with no minimum intervals: one collection per check, not one per limit crossed."""
        memory = FakeMemory(130)
        limiter = make_limiter(memory, min_gc_interval_when_soft_limited=timedelta(0))
        for _ in range(3):
            limiter.check()
        assert memory.collections == 3

    def test_hard_limit_gc_respects_its_minimum_interval(self) -> None:
        """Above hard, collections are at most every ``min_gc_interval_when_hard_limited``."""
        memory, clock = FakeMemory(120), FakeClock()
        limiter = make_limiter(memory, clock, min_gc_interval_when_hard_limited=timedelta(seconds=5))
        limiter.check()
        clock.now += 4
        limiter.check()
        assert memory.collections == 1
        clock.now += 1
        limiter.check()
        assert memory.collections == 2

    def test_soft_limit_gc_at_most_every_min_interval_while_refusing(self) -> None:
        """Between soft and hard, a collection on entering and then every ``min_gc_interval_when_soft_limited``
        (RSS keeps freed memory: without it the limiter could refuse for good)."""
        memory, clock = FakeMemory(90), FakeClock()
        limiter = make_limiter(memory, clock)  # the default minimum interval: 10 s
        limiter.check()
        assert memory.collections == 1 and limiter.refusing
        for _ in range(9):
            clock.now += 1
            limiter.check()
        assert memory.collections == 1
        memory.after_gc = 60
        clock.now += 1
        limiter.check()
        assert memory.collections == 2
        assert not limiter.refusing

    def test_no_gc_below_the_soft_limit(self) -> None:
        """Below soft nothing is collected, however often it checks."""
        memory, clock = FakeMemory(70), FakeClock()
        limiter = make_limiter(memory, clock)
        for _ in range(50):
            clock.now += 100
            limiter.check()
        assert memory.collections == 0

    def test_default_spike_is_a_fifth_of_the_limit(self) -> None:
        """With no spike limit, the soft limit is 80 % of the hard one, as in the Collector."""
        limiter = make_limiter(FakeMemory(0), limit_mib=500, spike_limit_mib=0)
        assert (limiter.hard_limit, limiter.soft_limit) == (500 * MIB, 400 * MIB)

    def test_percentage_limits_are_of_total_memory(self) -> None:
        """limit_percentage and spike_limit_percentage are of the total memory; the spike defaults to 20 %."""
        config = MemoryLimiterConfig(limit_percentage=50, spike_limit_percentage=5)
        limiter = MemoryLimiter(config, read_rss=lambda: 0, total_memory=lambda: 1000 * MIB)
        assert (limiter.hard_limit, limiter.soft_limit) == (500 * MIB, 450 * MIB)
        default_spike = MemoryLimiter(
            MemoryLimiterConfig(limit_percentage=50), read_rss=lambda: 0, total_memory=lambda: 1000 * MIB
        )
        assert default_spike.soft_limit == 400 * MIB

    def test_percentage_without_a_readable_total_is_a_config_error(self) -> None:
        """Where the total memory cannot be read, a percentage limit is refused with advice."""
        with pytest.raises(ConfigError, match="use limit_mib"):
            MemoryLimiter(MemoryLimiterConfig(limit_percentage=50), read_rss=lambda: 0, total_memory=lambda: None)

    def test_logs_once_per_crossing_never_per_batch(self, caplog: pytest.LogCaptureFixture) -> None:
        """One warning on starting to refuse, one info on recovering, whatever the checks and batches."""
        caplog.set_level(logging.DEBUG, logger="tracetables.collector.processors.memory_limiter")
        memory, clock = FakeMemory(90), FakeClock()
        limiter = make_limiter(memory, clock)
        for _ in range(5):
            clock.now += 1
            limiter.check()
            with pytest.raises(OverloadedError):
                limiter(batch())
        memory.set(50)
        for _ in range(5):
            limiter.check()
            limiter(batch())
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        infos = [r for r in caplog.records if r.levelno == logging.INFO]
        assert [r.getMessage() for r in warnings] == [
            "memory usage 90 MiB is at or above the soft limit (80 MiB, hard 100 MiB): refusing data"
        ]
        assert [r.getMessage() for r in infos] == [
            "memory usage 50 MiB is below the soft limit (80 MiB) again: accepting data"
        ]


class TestLifeCycle:
    def test_start_measures_at_once_then_checks_in_the_background(self) -> None:
        """start() decides before returning; the task then follows memory each interval; shutdown stops it."""
        memory = FakeMemory(95)
        limiter = make_limiter(memory, check_interval=timedelta(milliseconds=10))

        async def wait_for(refusing: bool) -> None:
            async with asyncio.timeout(5):
                while limiter.refusing != refusing:
                    await asyncio.sleep(0.005)

        async def scenario() -> None:
            await limiter.start()
            assert limiter.refusing  # no interval waited
            memory.set(10)
            await wait_for(False)
            memory.set(90)
            await wait_for(True)
            await limiter.shutdown()
            await limiter.shutdown()  # twice is fine
            memory.set(10)
            await asyncio.sleep(0.05)
            assert limiter.refusing  # nobody checks any more

        asyncio.run(scenario())

    def test_a_failing_reader_keeps_the_last_decision_and_logs_once(self, caplog: pytest.LogCaptureFixture) -> None:
        """If measuring fails, the task keeps going with the last decision and says so once."""
        calls = itertools.count()

        def flaky() -> int:
            if next(calls) < 2:  # the first check: a reading, and one after its forced collection
                return 90 * MIB
            raise OSError("gone")

        config = MemoryLimiterConfig(limit_mib=100, spike_limit_mib=20, check_interval=timedelta(milliseconds=5))
        limiter = MemoryLimiter(config, read_rss=flaky, gc_hook=lambda: None)

        async def scenario() -> None:
            await limiter.start()
            await asyncio.sleep(0.1)
            await limiter.shutdown()

        asyncio.run(scenario())
        assert limiter.refusing
        assert next(calls) > 5
        assert caplog.text.count("measuring memory failed") == 1


class TestMemoryReadings:
    def test_statm_rss_matches_vmrss(self) -> None:
        """/proc/self/statm's resident pages are the VmRSS the kernel reports."""
        rss = _memstat.read_statm_rss()
        vmrss = vmrss_of("self")
        assert abs(rss - vmrss) < 0.1 * vmrss

    def test_peak_rss_fallback_is_used_without_proc(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Without /proc the peak RSS (never lower than now) is read, and start() warns what that means."""
        assert _memstat.read_peak_rss() >= _memstat.read_statm_rss() * 0.9
        monkeypatch.setattr(_memstat, "STATM", Path("/nonexistent/statm"))
        reader, current = _memstat.rss_reader()
        assert (reader, current) == (_memstat.read_peak_rss, False)
        limiter = MemoryLimiter(MemoryLimiterConfig(limit_mib=1_000_000), gc_hook=lambda: None)

        async def scenario() -> None:
            await limiter.start()
            await limiter.shutdown()

        asyncio.run(scenario())
        assert "the peak RSS is measured" in caplog.text

    def test_forced_collection_gives_free_heap_pages_back(self) -> None:
        """Freed memory interleaved with live blocks stays resident after gc.collect(); the limiter's
        collection (with malloc_trim) gives it back, so RSS can fall below the soft limit again.
        In a fresh interpreter, so this test's own heap does not blur the figures."""
        if _memstat._TRIM is None:
            pytest.skip("no malloc_trim (not glibc)")
        script = (
            "import gc\n"
            "from tracetables.collector.processors import _memstat\n"
            "rss = _memstat.read_statm_rss\n"
            "base = rss()\n"
            "blocks = [bytes(1000) + bytes([i % 256]) for i in range(60_000)]\n"
            "kept = blocks[::64]\n"  # one block in 64 stays live, between the freed ones
            "del blocks\n"
            "gc.collect()\n"
            "freed = rss()\n"
            "_memstat.collect_garbage()\n"
            "print((freed - base) // 2**20, (rss() - base) // 2**20, len(kept))\n"
        )
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
        after_gc_mib, after_trim_mib, _ = map(int, done.stdout.split())
        assert after_gc_mib > 40, done.stdout  # ~58 MiB of 1 KiB blocks freed, still resident
        assert after_trim_mib < 20, done.stdout

    def test_total_memory_is_the_lower_of_memtotal_and_the_cgroup_limit(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """MemTotal, unless a cgroup memory.max (a number, not ``max``) is lower."""
        meminfo = tmp_path / "meminfo"
        meminfo.write_text("MemTotal:        2097152 kB\nMemFree:          1000 kB\n")
        root = tmp_path / "cgroup"
        root.mkdir()
        monkeypatch.setattr(_memstat, "MEMINFO", meminfo)
        monkeypatch.setattr(_memstat, "CGROUP_ROOT", root)
        assert _memstat.total_memory() == 2 * 1024 * MIB
        (root / "memory.max").write_text("max\n")
        assert _memstat.total_memory() == 2 * 1024 * MIB
        (root / "memory.max").write_text(f"{512 * MIB}\n")
        assert _memstat.total_memory() == 512 * MIB

    def test_total_memory_on_this_machine(self) -> None:
        """The real reading is positive and no more than MemTotal."""
        total = _memstat.total_memory()
        found = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
        assert found is not None
        mem_total = int(found.group(1)) * 1024
        assert total is not None and 0 < total <= mem_total


# (file, the key path the message must start with, words the message must contain); the
# same rows belong in tests/test_config.py's BAD_CASES.
BAD_CASES: list[tuple[str, str, tuple[str, ...]]] = [
    ("memory-limiter-no-limit.yaml", ML, ("one of limit_mib or limit_percentage",)),
    ("memory-limiter-both-limits.yaml", f"{ML}.limit_percentage", ("not both",)),
    ("memory-limiter-negative-limit-mib.yaml", f"{ML}.limit_mib", (">= 0", "-1")),
    ("memory-limiter-spike-not-below-limit.yaml", f"{ML}.spike_limit_mib", ("< limit_mib", "512")),
    (
        "memory-limiter-spike-percentage-not-below-limit.yaml",
        f"{ML}.spike_limit_percentage",
        ("< limit_percentage", "60"),
    ),
    ("memory-limiter-percentage-out-of-range.yaml", f"{ML}.limit_percentage", ("between 1 and 100", "150")),
    (
        "memory-limiter-spike-unit-mismatch.yaml",
        f"{ML}.spike_limit_percentage",
        ("limit_percentage", "spike_limit_mib"),
    ),
    ("memory-limiter-zero-check-interval.yaml", f"{ML}.check_interval", ("> 0",)),
]


class TestConfig:
    @pytest.mark.parametrize(
        ("name", "key_path", "words"), BAD_CASES, ids=[c[0].removesuffix(".yaml") for c in BAD_CASES]
    )
    def test_bad_config_names_key_path_and_problem(self, name: str, key_path: str, words: tuple[str, ...]) -> None:
        """Each memory_limiter rule has its bad file; the error starts with the key path."""
        with pytest.raises(ConfigError) as info:
            load_config(BAD_CONFIGS / name, env={})
        message = str(info.value)
        assert message.startswith(f"{key_path}: "), message
        for word in words:
            assert word.lower() in message.lower(), f"{word!r} not in {message!r}"

    def test_every_memory_limiter_file_has_a_case(self) -> None:
        assert {p.name for p in BAD_CONFIGS.glob("memory-limiter-*.yaml")} == {c[0] for c in BAD_CASES}

    def test_config_loads_with_collector_keys_and_builds_the_processor(self) -> None:
        """The Collector's keys and duration syntax load; the registry builds a MemoryLimiter."""
        text = BASE_CONFIG.replace(
            "  batch: {timeout: 20ms}",
            "  memory_limiter: {check_interval: 250ms, limit_mib: 4000, spike_limit_mib: 800,"
            " min_gc_interval_when_soft_limited: 5s}\n  batch: {timeout: 20ms}",
        ).replace("processors: [batch]", "processors: [memory_limiter, batch]")
        config = parse_config(text, {"DSN": "host=unused"})
        ml = config.processors["memory_limiter"]
        assert ml == MemoryLimiterConfig(
            check_interval=timedelta(milliseconds=250),
            limit_mib=4000,
            spike_limit_mib=800,
            min_gc_interval_when_soft_limited=timedelta(seconds=5),
        )
        assert config.service.pipelines["traces"].processors == ("memory_limiter", "batch")
        processor = REGISTRY.factory(Kind.PROCESSOR, "memory_limiter").create(CreateSettings("memory_limiter"), ml)
        assert isinstance(processor, MemoryLimiter)
        assert (processor.hard_limit, processor.soft_limit) == (4000 * MIB, 3200 * MIB)

    def test_defaults(self) -> None:
        """Defaults: check every second; GC at most every 10 s above soft, at every check above hard."""
        config = MemoryLimiterConfig(limit_mib=1)
        assert config.check_interval == timedelta(seconds=1)
        assert config.min_gc_interval_when_soft_limited == timedelta(seconds=10)
        assert config.min_gc_interval_when_hard_limited == timedelta(0)
        config.validate(ML)


REFUSING_CONFIG = BASE_CONFIG.replace(
    "  batch: {timeout: 20ms}", "  memory_limiter: {check_interval: 2s, limit_mib: 1}\n  batch: {timeout: 20ms}"
).replace("processors: [batch]", "processors: [memory_limiter, batch]")


def test_receivers_answer_429_and_resource_exhausted_with_the_interval_as_hint(dsn: str) -> None:
    """Over the limit from the start: HTTP 429 + Retry-After and gRPC RESOURCE_EXHAUSTED + RetryInfo of
    one check interval, a message without data, nothing stored, and the refusals counted."""
    collector = start_collector(dsn, REFUSING_CONFIG)  # 1 MiB: any Python process is over it
    try:
        reply = http_post(collector.http_port, make_request(make_span(name="secret-name")).SerializeToString())
        assert reply.status == 429
        assert reply.headers["retry-after"] == "2"
        status = status_pb2.Status.FromString(reply.body)
        assert status.code == code_pb2.RESOURCE_EXHAUSTED
        assert status.message == REFUSED_MESSAGE and "secret" not in status.message

        body = make_request(make_span(), make_span(span_id=b"\x03" * 8)).SerializeToString()
        with grpc.insecure_channel(f"127.0.0.1:{collector.grpc_port}") as channel:
            export: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(EXPORT_PATH)
            with pytest.raises(grpc.RpcError) as caught:
                export(body, timeout=30)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert grpc_retry_delay(caught.value) == 2.0

        limiter = collector.service._processors["memory_limiter"]
        assert isinstance(limiter, MemoryLimiter)
        assert (limiter.refused_batches, limiter.refused_spans) == (2, 3)
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT count(*) FROM spans").fetchone() == (0,)
    finally:
        collector.stop()


def grpc_retry_delay(error: Any) -> float:
    """The RetryInfo delay in a gRPC error's ``grpc-status-details-bin`` trailer."""
    details = dict(error.trailing_metadata())
    rich = status_pb2.Status.FromString(details["grpc-status-details-bin"])
    info = error_details_pb2.RetryInfo()
    assert rich.details[0].Unpack(info)
    return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)


def vmrss_of(pid: int | str) -> int:
    """A process's resident memory in bytes, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


# ---------------------------------------------------------------------------------------
# A real `tracetables serve` under a flood.

FLOOD_CONFIG = """\
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc_port}
      http:
        endpoint: 127.0.0.1:{http_port}
processors:
  memory_limiter:
    check_interval: 100ms
    limit_mib: {limit_mib}
    spike_limit_mib: {spike_limit_mib}
    min_gc_interval_when_soft_limited: 1s
  batch:
    max_queued_spans: 100000000   # the memory limiter, not the queue bound, is to refuse
    max_queue_wait: 0s            # nor the queue-wait admission (the locked table stalls every commit)
exporters:
  postgres:
    retry_on_failure:
      max_elapsed_time: 60s
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter, batch]
      exporters: [postgres]
"""
HEADROOM_MIB = 175  # hard limit = the warmed-up idle RSS + this
SPIKE_MIB = 100  # so refusing starts 75 MiB above idle; one 100 ms check interval of intake must fit in the spike
SPANS_PER_REQUEST = 200
PLACEHOLDER = b"\xfe" * 16  # the trace id in the request template, replaced per request
GRPC_SENDERS, GRPC_WINDOW = 4, 200  # threads, and calls each keeps in flight (accepted ones wait for the commit);
# without the limiter, the 800 calls in flight take this collector to ~390 MiB (idle ~66 MiB)
HTTP_SENDERS = 2
FLOOD_AFTER_FIRST_REFUSAL = 3.0  # seconds of flooding a refusing collector
FLOOD_MAX = 20.0
SETTLE_TIMEOUT = 60.0


@contextmanager
def serve_with(directory: Path, dsn: str, limit_mib: int, spike_limit_mib: int) -> Iterator[Served]:
    """``tracetables serve`` (a subprocess) with the flood config and the given limits."""
    grpc_port, http_port = free_ports(2)
    config = directory / f"flood-{http_port}.yaml"
    config.write_text(
        FLOOD_CONFIG.format(
            grpc_port=grpc_port, http_port=http_port, limit_mib=limit_mib, spike_limit_mib=spike_limit_mib
        ),
        encoding="utf-8",
    )
    log_path = directory / f"serve-{http_port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            tracetables_argv("serve", "--config", str(config)),
            env=child_env(dsn),
            cwd=directory,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    served = Served(process, log_path, grpc_port, http_port)
    try:
        served.wait_ready()
        yield served
    finally:
        served.kill()


def request_template() -> bytes:
    """One serialized request of SPANS_PER_REQUEST spans, all in the trace PLACEHOLDER."""
    spans = [
        make_span(
            trace_id=PLACEHOLDER,
            span_id=(i + 1).to_bytes(8, "big"),
            name="flood",
            **{f"flood.attr{j}": "v" * 40 for j in range(5)},
        )
        for i in range(SPANS_PER_REQUEST)
    ]
    body = make_request(*spans).SerializeToString()
    assert body.count(PLACEHOLDER) == SPANS_PER_REQUEST
    return body


@dataclass
class Tally:
    """Trace ids (one per request) by the answer they got; thread-safe."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    ok: set[bytes] = field(default_factory=set)
    refused: set[bytes] = field(default_factory=set)
    other: list[str] = field(default_factory=list)
    retry_after_headers: set[str] = field(default_factory=set)
    grpc_retry_delays: set[float] = field(default_factory=set)
    http_refusals: int = 0
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def next_trace_id(self) -> bytes:
        with self.lock:
            return next(self._ids).to_bytes(16, "big")


def grpc_sender(port: int, template: bytes, tally: Tally, flooding: threading.Event, deadline: float) -> None:
    """Keeps GRPC_WINDOW Export calls in flight while ``flooding``; then waits for all of them."""
    window = threading.Semaphore(GRPC_WINDOW)
    calls: list[Any] = []
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        export: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(EXPORT_PATH)
        while flooding.is_set():
            if not window.acquire(timeout=0.1):
                continue
            trace_id = tally.next_trace_id()
            call = export.future(template.replace(PLACEHOLDER, trace_id), timeout=SETTLE_TIMEOUT)

            def done(call: Any, trace_id: bytes = trace_id) -> None:
                window.release()
                error = call.exception()
                with tally.lock:
                    if error is None:
                        tally.ok.add(trace_id)
                    elif error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                        tally.refused.add(trace_id)
                        if len(tally.grpc_retry_delays) < 3:
                            tally.grpc_retry_delays.add(grpc_retry_delay(error))
                    else:
                        tally.other.append(f"gRPC {error.code().name}: {error.details()}")

            call.add_done_callback(done)
            calls.append(call)
        for call in calls:  # closing the channel would cancel the calls still waiting for their commit
            try:
                call.result(timeout=max(0.1, deadline - time.monotonic()))
            except (grpc.RpcError, grpc.FutureTimeoutError):
                pass  # recorded by the callback, or left unsettled (then `ok` misses it and the test says so)


def http_sender(port: int, template: bytes, tally: Tally, flooding: threading.Event) -> None:
    """Posts one request after another while ``flooding`` (an accepted one waits for its commit)."""
    while flooding.is_set():
        trace_id = tally.next_trace_id()
        reply = http_post(port, template.replace(PLACEHOLDER, trace_id))
        with tally.lock:
            if reply.status == 200:
                tally.ok.add(trace_id)
            elif reply.status == 429:
                tally.refused.add(trace_id)
                tally.http_refusals += 1
                tally.retry_after_headers.add(reply.headers.get("retry-after", "missing"))
            else:
                tally.other.append(f"HTTP {reply.status}")


class RssSampler:
    """Samples a process's VmRSS every 10 ms on a thread; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, vmrss_of(self.pid))
            except (OSError, AssertionError):
                return  # the process is gone
            self._stop.wait(0.01)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.02)


def warm_up(served: Served, template: bytes, tally: Tally, requests: int = 10) -> None:
    """A few requests, so that first-use allocations are part of the idle RSS."""
    for _ in range(requests):
        trace_id = tally.next_trace_id()
        assert http_post(served.http_port, template.replace(PLACEHOLDER, trace_id)).status == 200
        tally.ok.add(trace_id)


def test_flood_memory_stays_under_limit_clients_get_retryable_errors_and_accepted_spans_are_stored(
    dsn: str, tmp_path: Path
) -> None:
    """memory_limiter under a flood: the collector's memory stays under its limit, clients receive
    retryable errors, and after the flood every span accepted is in the database.

    PostgreSQL is held by an ACCESS EXCLUSIVE lock, so accepted requests pile up in the
    collector's memory (each waits for its commit) until the limiter refuses; the limit is
    the collector's own warmed-up idle RSS (from a first run) plus HEADROOM_MIB.
    """
    template = request_template()
    tally = Tally()
    with serve_with(tmp_path, dsn, limit_mib=1_000_000, spike_limit_mib=0) as calibration:
        warm_up(calibration, template, tally)
        idle_mib = vmrss_of(calibration.process.pid) / MIB
        assert calibration.terminate() == 0, calibration.log()
    limit_mib = int(idle_mib) + HEADROOM_MIB
    soft_mib = limit_mib - SPIKE_MIB

    with serve_with(tmp_path, dsn, limit_mib=limit_mib, spike_limit_mib=SPIKE_MIB) as served:
        warm_up(served, template, tally)
        warm_mib = vmrss_of(served.process.pid) / MIB
        flooding = threading.Event()
        flooding.set()
        locker = psycopg.connect(dsn)
        senders: list[threading.Thread] = []
        try:
            locker.execute("LOCK TABLE spans IN ACCESS EXCLUSIVE MODE")  # nothing drains: accepted data stays in memory
            with RssSampler(served.process.pid) as sampler:
                started = time.monotonic()
                settle_by = started + FLOOD_MAX + SETTLE_TIMEOUT
                grpc_args = (served.grpc_port, template, tally, flooding, settle_by)
                senders = [
                    threading.Thread(target=grpc_sender, args=grpc_args, daemon=True) for _ in range(GRPC_SENDERS)
                ]
                for sender in senders:
                    sender.start()
                wait_until(lambda: bool(tally.refused), FLOOD_MAX, "a refusal")
                first_refusal = time.monotonic() - started
                http_args = (served.http_port, template, tally, flooding)
                http = [threading.Thread(target=http_sender, args=http_args, daemon=True) for _ in range(HTTP_SENDERS)]
                for sender in http:
                    sender.start()
                senders += http
                time.sleep(min(FLOOD_AFTER_FIRST_REFUSAL, max(0.0, FLOOD_MAX - first_refusal)))
                flooding.clear()
                rss_at_end_mib = vmrss_of(served.process.pid) / MIB
                flood_peak_mib = sampler.peak / MIB
                locker.rollback()  # PostgreSQL takes writes again
                for sender in senders:
                    sender.join(timeout=max(0.1, settle_by - time.monotonic()))
                    assert not sender.is_alive(), "a sender never got its answers"
            drained_mib = vmrss_of(served.process.pid) / MIB

            # Once drained, a forced collection (every second while refusing) brings RSS under soft again.
            recovered_at = time.monotonic()
            while True:
                trace_id = tally.next_trace_id()
                reply = http_post(served.http_port, template.replace(PLACEHOLDER, trace_id))
                if reply.status == 200:
                    tally.ok.add(trace_id)
                    break
                assert reply.status == 429, reply.status
                tally.refused.add(trace_id)
                assert time.monotonic() - recovered_at < 15, (
                    f"still refusing 15 s after the flood; RSS {vmrss_of(served.process.pid) / MIB:.0f} MiB,"
                    f" soft limit {soft_mib} MiB"
                )
                time.sleep(0.2)
            recovery_s = time.monotonic() - recovered_at
            recovered_mib = vmrss_of(served.process.pid) / MIB
        finally:
            flooding.clear()
            locker.close()
            for sender in senders:
                sender.join(timeout=SETTLE_TIMEOUT)
        assert served.terminate() == 0, served.log()
        log = served.log()

    print(  # the figures, for -s / -rA
        f"\nmemory_limiter flood: idle {idle_mib:.0f} MiB (calibration run), warm {warm_mib:.0f} MiB;"
        f" soft {soft_mib} MiB, hard {limit_mib} MiB; first refusal after {first_refusal:.1f} s;"
        f" peak {flood_peak_mib:.0f} MiB; at flood end {rss_at_end_mib:.0f} MiB; drained {drained_mib:.0f} MiB;"
        f" accepting again after {recovery_s:.1f} s at {recovered_mib:.0f} MiB;"
        f" requests OK {len(tally.ok)}, refused {len(tally.refused)} (HTTP {tally.http_refusals})"
    )
    # memory stayed under the hard limit: refusing began at soft, one check interval's intake fit in the spike
    assert flood_peak_mib < limit_mib, f"peak RSS {flood_peak_mib:.0f} MiB >= hard limit {limit_mib} MiB"
    assert flood_peak_mib >= soft_mib * 0.95, "the flood never brought memory to the soft limit"
    # clients got retryable errors, with a retry hint
    assert not tally.other, tally.other[:5]
    assert tally.http_refusals > 0 and tally.retry_after_headers == {"1"}
    assert tally.grpc_retry_delays == {0.1}
    assert len(tally.refused) > len(tally.ok)  # the flood was mostly refused
    # the limiter said so once per crossing, not per request
    assert "refusing data" in log and "accepting data" in log
    assert log.count("refusing data") < 20 < len(tally.refused)
    assert "Traceback" not in log
    # every span acknowledged is stored, nothing refused is
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT trace_id, count(*) FROM spans GROUP BY trace_id").fetchall()
    stored_ids = {bytes(k): int(v) for k, v in rows}
    missing = [t.hex() for t in tally.ok if stored_ids.get(t) != SPANS_PER_REQUEST]
    assert not missing, f"{len(missing)} acknowledged requests not (fully) stored, e.g. {missing[:3]}"
    assert not tally.refused & stored_ids.keys(), "a refused request was stored"
    assert stored_ids.keys() <= tally.ok
