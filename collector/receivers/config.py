"""Config of the OTLP receiver, in the OTel Collector's shape (``receivers.otlp``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from ..errors import ConfigError
from .cors import CorsConfig
from .tls import TlsServerConfig

MIB = 1024 * 1024


def _check_endpoint(endpoint: str, path: str) -> None:
    _host, sep, port = endpoint.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{path}.endpoint: expected host:port, got {endpoint!r}")


@dataclass(frozen=True, slots=True)
class KeepaliveServerParameters:
    """``grpc.keepalive.server_parameters``: when the server ends or pings a connection (0 = never)."""

    max_connection_idle: timedelta = timedelta(seconds=60)
    """A connection without a call under way this long gets a GOAWAY (clients reconnect when they next
    send). gRPC's own default is never; ours closes idle connections within a minute."""
    max_connection_age: timedelta = timedelta(0)
    """A connection this old gets a GOAWAY, whatever it is doing (spreads clients over replicas)."""
    max_connection_age_grace: timedelta = timedelta(0)
    """After ``max_connection_age``, calls under way get this long before the connection is closed
    (0 = as long as they take)."""
    time: timedelta = timedelta(hours=2)
    """An idle connection is pinged this often (gRPC's default: 2 hours)."""
    timeout: timedelta = timedelta(seconds=20)
    """A ping unanswered this long closes the connection."""

    def validate(self, path: str) -> None:
        for name in ("time", "timeout"):
            if getattr(self, name) == timedelta(0):
                raise ConfigError(f"{path}.{name}: must be > 0")


@dataclass(frozen=True, slots=True)
class KeepaliveEnforcementPolicy:
    """``grpc.keepalive.enforcement_policy``: the pings the server tolerates from clients."""

    min_time: timedelta = timedelta(minutes=5)
    """Clients pinging more often than this are sent a GOAWAY (gRPC's default: 5 minutes)."""
    permit_without_stream: bool = False
    """Allow pings on a connection without calls under way."""


@dataclass(frozen=True, slots=True)
class KeepaliveConfig:
    """``grpc.keepalive``."""

    server_parameters: KeepaliveServerParameters = field(default_factory=KeepaliveServerParameters)
    enforcement_policy: KeepaliveEnforcementPolicy = field(default_factory=KeepaliveEnforcementPolicy)


@dataclass(frozen=True, slots=True)
class GrpcConfig:
    """``receivers.otlp.protocols.grpc``."""

    endpoint: str = "127.0.0.1:4317"
    """Loopback by default (recent Collectors use ``localhost``, which can mean ``::1`` only)."""
    max_recv_msg_size_mib: int = 4
    """Largest request message, after decompression (the spec's recommended 4 MiB)."""
    max_concurrent_streams: int = 0
    """Calls under way on one connection at most (0: gRPC's default, no limit)."""
    keepalive: KeepaliveConfig = field(default_factory=KeepaliveConfig)
    handshake_timeout: timedelta = timedelta(seconds=10)
    """A connection must complete its TLS and HTTP/2 handshake within this (not a Collector key;
    gRPC's default is 2 minutes). 0 keeps gRPC's default."""
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
    read_header_timeout: timedelta = timedelta(seconds=10)
    """A request's headers must arrive within this of their first byte (a new connection's, of
    its accept); else the connection is closed. 0 = no limit."""
    idle_timeout: timedelta = timedelta(seconds=60)
    """A connection with no request under way and silent this long is closed. 0 = no limit."""
    max_concurrent_connections: int = 0
    """Open connections at most; a new one beyond it gets 503 and is closed. 0 = no limit but
    the process's open-file limit."""
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
        if self.max_concurrent_connections < 0:
            raise ConfigError(f"{path}.max_concurrent_connections: must be >= 0, got {self.max_concurrent_connections}")


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
