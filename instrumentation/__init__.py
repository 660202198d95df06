"""tracetables.instrumentation: flow spans for services on OpenTelemetry.

Depends on ``opentelemetry-api`` only; without an SDK configured every call is a cheap
no-op. Nothing here raises into the instrumented code. So far: :func:`run`,
:func:`step`, :func:`call` (pending marker, attempts), :func:`action` (with provenance
links) and :func:`event`; typed details, HTTP client helpers, log correlation and
``configure`` are still to come.
"""

from .calls import Call, call, next_attempt
from .flow import Run, Step, next_step_number, run, step
from .provenance import Action, ActionRef, Event, action, event

__all__ = [
    "Action", "ActionRef", "Call", "Event", "Run", "Step",
    "action", "call", "event", "next_attempt", "next_step_number", "run", "step",
]
