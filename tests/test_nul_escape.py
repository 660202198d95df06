"""Strings holding NUL: escaped losslessly in text and jsonb, decoded by the reader and by SQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from tests.collector_harness import RunningCollector
from tests.otlp_strategies import TEXT, canonical
from tests.otlp_wire import http_post, make_request, make_span
from tracetables.collector.receivers._otlp_json import decode_trace_request_json
from tracetables.exporters.postgres import nul_escape
from tracetables.exporters.postgres.reader import read_request

Conn = psycopg.Connection[tuple[object, ...]]
TESTDATA = Path(__file__).parent / "testdata" / "otlp_json"
_DUMPS = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
JSON_STRINGS = st.recursive(TEXT, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3))


def _escape_all(value: Any) -> Any:
    if isinstance(value, str):
        return nul_escape.escape(value)
    if isinstance(value, list):
        return [_escape_all(v) for v in value]
    return {nul_escape.escape(k): _escape_all(v) for k, v in value.items()}


@given(text=TEXT)
def test_escape_round_trips_and_leaves_no_nul(text: str) -> None:
    """unescape(escape(s)) == s; the stored form has no NUL; a string with neither character is unchanged."""
    stored = nul_escape.escape(text)
    assert "\x00" not in stored
    assert nul_escape.unescape(stored) == text
    if "\x00" not in text and "\x1a" not in text:
        assert stored is text


@given(value=JSON_STRINGS)
def test_escape_json_equals_json_of_escaped_strings(value: Any) -> None:
    """Escaping the JSON text (the encoders' way) equals escaping every key and string first."""
    text = _DUMPS(value)
    assert nul_escape.escape_json(text) == _DUMPS(_escape_all(value))
    assert nul_escape.unescape_value(json.loads(nul_escape.escape_json(text))) == value


def test_escape_is_unambiguous_for_lookalikes() -> None:
    """NUL, the escape character and their neighbours map to distinct stored strings."""
    texts = ["\x00", "\x1a", "\x1a0", "\x000", "\x00\x00", "\x1a\x1a", "0", "\x1a\x00"]
    stored = [nul_escape.escape(t) for t in texts]
    assert len(set(stored)) == len(texts)
    assert stored[:3] == ["\x1a0", "\x1a\x1a", "\x1a\x1a0"]


def test_sql_sees_escaped_form_and_tt_unescape_decodes(collector: RunningCollector, conn: Conn) -> None:
    """SQL reads the escaped string; tt_unescape gives the exact bytes, or text with NUL replaced."""
    span = make_span(name="a\x00b\x1ac")
    span.attributes.append(KeyValue(key="k\x00", value=AnyValue(string_value="v\x00\x1a0")))
    reply = http_post(collector.http_port, make_request(span).SerializeToString())
    assert ExportTraceServiceResponse.FromString(reply.body).partial_success.rejected_spans == 0
    row = conn.execute(
        "SELECT name, tt_unescape(name), tt_unescape(name, '<NUL>'), attributes->>(E'k\\x1a0'),"
        " tt_unescape(attributes->>(E'k\\x1a0')), tt_unescape('plain'), tt_unescape('plain', '')"
        " FROM spans"
    ).fetchone()
    assert row == (
        "a\x1a0b\x1a\x1ac",
        b"a\x00b\x1ac",
        "a<NUL>b\x1ac",
        "v\x1a0\x1a\x1a0",
        b"v\x00\x1a0",
        b"plain",
        "plain",
    )


@pytest.mark.parametrize("name", ["edge-cases.json", "all-fields.json", "own-trace.json"])
def test_otlp_json_fixture_over_http_is_stored_and_reads_back_equal(
    name: str, collector: RunningCollector, conn: Conn
) -> None:
    """Every span of the OTLP/JSON edge-case fixtures (NUL, escapes, int64 strings, enum names, hex case,
    unknown and snake_case fields) is accepted over real OTLP/HTTP JSON and reads back equal."""
    body = (TESTDATA / name).read_bytes()
    expected = decode_trace_request_json(body)
    reply = http_post(collector.http_port, body, "application/json")
    assert reply.status == 200
    assert "partialSuccess" not in reply.json() or not reply.json()["partialSuccess"].get("rejectedSpans")
    sent = sum(len(ss.spans) for rs in expected.resource_spans for ss in rs.scope_spans)
    assert conn.execute("SELECT count(*) FROM spans").fetchone() == (sent,)
    assert canonical(read_request(conn)) == canonical(expected)
