"""The collector config: the OTel Collector's file shape, loaded into frozen dataclasses.

A file has ``receivers``, ``processors``, ``exporters``, ``extensions`` and
``service.pipelines``; components are named ``type`` or ``type/name``. Everything is
validated here, once: components get a checked object and never read the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from tracetables.exporters.debug import DebugExporterConfig
from tracetables.exporters.postgres.config import PostgresExporterConfig

from ._confmap import build, expand_env
from .errors import ConfigError
from .processors.config import BatchProcessorConfig
from .processors.memory_limiter_config import MemoryLimiterConfig
from .processors.pii_masking import PiiMaskingConfig
from .processors.trace_level import TraceLevelConfig
from .processors.webhook_redaction import WebhookRedactionConfig
from .receivers.config import OtlpReceiverConfig

DATABASE_URL_ENV = "TRACETABLES_DATABASE_URL"

RECEIVER_TYPES: dict[str, type] = {"otlp": OtlpReceiverConfig}
PROCESSOR_TYPES: dict[str, type] = {
    "batch": BatchProcessorConfig,
    "memory_limiter": MemoryLimiterConfig,
    "pii_masking": PiiMaskingConfig,
    "trace_level": TraceLevelConfig,
    "webhook_redaction": WebhookRedactionConfig,
}
EXPORTER_TYPES: dict[str, type] = {"postgres": PostgresExporterConfig, "debug": DebugExporterConfig}
EXTENSION_TYPES: dict[str, type] = {}


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    """``service.pipelines.traces[/name]``: component ids in order."""

    receivers: tuple[str, ...] = ()
    processors: tuple[str, ...] = ()
    exporters: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LogsConfig:
    """``service.telemetry.logs``."""

    level: str = "info"

    def validate(self, path: str) -> None:
        if self.level.lower() not in ("debug", "info", "warn", "warning", "error"):
            raise ConfigError(f"{path}.level: must be debug, info, warn or error, got {self.level!r}")


@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    """``service.telemetry``."""

    logs: LogsConfig = field(default_factory=LogsConfig)


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """``service``."""

    pipelines: Mapping[str, PipelineConfig] = field(default_factory=dict)
    extensions: tuple[str, ...] = ()
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    """A whole, validated collector config."""

    receivers: Mapping[str, Any]
    processors: Mapping[str, Any]
    exporters: Mapping[str, Any]
    extensions: Mapping[str, Any]
    service: ServiceConfig


def component_type(component_id: str) -> str:
    """``"otlp/internal"`` → ``"otlp"``."""
    return component_id.split("/", 1)[0]


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> CollectorConfig:
    """Read, expand and validate a config file.

    Raises:
        ConfigError: the file cannot be read or parsed, or a key is invalid; the
            message names the key path.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from exc
    return parse_config(text, env, source=str(path))


def parse_config(text: str, env: Mapping[str, str] | None = None, source: str = "<config>") -> CollectorConfig:
    """Parse and validate config text; see :func:`load_config`."""
    env = os.environ if env is None else env
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of receivers, processors, exporters, service")
    raw = expand_env(raw, env)
    allowed = {"receivers", "processors", "exporters", "extensions", "service", "connectors"}
    for key in raw:
        if key not in allowed:
            raise ConfigError(f"{key}: unknown key (valid keys: {', '.join(sorted(allowed - {'connectors'}))})")
    if raw.get("connectors"):
        raise ConfigError("connectors: tracetables has no connectors")
    receivers = _components("receivers", raw.get("receivers"), RECEIVER_TYPES)
    processors = _components("processors", raw.get("processors"), PROCESSOR_TYPES)
    exporters = _components("exporters", raw.get("exporters"), EXPORTER_TYPES)
    extensions = _components("extensions", raw.get("extensions"), EXTENSION_TYPES)
    service_raw = raw.get("service")
    if service_raw is None:
        raise ConfigError("service: missing; it names the pipelines to run")
    if not isinstance(service_raw, dict):
        raise ConfigError("service: expected a mapping")
    pipelines_raw = service_raw.get("pipelines")
    if not isinstance(pipelines_raw, dict) or not pipelines_raw:
        raise ConfigError("service.pipelines: define at least one pipeline (traces)")
    pipelines: dict[str, PipelineConfig] = {}
    for pid, body in pipelines_raw.items():
        path = f"service.pipelines.{pid}"
        if component_type(str(pid)) != "traces":
            raise ConfigError(f"{path}: tracetables runs traces pipelines only")
        pipeline = build(PipelineConfig, body, path)
        _check_refs(pipeline, receivers, processors, exporters, path)
        pipelines[str(pid)] = pipeline
    service = build(
        ServiceConfig, {**service_raw, "pipelines": {}}, "service"
    )
    service = replace(service, pipelines=pipelines)
    for i, ext in enumerate(service.extensions):
        if ext not in extensions:
            raise ConfigError(f"service.extensions[{i}]: {ext!r} is not defined under extensions")
    exporters = _fill_database_url(exporters, env)
    return CollectorConfig(receivers, processors, exporters, extensions, service)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping, as the Collector does."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is given twice", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _components(section: str, raw: Any, types: Mapping[str, type]) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{section}: expected a mapping of component ids to settings")
    out: dict[str, Any] = {}
    for cid, body in raw.items():
        cid = str(cid)
        ctype = component_type(cid)
        if ctype not in types:
            known = ", ".join(sorted(types)) or "none yet"
            raise ConfigError(f"{section}.{cid}: unknown {section[:-1]} type {ctype!r} (known: {known})")
        out[cid] = build(types[ctype], body, f"{section}.{cid}")
    return out


def _check_refs(
    pipeline: PipelineConfig,
    receivers: Mapping[str, Any],
    processors: Mapping[str, Any],
    exporters: Mapping[str, Any],
    path: str,
) -> None:
    for kind, ids, defined in (
        ("receivers", pipeline.receivers, receivers),
        ("processors", pipeline.processors, processors),
        ("exporters", pipeline.exporters, exporters),
    ):
        for i, cid in enumerate(ids):
            if cid not in defined:
                raise ConfigError(f"{path}.{kind}[{i}]: {cid!r} is not defined under {kind}")
        if len(set(ids)) != len(ids):
            raise ConfigError(f"{path}.{kind}: lists a component twice")
    if not pipeline.receivers:
        raise ConfigError(f"{path}.receivers: a pipeline needs at least one receiver")
    if not pipeline.exporters:
        raise ConfigError(f"{path}.exporters: a pipeline needs at least one exporter")
    for i, cid in enumerate(pipeline.processors[:-1]):
        if component_type(cid) == "batch":
            raise ConfigError(
                f"{path}.processors[{i}]: batch must be the last processor (requests are acknowledged per batch commit)"
            )


def _fill_database_url(exporters: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    url = env.get(DATABASE_URL_ENV, "")
    if not url:
        return exporters
    return {
        cid: replace(cfg, dsn=url) if isinstance(cfg, PostgresExporterConfig) and not cfg.dsn else cfg
        for cid, cfg in exporters.items()
    }


def default_config_path() -> Path:
    """``otel-config.yaml`` in the working directory, else the one shipped in the package."""
    here = Path("otel-config.yaml")
    if here.is_file():
        return here
    return Path(__file__).with_name("default-config.yaml")
