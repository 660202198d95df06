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

from ._confmap import build, expand_env
from .component import Kind, Registry, component_type
from .errors import ConfigError

__all__ = ["CollectorConfig", "ConfigError", "PipelineConfig", "component_type", "load_config", "parse_config"]


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
    encoding: str = "console"
    """``console`` (one readable line) or ``json`` (one object per line: ts, level, logger, msg)."""

    def validate(self, path: str) -> None:
        if self.level.lower() not in ("debug", "info", "warn", "warning", "error"):
            raise ConfigError(f"{path}.level: must be debug, info, warn or error, got {self.level!r}")
        if self.encoding not in ("console", "json"):
            raise ConfigError(f"{path}.encoding: must be console or json, got {self.encoding!r}")


METRICS_LEVELS = ("none", "basic", "normal", "detailed")


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """``service.telemetry.metrics``: the collector's own metrics, at ``/metrics``."""

    address: str = "127.0.0.1:8888"
    level: str = "normal"
    """``none`` turns the endpoint off; the other levels serve every metric (there are few)."""

    def validate(self, path: str) -> None:
        if self.level not in METRICS_LEVELS:
            raise ConfigError(f"{path}.level: must be one of {', '.join(METRICS_LEVELS)}, got {self.level!r}")
        _host, sep, port = self.address.rpartition(":")
        if not sep or not port.isdigit() or int(port) > 65535:
            raise ConfigError(f"{path}.address: expected host:port, got {self.address!r}")


@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    """``service.telemetry``."""

    logs: LogsConfig = field(default_factory=LogsConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)


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


def load_config(
    path: str | Path, env: Mapping[str, str] | None = None, registry: Registry | None = None
) -> CollectorConfig:
    """Read, expand and validate a config file.

    Raises:
        ConfigError: the file cannot be read or parsed, or a key is invalid; the
            message names the key path.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from exc
    return parse_config(text, env, source=str(path), registry=registry, base_dir=Path(path).resolve().parent)


def parse_config(
    text: str,
    env: Mapping[str, str] | None = None,
    source: str = "<config>",
    registry: Registry | None = None,
    base_dir: Path | None = None,
) -> CollectorConfig:
    """Parse and validate config text; see :func:`load_config`.

    Args:
        registry: the component types to accept; default: this distribution's.
        base_dir: what relative paths in component configs (those with ``with_base_dir``)
            are resolved against: the config file's directory; None leaves them relative.
    """
    env = os.environ if env is None else env
    if registry is None:
        from .components import REGISTRY

        registry = REGISTRY
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)
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
    receivers = _components(Kind.RECEIVER, raw.get("receivers"), registry, env, base_dir)
    processors = _components(Kind.PROCESSOR, raw.get("processors"), registry, env, base_dir)
    exporters = _components(Kind.EXPORTER, raw.get("exporters"), registry, env, base_dir)
    extensions = _components(Kind.EXTENSION, raw.get("extensions"), registry, env, base_dir)
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
    service = build(ServiceConfig, {**service_raw, "pipelines": {}}, "service")
    service = replace(service, pipelines=pipelines)
    for i, ext in enumerate(service.extensions):
        if ext not in extensions:
            raise ConfigError(f"service.extensions[{i}]: {ext!r} is not defined under extensions")
    _check_extension_refs(pipelines, receivers, processors, exporters, extensions, service.extensions)
    return CollectorConfig(receivers, processors, exporters, extensions, service)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping, as the Collector does."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _components(
    kind: Kind, raw: Any, registry: Registry, env: Mapping[str, str], base_dir: Path | None
) -> dict[str, Any]:
    section = kind.section
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{section}: expected a mapping of component ids to settings")
    out: dict[str, Any] = {}
    for cid, body in raw.items():
        cid = str(cid)
        factory = registry.factory(kind, cid)
        config = build(factory.config_class, body, f"{section}.{cid}")
        config = factory.from_env(config, env) if factory.from_env is not None else config
        with_base_dir = getattr(config, "with_base_dir", None)
        out[cid] = with_base_dir(base_dir) if base_dir is not None and callable(with_base_dir) else config
    return out


def _check_extension_refs(
    pipelines: Mapping[str, PipelineConfig],
    receivers: Mapping[str, Any],
    processors: Mapping[str, Any],
    exporters: Mapping[str, Any],
    extensions: Mapping[str, Any],
    enabled: tuple[str, ...],
) -> None:
    """Every extension a component in a pipeline names must be defined and enabled."""
    for section, defined in (("receivers", receivers), ("processors", processors), ("exporters", exporters)):
        used = {cid for p in pipelines.values() for cid in getattr(p, section)}
        for cid in sorted(used):
            refs = getattr(defined[cid], "extension_refs", None)
            for key, ext in (refs() if refs is not None else {}).items():
                path = f"{section}.{cid}.{key}"
                if ext not in extensions:
                    raise ConfigError(f"{path}: extension {ext!r} is not defined under extensions")
                if ext not in enabled:
                    raise ConfigError(f"{path}: extension {ext!r} is not listed in service.extensions")


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


def default_config_path() -> Path:
    """``otel-config.yaml`` in the working directory, else the one shipped in the package."""
    here = Path("otel-config.yaml")
    if here.is_file():
        return here
    return Path(__file__).with_name("default-config.yaml")
