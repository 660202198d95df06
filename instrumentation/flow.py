"""``run`` and ``step``: flow spans with the attributes of DESIGN.md, that never break the caller.

Both work as context managers (``with`` / ``async with``) and as decorators on sync and
async functions. A ``step`` inside a ``run`` inherits the run's session, user,
conversation and flow; steps of a session are numbered in the order they start, across
threads and async tasks. Exceptions of the caller's code propagate unchanged (and mark
the span as an error); failures inside this module are logged once and swallowed.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Self, TypeVar

from opentelemetry import trace

from . import conventions as cv
from ._numbering import Numbering
from ._serialize import DEFAULT_LIMIT, to_json

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class _FlowContext:
    session_id: str | None = None
    user_id: str | None = None
    conversation_id: str | None = None
    flow_id: str | None = None
    flow_version: str | None = None
    node_id: str | None = None


def current_flow() -> _FlowContext:
    """The flow context of the caller: session, user, conversation, flow and node (if any)."""
    return _current.get()


_current: contextvars.ContextVar[_FlowContext] = contextvars.ContextVar("tracetables_flow", default=_FlowContext())  # noqa: B039 (immutable)
_steps = Numbering(100_000)  # step numbers of the 100,000 most recently stepped sessions
_warned: set[str] = set()


_tracers: weakref.WeakKeyDictionary[trace.TracerProvider, trace.Tracer] = weakref.WeakKeyDictionary()
_global_tracer = trace.get_tracer("tracetables.instrumentation")  # a proxy until an SDK is set


def _tracer(provider: trace.TracerProvider | None) -> trace.Tracer:
    """One tracer per provider: ``get_tracer`` per span would cost as much as the span."""
    if provider is None:
        return _global_tracer
    tracer = _tracers.get(provider)
    if tracer is None:
        tracer = _tracers[provider] = trace.get_tracer("tracetables.instrumentation", tracer_provider=provider)
    return tracer


def next_step_number(session_id: str) -> int:
    """The next step number of a session: 1, 2, 3 … in the order steps start."""
    return _steps.next(session_id)


def last_step_number(session_id: str) -> int:
    """The number of the session's latest step in this process (0: none yet)."""
    return _steps.last(session_id)


def continue_step_numbers(session_id: str, last: int) -> None:
    """Number the session's next steps after ``last`` (unless this process is past it)."""
    _steps.continue_after(session_id, last)


def _swallow(where: str, exc: BaseException) -> None:
    if where not in _warned:
        _warned.add(where)
        logger.warning(
            "tracetables instrumentation failed in %s (%s); the span goes on without it", where, type(exc).__name__
        )


class _FlowSpan:
    """A span that is a context manager (sync and async) and a decorator."""

    _role = ""
    _kind = trace.SpanKind.INTERNAL

    def __init__(
        self, name: str, attributes: dict[str, Any], tracer_provider: trace.TracerProvider | None, size_limit: int
    ) -> None:
        self._name = name
        self._attributes = attributes
        self._provider = tracer_provider
        self._limit = size_limit
        self._span: trace.Span | None = None
        self._cm: Any = None
        self._token: contextvars.Token[_FlowContext] | None = None
        self._links: list[trace.Link] = []

    # --- what subclasses add at start --------------------------------------------------
    def _prepare(self) -> None:
        """Fill attributes that depend on the flow context; runs inside a try."""

    # --- span lifecycle ------------------------------------------------------------------
    def __enter__(self) -> Self:
        try:
            self._prepare()
            tracer = _tracer(self._provider)
            attrs = {k: v for k, v in self._attributes.items() if v is not None}
            attrs[cv.FLOW_ROLE] = self._role
            self._cm = tracer.start_as_current_span(
                self._name, kind=self._kind, attributes=attrs, links=self._links or None
            )
            self._span = self._cm.__enter__()
            self._started(tracer)
        except Exception as exc:
            _swallow(f"{self._role} start", exc)
            self._cm = None
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self._finish()
        except Exception as error:
            _swallow(f"{self._role} finish", error)
        try:
            if self._cm is not None:
                self._cm.__exit__(exc_type, exc, tb)  # records the exception and error status
        except Exception as error:
            _swallow(f"{self._role} end", error)
        finally:
            self._restore()

    async def __aenter__(self) -> Self:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def _started(self, tracer: trace.Tracer) -> None:
        """Runs once the span is current (inside the same try as the start)."""

    @staticmethod
    def _marker(tracer: trace.Tracer, name: str, attributes: dict[str, Any]) -> None:
        """A zero-length ``flow.pending`` child of the current span: the collector shows its
        parent as started (a pending call, a running run) before the parent's span ends."""
        marker = tracer.start_span(name, kind=trace.SpanKind.INTERNAL, attributes={**attributes, cv.FLOW_PENDING: True})
        marker.end(end_time=getattr(marker, "start_time", None))  # zero length where the SDK records times

    def _finish(self) -> None:
        """Set attributes known only at the end; runs inside a try."""

    def _restore(self) -> None:
        if self._token is not None:
            try:
                _current.reset(self._token)
            except ValueError:  # exited in another context (a generator, a callback)
                pass
            self._token = None

    def _set(self, key: str, value: Any) -> None:
        try:
            if self._span is not None and value is not None:
                self._span.set_attribute(key, value)
        except Exception as exc:
            _swallow(f"{self._role} attribute", exc)

    def _set_json(self, key: str, value: Any) -> None:
        self._set(key, to_json(value, self._limit))

    # --- decorator -----------------------------------------------------------------------
    def _fresh(self) -> _FlowSpan:
        """A new span of the same kind for each call of a decorated function."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone._attributes = dict(self._attributes)
        clone._span = None
        clone._cm = None
        clone._token = None
        clone._links = []
        return clone

    def __call__(self, func: F) -> F:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                async with self._fresh():
                    return await func(*args, **kwargs)

            return run_async  # type: ignore[return-value]

        @functools.wraps(func)
        def run_sync(*args: Any, **kwargs: Any) -> Any:
            with self._fresh():
                return func(*args, **kwargs)

        return run_sync  # type: ignore[return-value]


class Run(_FlowSpan):
    """One agent or graph run (``flow.role = run``); see :func:`run`."""

    _role = "run"

    def __init__(
        self,
        name: str,
        context: _FlowContext,
        request: Any,
        tracer_provider: trace.TracerProvider | None,
        size_limit: int,
    ) -> None:
        super().__init__(name, {}, tracer_provider, size_limit)
        self._context = context
        self._request = request
        self._response: Any = None
        self._has_response = False

    def _prepare(self) -> None:
        parent = _current.get()
        ctx = self._context
        ctx = replace(
            ctx,
            session_id=ctx.session_id or parent.session_id,
            user_id=ctx.user_id or parent.user_id,
            conversation_id=ctx.conversation_id or parent.conversation_id,
            flow_id=ctx.flow_id or parent.flow_id,
            flow_version=ctx.flow_version or parent.flow_version,
        )
        self._token = _current.set(ctx)
        self._attributes.update(_context_attributes(ctx))
        if self._request is not None:
            self._attributes[cv.FLOW_RUN_REQUEST] = to_json(self._request, self._limit)

    def _started(self, tracer: trace.Tracer) -> None:
        # The run is 'running' in execution_logs from its first step, long before it ends.
        attributes = {k: v for k, v in self._attributes.items() if v is not None}
        self._marker(tracer, f"{self._name} started", {**attributes, cv.FLOW_ROLE: "run"})

    def response(self, value: Any) -> None:
        """Record the run's response message (any JSON-able value)."""
        self._response = value
        self._has_response = True

    def _finish(self) -> None:
        if self._has_response:
            self._set_json(cv.FLOW_RUN_RESPONSE, self._response)


class Step(_FlowSpan):
    """One node visit of a flow (``flow.role = step``); see :func:`step`."""

    _role = "step"

    def __init__(
        self,
        node_id: str,
        node_type: str | None,
        state_before: Any,
        details: Any,
        session_id: str | None,
        tracer_provider: trace.TracerProvider | None,
        size_limit: int,
    ) -> None:
        super().__init__(
            f"step {node_id}", {cv.FLOW_NODE_ID: node_id, cv.FLOW_NODE_TYPE: node_type}, tracer_provider, size_limit
        )
        self._state_before = state_before
        self._details = details
        self._session_id = session_id
        self._state_after: Any = None
        self._has_after = False
        self._next: tuple[str, str | None] | None = None

    def _prepare(self) -> None:
        parent = _current.get()
        # built directly: dataclasses.replace, twice, cost a tenth of a step
        ctx = _FlowContext(
            self._session_id or parent.session_id,
            parent.user_id,
            parent.conversation_id,
            parent.flow_id,
            parent.flow_version,
            self._attributes[cv.FLOW_NODE_ID],
        )
        self._token = _current.set(ctx)
        self._attributes.update(_context_attributes(ctx))
        if ctx.session_id:
            self._attributes[cv.FLOW_STEP_NUMBER] = next_step_number(ctx.session_id)
        if self._state_before is not None:
            self._attributes[cv.FLOW_STATE_BEFORE] = to_json(self._state_before, self._limit)

    def state_after(self, state: Any) -> None:
        """Record the state after the node ran (a value, or a callable returning it)."""
        self._state_after = state
        self._has_after = True

    def details(self, details: Any) -> None:
        """Record typed execution details (JSON-able, or a model with ``model_dump``)."""
        self._details = details

    def next(self, node_id: str, connection_type: str | None = None) -> None:
        """Record the edge taken out of this node."""
        self._next = (node_id, connection_type)

    def _finish(self) -> None:
        if self._has_after:
            self._set_json(cv.FLOW_STATE_AFTER, self._state_after)
        if self._details is not None:
            details = self._details
            dump = getattr(details, "model_dump", None)
            self._set_json(cv.FLOW_NODE_DETAILS, dump if callable(dump) else details)
        if self._next is not None:
            self._set(cv.FLOW_NEXT_NODE_ID, self._next[0])
            self._set(cv.FLOW_CONNECTION_TYPE, self._next[1])


def _context_attributes(ctx: _FlowContext) -> dict[str, Any]:
    return {
        cv.SESSION_ID: ctx.session_id,
        cv.USER_ID: ctx.user_id,
        cv.GEN_AI_CONVERSATION_ID: ctx.conversation_id,
        cv.FLOW_ID: ctx.flow_id,
        cv.FLOW_VERSION: ctx.flow_version,
    }


def run(
    name: str = "run",
    *,
    session_id: str | None = None,
    user_id: str | None = None,
    conversation_id: str | None = None,
    flow_id: str | None = None,
    flow_version: str | None = None,
    request: Any = None,
    tracer_provider: trace.TracerProvider | None = None,
    size_limit: int = DEFAULT_LIMIT,
) -> Run:
    """A run span: ``with run(...) as r: …; r.response(...)``, or ``@run(...)``.

    Args:
        name: the span name.
        session_id, user_id, conversation_id: who and which conversation (inherited by steps).
        flow_id, flow_version: the flow definition.
        request: the run's request message (JSON-encoded, capped at ``size_limit``).
        tracer_provider: defaults to the global one.
        size_limit: most characters of JSON kept per value.
    """
    context = _FlowContext(session_id, user_id, conversation_id, flow_id, flow_version)
    return Run(name, context, request, tracer_provider, size_limit)


def step(
    node_id: str,
    node_type: str | None = None,
    *,
    state_before: Any = None,
    details: Any = None,
    session_id: str | None = None,
    tracer_provider: trace.TracerProvider | None = None,
    size_limit: int = DEFAULT_LIMIT,
) -> Step:
    """A step span: ``with step("ask_name", "question", state_before=s) as st: …``, or ``@step(...)``.

    Args:
        node_id, node_type: which node, of what type.
        state_before: the state entering the node (a value or a callable returning it).
        details: execution details (JSON-able or a pydantic model); also settable later.
        session_id: overrides the enclosing run's session.
        tracer_provider: defaults to the global one.
        size_limit: most characters of JSON kept per value.
    """
    return Step(node_id, node_type, state_before, details, session_id, tracer_provider, size_limit)
