"""CORS for the OTLP/HTTP receiver, in the OTel Collector's ``confighttp`` shape (``cors:``).

Browsers send a preflight ``OPTIONS`` before a cross-origin ``POST`` of protobuf or JSON
(neither is a "simple" content type). An origin that is not allowed gets an answer with no
``Access-Control-Allow-*`` headers, which the browser reads as a refusal.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from ..errors import ConfigError

# Always allowed, as the Collector's CORS handler allows them without being told.
DEFAULT_ALLOWED_HEADERS = frozenset(
    {"accept", "accept-language", "content-language", "content-type", "origin", "x-requested-with"}
)


@dataclass(frozen=True, slots=True)
class CorsConfig:
    """``receivers.otlp.protocols.http.cors``."""

    allowed_origins: tuple[str, ...] = ()
    """Origins allowed to send, e.g. ``https://app.example.com``; ``*`` is any origin and one
    ``*`` inside an origin (``https://*.example.com``) matches any text there."""
    allowed_headers: tuple[str, ...] = ()
    """Request headers allowed beyond the default ones; ``*`` allows any."""
    max_age: int = 0
    """Seconds a browser may cache a preflight answer; 0 sends no ``Access-Control-Max-Age``."""

    def validate(self, path: str) -> None:
        for i, origin in enumerate(self.allowed_origins):
            if not origin or origin.count("*") > 1:
                raise ConfigError(
                    f"{path}.allowed_origins[{i}]: expected an origin with at most one '*', got {origin!r}"
                )
        for i, header in enumerate(self.allowed_headers):
            if not header or any(c.isspace() or c in ",:" for c in header):
                raise ConfigError(f"{path}.allowed_headers[{i}]: expected one header name, got {header!r}")
        if self.max_age < 0:
            raise ConfigError(f"{path}.max_age: must be >= 0 seconds, got {self.max_age}")

    def allows_origin(self, origin: str) -> bool:
        """Whether a request's ``Origin`` is one of ``allowed_origins`` (case-insensitively)."""
        origin = origin.lower()
        for allowed in self.allowed_origins:
            allowed = allowed.lower()
            if allowed == "*" or allowed == origin:
                return True
            prefix, star, suffix = allowed.partition("*")
            if (
                star
                and len(origin) >= len(prefix) + len(suffix)
                and origin.startswith(prefix)
                and origin.endswith(suffix)
            ):
                return True
        return False

    def allows_headers(self, requested: list[str]) -> bool:
        """Whether every header a preflight asks for may be sent."""
        if "*" in self.allowed_headers:
            return True
        extra = {h.lower() for h in self.allowed_headers}
        return all(h in DEFAULT_ALLOWED_HEADERS or h in extra for h in requested)


class CorsHandler:
    """Answers preflights and marks responses to allowed origins; bound to one config."""

    def __init__(self, config: CorsConfig) -> None:
        self._config = config

    def _allow_origin_value(self, origin: str) -> str:
        return "*" if "*" in self._config.allowed_origins else origin

    async def preflight(self, request: web.Request) -> web.Response:
        """``OPTIONS`` on the traces path: 204, with the allow headers only if all is allowed."""
        response = web.Response(status=204)
        response.headers["Vary"] = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
        origin = request.headers.get("Origin", "")
        method = request.headers.get("Access-Control-Request-Method", "").upper()
        requested = [
            h.strip().lower() for h in request.headers.get("Access-Control-Request-Headers", "").split(",") if h.strip()
        ]
        if not origin or method != "POST" or not self._config.allows_origin(origin):
            return response
        if not self._config.allows_headers(requested):
            return response
        response.headers["Access-Control-Allow-Origin"] = self._allow_origin_value(origin)
        response.headers["Access-Control-Allow-Methods"] = "POST"
        if requested:
            response.headers["Access-Control-Allow-Headers"] = ", ".join(requested)
        if self._config.max_age:
            response.headers["Access-Control-Max-Age"] = str(self._config.max_age)
        return response

    async def on_response_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        """Every non-preflight answer to an allowed origin (errors too, so browsers can read them)."""
        if request.method == "OPTIONS":
            return
        origin = request.headers.get("Origin", "")
        if origin and self._config.allows_origin(origin):
            response.headers["Access-Control-Allow-Origin"] = self._allow_origin_value(origin)
            response.headers.add("Vary", "Origin")
