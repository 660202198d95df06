"""``action`` and ``event``: the causal chain of actions, and events for the replay store.

An action names what happened (a concept URI and an action name, with JSON inputs and
outputs) and what caused it: ``caused_by=[(earlier, "OnAuthSuccess"), …]`` records one
span link per cause, carrying the synchronization's name as ``flow.synchronization``.
A cause may be an :class:`Action` of this process or an :class:`ActionRef` that crossed a
queue or a process as a string (``ref.to_string()`` / ``ActionRef.from_string``), so
chains span traces and services.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace

from . import conventions as cv
from ._serialize import DEFAULT_LIMIT, to_json
from .flow import _context_attributes, _current, _FlowSpan, _swallow


@dataclass(frozen=True, slots=True)
class ActionRef:
    """Where an action's span lives: enough to link to it from anywhere."""

    trace_id: int
    span_id: int

    def to_string(self) -> str:
        """``<32 hex trace id>-<16 hex span id>``, for message headers and job payloads."""
        return f"{self.trace_id:032x}-{self.span_id:016x}"

    @classmethod
    def from_string(cls, text: str) -> ActionRef | None:
        """Parse :meth:`to_string`'s form; ``None`` (never an exception) for anything else."""
        try:
            trace_hex, span_hex = text.strip().split("-")
            if len(trace_hex) != 32 or len(span_hex) != 16:
                return None
            ref = cls(int(trace_hex, 16), int(span_hex, 16))
        except (AttributeError, ValueError):
            return None
        return ref if ref.trace_id and ref.span_id else None

    def span_context(self) -> trace.SpanContext:
        return trace.SpanContext(
            self.trace_id, self.span_id, is_remote=True, trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED)
        )


Cause = tuple["Action | ActionRef", str]


class Action(_FlowSpan):
    """One action (``flow.role = action``); see :func:`action`."""

    _role = "action"

    def __init__(
        self,
        concept: str,
        name: str,
        inputs: Any,
        caused_by: Iterable[Cause],
        tracer_provider: trace.TracerProvider | None,
        size_limit: int,
    ) -> None:
        super().__init__(
            f"{concept}::{name}",
            {cv.FLOW_ACTION_CONCEPT: concept, cv.FLOW_ACTION_NAME: name},
            tracer_provider,
            size_limit,
        )
        self._inputs = inputs
        self._causes = list(caused_by)
        self._outputs: Any = None
        self._has_outputs = False

    def _prepare(self) -> None:
        self._attributes.update(_context_attributes(_current.get()))
        if self._inputs is not None:
            self._attributes[cv.FLOW_ACTION_INPUTS] = to_json(self._inputs, self._limit)
        for cause, synchronization in self._causes:
            try:
                ref = cause.ref if isinstance(cause, Action) else cause
                if ref is not None:
                    self._links.append(trace.Link(ref.span_context(), {cv.FLOW_SYNCHRONIZATION: synchronization}))
            except Exception as exc:  # a bad cause costs its link, not the action
                _swallow("action cause", exc)

    @property
    def ref(self) -> ActionRef | None:
        """This action's reference once started (``None`` before, or without an SDK)."""
        if self._span is None:
            return None
        ctx = self._span.get_span_context()
        return ActionRef(ctx.trace_id, ctx.span_id) if ctx.is_valid else None

    def outputs(self, value: Any) -> None:
        """Record the action's outputs (any JSON-able value)."""
        self._outputs = value
        self._has_outputs = True

    def _finish(self) -> None:
        if self._has_outputs:
            self._set_json(cv.FLOW_ACTION_OUTPUTS, self._outputs)


class Event(_FlowSpan):
    """One event for the replay store (``flow.role = event``); see :func:`event`."""

    _role = "event"

    def __init__(
        self,
        event_type: str,
        data: Any,
        context_snapshot: Any,
        tracer_provider: trace.TracerProvider | None,
        size_limit: int,
    ) -> None:
        super().__init__(f"event {event_type}", {cv.FLOW_EVENT_TYPE: event_type}, tracer_provider, size_limit)
        self._data = data
        self._snapshot = context_snapshot

    def _prepare(self) -> None:
        self._attributes.update(_context_attributes(_current.get()))
        if self._data is not None:
            self._attributes[cv.FLOW_EVENT_DATA] = to_json(self._data, self._limit)
        if self._snapshot is not None:
            self._attributes[cv.FLOW_CONTEXT_SNAPSHOT] = to_json(self._snapshot, self._limit)


def action(
    concept: str,
    name: str,
    *,
    inputs: Any = None,
    caused_by: Iterable[Cause] = (),
    tracer_provider: trace.TracerProvider | None = None,
    size_limit: int = DEFAULT_LIMIT,
) -> Action:
    """An action span: ``with action("Auth", "validate_token", caused_by=[(web, "OnWebRequest")]) as a: …``.

    Args:
        concept: the concept (a URI or a short name such as ``"Auth"``).
        name: the action's name.
        inputs: JSON-able inputs; outputs are set with ``a.outputs(...)``.
        caused_by: ``(cause, synchronization name)`` pairs; each becomes a span link.
        tracer_provider: defaults to the global one.
        size_limit: most characters of JSON kept per value.
    """
    return Action(concept, name, inputs, caused_by, tracer_provider, size_limit)


def event(
    event_type: str,
    *,
    data: Any = None,
    context_snapshot: Any = None,
    tracer_provider: trace.TracerProvider | None = None,
    size_limit: int = DEFAULT_LIMIT,
) -> Event:
    """An event span for the replay store: ``with event("passage_played", data={...}): pass``."""
    return Event(event_type, data, context_snapshot, tracer_provider, size_limit)
