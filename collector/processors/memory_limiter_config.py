"""Config of the ``memory_limiter`` processor (``processors.memory_limiter``).

Kept apart from the processor so that loading a config imports no ``gc``/``ctypes``
machinery, as ``config.py`` does for the batch processor.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from ..errors import ConfigError


@dataclass(frozen=True, slots=True)
class MemoryLimiterConfig:
    """``processors.memory_limiter``: refuse data while the process uses too much memory.

    The OTel Collector's keys and meanings. The hard limit is ``limit_mib`` (or
    ``limit_percentage`` of the total memory); the soft limit is the hard limit minus the
    spike limit. Above the soft limit new data is refused with a retryable error; above
    the hard limit a garbage collection is forced as well. As in the Collector, 0 means
    "not set" for the four limit keys, so configs written for it load unchanged.
    """

    check_interval: timedelta = timedelta(seconds=1)
    """How often the process's resident memory is measured; the spike limit must cover
    what can arrive in one interval."""
    limit_mib: int = 0
    """The hard limit in MiB of resident memory (RSS)."""
    spike_limit_mib: int = 0
    """Headroom below ``limit_mib`` (0: 20 % of it): refusing starts at limit − spike."""
    limit_percentage: int = 0
    """The hard limit as a percentage of the total memory (the cgroup's limit if lower)."""
    spike_limit_percentage: int = 0
    """Headroom below ``limit_percentage``, in percent of the total (0: 20 % of the limit)."""
    min_gc_interval_when_soft_limited: timedelta = timedelta(seconds=10)
    """Least time between collections forced while above the soft limit."""
    min_gc_interval_when_hard_limited: timedelta = timedelta(0)
    """Least time between collections forced while above the hard limit."""

    def validate(self, path: str) -> None:
        if self.check_interval <= timedelta(0):
            raise ConfigError(f"{path}.check_interval: must be > 0, got {self.check_interval.total_seconds():g}s")
        for key in ("limit_mib", "spike_limit_mib"):
            value = getattr(self, key)
            if value < 0:
                raise ConfigError(f"{path}.{key}: must be >= 0 (0: not set), got {value}")
        for key in ("limit_percentage", "spike_limit_percentage"):
            value = getattr(self, key)
            if not 0 <= value <= 100:
                raise ConfigError(f"{path}.{key}: must be between 1 and 100 (0: not set), got {value}")
        if self.limit_mib and self.limit_percentage:
            raise ConfigError(f"{path}.limit_percentage: set limit_mib or limit_percentage, not both")
        if not self.limit_mib and not self.limit_percentage:
            raise ConfigError(f"{path}: one of limit_mib or limit_percentage is required")
        if self.limit_mib:
            if self.spike_limit_percentage:
                raise ConfigError(
                    f"{path}.spike_limit_percentage: goes with limit_percentage; with limit_mib use spike_limit_mib"
                )
            if self.spike_limit_mib >= self.limit_mib:
                raise ConfigError(
                    f"{path}.spike_limit_mib: must be < limit_mib ({self.limit_mib}), got {self.spike_limit_mib}"
                )
        else:
            if self.spike_limit_mib:
                raise ConfigError(
                    f"{path}.spike_limit_mib: goes with limit_mib; with limit_percentage use spike_limit_percentage"
                )
            if self.spike_limit_percentage >= self.limit_percentage:
                raise ConfigError(
                    f"{path}.spike_limit_percentage: must be < limit_percentage ({self.limit_percentage}),"
                    f" got {self.spike_limit_percentage}"
                )
