"""OTLP/HTTP receiver: ``POST /v1/traces`` with protobuf or JSON bodies, gzip or not.

Answers in the encoding of the request: a protobuf ``ExportTraceServiceResponse`` (or
``google.rpc.Status`` on failure) for ``application/x-protobuf``, their OTLP/JSON form
for ``application/json``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
import zlib

from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import code_pb2

from ..consumer import Consumer
from ._connections import ConnectionGuard
from ._decode import MalformedRequestError, check_request, decode_protobuf
from ._observe import RequestObserver, reason_for
from ._otlp_json import OtlpJsonError, decode_trace_request_json
from ._status import classify, response_for, retry_after_header, status_message
from .config import HttpConfig, SpanLimits
from .cors import CorsHandler

logger = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_ENCODINGS = ("", "identity", "gzip")
_REASONS = {400: "malformed", 413: "too_large", 415: "unsupported"}


class _Refused(Exception):
    def __init__(self, http_status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code


class OtlpHttpReceiver:
    """Serves OTLP/HTTP on ``config.endpoint``."""

    def __init__(self, config: HttpConfig, limits: SpanLimits, consumer: Consumer, receiver_id: str = "otlp") -> None:
        self._config = config
        self.observer = RequestObserver(receiver_id, "http")
        self._limits = limits
        self._consumer = consumer
        self.connections = ConnectionGuard(
            config.read_header_timeout.total_seconds(),
            config.idle_timeout.total_seconds(),
            config.max_concurrent_connections,
            (receiver_id, "http"),
        )
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        """Bind and serve."""
        self.connections.telemetry = self.observer.telemetry
        app = web.Application(
            client_max_size=self._config.max_request_body_size, middlewares=[self.connections.middleware]
        )
        app.router.add_post(self._config.traces_url_path, self._handle)
        if self._config.cors is not None:
            cors = CorsHandler(self._config.cors)
            app.router.add_route("OPTIONS", self._config.traces_url_path, cors.preflight)
            app.on_response_prepare.append(cors.on_response_prepare)
        # Decompression is ours, so that the size limit holds after it too. aiohttp's own
        # keep-alive timer backs up the idle deadline (the guard's sweep closes first).
        idle = self._config.idle_timeout.total_seconds()
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            auto_decompress=False,
            keepalive_timeout=idle + 5 if idle else 3630,
        )
        await runner.setup()
        host, _, port = self._config.endpoint.rpartition(":")
        ssl_context = self._config.tls.ssl_context("http.tls") if self._config.tls is not None else None
        site = _GuardedSite(runner, host.strip("[]") or None, int(port), self.connections, ssl_context)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self.connections.start()
        self._runner = runner
        addresses = runner.addresses
        self.port = int(addresses[0][1]) if addresses else int(port)
        logger.info("OTLP/HTTP receiver listening on %s (port %d)", self._config.endpoint, self.port)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        content_type = request.content_type
        as_json = content_type == JSON
        nbytes = request.content_length or 0
        spans = 0
        try:
            if content_type not in (PROTOBUF, JSON):
                raise _Refused(
                    415,
                    code_pb2.INVALID_ARGUMENT,
                    f"unsupported content type {content_type!r}; use {PROTOBUF} or {JSON}",
                )
            body = await self._read_body(request)
            nbytes = len(body)
            limits_rejected = 0
            try:
                # Refused by time before any decoding: under overload most requests are.
                self._consumer.admit(0)
                try:
                    message = decode_trace_request_json(body) if as_json else decode_protobuf(body)
                except (OtlpJsonError, MalformedRequestError) as exc:
                    raise _Refused(400, code_pb2.INVALID_ARGUMENT, str(exc)) from exc
                decoded = check_request(message, self._limits)
                spans = decoded.batch.span_count
                limits_rejected = decoded.rejected_spans
                result = await self._consumer.consume(decoded.batch)
            except _Refused:
                raise
            except Exception as exc:  # pipeline errors become HTTP statuses here, and only here
                code, http_status, retry_after = classify(exc)
                if code == code_pb2.INTERNAL:
                    logger.exception("unexpected failure exporting %d spans", spans)
                self.observer.done(
                    started, nbytes, outcome=reason_for(exc), refused=spans, limits_rejected=limits_rejected
                )
                headers = {"Retry-After": retry_after_header(retry_after)} if retry_after is not None else {}
                return _reply(
                    http_status, status_message(code, str(exc) or type(exc).__name__, retry_after), as_json, headers
                )
        except _Refused as refused:
            self.observer.done(started, nbytes, outcome=_REASONS[refused.http_status], refused=spans)
            return _reply(refused.http_status, status_message(refused.code, str(refused)), as_json)
        self.observer.done(
            started,
            nbytes,
            spans=spans - result.rejected_spans,
            limits_rejected=decoded.rejected_spans,
            store_rejected=result.rejected_spans,
        )
        return _reply(200, response_for(result, decoded.rejected_spans, decoded.message), as_json)

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self._config.max_request_body_size
        encoding = request.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in _ENCODINGS:
            raise _Refused(415, code_pb2.INVALID_ARGUMENT, f"unsupported Content-Encoding {encoding!r}; use gzip")
        if request.content_length is not None and request.content_length > limit:
            raise _Refused(413, code_pb2.RESOURCE_EXHAUSTED, f"request body over the limit of {limit} bytes")
        raw = bytearray()
        async for chunk in request.content.iter_chunked(1 << 16):
            raw += chunk
            if len(raw) > limit:
                raise _Refused(413, code_pb2.RESOURCE_EXHAUSTED, f"request body over the limit of {limit} bytes")
        if encoding != "gzip":
            return bytes(raw)
        return _gunzip(bytes(raw), limit)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting requests, let those under way finish; safe twice."""
        runner, self._runner = self._runner, None
        await self.connections.stop()
        if runner is not None:
            await runner.shutdown()
            await runner.cleanup()


class _GuardedSite(web.BaseSite):
    """aiohttp's TCP site, with each connection's protocol wrapped by the guard."""

    def __init__(
        self,
        runner: web.AppRunner,
        host: str | None,
        port: int,
        guard: ConnectionGuard,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=1024)
        self._host = host
        self._port = port
        self._guard = guard

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host or '0.0.0.0'}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self._guard.protocol_factory(server),
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=True,
        )


def _gunzip(data: bytes, limit: int) -> bytes:
    """Decompress, refusing output past ``limit`` (a gzip bomb stops there, not in memory)."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
        if len(out) > limit or inflater.unconsumed_tail:
            raise _Refused(413, code_pb2.RESOURCE_EXHAUSTED, f"decompressed body over the limit of {limit} bytes")
        out += inflater.flush()
    except zlib.error as exc:
        raise _Refused(400, code_pb2.INVALID_ARGUMENT, f"invalid gzip body: {exc}") from exc
    if not inflater.eof:
        raise _Refused(400, code_pb2.INVALID_ARGUMENT, "invalid gzip body: truncated")
    if len(out) > limit:
        raise _Refused(413, code_pb2.RESOURCE_EXHAUSTED, f"decompressed body over the limit of {limit} bytes")
    return out


def _reply(status: int, message: Message, as_json: bool, headers: dict[str, str] | None = None) -> web.Response:
    if as_json:
        body = json.dumps(json_format.MessageToDict(message)).encode()
        return web.Response(status=status, body=body, content_type=JSON, headers=headers)
    return web.Response(status=status, body=message.SerializeToString(), content_type=PROTOBUF, headers=headers)
