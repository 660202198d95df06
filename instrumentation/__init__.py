"""tracetables.instrumentation: flow spans for services on OpenTelemetry.

Depends on ``opentelemetry-api`` only; without an SDK configured every call is a cheap
no-op. Nothing here raises into the instrumented code. So far: :func:`run`,
:func:`step`, :func:`action` (with provenance links) and :func:`event`; calls, typed
details, log correlation and ``configure`` are still to come.
"""

from .flow import Run, Step, next_step_number, run, step
from .provenance import Action, ActionRef, Event, action, event

__all__ = ["Action", "ActionRef", "Event", "Run", "Step", "action", "event", "next_step_number", "run", "step"]
