"""Config of the processors (``processors.*``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from ..errors import ConfigError


@dataclass(frozen=True, slots=True)
class BatchProcessorConfig:
    """``processors.batch``: how requests are grouped into one export (one transaction).

    Requests gather only while every writer is busy (see the processor's docstring);
    an idle writer takes a request at once.
    """

    send_batch_size: int = 8192
    """Spans that trigger an export at once."""
    send_batch_max_size: int = 0
    """Requests are not merged past this many spans; 0 means no bound. A single request
    larger than it is exported alone, never split (its spans commit together)."""
    timeout: timedelta = timedelta(milliseconds=200)
    """The longest requests gather while writers are busy before a batch is cut."""
    max_queued_spans: int = 200_000
    """Spans buffered or being exported at once; more is refused with a retry hint."""
    max_queue_wait: timedelta = timedelta(seconds=2)
    """A request is refused at once (429 / RESOURCE_EXHAUSTED with a retry hint) when the
    spans queued ahead of it would take longer than this to write at the rate exports
    have been committing; 0 turns the check off. Bounds acknowledged latency under
    overload well below the OTel SDKs' 10-s export deadline."""

    def validate(self, path: str) -> None:
        if self.send_batch_size <= 0:
            raise ConfigError(f"{path}.send_batch_size: must be > 0, got {self.send_batch_size}")
        if self.send_batch_max_size < 0:
            raise ConfigError(f"{path}.send_batch_max_size: must be >= 0, got {self.send_batch_max_size}")
        if 0 < self.send_batch_max_size < self.send_batch_size:
            raise ConfigError(
                f"{path}.send_batch_max_size: must be >= send_batch_size ({self.send_batch_size}),"
                f" got {self.send_batch_max_size}"
            )
        if self.max_queue_wait < timedelta(0):
            raise ConfigError(f"{path}.max_queue_wait: must be >= 0, got {self.max_queue_wait}")
        if self.max_queued_spans < self.send_batch_size:
            raise ConfigError(
                f"{path}.max_queued_spans: must be >= send_batch_size ({self.send_batch_size}),"
                f" got {self.max_queued_spans}"
            )
