"""The ``webhook_redaction`` processor: credentials in HTTP calls, and oversized bodies.

Outbound calls carry credentials in well-known places whatever their values look like:
header attributes (``http.request.header.authorization`` and the like), the userinfo
and query string of ``url.full`` / ``http.url``, and ``url.query``. Their values become
``[REDACTED]``. Request and response bodies (``flow.call.request``/``response`` and the
``http.*.body`` attributes) longer than ``max_body_bytes`` are cut, with a marker that
says how much was dropped. Run it after ``pii_masking``: a value cut in half could no
longer be recognised.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tracetables.instrumentation import conventions as cv

from ..batch import SpanBatch
from ..component import StatelessLifecycle
from ..errors import ConfigError
from .masking.gate import Gate

REDACTED = "[REDACTED]"
HEADER_PREFIXES = ("http.request.header.", "http.response.header.")
URL_KEYS = frozenset({"url.full", "http.url", "url.original"})
QUERY_KEYS = frozenset({"url.query"})
DEFAULT_HEADERS = ("authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "x-auth-token")
DEFAULT_QUERY_PARAMS = ("token", "access_token", "refresh_token", "id_token", "key", "api_key", "apikey",
                        "password", "passwd", "secret", "client_secret", "signature", "sig", "x-amz-signature",
                        "x-amz-credential", "x-goog-signature", "code", "auth")  # fmt: skip
DEFAULT_BODY_KEYS = (cv.FLOW_CALL_REQUEST, cv.FLOW_CALL_RESPONSE, "http.request.body", "http.response.body")
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#@]*)@")


@dataclass(frozen=True, slots=True)
class WebhookRedactionConfig:
    """``processors.webhook_redaction``."""

    headers: tuple[str, ...] = DEFAULT_HEADERS
    """Header names (case-insensitive) whose values are replaced."""
    query_params: tuple[str, ...] = DEFAULT_QUERY_PARAMS
    """Query parameter names (case-insensitive) whose values are replaced in URLs."""
    body_keys: tuple[str, ...] = DEFAULT_BODY_KEYS
    """Attributes holding a request or response body."""
    max_body_bytes: int = 1024
    """Bodies longer than this (UTF-8 bytes) are cut to it, with a truncation marker; 0 keeps them whole."""

    def validate(self, path: str) -> None:
        if self.max_body_bytes < 0:
            raise ConfigError(f"{path}.max_body_bytes: must be >= 0, got {self.max_body_bytes}")
        for field, names in (("headers", self.headers), ("query_params", self.query_params)):
            for i, name in enumerate(names):
                if not name.strip():
                    raise ConfigError(f"{path}.{field}[{i}]: must not be empty")


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes (on a character boundary), with a marker."""
    raw = text.encode("utf-8", "surrogatepass")
    if limit <= 0 or len(raw) <= limit:
        return text
    kept = raw[:limit].decode("utf-8", "ignore")
    return f"{kept}…[truncated: {len(raw)} bytes, {len(raw) - len(kept.encode('utf-8', 'surrogatepass'))} dropped]"


class WebhookRedactionProcessor(StatelessLifecycle):
    """Redacts call credentials and cuts oversized bodies, in place."""

    def __init__(self, config: WebhookRedactionConfig, gated: bool = True) -> None:
        self._headers = frozenset(h.lower().replace("_", "-") for h in config.headers)
        self._params = frozenset(p.lower() for p in config.query_params)
        self._bodies = frozenset(config.body_keys)
        self._limit = config.max_body_bytes
        self._gate = Gate((), self.interesting, False) if gated and Gate is not None else None
        self.redacted_values = 0
        self.truncated_bodies = 0

    def interesting(self, key: str) -> bool:
        """Whether this processor may change the value of a span attribute named ``key``."""
        if key.startswith(HEADER_PREFIXES):
            return key.rsplit(".", 1)[-1].lower().replace("_", "-") in self._headers
        return key in URL_KEYS or key in QUERY_KEYS or (key in self._bodies and self._limit > 0)

    def __call__(self, batch: SpanBatch) -> SpanBatch:
        for n, rs in enumerate(batch.resource_spans):
            # every change is counted in one of the two: a count that moved marks the message
            before = self.redacted_values + self.truncated_bodies
            if self._gate is None:
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        self._span(span)
            else:
                # the gate (masking/_gate.c) names the spans with an attribute key of ours
                plan = self._gate.plan(batch.serialized(n))
                if plan is None:
                    continue
                for i, ss in enumerate(rs.scope_spans):
                    entry = plan[i] if isinstance(plan, list) else True
                    for span in [ss.spans[j] for j in entry] if isinstance(entry, list) else ss.spans:
                        self._span(span)
            if self.redacted_values + self.truncated_bodies != before:
                batch.changed(n)
        return batch

    def _span(self, span: Span) -> None:
        for kv in span.attributes:
            key = kv.key
            if key.startswith(HEADER_PREFIXES):
                name = key.rsplit(".", 1)[-1].lower().replace("_", "-")
                if name in self._headers:
                    self._redact(kv.value)
            elif key in URL_KEYS:
                self._each_string(kv.value, self.url)
            elif key in QUERY_KEYS:
                self._each_string(kv.value, self.query)
            elif key in self._bodies and self._limit:
                self._each_string(kv.value, self._cut)

    def _redact(self, v: AnyValue) -> None:
        kind = v.WhichOneof("value")
        if kind == "array_value":
            for item in v.array_value.values:
                self._redact(item)
        elif kind is not None and not (kind == "string_value" and v.string_value == REDACTED):
            v.string_value = REDACTED
            self.redacted_values += 1

    def _each_string(self, v: AnyValue, change: Callable[[str], str]) -> None:
        kind = v.WhichOneof("value")
        if kind == "string_value":
            new = change(v.string_value)
            if new != v.string_value:
                v.string_value = new
        elif kind == "array_value":
            for item in v.array_value.values:
                self._each_string(item, change)

    def url(self, url: str) -> str:
        """Userinfo and sensitive query values of a URL replaced."""
        out = url
        m = _USERINFO.match(out)
        if m and m.group(2) != REDACTED:
            out = m.group(1) + REDACTED + "@" + out[m.end() :]
            self.redacted_values += 1
        q = out.find("?")
        if q >= 0:
            end = out.find("#", q)
            end = len(out) if end < 0 else end
            out = out[: q + 1] + self.query(out[q + 1 : end]) + out[end:]
        return out

    def query(self, query: str) -> str:
        """A query string with sensitive parameters' values replaced."""
        if not query:
            return query
        parts = query.split("&")
        changed = False
        for i, part in enumerate(parts):
            name, eq, value = part.partition("=")
            if eq and value != REDACTED and unquote(name).lower() in self._params:
                parts[i] = f"{name}={REDACTED}"
                changed = True
                self.redacted_values += 1
        return "&".join(parts) if changed else query

    def _cut(self, text: str) -> str:
        if "…[truncated: " in text[-60:]:
            return text  # already cut (masking twice equals masking once)
        cut = truncate(text, self._limit)
        if cut is not text:
            self.truncated_bodies += 1
        return cut
