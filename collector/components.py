"""The components of this distribution: every factory, registered in one place.

This is the one module of ``tracetables.collector`` that imports the exporters; the
config loader and the service see only the :class:`~.component.Registry` built here.
``tracetables components`` prints it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tracetables.exporters.debug import DebugExporter, DebugExporterConfig
from tracetables.exporters.postgres.config import PostgresExporterConfig
from tracetables.exporters.postgres.exporter import PostgresExporter
from tracetables.exporters.postgres.store import PostgresStore

from .component import CreateSettings, Factory, Kind, Registry, Stability
from .extensions.health_check import HealthCheckConfig, HealthCheckExtension
from .extensions.tracing_config import TracingConfigExtension, TracingConfigExtensionConfig
from .processors.config import BatchProcessorConfig
from .processors.memory_limiter import MemoryLimiter
from .processors.memory_limiter_config import MemoryLimiterConfig
from .processors.pii_masking import PiiMaskingConfig, PiiMaskingProcessor
from .processors.trace_level import TraceLevelConfig, TraceLevelProcessor
from .processors.webhook_redaction import WebhookRedactionConfig, WebhookRedactionProcessor
from .receivers.config import OtlpReceiverConfig
from .receivers.otlp import OtlpReceiver

DATABASE_URL_ENV = "TRACETABLES_DATABASE_URL"


def _otlp(settings: CreateSettings, config: OtlpReceiverConfig) -> OtlpReceiver:
    assert settings.consumer is not None, "a receiver is created with the pipelines it feeds"
    return OtlpReceiver(config, settings.consumer, settings.id)


def _database_url(config: PostgresExporterConfig, env: Any) -> PostgresExporterConfig:
    url = env.get(DATABASE_URL_ENV, "")
    return (replace(config, dsn=url) if url and not config.dsn else config).with_env(env)


def _batch(settings: CreateSettings, config: BatchProcessorConfig) -> BatchProcessorConfig:
    return config  # the pipeline owns the batch processor: it sits between requests and exports


REGISTRY = Registry(
    [
        Factory(
            Kind.RECEIVER,
            "otlp",
            OtlpReceiverConfig,
            _otlp,
            Stability.BETA,
            "OTLP/gRPC and OTLP/HTTP (protobuf and JSON, gzip)",
        ),
        Factory(
            Kind.PROCESSOR,
            "memory_limiter",
            MemoryLimiterConfig,
            lambda s, c: MemoryLimiter(c),
            Stability.BETA,
            "refuses data with a retry hint while memory is over the limit",
        ),
        Factory(
            Kind.PROCESSOR,
            "trace_level",
            TraceLevelConfig,
            lambda s, c: TraceLevelProcessor(c),
            Stability.BETA,
            "how much detail spans keep, per span, resource or flow",
        ),
        Factory(
            Kind.PROCESSOR,
            "pii_masking",
            PiiMaskingConfig,
            lambda s, c: PiiMaskingProcessor(c, s.id),
            Stability.BETA,
            "masks personal data and secrets before anything is written",
        ),
        Factory(
            Kind.PROCESSOR,
            "webhook_redaction",
            WebhookRedactionConfig,
            lambda s, c: WebhookRedactionProcessor(c),
            Stability.BETA,
            "redacts call credentials and cuts oversized call bodies",
        ),
        Factory(
            Kind.PROCESSOR,
            "batch",
            BatchProcessorConfig,
            _batch,
            Stability.BETA,
            "groups requests into one transaction; must be the last processor",
        ),
        Factory(
            Kind.EXPORTER,
            "postgres",
            PostgresExporterConfig,
            lambda s, c: PostgresExporter(c, s.id),
            Stability.BETA,
            "spans and projections into PostgreSQL, with COPY",
            from_env=_database_url,
        ),
        Factory(
            Kind.EXPORTER,
            "debug",
            DebugExporterConfig,
            lambda s, c: DebugExporter(c),
            Stability.DEVELOPMENT,
            "a log line per batch or span (ids and names only)",
        ),
        Factory(
            Kind.EXTENSION,
            "tracing_config",
            TracingConfigExtensionConfig,
            lambda s, c: TracingConfigExtension(c),
            Stability.BETA,
            "per-flow tracing settings and retention, read from the store",
        ),
        Factory(
            Kind.EXTENSION,
            "health_check",
            HealthCheckConfig,
            lambda s, c: HealthCheckExtension(c),
            Stability.BETA,
            "HTTP probe: 200 while the pipelines run and the store answers, else 503",
        ),
    ],
    store=PostgresStore,
)
