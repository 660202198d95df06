"""Masking OTLP messages in place: every place a value can hide.

Resource, scope, span, event and link attributes (nested arrays and key-value lists
included), span names (``GET /users/jane@example.com``), status messages and event
names. A value under a sensitive key is replaced whatever its type (booleans excepted:
they carry no data); any other string is masked by pattern, JSON strings structurally.
Each span gets a summary attribute of what was masked in it and in its resource and
scope: counts by kind, never a value.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span

from .detectors import KINDS
from .gate import Gate
from .text import Masker

Plan = list[bool | list[int]]
"""A gate's answer for one ``ResourceSpans``: per ``ScopeSpans``, True or span indices
(the gate returns None for "nothing", True for "everything", or a Plan)."""

SUMMARY_KEY = "tracetables.masked"
_SUMMARY_KINDS = frozenset(KINDS) | {"key"}


def _is_summary(v: AnyValue) -> bool:
    """A summary this masker wrote: a JSON object of known kinds to counts, nothing else."""
    if v.WhichOneof("value") != "string_value":
        return False
    try:
        parsed = json.loads(v.string_value)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the interpreter's stack
        return False
    return isinstance(parsed, dict) and all(k in _SUMMARY_KINDS and type(n) is int for k, n in parsed.items())


class OtlpMasker:
    """Walks ``ResourceSpans`` with a :class:`Masker`.

    Args:
        masker: the value masker.
        summary: add ``tracetables.masked`` to spans where something was masked.
        gated: with the compiled pre-scan, let the gate (``_gate.c``) pick the spans
            :meth:`mask` walks; False walks every span (the reference).
    """

    def __init__(self, masker: Masker, summary: bool = True, gated: bool = True) -> None:
        self._m = masker
        self._summary = summary
        self._gate = (
            Gate(masker.literals, masker.keys.sensitive, True)
            if gated and masker.compiled and Gate is not None
            else None
        )

    @property
    def gated(self) -> bool:
        """Whether :meth:`mask` reads the serialized message (the gate is in use)."""
        return self._gate is not None

    def mask(self, rs: ResourceSpans, serialized: bytes | None = None, by_kind: Counter[str] | None = None) -> int:
        """Mask one ``ResourceSpans`` in place, walking only the spans the gate names.

        The gate reads the serialized message in C (``serialized``, when the caller has
        it: it must be ``rs`` as it is now) and names every span where the walk could
        change something (and some where it will not); the rest, almost all spans of
        ordinary traffic, are never read in Python. Returns how many values were masked:
        the message was changed if and only if that is above 0. ``by_kind``, when given,
        is increased by the masked values' kinds.
        """
        if self._gate is None:
            return self.resource_spans(rs, None, by_kind)
        plan = self._gate.plan(rs.SerializeToString() if serialized is None else serialized)
        if plan is None:
            return 0
        return self.resource_spans(rs, plan if isinstance(plan, list) else None, by_kind)

    def resource_spans(self, rs: ResourceSpans, only: Plan | None = None, by_kind: Counter[str] | None = None) -> int:
        """Mask one ``ResourceSpans`` in place; returns how many values were masked.

        ``only``, one entry per ``ScopeSpans``: True walks the scope whole, a list of
        indices walks those spans only, and the resource is not read (a gate's plan says
        it has nothing to mask). None walks everything. ``by_kind``: as in :meth:`mask`.
        """
        resource: Counter[str] = Counter()
        if only is None:
            self.attributes(rs.resource.attributes, resource)
        total = resource.total()
        if by_kind is not None:
            by_kind.update(resource)
        mask_text = self._m.text
        for i, ss in enumerate(rs.scope_spans):
            entry = True if only is None else only[i]
            scope = resource.copy()
            if not isinstance(entry, list):
                self.attributes(ss.scope.attributes, scope)
                total += scope.total() - resource.total()
                if by_kind is not None:
                    by_kind.update(scope - resource)
                spans: Iterable[Span] = ss.spans
            else:
                spans = [ss.spans[j] for j in entry]
            for span in spans:
                counts: Counter[str] = Counter()
                name = span.name
                if name:
                    new = mask_text(name, counts)
                    if new is not name:
                        span.name = new
                message = span.status.message
                if message:
                    new = mask_text(message, counts)
                    if new is not message:
                        span.status.message = new
                self.attributes(span.attributes, counts)
                for event in span.events:
                    ename = event.name
                    if ename:
                        new = mask_text(ename, counts)
                        if new is not ename:
                            event.name = new
                    self.attributes(event.attributes, counts)
                for link in span.links:
                    self.attributes(link.attributes, counts)
                total += counts.total()
                if by_kind is not None and counts:
                    by_kind.update(counts)
                if self._summary and (counts or scope):
                    self._set_summary(span.attributes, counts + scope)
        return total

    def attributes(self, attrs: Iterable[KeyValue], counts: Counter[str]) -> None:
        """Mask a ``KeyValue`` list in place."""
        sensitive = self._m.keys.sensitive
        for kv in attrs:
            if kv.key == SUMMARY_KEY and _is_summary(kv.value):
                continue  # our own summary, from an earlier pass: counts only
            self.value(kv.value, counts, sensitive(kv.key), 0)

    def value(self, v: AnyValue, counts: Counter[str], under_sensitive_key: bool, depth: int) -> None:
        """Mask one ``AnyValue`` in place."""
        kind = v.WhichOneof("value")
        if kind == "string_value":
            s = v.string_value
            new = self._m.redact(s, counts) if under_sensitive_key else self._m.text(s, counts)
            if new is not s and new != s:
                v.string_value = new
        elif kind == "array_value":
            if depth < 64:
                for item in v.array_value.values:
                    self.value(item, counts, under_sensitive_key, depth + 1)
            else:
                v.string_value = self._m.redact("", counts)  # absurd nesting: drop it rather than guess
        elif kind == "kvlist_value":
            if depth < 64:
                sensitive = self._m.keys.sensitive
                for kv in v.kvlist_value.values:
                    self.value(kv.value, counts, under_sensitive_key or sensitive(kv.key), depth + 1)
            else:
                v.string_value = self._m.redact("", counts)
        elif under_sensitive_key and kind in ("int_value", "double_value", "bytes_value"):
            raw = str(getattr(v, kind)) if kind != "bytes_value" else v.bytes_value.hex()
            v.string_value = self._m.redact(raw, counts)

    @staticmethod
    def _set_summary(attrs: Any, counts: Counter[str]) -> None:
        text = json.dumps(dict(sorted(counts.items())), separators=(",", ":"))
        for kv in attrs:
            if kv.key == SUMMARY_KEY:
                kv.value.string_value = text
                return
        attrs.append(KeyValue(key=SUMMARY_KEY, value=AnyValue(string_value=text)))
