"""tracetables.instrumentation: flow spans for services on OpenTelemetry.

Depends on ``opentelemetry-api`` only; without an SDK configured every call is a cheap
no-op. Nothing here raises into the instrumented code. So far: :func:`run` and
:func:`step`; calls, actions, events, typed details and ``configure`` are still to come.
"""

from .flow import Run, Step, next_step_number, run, step

__all__ = ["Run", "Step", "next_step_number", "run", "step"]
