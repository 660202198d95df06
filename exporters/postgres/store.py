"""The collector's store: the postgres exporter's database, or the embedded one.

The host (the running service) opens the store on the first component's demand
(``Host.store_dsn``: the exporter, the ``tracing_config`` extension) and closes it after
every component has shut down, so an embedded server outlives all of its users.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tracetables.collector.errors import ConfigError

from .config import PostgresExporterConfig
from .embedded import EmbeddedPostgres, EmbeddedPostgresConfig


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
                raise ConfigError("exporters: no postgres exporter is configured, so there is no store "
                                  "(give the component that needs one its own dsn)")
            if self._config.dsn:
                self._dsn = self._config.dsn
            else:
                embedded = EmbeddedPostgres(EmbeddedPostgresConfig(data_dir=Path(self._config.embedded.data_dir)))
                self._dsn = await asyncio.to_thread(embedded.start)
                self._embedded = embedded
            return self._dsn

    async def close(self) -> None:
        """Stop the embedded server if this store started it; safe twice."""
        embedded, self._embedded = self._embedded, None
        self._dsn = None
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
