"""The span conventions, in one table: attribute keys, role codes and trace levels.

Services set these attributes (through this package or by hand); the collector's
processors and the PostgreSQL exporter read them. Everything else spells them through
this module: Python imports the constants; the compiled encoder includes
``exporters/postgres/_conventions.h`` and the role names in SQL come from
``exporters/postgres/migrations/0009_role_names.sql``, both written from this table by
``python -m tracetables.exporters.postgres.gen_conventions``. ``tests/test_conventions.py``
fails when a generated file is stale or a ``flow.*`` key is spelled outside this table.

It imports nothing but the standard library: the collector and the exporter read it too
(importing it runs this package's ``__init__``, which needs only ``opentelemetry-api``, a
dependency of the collector anyway).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final

FLOW_PREFIX: Final = "flow."
"""Every key of the flow conventions starts with it (a cheap first test for readers)."""

# The span's part in a flow, and the pending (start) marker.
FLOW_ROLE: Final = "flow.role"
FLOW_PENDING: Final = "flow.pending"
FLOW_TRACE_LEVEL: Final = "flow.trace_level"

# Which flow a span belongs to.
FLOW_ID: Final = "flow.id"
FLOW_VERSION: Final = "flow.version"

# Runs.
FLOW_RUN_REQUEST: Final = "flow.run.request"
FLOW_RUN_RESPONSE: Final = "flow.run.response"

# Steps.
FLOW_NODE_ID: Final = "flow.node.id"
FLOW_NODE_TYPE: Final = "flow.node.type"
FLOW_NODE_DETAILS: Final = "flow.node.details"
FLOW_STEP_NUMBER: Final = "flow.step.number"
FLOW_STATE_BEFORE: Final = "flow.state.before"
FLOW_STATE_AFTER: Final = "flow.state.after"
FLOW_CONNECTION_TYPE: Final = "flow.connection.type"
FLOW_NEXT_NODE_ID: Final = "flow.next_node.id"

# Calls.
FLOW_CALL_KEY: Final = "flow.call.key"
FLOW_CALL_ATTEMPT: Final = "flow.call.attempt"
FLOW_CALL_REQUEST: Final = "flow.call.request"
FLOW_CALL_RESPONSE: Final = "flow.call.response"
FLOW_CALL_EXTERNAL_ID: Final = "flow.call.external_id"

# Actions and their provenance links (the link attribute).
FLOW_ACTION_CONCEPT: Final = "flow.action.concept"
FLOW_ACTION_NAME: Final = "flow.action.name"
FLOW_ACTION_INPUTS: Final = "flow.action.inputs"
FLOW_ACTION_OUTPUTS: Final = "flow.action.outputs"
FLOW_SYNCHRONIZATION: Final = "flow.synchronization"

# Replay events.
FLOW_EVENT_TYPE: Final = "flow.event.type"
FLOW_EVENT_DATA: Final = "flow.event.data"
FLOW_CONTEXT_SNAPSHOT: Final = "flow.context.snapshot"

FLOW_KEYS: Final = frozenset({
    FLOW_ROLE, FLOW_PENDING, FLOW_TRACE_LEVEL, FLOW_ID, FLOW_VERSION, FLOW_RUN_REQUEST, FLOW_RUN_RESPONSE,
    FLOW_NODE_ID, FLOW_NODE_TYPE, FLOW_NODE_DETAILS, FLOW_STEP_NUMBER, FLOW_STATE_BEFORE, FLOW_STATE_AFTER,
    FLOW_CONNECTION_TYPE, FLOW_NEXT_NODE_ID, FLOW_CALL_KEY, FLOW_CALL_ATTEMPT, FLOW_CALL_REQUEST,
    FLOW_CALL_RESPONSE, FLOW_CALL_EXTERNAL_ID, FLOW_ACTION_CONCEPT, FLOW_ACTION_NAME, FLOW_ACTION_INPUTS,
    FLOW_ACTION_OUTPUTS, FLOW_SYNCHRONIZATION, FLOW_EVENT_TYPE, FLOW_EVENT_DATA, FLOW_CONTEXT_SNAPSHOT,
})  # fmt: skip
"""Every ``flow.*`` key of the conventions."""

# Standard keys (OpenTelemetry semantic conventions, OpenInference) the flow spans carry
# and the role rules read.
SESSION_ID: Final = "session.id"
USER_ID: Final = "user.id"
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
OPENINFERENCE_SPAN_KIND: Final = "openinference.span.kind"
SERVER_ADDRESS: Final = "server.address"
HTTP_REQUEST_METHOD: Final = "http.request.method"
HTTP_METHOD: Final = "http.method"  # the old name of http.request.method
RPC_SYSTEM_NAME: Final = "rpc.system.name"
RPC_SYSTEM: Final = "rpc.system"  # the old name of rpc.system.name
MESSAGING_SYSTEM: Final = "messaging.system"

CALL_KEYS: Final = (HTTP_REQUEST_METHOD, HTTP_METHOD, RPC_SYSTEM_NAME, RPC_SYSTEM, MESSAGING_SYSTEM)
"""Any one of them on a CLIENT or PRODUCER span makes it a call (old and new names)."""
AGENT_KINDS: Final = ("AGENT", "CHAIN")
"""``openinference.span.kind`` values of an agent run or step."""
AGENT_OPERATIONS: Final = ("invoke_agent",)
"""``gen_ai.operation.name`` values of an agent run or step."""


class Role(IntEnum):
    """Role codes as they travel from the encoder to ``tt_project`` (one byte a span)."""

    NONE = 0
    RUN = 1
    STEP = 2
    CALL = 3
    CALL_PENDING = 4  # a call's "log before send" marker: a pending row for its parent
    ACTION = 5
    EVENT = 6
    RUN_PENDING = 7  # a run's start marker: a running row for its parent


FLOW_ROLES: Final = {"run": Role.RUN, "step": Role.STEP, "call": Role.CALL, "action": Role.ACTION, "event": Role.EVENT}
"""The values of ``flow.role``, and the role each gives."""

LEVELS: Final = ("minimal", "standard", "verbose")
"""The values of ``flow.trace_level`` (and of ``tracing_config.level``), least detail first."""
