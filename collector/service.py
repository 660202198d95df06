"""The running collector: components built from a config, started and stopped in order.

The service is the components' :class:`~.component.Host`. Start order is the
Collector's: extensions, exporters, processors, receivers; shutdown goes the other way,
and the store (an embedded server) closes last.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from .component import CreateSettings, Exporter, Kind, Lifecycle, Processor, Registry, ServiceStatus, Store
from .config import CollectorConfig
from .errors import ConfigError
from .http_endpoint import HttpEndpoint
from .pipeline import FanOut, Pipeline
from .processors.config import BatchProcessorConfig
from .receivers.otlp import OtlpReceiver
from .telemetry import Telemetry

logger = logging.getLogger(__name__)


class Service:
    """Every extension, receiver, pipeline and exporter of one config.

    Attributes:
        extensions, exporters, receivers: the components by id, as configured (only
            those a pipeline uses, and the extensions ``service.extensions`` lists).
        pipelines: by pipeline id.
    """

    def __init__(self, config: CollectorConfig, registry: Registry | None = None) -> None:
        if registry is None:
            from .components import REGISTRY

            registry = REGISTRY
        self.config = config
        self._telemetry = Telemetry()
        self._status = "starting"
        metrics = config.service.telemetry.metrics
        self.metrics: HttpEndpoint | None = (
            HttpEndpoint(metrics.address, "/metrics", self._serve_metrics) if metrics.level != "none" else None
        )
        self._store: Store = registry.store(config.exporters)

        def create(kind: Kind, cid: str, conf: Any, **settings: Any) -> Any:
            return registry.factory(kind, cid).create(CreateSettings(cid, **settings), conf)

        self.extensions: dict[str, Lifecycle] = {
            eid: create(Kind.EXTENSION, eid, config.extensions[eid]) for eid in config.service.extensions
        }
        used = {cid for p in config.service.pipelines.values() for cid in p.exporters}
        self.exporters: dict[str, Exporter] = {
            cid: create(Kind.EXPORTER, cid, config.exporters[cid]) for cid in sorted(used)
        }
        self.pipelines: dict[str, Pipeline] = {}
        self._processors: dict[str, Processor] = {}
        feeds: dict[str, list[Pipeline]] = {}
        for name, spec in config.service.pipelines.items():
            processors: list[Processor] = []
            processor_ids: list[str] = []
            batch: BatchProcessorConfig | None = None
            for pid in spec.processors:
                pconf = config.processors[pid]
                if isinstance(pconf, BatchProcessorConfig):
                    batch = pconf
                    continue
                processor = self._processors.get(pid)
                if processor is None:  # one instance per id, shared by the pipelines naming it
                    processor = self._processors[pid] = create(Kind.PROCESSOR, pid, pconf)
                processors.append(processor)
                processor_ids.append(pid)
            pipeline = Pipeline(
                name,
                processors,
                batch,
                [self.exporters[e] for e in spec.exporters],
                self._telemetry,
                processor_ids,
                spec.exporters,
            )
            self.pipelines[name] = pipeline
            for rid in spec.receivers:
                feeds.setdefault(rid, []).append(pipeline)
        self.receivers: dict[str, OtlpReceiver] = {
            rid: create(Kind.RECEIVER, rid, config.receivers[rid], consumer=FanOut(pipelines))
            for rid, pipelines in feeds.items()
        }
        self._started: list[tuple[str, Lifecycle]] = []
        for eid in self.exporters:
            feeding = [self.pipelines[n] for n, spec in config.service.pipelines.items() if eid in spec.exporters]
            self._telemetry.exporter_queue_size.labels(eid).set_function(_queued(feeding))

    # -- Host -------------------------------------------------------------------------

    def extension(self, component_id: str) -> object:
        """The extension with this id (see :class:`~.component.Host`)."""
        found = self.extensions.get(component_id)
        if found is None:
            raise ConfigError(f"service.extensions: {component_id!r} is needed but not enabled")
        return found

    async def store_dsn(self) -> str:
        """The store's DSN (see :class:`~.component.Host`)."""
        return await self._store.open()

    @property
    def telemetry(self) -> Telemetry:
        """This service's metrics (see :class:`~.component.Host`)."""
        return self._telemetry

    def status(self) -> ServiceStatus:
        """Whether the pipelines run (see :class:`~.component.Host`)."""
        return ServiceStatus(self._status, tuple(self.pipelines))

    async def _serve_metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self._telemetry.render(), content_type="text/plain", headers={"X-Content-Type-Options": "nosniff"}
        )

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Start extensions, exporters, processors, then receivers. On failure, what
        started is stopped again."""
        order: list[tuple[str, dict[str, Any]]] = [
            ("extension", self.extensions),
            ("exporter", self.exporters),
            ("processor", self._processors),
            ("receiver", self.receivers),
        ]
        try:
            if self.metrics is not None:
                try:
                    await self.metrics.start()
                except OSError as exc:
                    address = self.config.service.telemetry.metrics.address
                    raise ConfigError(f"service.telemetry.metrics.address: cannot listen on {address}: {exc}") from exc
            for kind, components in order:
                for cid, component in components.items():
                    await component.start(self)
                    self._started.append((f"{kind} {cid}", component))
        except BaseException:
            await self.shutdown()
            raise
        self._status = "running"

    async def shutdown(self, grace: float = 5.0) -> None:
        """Stop receivers (requests under way finish), drain batches, stop the rest in
        reverse start order, then close the store. Safe twice."""
        self._status = "stopping"
        # Requests under way wait for their batch's commit: flush now, or the receivers'
        # grace period would be spent waiting for a batch timeout.
        for pipeline in self.pipelines.values():
            pipeline.drain()
        for receiver in self.receivers.values():
            await receiver.stop(grace)
        for pipeline in self.pipelines.values():
            await pipeline.shutdown()
        while self._started:
            name, component = self._started.pop()
            try:
                await component.shutdown()
            except Exception:  # one component's failure must not keep the others running
                logger.exception("%s failed to shut down", name)
        if self.metrics is not None:
            await self.metrics.shutdown()
        await self._store.close()


def _queued(pipelines: list[Pipeline]) -> Callable[[], float]:
    """Reads the spans waiting in ``pipelines``' batch processors, at scrape time."""
    return lambda: float(sum(p.queued_spans for p in pipelines))
