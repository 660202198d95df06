"""The ``memory_limiter`` processor: refuse data while the process holds too much memory.

The OTel Collector's memorylimiterprocessor, for a Python process. Every
``check_interval`` a background task reads the resident set size (RSS); at or above the
soft limit (hard limit − spike limit) the processor refuses every batch with
:class:`OverloadedError` (HTTP 429 / gRPC RESOURCE_EXHAUSTED, with a retry hint of one
check interval) until a later check finds RSS below the soft limit again. At or above
the hard limit it also forces a garbage collection.

A request costs nothing extra: ``__call__`` reads a flag. Memory is therefore only
bounded to within what can arrive in one check interval — the spike limit is that
margin, so size it (and the interval) for the peak intake rate, in-flight receive
buffers included: a refused request has been received and decoded before it is refused.

Unlike Go's heap statistics, which the Collector reads, RSS does not fall when Python
frees objects: the allocator keeps freed memory for reuse. So a forced collection here is
``gc.collect()`` followed by glibc's ``malloc_trim(0)``, and it is also done (at most every
``min_gc_interval_when_soft_limited``) while refusing above the soft limit, not only on
entering it — otherwise memory that is free but still resident would keep the collector
refusing after the load that caused it is gone.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from ..batch import SpanBatch
from ..component import Host
from ..errors import ConfigError, OverloadedError
from ..periodic import Periodic
from . import _memstat
from .memory_limiter_config import MemoryLimiterConfig

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
REFUSED_MESSAGE = "the collector is over its memory limit (memory_limiter): data refused, retry later"


class MemoryLimiter:
    """A :data:`Processor` that refuses batches while memory is above the soft limit.

    Args:
        config: the limits and intervals.
        read_rss: returns the resident memory in bytes; default ``/proc/self/statm``
            (else the peak RSS from ``getrusage``, which never falls: see
            ``_memstat.read_peak_rss``).
        gc_hook: frees memory when a collection is forced; default ``gc.collect()`` and
            ``malloc_trim(0)``.
        total_memory: bytes the percentage limits are of; default ``MemTotal`` or the
            cgroup's limit if lower.
        clock: monotonic seconds, for the minimum intervals between collections.

    Attributes:
        hard_limit, soft_limit: in bytes.
        refusing: whether batches are being refused now.
        rss: the last reading, in bytes.
        refused_batches, refused_spans: what was refused so far.
    """

    def __init__(
        self,
        config: MemoryLimiterConfig,
        read_rss: Callable[[], int] | None = None,
        gc_hook: Callable[[], None] | None = None,
        total_memory: Callable[[], int | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._current = True
        if read_rss is None:
            read_rss, self._current = _memstat.rss_reader()
        self._read_rss = read_rss
        self._gc = gc_hook or _memstat.collect_garbage
        self._clock = clock
        self.hard_limit, spike = _limits(config, total_memory or _memstat.total_memory)
        self.soft_limit = self.hard_limit - spike
        self._retry_after = config.check_interval.total_seconds()
        self._last_gc = -math.inf
        self._periodic = Periodic("memory_limiter", config.check_interval.total_seconds(), self._tick)
        self._failing = False
        self.refusing = False
        self.rss = 0
        self.refused_batches = 0
        self.refused_spans = 0

    def __call__(self, batch: SpanBatch) -> SpanBatch:
        """Pass the batch on, or refuse it while memory is above the soft limit."""
        if self.refusing:
            self.refused_batches += 1
            self.refused_spans += batch.span_count
            raise OverloadedError(REFUSED_MESSAGE, retry_after=self._retry_after)
        return batch

    def check(self) -> None:
        """Measure, collect garbage if the limits say so, and set :attr:`refusing`."""
        config = self._config
        rss = self._read_rss()
        if rss >= self.hard_limit and self._may_collect(config.min_gc_interval_when_hard_limited.total_seconds()):
            logger.debug(
                "memory usage %d MiB is at or above the hard limit (%d MiB): forcing a garbage collection",
                rss // MIB,
                self.hard_limit // MIB,
            )
            rss = self._collect()
        elif rss >= self.soft_limit and self._may_collect(config.min_gc_interval_when_soft_limited.total_seconds()):
            rss = self._collect()
        self.rss = rss
        refuse = rss >= self.soft_limit
        if refuse and not self.refusing:
            logger.warning(
                "memory usage %d MiB is at or above the soft limit (%d MiB, hard %d MiB): refusing data",
                rss // MIB,
                self.soft_limit // MIB,
                self.hard_limit // MIB,
            )
        elif self.refusing and not refuse:
            logger.info(
                "memory usage %d MiB is below the soft limit (%d MiB) again: accepting data",
                rss // MIB,
                self.soft_limit // MIB,
            )
        self.refusing = refuse

    async def start(self, host: Host | None = None) -> None:
        """Take a first measurement, then check every ``check_interval`` until shutdown."""
        if not self._current:
            logger.warning(
                "memory_limiter: /proc/self/statm is missing, so the peak RSS is measured;"
                " once it passes the soft limit, data is refused until a restart"
            )
        logger.info(
            "memory_limiter: soft limit %d MiB, hard limit %d MiB, checked every %gs",
            self.soft_limit // MIB,
            self.hard_limit // MIB,
            self._retry_after,
        )
        self.check()
        self._periodic.start()

    async def shutdown(self) -> None:
        """Stop checking; safe to call twice."""
        await self._periodic.stop()

    async def _tick(self) -> None:
        try:
            self.check()
        except Exception:  # keep checking; say so once, not every interval
            if not self._failing:
                logger.exception("memory_limiter: measuring memory failed; keeping the last decision")
            self._failing = True
        else:
            self._failing = False

    def _may_collect(self, min_interval: float) -> bool:
        return self._clock() - self._last_gc >= min_interval

    def _collect(self) -> int:
        self._gc()
        self._last_gc = self._clock()
        return self._read_rss()


def _limits(config: MemoryLimiterConfig, total: Callable[[], int | None]) -> tuple[int, int]:
    """(hard limit, spike limit) in bytes; the spike defaults to a fifth of the limit."""
    if config.limit_mib:
        hard = config.limit_mib * MIB
        spike = config.spike_limit_mib * MIB
    else:
        memory = total()
        if not memory:
            raise ConfigError("memory_limiter.limit_percentage: the total memory cannot be read here; use limit_mib")
        hard = memory * config.limit_percentage // 100
        spike = memory * config.spike_limit_percentage // 100
    return hard, spike or hard // 5
