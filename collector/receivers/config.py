"""Config of the OTLP receiver, in the OTel Collector's shape (``receivers.otlp``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError
from .cors import CorsConfig
from .tls import TlsServerConfig

MIB = 1024 * 1024


def _check_endpoint(endpoint: str, path: str) -> None:
    _host, sep, port = endpoint.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{path}.endpoint: expected host:port, got {endpoint!r}")


@dataclass(frozen=True, slots=True)
class GrpcConfig:
    """``receivers.otlp.protocols.grpc``."""

    endpoint: str = "127.0.0.1:4317"
    """Loopback by default (recent Collectors use ``localhost``, which can mean ``::1`` only)."""
    max_recv_msg_size_mib: int = 4
    """Largest request message, after decompression (the spec's recommended 4 MiB)."""
    max_concurrent_streams: int = 0
    tls: TlsServerConfig | None = None
    """Serve TLS (and mutual TLS with ``client_ca_file``); plaintext when left out."""

    def validate(self, path: str) -> None:
        _check_endpoint(self.endpoint, path)
        if self.max_recv_msg_size_mib <= 0:
            raise ConfigError(f"{path}.max_recv_msg_size_mib: must be > 0, got {self.max_recv_msg_size_mib}")
        if self.max_concurrent_streams < 0:
            raise ConfigError(f"{path}.max_concurrent_streams: must be >= 0, got {self.max_concurrent_streams}")
        if self.tls is not None and self.tls.min_version != "1.2":
            # grpcio's server credentials take no version bounds: it always offers 1.2 and 1.3
            raise ConfigError(
                f"{path}.tls.min_version: the gRPC receiver cannot refuse TLS 1.2 (grpcio has no such setting);"
                f' use "1.2", got {self.tls.min_version!r}'
            )


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """``receivers.otlp.protocols.http``."""

    endpoint: str = "127.0.0.1:4318"
    """Loopback by default, like ``grpc.endpoint``."""
    max_request_body_size: int = 20 * MIB
    """Largest body in bytes, enforced on the wire and again after decompression."""
    traces_url_path: str = "/v1/traces"
    tls: TlsServerConfig | None = None
    """Serve HTTPS (and mutual TLS with ``client_ca_file``); plain HTTP when left out."""
    cors: CorsConfig | None = None
    """Answer browsers' preflights; without it, ``OPTIONS`` is 405 as before."""

    def validate(self, path: str) -> None:
        _check_endpoint(self.endpoint, path)
        if self.max_request_body_size <= 0:
            raise ConfigError(f"{path}.max_request_body_size: must be > 0, got {self.max_request_body_size}")
        if not self.traces_url_path.startswith("/"):
            raise ConfigError(f"{path}.traces_url_path: must start with '/', got {self.traces_url_path!r}")


@dataclass(frozen=True, slots=True)
class Protocols:
    """``receivers.otlp.protocols``: a protocol left out is not served."""

    grpc: GrpcConfig | None = None
    http: HttpConfig | None = None


@dataclass(frozen=True, slots=True)
class SpanLimits:
    """Per-span limits; a span over one is rejected through ``partial_success``."""

    max_attributes: int = 2048
    """On the span, and separately on each event and link."""
    max_events: int = 16384
    max_links: int = 16384

    def validate(self, path: str) -> None:
        for name in ("max_attributes", "max_events", "max_links"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{path}.{name}: must be > 0, got {getattr(self, name)}")


@dataclass(frozen=True, slots=True)
class OtlpReceiverConfig:
    """``receivers.otlp``."""

    protocols: Protocols = field(default_factory=Protocols)
    limits: SpanLimits = field(default_factory=SpanLimits)

    def validate(self, path: str) -> None:
        if self.protocols.grpc is None and self.protocols.http is None:
            raise ConfigError(f"{path}.protocols: enable at least one of grpc, http")
