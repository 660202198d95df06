"""The classification rules (roles.RULES): one test per rule, through both encoders.

The compiled encoder implements the table of roles.py in C; each case here is encoded by
both and must give the same role, the one the rule names.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.otlp_wire import make_request
from tracetables.exporters.postgres import encoder
from tracetables.exporters.postgres.roles import KEY_RECORD, RULES, Role

CLIENT, SERVER, INTERNAL, PRODUCER = (
    Span.SPAN_KIND_CLIENT,
    Span.SPAN_KIND_SERVER,
    Span.SPAN_KIND_INTERNAL,
    Span.SPAN_KIND_PRODUCER,
)
PARENT = b"\x09" * 8


def span(
    kind: int = INTERNAL, parent: bytes = b"", flags: int = 0x100, attrs: list[tuple[str, Any]] | None = None
) -> Span:
    out = Span(
        trace_id=b"\x01" * 16,
        span_id=b"\x02" * 8,
        parent_span_id=parent,
        name="op",
        kind=kind,
        flags=flags,
        start_time_unix_nano=1,
        end_time_unix_nano=2,
    )  # type: ignore[arg-type]
    for key, value in attrs or []:
        if isinstance(value, bool):
            any_value = AnyValue(bool_value=value)
        elif isinstance(value, int):
            any_value = AnyValue(int_value=value)
        else:
            any_value = AnyValue(string_value=value)
        out.attributes.append(KeyValue(key=key, value=any_value))
    return out


def roles_of(s: Span) -> tuple[Role, Role]:
    """The role given by the C encoder and by the Python reference."""
    payload = make_request(s).SerializeToString()
    compiled = encoder.encode_request(payload).keys
    reference = encoder.encode_request_python(payload).keys
    assert len(compiled) == len(reference) == KEY_RECORD
    return Role(compiled[-1]), Role(reference[-1])


CASES: dict[str, list[tuple[Span, Role]]] = {
    "pending marker": [
        (span(attrs=[("flow.role", "call"), ("flow.pending", True)]), Role.CALL_PENDING),
        (span(attrs=[("flow.pending", True)]), Role.CALL_PENDING),
        (span(attrs=[("flow.role", "run"), ("flow.pending", True)]), Role.RUN_PENDING),
        (span(attrs=[("flow.role", "call"), ("flow.pending", False)]), Role.CALL),
        (span(attrs=[("flow.role", "call"), ("flow.pending", "true")]), Role.CALL),  # a string is not a boolean
    ],
    "explicit role": [
        (span(attrs=[("flow.role", "run")]), Role.RUN),
        (span(attrs=[("flow.role", "step")]), Role.STEP),
        (span(kind=SERVER, attrs=[("flow.role", "call")]), Role.CALL),
        (span(attrs=[("flow.role", "action")]), Role.ACTION),
        (span(attrs=[("flow.role", "event")]), Role.EVENT),
        (span(attrs=[("flow.role", "step"), ("flow.role", "event")]), Role.EVENT),  # the last value counts
        (span(attrs=[("flow.role", "banana")]), Role.NONE),
        (span(attrs=[("flow.role", 1)]), Role.NONE),
        # flow.role wins over what the span also looks like
        (span(kind=CLIENT, attrs=[("flow.role", "step"), ("http.request.method", "GET")]), Role.STEP),
    ],
    "client call": [
        (span(kind=CLIENT, attrs=[("http.request.method", "GET")]), Role.CALL),
        (span(kind=CLIENT, attrs=[("http.method", "GET")]), Role.CALL),
        (span(kind=CLIENT, attrs=[("rpc.system.name", "grpc")]), Role.CALL),
        (span(kind=CLIENT, attrs=[("rpc.system", "grpc")]), Role.CALL),
        (span(kind=PRODUCER, attrs=[("messaging.system", "kafka")]), Role.CALL),
        (span(kind=SERVER, attrs=[("http.request.method", "GET")]), Role.NONE),  # a server span is not a call
        (span(kind=CLIENT, attrs=[("db.system", "postgresql")]), Role.NONE),
    ],
    "agent run": [
        (span(attrs=[("openinference.span.kind", "CHAIN")]), Role.RUN),
        (span(attrs=[("openinference.span.kind", "AGENT")]), Role.RUN),
        (span(attrs=[("gen_ai.operation.name", "invoke_agent")]), Role.RUN),
        (span(parent=PARENT, flags=0x300, attrs=[("openinference.span.kind", "CHAIN")]), Role.RUN),  # remote parent
        (span(attrs=[("openinference.span.kind", "LLM")]), Role.NONE),
        (span(attrs=[("gen_ai.operation.name", "chat")]), Role.NONE),
    ],
    "agent step": [
        (span(parent=PARENT, attrs=[("openinference.span.kind", "CHAIN")]), Role.STEP),
        (span(parent=PARENT, flags=0, attrs=[("openinference.span.kind", "AGENT")]), Role.STEP),  # unknown: local
        (span(parent=PARENT, attrs=[("gen_ai.operation.name", "invoke_agent")]), Role.STEP),
        (span(parent=PARENT, attrs=[("openinference.span.kind", "TOOL")]), Role.NONE),
    ],
}


def test_every_rule_has_cases() -> None:
    assert [rule.name for rule in RULES] == list(CASES)


@pytest.mark.parametrize("rule", list(CASES))
def test_rule(rule: str) -> None:
    for case, expected in CASES[rule]:
        assert roles_of(case) == (expected, expected), (rule, case)


def test_spans_without_role_still_get_a_key_record() -> None:
    """Every stored span is in the keys blob (role 0), so runs can see late intermediate spans."""
    assert roles_of(span()) == (Role.NONE, Role.NONE)


def test_wrong_length_ids_get_no_key_record() -> None:
    bad = span(attrs=[("flow.role", "step")])
    bad.span_id = b"\x02" * 9
    payload = make_request(bad).SerializeToString()
    assert encoder.encode_request(payload).keys == encoder.encode_request_python(payload).keys == b""


WATCHED = [
    "flow.role",
    "flow.pending",
    "openinference.span.kind",
    "gen_ai.operation.name",
    "http.request.method",
    "rpc.system",
    "messaging.system",
    "other",
]
VALUES = st.one_of(
    st.sampled_from(["run", "step", "call", "action", "event", "AGENT", "CHAIN", "invoke_agent", ""]),
    st.booleans(),
    st.integers(-2, 2),
)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.integers(0, 5),
    parent=st.sampled_from([b"", PARENT]),
    flags=st.sampled_from([0, 0x100, 0x200, 0x300, 0x3FF]),
    attrs=st.lists(st.tuples(st.sampled_from(WATCHED), VALUES), max_size=6),
)
def test_compiled_and_reference_agree(kind: int, parent: bytes, flags: int, attrs: list[tuple[str, Any]]) -> None:
    compiled, reference = roles_of(span(kind, parent, flags, attrs))
    assert compiled == reference
