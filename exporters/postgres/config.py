"""Config of the PostgreSQL exporter (``exporters.postgres``)."""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path

from tracetables.collector.errors import ConfigError


@dataclass(frozen=True, slots=True)
class EmbeddedConfig:
    """The private PostgreSQL started when no DSN is configured.

    ``data_dir``: empty means the per-user directory (:func:`user_data_dir`); a relative
    one is resolved against the directory of the config file that set it.
    ``listen``: ``host:port`` on loopback where the server also accepts TCP connections
    (password required); empty: Unix socket only.
    """

    data_dir: str = ""
    listen: str = ""

    def validate(self, path: str) -> None:
        if self.listen:
            listen_address(self.listen, f"{path}.listen")

    def with_base_dir(self, base: Path) -> EmbeddedConfig:
        """This config with a relative ``data_dir`` made absolute against ``base``."""
        if not self.data_dir:
            return self
        data_dir = Path(self.data_dir).expanduser()
        return replace(self, data_dir=str(data_dir if data_dir.is_absolute() else base / data_dir))


LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def listen_address(value: str, path: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:port`` for IPv6) split and checked: a loopback host, a port 1-65535.

    Raises:
        ConfigError: naming ``path``.
    """
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"{path}: expected loopback host:port with a port 1-65535, got {value!r}")
    if host not in LOOPBACK_HOSTS:
        raise ConfigError(
            f"{path}: the embedded server listens on loopback only (127.0.0.1, ::1 or localhost), got host {host!r}"
        )
    return host, int(port)


ROOT_DATA_DIR = Path("/var/lib/tracetables/pg")


def user_data_dir(env: Mapping[str, str]) -> Path:
    """The per-user cluster directory: ``$XDG_DATA_HOME/tracetables/pg``, else
    ``~/.local/share/tracetables/pg`` (a relative XDG_DATA_HOME is ignored, as the XDG spec says);
    for root with its own home, ``/var/lib/tracetables/pg``."""
    xdg = env.get("XDG_DATA_HOME", "")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "tracetables" / "pg"
    home = env.get("HOME") or pwd.getpwuid(os.getuid()).pw_dir
    if os.geteuid() == 0 and home == pwd.getpwuid(0).pw_dir:
        # As root the server runs as ``postgres``, which cannot enter root's 0700 home:
        # root's default is the system's place for a service's state instead.
        return ROOT_DATA_DIR
    return Path(home) / ".local" / "share" / "tracetables" / "pg"


@dataclass(frozen=True, slots=True)
class SendingQueueConfig:
    """How many batches are written at once (each on its own connection)."""

    num_consumers: int = 2

    def validate(self, path: str) -> None:
        if not 1 <= self.num_consumers <= 64:
            raise ConfigError(f"{path}.num_consumers: must be between 1 and 64, got {self.num_consumers}")


@dataclass(frozen=True, slots=True)
class RetryConfig:
    """Retries of a failed write, with exponential backoff and jitter.

    The client waits for the outcome, so ``max_elapsed_time`` should stay below the
    client's own export timeout (the OTel SDKs default to 10 s).
    """

    enabled: bool = True
    initial_interval: timedelta = timedelta(milliseconds=200)
    max_interval: timedelta = timedelta(seconds=2)
    max_elapsed_time: timedelta = timedelta(seconds=5)

    def validate(self, path: str) -> None:
        if self.initial_interval <= timedelta(0):
            raise ConfigError(f"{path}.initial_interval: must be > 0")
        if self.max_interval < self.initial_interval:
            raise ConfigError(f"{path}.max_interval: must be >= initial_interval")


@dataclass(frozen=True, slots=True)
class PostgresExporterConfig:
    """``exporters.postgres``.

    ``dsn`` is a libpq connection string or URI; empty means the embedded default
    (``TRACETABLES_DATABASE_URL`` fills it in when the file leaves it empty).
    """

    dsn: str = ""
    embedded: EmbeddedConfig = field(default_factory=EmbeddedConfig)
    sending_queue: SendingQueueConfig = field(default_factory=SendingQueueConfig)
    retry_on_failure: RetryConfig = field(default_factory=RetryConfig)
    connect_timeout: timedelta = timedelta(seconds=5)
    migrate_on_start: bool = True
    projections: bool = True
    """Map spans with a role into the projection tables (steps, runs, calls, actions,
    events) in the same transaction. Off, only ``spans`` is written."""
    encoding_workers: int = 0
    """Processes that turn spans into COPY data, off the event loop; 0 (the default)
    does it in-process. With the compiled encoder (≈ 2 µs a span) in-process is faster
    on a small machine: bench/ingest measured 66 % of the COPY ceiling against 56 % with
    2 workers on 2 cores. Workers pay off where the event loop is the busy core."""

    def validate(self, path: str) -> None:
        if not 0 <= self.encoding_workers <= 64:
            raise ConfigError(f"{path}.encoding_workers: must be between 0 and 64, got {self.encoding_workers}")

    def with_env(self, env: Mapping[str, str]) -> PostgresExporterConfig:
        """An empty ``embedded.data_dir`` filled in with the per-user directory."""
        if self.embedded.data_dir:
            return self
        return replace(self, embedded=replace(self.embedded, data_dir=str(user_data_dir(env))))

    def with_base_dir(self, base: Path) -> PostgresExporterConfig:
        """A relative ``embedded.data_dir`` resolved against ``base`` (the config file's directory)."""
        return replace(self, embedded=self.embedded.with_base_dir(base))
