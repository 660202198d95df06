"""Processor config type → the processor it builds. One line per processor type.

A processor is a callable ``SpanBatch → SpanBatch`` run on every request before the
batch processor (see ``collector.consumer.Processor``). One that needs a life of its
own (a refresh task, a connection) also has ``async start()`` and ``async shutdown()``;
the service calls them around the receivers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..consumer import Processor
from .memory_limiter import MemoryLimiter
from .memory_limiter_config import MemoryLimiterConfig
from .pii_masking import PiiMaskingConfig, PiiMaskingProcessor
from .trace_level import TraceLevelConfig, TraceLevelProcessor
from .webhook_redaction import WebhookRedactionConfig, WebhookRedactionProcessor

FACTORIES: dict[type, Callable[[Any], Processor]] = {
    MemoryLimiterConfig: MemoryLimiter,
    PiiMaskingConfig: PiiMaskingProcessor,
    TraceLevelConfig: TraceLevelProcessor,
    WebhookRedactionConfig: WebhookRedactionProcessor,
}


def make_processor(config: Any) -> Processor:
    """Build the processor for a ``processors.<id>`` config (not ``batch``: the pipeline owns it)."""
    factory = FACTORIES.get(type(config))
    if factory is None:
        raise TypeError(f"no processor for {type(config).__name__}")
    return factory(config)
