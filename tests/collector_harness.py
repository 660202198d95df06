"""Running a real collector in a background thread, for tests and tools."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any

from tracetables.collector.config import CollectorConfig, MetricsConfig, parse_config
from tracetables.collector.extensions.health_check import HealthCheckExtension
from tracetables.collector.service import Service

BASE_CONFIG = """
receivers:
  otlp:
    protocols:
      grpc: {endpoint: "127.0.0.1:0"}
      http: {endpoint: "127.0.0.1:0"}
processors:
  batch: {timeout: 20ms}
exporters:
  postgres:
    dsn: ${env:DSN}
    retry_on_failure: {max_elapsed_time: 1s, initial_interval: 50ms, max_interval: 200ms}
service:
  pipelines:
    traces: {receivers: [otlp], processors: [batch], exporters: [postgres]}
"""


@dataclass
class RunningCollector:
    """A started :class:`Service` and the loop thread it runs on."""

    service: Service
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    stopped: bool = field(default=False)

    @property
    def grpc_port(self) -> int:
        server = self.service.receivers["otlp"].grpc
        assert server is not None
        return server.port

    @property
    def http_port(self) -> int:
        server = self.service.receivers["otlp"].http
        assert server is not None
        return server.port

    @property
    def metrics_port(self) -> int:
        assert self.service.metrics is not None, "service.telemetry.metrics.level is none"
        return self.service.metrics.port

    @property
    def health_port(self) -> int:
        extension = self.service.extensions["health_check"]
        assert isinstance(extension, HealthCheckExtension)
        return extension.port

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/v1/traces"

    def call(self, coro: Any) -> Any:
        """Run a coroutine on the collector's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        try:
            self.call(self.service.shutdown(grace=2.0))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=30)
            self.loop.close()


def start_collector(dsn: str, config_text: str = BASE_CONFIG, env: Mapping[str, str] | None = None) -> RunningCollector:
    """Start a collector from config text (``${env:DSN}`` is the database) and return it."""
    config: CollectorConfig = parse_config(config_text, {"DSN": dsn, **(env or {})})
    telemetry = config.service.telemetry
    if telemetry.metrics.address == MetricsConfig().address:
        # Tests run many collectors, some at once: the default port would clash.
        metrics = replace(telemetry.metrics, address="127.0.0.1:0")
        config = replace(config, service=replace(config.service, telemetry=replace(telemetry, metrics=metrics)))
    loop = asyncio.new_event_loop()
    ready: Future[None] = Future()
    service = Service(config)

    def run() -> None:
        asyncio.set_event_loop(loop)

        async def boot() -> None:
            await service.start()

        try:
            loop.run_until_complete(boot())
        except BaseException as exc:
            loop.close()  # nothing runs on it any more; an open loop would warn at collection
            ready.set_exception(exc)
            return
        ready.set_result(None)
        loop.run_forever()

    thread = threading.Thread(target=run, name="collector", daemon=True)
    thread.start()
    ready.result(timeout=60)
    return RunningCollector(service, loop, thread)
