"""webhook_redaction: call credentials in headers and URLs, and oversized bodies."""

from __future__ import annotations

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans

from tracetables.collector.batch import SpanBatch
from tracetables.collector.processors.webhook_redaction import (
    WebhookRedactionConfig,
    WebhookRedactionProcessor,
    truncate,
)


def run(attrs: dict[str, AnyValue], config: WebhookRedactionConfig | None = None) -> dict[str, AnyValue]:
    rs = ResourceSpans()
    span = rs.scope_spans.add().spans.add(name="POST")
    for key, value in attrs.items():
        span.attributes.append(KeyValue(key=key, value=value))
    processor = WebhookRedactionProcessor(config or WebhookRedactionConfig())
    processor(SpanBatch([rs], 1))
    once = rs.SerializeToString()
    processor(SpanBatch([rs], 1))
    assert rs.SerializeToString() == once  # redacting twice equals redacting once
    return {kv.key: kv.value for kv in span.attributes}


def s(text: str) -> AnyValue:
    return AnyValue(string_value=text)


def test_sensitive_headers_are_redacted_whatever_their_value() -> None:
    out = run(
        {
            "http.request.header.authorization": AnyValue(array_value=ArrayValue(values=[s("Basic dXNlcjpwdw==")])),
            "http.request.header.x-api-key": s("k-123"),
            "http.response.header.set-cookie": AnyValue(array_value=ArrayValue(values=[s("a=1"), s("b=2")])),
            "http.request.header.X_Auth_Token": s("t"),
            "http.request.header.content-type": s("application/json"),
        }
    )
    assert [v.string_value for v in out["http.request.header.authorization"].array_value.values] == ["[REDACTED]"]
    assert out["http.request.header.x-api-key"].string_value == "[REDACTED]"
    assert [v.string_value for v in out["http.response.header.set-cookie"].array_value.values] == ["[REDACTED]"] * 2
    assert out["http.request.header.X_Auth_Token"].string_value == "[REDACTED]"
    assert out["http.request.header.content-type"].string_value == "application/json"


@pytest.mark.parametrize("url, expected", [
    ("https://bob:hunter2@hooks.example.com/x?a=1", "https://[REDACTED]@hooks.example.com/x?a=1"),
    ("https://hooks.example.com/x?token=abc&page=2&Signature=zz#frag",
     "https://hooks.example.com/x?token=[REDACTED]&page=2&Signature=[REDACTED]#frag"),
    ("https://hooks.example.com/x?api%5Fkey=abc", "https://hooks.example.com/x?api%5Fkey=[REDACTED]"),
    ("https://hooks.example.com/plain/path", "https://hooks.example.com/plain/path"),
    ("not a url ?key=v", "not a url ?key=[REDACTED]"),
])  # fmt: skip
def test_url_credentials_and_query_secrets(url: str, expected: str) -> None:
    for key in ("url.full", "http.url"):
        assert run({key: s(url)})[key].string_value == expected


def test_url_query_attribute() -> None:
    assert run({"url.query": s("code=xyz&state=1")})["url.query"].string_value == "code=[REDACTED]&state=1"


def test_configured_names_are_added() -> None:
    config = WebhookRedactionConfig(headers=("x-tenant-secret",), query_params=("ticket",))
    out = run({"http.request.header.x-tenant-secret": s("v"), "url.full": s("https://h/?ticket=1&token=2")}, config)
    assert out["http.request.header.x-tenant-secret"].string_value == "[REDACTED]"
    assert out["url.full"].string_value == "https://h/?ticket=[REDACTED]&token=2"  # the list replaces the defaults


def test_long_bodies_are_cut_with_a_marker() -> None:
    body = '{"items": "' + "é" * 2000 + '"}'
    out = run({"flow.call.response": s(body), "flow.call.request": s("small"), "note": s("x" * 5000)})
    cut = out["flow.call.response"].string_value
    assert cut.startswith('{"items": "éé')
    kept = cut[: cut.index("…[truncated")]
    assert len(kept.encode()) <= 1024
    assert cut.endswith(f"…[truncated: {len(body.encode())} bytes, {len(body.encode()) - len(kept.encode())} dropped]")
    assert out["flow.call.request"].string_value == "small"
    assert len(out["note"].string_value) == 5000  # not a body attribute


def test_truncate_keeps_whole_characters() -> None:
    assert truncate("aé" * 10, 4) == "aéa…[truncated: 30 bytes, 26 dropped]"
    assert truncate("short", 1024) == "short"
    assert truncate("anything", 0) == "anything"  # 0: never cut
