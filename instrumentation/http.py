"""Recording an HTTP call made with ``requests`` or ``httpx`` as a ``call`` attempt.

``http_call(key, send, ...)`` runs ``send()`` (a function making one request and
returning the response) inside :func:`call`: the request payload, the response status
and body (JSON when it parses, else text, capped), ``server.address`` and
``error.type`` are recorded; the response — or the client's exception — goes back to
the caller unchanged. Works with any response object that has ``status_code`` and
``text`` (``requests.Response``, ``httpx.Response``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from opentelemetry import trace

from ._serialize import DEFAULT_LIMIT
from .calls import call

R = TypeVar("R")


def http_call(
    key: str,
    send: Callable[[], R],
    *,
    method: str,
    url: str,
    request: Any = None,
    attempt: int | None = None,
    tracer_provider: trace.TracerProvider | None = None,
    size_limit: int = DEFAULT_LIMIT,
) -> R:
    """Make one HTTP request through ``send`` and record it as an attempt of call ``key``.

    Example::

        response = http_call(order_id, lambda: session.post(url, json=body, timeout=5),
                             method="POST", url=url, request=body)
    """
    destination = urlsplit(url).hostname
    with call(
        f"{method.upper()} {urlsplit(url).path or '/'}",
        key=key,
        attempt=attempt,
        destination=destination,
        request=request,
        tracer_provider=tracer_provider,
        size_limit=size_limit,
    ) as attempt_span:
        response = send()
        status = getattr(response, "status_code", None)
        attempt_span.response(_body(response, size_limit), status_code=status if isinstance(status, int) else None)
        return response


def _body(response: Any, limit: int) -> Any:
    try:
        text = response.text
    except Exception:  # a streamed or undecodable body: keep the status, not the payload
        return None
    if not isinstance(text, str):
        return None
    try:
        return json.loads(text) if len(text) <= limit else text[:limit]
    except ValueError:
        return text[:limit]
