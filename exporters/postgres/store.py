"""The collector's store: the postgres exporter's database, or the embedded one.

The host (the running service) opens the store on the first component's demand
(``Host.store_dsn``: the exporter, the ``tracing_config`` extension) and closes it after
every component has shut down, so an embedded server outlives all of its users.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tracetables.collector.errors import ConfigError

from .config import PostgresExporterConfig, listen_address, user_data_dir
from .embedded import EmbeddedPostgres, EmbeddedPostgresConfig


def embedded_server_config(config: PostgresExporterConfig, create: bool = True) -> EmbeddedPostgresConfig:
    """The embedded server's settings from the exporter's ``embedded`` section.

    An empty ``data_dir`` (a config built without :func:`~tracetables.collector.config.parse_config`)
    is the per-user directory; ``create=False`` makes start fail instead of running initdb.
    """
    embedded = config.embedded
    data_dir = Path(embedded.data_dir) if embedded.data_dir else user_data_dir(os.environ)
    if not embedded.listen:
        return EmbeddedPostgresConfig(data_dir=data_dir, create=create)
    host, port = listen_address(embedded.listen, "exporters.postgres.embedded.listen")
    return EmbeddedPostgresConfig(data_dir=data_dir, listen_host=host, port=port, create=create)


class PostgresStore:
    """The first postgres exporter's ``dsn``; when empty, an embedded server in its
    ``embedded.data_dir``, started by :meth:`open` and stopped by :meth:`close`."""

    def __init__(self, exporters: Mapping[str, Any]) -> None:
        self._config = next((c for c in exporters.values() if isinstance(c, PostgresExporterConfig)), None)
        self._embedded: EmbeddedPostgres | None = None
        self._dsn: str | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> str:
        """The store's DSN, starting the embedded server the first time if needed.

        Raises:
            ConfigError: no postgres exporter is configured, so there is no store.
        """
        async with self._lock:
            if self._dsn is not None:
                return self._dsn
            if self._config is None:
                raise ConfigError(
                    "exporters: no postgres exporter is configured, so there is no store "
                    "(give the component that needs one its own dsn)"
                )
            if self._config.dsn:
                self._dsn = self._config.dsn
            else:
                embedded = EmbeddedPostgres(embedded_server_config(self._config))
                self._dsn = await asyncio.to_thread(embedded.start)
                self._embedded = embedded
            return self._dsn

    async def close(self) -> None:
        """Stop the embedded server if this store started it; safe twice."""
        embedded, self._embedded = self._embedded, None
        self._dsn = None
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
