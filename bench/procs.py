"""The collector as a child process, and CPU accounting from /proc (Linux)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")
COLLECTOR_CMD = "from tracetables.collector.cli import main; main()"
# Settings default-config.yaml gives where the processor's own defaults differ (or are none).
_PROCESSOR_DEFAULTS = {"memory_limiter": "{check_interval: 200ms, limit_percentage: 80, spike_limit_percentage: 25}"}


def free_port() -> int:
    """A loopback port nobody listens on right now (bind to 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def collector_config(
    port: int,
    dsn: str,
    batch_timeout: str | None = None,
    num_consumers: int | None = None,
    encoding_workers: int | None = None,
    projections: bool | None = None,
    processors: Sequence[str] = (),
    http_port: int | None = None,
    metrics_port: int | None = None,
) -> str:
    """gRPC on loopback (and OTLP/HTTP on ``http_port`` if given; /metrics on
    ``metrics_port``, else none), the batch processor and postgres exporter on ``dsn``, with
    project defaults unless ``batch_timeout`` / ``num_consumers`` / ``encoding_workers`` /
    ``projections`` are given. ``processors`` (e.g. ``pii_masking``, ``webhook_redaction``)
    run before ``batch``, in that order, each with its defaults (``trace_level`` with the
    ``tracing_config`` extension on the same database, as in ``default-config.yaml``)."""
    batch = f'{{timeout: "{batch_timeout}"}}' if batch_timeout else "{}"
    before = "".join(f"\n  {name}: {_PROCESSOR_DEFAULTS.get(name, '{}')}" for name in processors)
    extensions = ""
    if "trace_level" in processors:
        extensions = "extensions:\n  tracing_config: {}\n"
    chain = ", ".join([*processors, "batch"])
    consumers = f"\n    sending_queue: {{num_consumers: {num_consumers}}}" if num_consumers else ""
    if encoding_workers is not None:
        consumers += f"\n    encoding_workers: {encoding_workers}"
    if projections is not None:
        consumers += f"\n    projections: {'true' if projections else 'false'}"
    http = f'\n      http:\n        endpoint: "127.0.0.1:{http_port}"' if http_port else ""
    metrics = f'address: "127.0.0.1:{metrics_port}"' if metrics_port else "level: none"
    quoted = '"' + dsn.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$") + '"'
    return f"""receivers:
  otlp:
    protocols:
      grpc:
        endpoint: "127.0.0.1:{port}"{http}
processors:{before}
  batch: {batch}
exporters:
  postgres:
    dsn: {quoted}{consumers}
{extensions}service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [{chain}]
      exporters: [postgres]
{"  extensions: [tracing_config]" + chr(10) if extensions else ""}  telemetry:
    logs:
      level: info
    metrics:
      {metrics}
"""


class Collector:
    """``tracetables serve --config FILE`` in a child process, stderr+stdout to a log file."""

    def __init__(self, config_path: Path, log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", COLLECTOR_CMD, "serve", "--config", str(config_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=config_path.parent,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, port: int, timeout: float = 60.0) -> None:
        """Return once the gRPC port accepts; raise if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"collector exited with status {self.proc.returncode} before serving")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"collector did not accept on port {port} within {timeout:.0f}s")

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (the collector drains), then SIGKILL if it hangs; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                print(f"collector did not stop within {timeout:.0f}s of SIGTERM: killing it", file=sys.stderr)
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode

    def log_lines(self) -> list[str]:
        try:
            return self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []


def _stat_fields(pid: int) -> list[str] | None:
    try:
        # Fields after "(comm)": [0] state, [1] ppid, ..., [11] utime, [12] stime, [13] cutime, [14] cstime.
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def process_cpu_seconds(pid: int) -> float:
    """User+system CPU seconds of one process (all its threads)."""
    f = _stat_fields(pid)
    return (int(f[11]) + int(f[12])) / _TICK if f else 0.0


def tree_cpu_seconds(root_pid: int) -> float:
    """CPU of a process, its live children, and its reaped children (e.g. the postmaster's backends)."""
    f = _stat_fields(root_pid)
    if not f:
        return 0.0
    total = sum(int(x) for x in f[11:15])
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            child = _stat_fields(int(entry.name))
            if child and child[1] == str(root_pid):
                total += int(child[11]) + int(child[12])
    return total / _TICK


@dataclass(frozen=True)
class MachineCpu:
    busy: float  # seconds, summed over cores
    iowait: float
    total: float

    @staticmethod
    def sample() -> MachineCpu:
        values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
        idle, iowait = values[3], values[4]
        total = sum(values)
        return MachineCpu((total - idle - iowait) / _TICK, iowait / _TICK, total / _TICK)

    def __sub__(self, other: MachineCpu) -> MachineCpu:
        return MachineCpu(self.busy - other.busy, self.iowait - other.iowait, self.total - other.total)
