"""The ``trace_level`` processor: how much detail each span keeps, and which flows are traced.

A span's level is, first found: its own ``flow.trace_level`` attribute, its resource's,
the row of its flow (``flow.id``) in the ``tracing_config`` table, then
``default_level``. Levels:

- ``minimal``: no state snapshots and no execution details (the attributes are removed);
- ``standard``: snapshots kept (masked by ``pii_masking`` further down the pipeline) and
  execution details reduced to a summary: scalars kept, lists and objects replaced by
  their sizes and keys;
- ``verbose``: everything.

Spans of a flow whose ``tracing_config`` row says ``enabled = false`` are dropped and
counted. The rows come from the ``tracing_config`` extension named by the
``tracing_config`` key, which reads them again while the collector runs (no restart).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tracetables.instrumentation import conventions as cv

from ..batch import SpanBatch
from ..component import Host, typed_extension
from ..errors import ConfigError
from ..extensions.tracing_config import FlowSetting, TracingConfigExtension
from .masking.gate import Gate

logger = logging.getLogger(__name__)

LEVELS = cv.LEVELS
LEVEL_KEY = cv.FLOW_TRACE_LEVEL
FLOW_KEY = cv.FLOW_ID
SNAPSHOT_KEYS = frozenset({cv.FLOW_STATE_BEFORE, cv.FLOW_STATE_AFTER, cv.FLOW_CONTEXT_SNAPSHOT})
DETAILS_KEYS = frozenset({cv.FLOW_NODE_DETAILS})


@dataclass(frozen=True, slots=True)
class TraceLevelConfig:
    """``processors.trace_level``."""

    default_level: str = "standard"
    """The level of spans that name none and whose flow has no ``tracing_config`` row."""
    tracing_config: str = "tracing_config"
    """The id of the ``tracing_config`` extension holding the per-flow settings; empty:
    none (levels come from the spans and ``default_level`` only)."""

    def validate(self, path: str) -> None:
        if self.default_level not in LEVELS:
            raise ConfigError(f"{path}.default_level: must be minimal, standard or verbose, got {self.default_level!r}")

    def extension_refs(self) -> Mapping[str, str]:
        """The extensions this processor needs, by config key."""
        return {"tracing_config": self.tracing_config} if self.tracing_config else {}


def summarize_details(text: str) -> str:
    """Execution details reduced to their outline: scalars kept (cut to 200 characters),
    lists and objects replaced by their sizes and keys. Not JSON: a size only."""
    try:
        details = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the interpreter's stack
        return json.dumps({"@summary": {"chars": len(text)}})
    if not isinstance(details, dict):
        return json.dumps({"@summary": _outline(details)})
    outline = {k: _outline(v) for k, v in details.items()}
    text = json.dumps(outline, ensure_ascii=False)
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate, escaped in the text ("\\ud800"): escaped again
        return json.dumps(outline)
    return text


def _outline(value: Any) -> Any:
    if isinstance(value, str):
        return value[:200]
    if isinstance(value, list):
        return {"@items": len(value)}
    if isinstance(value, dict):
        return {"@keys": sorted(value)[:20]}
    return value


class TraceLevelProcessor:
    """Applies trace levels and drops spans of disabled flows.

    Attributes:
        dropped_spans: spans dropped because their flow is disabled.
    """

    def __init__(
        self, config: TraceLevelConfig, gated: bool = True, settings: TracingConfigExtension | None = None
    ) -> None:
        """Args:
        config: the processor's config.
        gated: let the compiled gate pick the spans to visit (when it is built).
        settings: the flow settings to use; default: the extension found at start.
        """
        self._config = config
        self._settings = settings
        keys = SNAPSHOT_KEYS | DETAILS_KEYS | {LEVEL_KEY, FLOW_KEY}
        self._gate = Gate((), keys.__contains__, False) if gated and Gate is not None else None
        self.dropped_spans = 0

    async def start(self, host: Host) -> None:
        """Find the ``tracing_config`` extension, when one is named."""
        if self._config.tracing_config and self._settings is None:
            self._settings = typed_extension(
                host, self._config.tracing_config, TracingConfigExtension, "processors.trace_level.tracing_config"
            )

    async def shutdown(self) -> None:
        """Nothing to release: the extension has its own lifecycle."""

    @property
    def flows(self) -> Mapping[str, FlowSetting]:
        """The per-flow settings in force."""
        return self._settings.flows if self._settings is not None else {}

    def __call__(self, batch: SpanBatch) -> SpanBatch:
        flows = self.flows
        default = self._config.default_level
        dropped = 0
        for n, rs in enumerate(batch.resource_spans):
            changed = False
            resource_level, resource_flow, _ = _read(rs.resource.attributes)
            resource_setting = flows.get(resource_flow or "")
            plan: object = True
            if self._gate is not None and (resource_setting is None or resource_setting.enabled):
                # A span without a level, flow, snapshot or details key of its own is
                # left as it is (its resource's flow is enabled): the gate names the rest.
                plan = self._gate.plan(batch.serialized(n))
                if plan is None:
                    continue
            for i, ss in enumerate(rs.scope_spans):
                entry = plan[i] if isinstance(plan, list) else True
                drop: list[int] = []
                for j in entry if isinstance(entry, list) else range(len(ss.spans)):
                    span = ss.spans[j]
                    level, flow, positions = _read(span.attributes)
                    setting = flows.get(flow or resource_flow or "")
                    if setting is not None and not setting.enabled:
                        drop.append(j)
                        continue
                    level = level or resource_level or (setting.level if setting else None) or default
                    if level != "verbose" and positions and _reduce(span.attributes, level, positions):
                        changed = True
                if drop:
                    changed = True
                    dropped += len(drop)
                    gone = set(drop)
                    keep = [span for j, span in enumerate(ss.spans) if j not in gone]
                    del ss.spans[:]
                    ss.spans.extend(keep)
            if changed:
                batch.changed(n)
        if dropped:
            self.dropped_spans += dropped
            batch.span_count -= dropped
        return batch


def _read(attrs: Any) -> tuple[str | None, str | None, list[int]]:
    """One pass over a span's (or resource's) attributes: its level, its flow, and where
    its snapshot and details attributes are."""
    level = flow = None
    positions: list[int] = []
    for i, kv in enumerate(attrs):
        key = kv.key
        if not key.startswith(cv.FLOW_PREFIX):
            continue
        if key == LEVEL_KEY:
            value = kv.value.string_value
            level = value if value in LEVELS else level
        elif key == FLOW_KEY:
            flow = kv.value.string_value or None
        elif key in SNAPSHOT_KEYS or key in DETAILS_KEYS:
            positions.append(i)
    return level, flow, positions


def _reduce(attrs: Any, level: str, positions: list[int]) -> bool:
    """``minimal``: remove snapshots and details; ``standard``: outline the details.
    Returns whether anything changed."""
    changed = False
    for i in reversed(positions):
        kv = attrs[i]
        if level == "minimal":
            del attrs[i]
            changed = True
        elif kv.key in DETAILS_KEYS and kv.value.WhichOneof("value") == "string_value":
            text = kv.value.string_value
            outline = summarize_details(text)
            if outline != text:
                kv.value.string_value = outline
                changed = True
    return changed
