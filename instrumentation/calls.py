"""``call``: one outbound call attempt (HTTP, webhook, workflow trigger), visible before it returns.

At start, a zero-length child span marked ``flow.pending = true`` is ended at once, so the
collector can show the call as pending while it runs; the call's own span, when it ends,
replaces that row (DESIGN.md). Each retry is its own ``call`` with the same ``key``;
attempts are numbered per key unless given.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from opentelemetry import trace

from . import conventions as cv
from ._numbering import Numbering
from ._serialize import DEFAULT_LIMIT, to_json
from .flow import _context_attributes, _current, _FlowSpan, _swallow

_attempts = Numbering(100_000)  # attempt numbers of the 100,000 most recently used call keys


def next_attempt(key: str) -> int:
    """The next attempt number for a call key: 1, 2, 3 …"""
    return _attempts.next(key)


class Call(_FlowSpan):
    """One call attempt (``flow.role = call``, a CLIENT span); see :func:`call`."""

    _role = "call"
    _kind = trace.SpanKind.CLIENT

    def __init__(
        self,
        name: str,
        key: str,
        attempt: int | None,
        destination: str | None,
        request: Any,
        tracer_provider: trace.TracerProvider | None,
        size_limit: int,
    ) -> None:
        super().__init__(name, {cv.FLOW_CALL_KEY: key, cv.SERVER_ADDRESS: destination}, tracer_provider, size_limit)
        self._key = key
        self._attempt = attempt
        self._request = request
        self._response: Any = None
        self._has_response = False
        self._status_code: int | None = None
        self._external_id: str | None = None

    def _prepare(self) -> None:
        self._attributes.update(_context_attributes(_current.get()))
        self._attributes[cv.FLOW_CALL_ATTEMPT] = self._attempt if self._attempt is not None else next_attempt(self._key)
        if self._request is not None:
            self._attributes[cv.FLOW_CALL_REQUEST] = to_json(self._request, self._limit)

    def _started(self, tracer: trace.Tracer) -> None:
        self._marker(
            tracer,
            f"{self._name} pending",
            {
                cv.FLOW_ROLE: "call",
                cv.FLOW_CALL_KEY: self._key,
                cv.FLOW_CALL_ATTEMPT: self._attributes[cv.FLOW_CALL_ATTEMPT],
            },
        )

    def response(self, value: Any, status_code: int | None = None) -> None:
        """Record the response payload and, for HTTP, its status code."""
        self._response = value
        self._has_response = True
        self._status_code = status_code

    def external_id(self, value: str) -> None:
        """Record the remote system's own id for this execution (e.g. an n8n execution id)."""
        self._external_id = value

    def _finish(self) -> None:
        if self._has_response:
            self._set_json(cv.FLOW_CALL_RESPONSE, self._response)
        self._set("http.response.status_code", self._status_code)
        self._set(cv.FLOW_CALL_EXTERNAL_ID, self._external_id)
        if self._status_code is not None and self._status_code >= 500 and self._span is not None:
            self._set("error.type", str(self._status_code))
            self._span.set_status(trace.Status(trace.StatusCode.ERROR, f"HTTP {self._status_code}"))

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            try:
                self._set("error.type", exc_type.__qualname__)
            except Exception as error:
                _swallow("call error", error)
        super().__exit__(exc_type, exc, tb)


def call(
    name: str,
    *,
    key: str,
    attempt: int | None = None,
    destination: str | None = None,
    request: Any = None,
    tracer_provider: trace.TracerProvider | None = None,
    size_limit: int = DEFAULT_LIMIT,
) -> Call:
    """A call attempt: ``with call("POST /hook", key=order_id, destination="n8n") as c: …; c.response(body, 200)``.

    Args:
        name: the span name.
        key: the correlation key that groups the attempts of one logical call.
        attempt: this attempt's number; by default the next one for ``key``.
        destination: the remote service (``server.address``).
        request: the request payload (JSON-encoded, capped at ``size_limit``).
        tracer_provider: defaults to the global one.
        size_limit: most characters of JSON kept per value.
    """
    return Call(name, key, attempt, destination, request, tracer_provider, size_limit)
