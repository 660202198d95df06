"""Continuing a flow in another process: ``handoff()`` here, ``resume(...)`` there.

A run whose work goes on in a queue consumer or a background job hands over what that
work needs to stay in the run: the current span (its parent, W3C trace context), the
flow context (session, user, conversation, flow and version) and the session's last
step number, so the steps over there continue the numbering. The reference travels as a
short string (``ref.to_string()``, for a message header or a job payload);
``FlowRef.from_string`` gives ``None``, never an exception, for anything else, and
``resume(None)`` is a no-op, so a consumer of messages without a reference needs no
special case.

Numbering across processes is only as ordered as the hand-over: steps taken on both
sides after a hand-over number on from the same point.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from opentelemetry import context, trace

from .flow import (
    _current,
    _FlowContext,
    _swallow,
    continue_step_numbers,
    last_step_number,
)

_FIELDS = ("session_id", "user_id", "conversation_id", "flow_id", "flow_version")


@dataclass(frozen=True, slots=True)
class FlowRef:
    """The span to continue under, the flow context, and the session's last step number."""

    trace_id: int
    span_id: int
    sampled: bool
    flow: _FlowContext
    step_number: int

    def to_string(self) -> str:
        """Compact JSON: the W3C ``traceparent``, the flow context's fields, the step number."""
        traceparent = f"00-{self.trace_id:032x}-{self.span_id:016x}-{'01' if self.sampled else '00'}"
        body: dict[str, object] = {"traceparent": traceparent, "step": self.step_number}
        body.update({k: v for k in _FIELDS if (v := getattr(self.flow, k)) is not None})
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_string(cls, text: str) -> FlowRef | None:
        """Parse :meth:`to_string`'s form; ``None`` (never an exception) for anything else."""
        try:
            body = json.loads(text)
            version, trace_hex, span_hex, flags = body["traceparent"].split("-")
            if version != "00" or len(trace_hex) != 32 or len(span_hex) != 16 or len(flags) != 2:
                return None
            trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
            step = body.get("step", 0)
            fields = {k: body[k] for k in _FIELDS if isinstance(body.get(k), str)}
            if not trace_id or not span_id or type(step) is not int or step < 0:
                return None
            return cls(trace_id, span_id, bool(int(flags, 16) & 1), _FlowContext(**fields), step)
        except (AttributeError, KeyError, TypeError, ValueError):
            return None

    def span_context(self) -> trace.SpanContext:
        flags = trace.TraceFlags(trace.TraceFlags.SAMPLED if self.sampled else trace.TraceFlags.DEFAULT)
        return trace.SpanContext(self.trace_id, self.span_id, is_remote=True, trace_flags=flags)


def handoff() -> FlowRef | None:
    """A reference to the current span and flow, or ``None`` outside a recording span."""
    try:
        span_context = trace.get_current_span().get_span_context()
        if not span_context.is_valid:
            return None
        flow = _current.get()
        last = last_step_number(flow.session_id) if flow.session_id else 0
        return FlowRef(
            span_context.trace_id,
            span_context.span_id,
            span_context.trace_flags.sampled,
            _FlowContext(flow.session_id, flow.user_id, flow.conversation_id, flow.flow_id, flow.flow_version),
            last,
        )
    except Exception as exc:
        _swallow("handoff", exc)
        return None


@contextmanager
def resume(ref: FlowRef | str | None) -> Iterator[FlowRef | None]:
    """Spans and steps started inside continue the handed-over flow (see the module)."""
    parsed = FlowRef.from_string(ref) if isinstance(ref, str) else ref
    if parsed is None:
        yield None
        return
    token = flow_token = None
    try:
        token = context.attach(trace.set_span_in_context(trace.NonRecordingSpan(parsed.span_context())))
        flow_token = _current.set(parsed.flow)
        if parsed.flow.session_id:
            continue_step_numbers(parsed.flow.session_id, parsed.step_number)
    except Exception as exc:
        _swallow("resume", exc)
    try:
        yield parsed
    finally:
        try:
            if flow_token is not None:
                _current.reset(flow_token)
            if token is not None:
                context.detach(token)
        except Exception as exc:
            _swallow("resume end", exc)
