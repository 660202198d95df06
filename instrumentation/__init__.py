"""tracetables.instrumentation: flow spans for services on OpenTelemetry.

Depends on ``opentelemetry-api`` only; without an SDK configured every call is a cheap
no-op. Nothing here raises into the instrumented code. So far: :func:`run`,
:func:`step`, :func:`call` (pending marker, attempts), :func:`action` (with provenance
links), :func:`event`, :func:`handoff` / :func:`resume` (a flow continued in another
process), log correlation (:class:`TraceContextFilter`,
:func:`add_trace_context`), :func:`configure`, and typed execution details
(:mod:`tracetables.instrumentation.details`), and :func:`http_call` for ``requests`` /
``httpx`` calls.
"""

from .calls import Call, call, next_attempt
from .flow import Run, Step, current_flow, next_step_number, run, step
from .handoff import FlowRef, handoff, resume
from .http import http_call
from .logs import TraceContextFilter, add_trace_context
from .provenance import Action, ActionRef, Event, action, event
from .setup import configure

__all__ = [
    "Action",
    "ActionRef",
    "Call",
    "Event",
    "FlowRef",
    "Run",
    "Step",
    "TraceContextFilter",
    "action",
    "add_trace_context",
    "call",
    "configure",
    "current_flow",
    "event",
    "handoff",
    "http_call",
    "next_attempt",
    "next_step_number",
    "resume",
    "run",
    "step",
]
