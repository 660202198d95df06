"""The running collector: components built from a config, started and stopped in order."""

from __future__ import annotations

import logging
from typing import Any

from tracetables.exporters.base import Exporter
from tracetables.exporters.debug import DebugExporter, DebugExporterConfig
from tracetables.exporters.postgres.config import PostgresExporterConfig
from tracetables.exporters.postgres.exporter import PostgresExporter

from .config import CollectorConfig
from .consumer import Processor
from .pipeline import FanOut, Pipeline
from .processors.config import BatchProcessorConfig
from .processors.registry import make_processor
from .receivers.config import OtlpReceiverConfig
from .receivers.otlp_grpc import OtlpGrpcReceiver
from .receivers.otlp_http import OtlpHttpReceiver

logger = logging.getLogger(__name__)

Receiver = OtlpGrpcReceiver | OtlpHttpReceiver


def _make_exporter(config: Any) -> Exporter:
    if isinstance(config, PostgresExporterConfig):
        return PostgresExporter(config)
    if isinstance(config, DebugExporterConfig):
        return DebugExporter(config)
    raise TypeError(f"no exporter for {type(config).__name__}")


class Service:
    """Every receiver, pipeline and exporter of one config.

    Attributes:
        exporters: by component id, as configured.
        receivers: by component id and protocol, e.g. ``"otlp/grpc"``.
    """

    def __init__(self, config: CollectorConfig) -> None:
        self.config = config
        used = {cid for p in config.service.pipelines.values() for cid in p.exporters}
        self.exporters: dict[str, Exporter] = {cid: _make_exporter(config.exporters[cid]) for cid in sorted(used)}
        self.pipelines: dict[str, Pipeline] = {}
        self._processors: dict[str, Processor] = {}
        feeds: dict[str, list[Pipeline]] = {}
        for name, spec in config.service.pipelines.items():
            processors: list[Processor] = []
            batch: BatchProcessorConfig | None = None
            for pid in spec.processors:
                pconf = config.processors[pid]
                if isinstance(pconf, BatchProcessorConfig):
                    batch = pconf
                else:
                    processor = self._processors.get(pid)
                    if processor is None:  # one instance per id, shared by the pipelines naming it
                        processor = self._processors[pid] = make_processor(pconf)
                    processors.append(processor)
            pipeline = Pipeline(name, processors, batch, [self.exporters[e] for e in spec.exporters])
            self.pipelines[name] = pipeline
            for rid in spec.receivers:
                feeds.setdefault(rid, []).append(pipeline)
        self.receivers: dict[str, Receiver] = {}
        for rid, pipelines in feeds.items():
            rconf = config.receivers[rid]
            assert isinstance(rconf, OtlpReceiverConfig)
            consumer = FanOut(pipelines)
            if rconf.protocols.grpc is not None:
                self.receivers[f"{rid}/grpc"] = OtlpGrpcReceiver(rconf.protocols.grpc, rconf.limits, consumer)
            if rconf.protocols.http is not None:
                self.receivers[f"{rid}/http"] = OtlpHttpReceiver(rconf.protocols.http, rconf.limits, consumer)
        self._started: list[str] = []
        self._started_processors: list[str] = []

    async def start(self) -> None:
        """Start exporters, then receivers. On failure, what started is stopped again."""
        try:
            for cid, exporter in self.exporters.items():
                await exporter.start()
                self._started.append(cid)
            for pid, processor in self._processors.items():
                bind = getattr(processor, "bind_dsn", None)
                if bind is not None:  # it reads the database: the exporter's, once it has started
                    bind(self.postgres_dsn)
                start = getattr(processor, "start", None)
                if start is not None:
                    await start()
                self._started_processors.append(pid)
            for receiver in self.receivers.values():
                await receiver.start()
        except BaseException:
            await self.shutdown()
            raise

    async def shutdown(self, grace: float = 5.0) -> None:
        """Stop receivers (requests under way finish), drain batches, stop exporters. Safe twice."""
        # Requests under way wait for their batch's commit: flush now, or the receivers'
        # grace period would be spent waiting for a batch timeout.
        for pipeline in self.pipelines.values():
            pipeline.drain()
        for receiver in self.receivers.values():
            await receiver.stop(grace)
        for pipeline in self.pipelines.values():
            await pipeline.shutdown()
        for pid in reversed(self._started_processors):
            stop = getattr(self._processors[pid], "shutdown", None)
            try:
                if stop is not None:
                    await stop()
            except Exception:
                logger.exception("processor %s failed to shut down", pid)
        self._started_processors.clear()
        for cid in reversed(self._started):
            try:
                await self.exporters[cid].shutdown()
            except Exception:  # one exporter's failure must not keep the others running
                logger.exception("exporter %s failed to shut down", cid)
        self._started.clear()

    def postgres_dsn(self) -> str | None:
        """The DSN of the first postgres exporter (the embedded one's once started)."""
        for exporter in self.exporters.values():
            if isinstance(exporter, PostgresExporter):
                return exporter.dsn
        return None
