"""Which projection a span feeds: the classification rules, in one table.

Every span is stored in ``spans``; a span with a role is also projected into the table
for that role (see ``migrations/0002_projections.sql``). The role comes from
``flow.role`` when a service set it; otherwise the rules below recognise what standard
OpenTelemetry auto-instrumentation, OpenInference and GenAI instrumentations emit, so
their spans land in the right tables with no tracetables code in the service.

The first rule that matches decides. The compiled encoder (``_fastrows.c``,
``classify``) implements this same table; ``tests/exporters/test_roles.py`` holds the
two to the same answer, rule by rule.

One refinement needs a JSON attribute and is applied by ``tt_project`` in SQL: an
"agent step" whose ``metadata`` names a ``langgraph_node`` other than its own span name
(a LangGraph branch function, or a runnable inside a node) is part of that node's
visit, not a step of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tracetables.instrumentation import conventions as cv
from tracetables.instrumentation.conventions import Role as Role

# The role codes and the keys they are read from live in the conventions table; the
# names below stay this module's public API.
FLOW_ROLES = cv.FLOW_ROLES
# Old and new semantic-convention names; any one on a CLIENT or PRODUCER span makes it a call.
CALL_KEYS = frozenset(cv.CALL_KEYS)
AGENT_KINDS = frozenset(cv.AGENT_KINDS)  # openinference.span.kind
AGENT_OPERATIONS = frozenset(cv.AGENT_OPERATIONS)  # gen_ai.operation.name
SPAN_KIND_CLIENT, SPAN_KIND_PRODUCER = 3, 4
# Span.flags bits 8 and 9 (OTLP 1.1+): "has is-remote", and "parent is remote".
_PARENT_REMOTE_KNOWN, _PARENT_REMOTE = 0x100, 0x200


@dataclass(frozen=True, slots=True)
class SpanFacts:
    """What the rules look at, read once from a span."""

    kind: int
    local_root: bool  # no parent, or a parent in another process
    flow_role: str | None = None  # "flow.role", when a string
    pending: bool = False  # "flow.pending" is boolean true
    has_call_key: bool = False  # any of CALL_KEYS, whatever its value
    openinference_kind: str | None = None  # "openinference.span.kind", when a string
    gen_ai_operation: str | None = None  # "gen_ai.operation.name", when a string


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the table: when ``decide`` gives a role, that is the span's role."""

    name: str
    when: str
    decide: Callable[[SpanFacts], Role | None]


def _agent(f: SpanFacts) -> bool:
    return f.openinference_kind in AGENT_KINDS or f.gen_ai_operation in AGENT_OPERATIONS


RULES: tuple[Rule, ...] = (
    Rule("pending marker", "flow.pending is true: flow.role run → run_pending, anything else → call_pending",
         lambda f: (Role.RUN_PENDING if f.flow_role == "run" else Role.CALL_PENDING) if f.pending else None),
    Rule("explicit role", "flow.role is run, step, call, action or event",
         lambda f: FLOW_ROLES.get(f.flow_role) if f.flow_role is not None else None),
    Rule("client call", "kind CLIENT or PRODUCER with http.request.method (old: http.method), "
         "rpc.system.name (old: rpc.system) or messaging.system",
         lambda f: Role.CALL if f.kind in (SPAN_KIND_CLIENT, SPAN_KIND_PRODUCER) and f.has_call_key else None),
    Rule("agent run", "openinference.span.kind AGENT or CHAIN, or gen_ai.operation.name invoke_agent, "
         "at the local root (no parent, or a remote one)",
         lambda f: Role.RUN if _agent(f) and f.local_root else None),
    Rule("agent step", "the same spans below a local parent",
         lambda f: Role.STEP if _agent(f) and not f.local_root else None),
)  # fmt: skip


def classify(facts: SpanFacts) -> Role:
    """The role of a span: the first rule that gives one, else ``Role.NONE``."""
    for rule in RULES:
        role = rule.decide(facts)
        if role is not None:
            return role
    return Role.NONE


def facts_of(kind: int, parent_span_id: bytes, flags: int, attributes: Iterable[Any]) -> SpanFacts:
    """Read the facts from an OTLP span's fields (``attributes``: its ``KeyValue`` list).

    A key given twice counts by its last value, as in the stored ``attributes`` map.
    """
    values: dict[str, Any] = {}
    has_call_key = False
    for kv in attributes:
        key = kv.key
        if key in CALL_KEYS:
            has_call_key = True
        elif key in _WATCHED:
            values[key] = kv.value
    remote = flags & (_PARENT_REMOTE_KNOWN | _PARENT_REMOTE) == _PARENT_REMOTE_KNOWN | _PARENT_REMOTE
    return SpanFacts(
        kind=kind,
        local_root=not parent_span_id or remote,
        flow_role=_string(values.get(cv.FLOW_ROLE)),
        pending=_true(values.get(cv.FLOW_PENDING)),
        has_call_key=has_call_key,
        openinference_kind=_string(values.get(cv.OPENINFERENCE_SPAN_KIND)),
        gen_ai_operation=_string(values.get(cv.GEN_AI_OPERATION_NAME)),
    )


_WATCHED = frozenset({cv.FLOW_ROLE, cv.FLOW_PENDING, cv.OPENINFERENCE_SPAN_KIND, cv.GEN_AI_OPERATION_NAME})


def _string(value: Any) -> str | None:
    if value is None or value.WhichOneof("value") != "string_value":
        return None
    return str(value.string_value)


def _true(value: Any) -> bool:
    return value is not None and value.WhichOneof("value") == "bool_value" and bool(value.bool_value)


KEY_RECORD = 25  # trace_id (16) + span_id (8) + role (1)


def key_record(trace_id: bytes, span_id: bytes, role: Role) -> bytes:
    """One span's entry in the keys blob the encoder hands to ``tt_project``.

    Spans with ids of other lengths (refused upstream by the receivers) get no entry.
    """
    if len(trace_id) != 16 or len(span_id) != 8:
        return b""
    return trace_id + span_id + bytes((role,))


PROJECTION_TABLES: dict[Role, str] = {
    Role.RUN: "execution_log_rows",
    Role.RUN_PENDING: "execution_log_rows",
    Role.STEP: "flow_step_rows",
    Role.CALL: "communication_rows",
    Role.CALL_PENDING: "communication_rows",
    Role.ACTION: "action_rows",
    Role.EVENT: "event_rows",
}
"""The table ``tt_project`` writes a span of each role to (one row, inserted or updated)."""


def projected_by_table(keys: bytes) -> dict[str, int]:
    """How many spans of ``keys`` (the encoder's key records) go to each projection table.

    Counts the role bytes in C (``bytes.count``), no per-span Python work.
    """
    roles = keys[KEY_RECORD - 1 :: KEY_RECORD]
    out: dict[str, int] = {}
    for role, table in PROJECTION_TABLES.items():
        n = roles.count(role)
        if n:
            out[table] = out.get(table, 0) + n
    return out
