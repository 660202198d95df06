"""A background task that calls a coroutine function at a fixed interval until stopped."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable


class Periodic:
    """Runs ``tick()`` every ``interval`` seconds on the running event loop.

    The first call comes one interval after :meth:`start`. ``tick`` handles its own
    errors: one that escapes ends the task. An interval of 0 or less never starts it.
    """

    def __init__(self, name: str, interval: float, tick: Callable[[], Awaitable[object]]) -> None:
        self._name = name
        self._interval = interval
        self._tick = tick
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start ticking (no-op when running already, or when the interval is not positive)."""
        if self._task is None and self._interval > 0:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        """Stop ticking and wait for the task to end; safe to call twice."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self._tick()
