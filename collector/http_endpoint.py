"""A small aiohttp server for the collector's own endpoints (``/metrics``, health)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HttpEndpoint:
    """Serves GET ``path`` on ``endpoint`` (``host:port``; port 0 picks a free one).

    Attributes:
        port: the bound port once started.
    """

    def __init__(self, endpoint: str, path: str, handler: Handler) -> None:
        self._endpoint = endpoint
        self._path = path
        self._handler = handler
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        """Bind and serve; raises ``OSError`` when the address is taken."""
        if self._runner is not None:
            return
        app = web.Application()
        app.router.add_get(self._path, self._handler)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        host, _, port = self._endpoint.rpartition(":")
        site = web.TCPSite(runner, host.strip("[]") or None, int(port), reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        addresses = runner.addresses
        self.port = int(addresses[0][1]) if addresses else int(port)

    async def shutdown(self) -> None:
        """Stop serving; safe twice and before start."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
