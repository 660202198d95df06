"""Typed execution details for the six node types of the seeds.

Pass one to ``step(..., details=...)`` or ``st.details(...)``; it is recorded as JSON in
``flow.node.details`` (the step's ``flow.node.type`` says which). Each model mirrors the
message of the same name in ``proto/execution_details.proto`` field for field (a test
holds them together), so other languages can emit the same shapes.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Details(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConditionResult(_Details):
    """One condition as evaluated."""

    expression: str = ""
    result: bool = False


class ConditionDetails(_Details):
    """A condition node: what was evaluated, what matched, which edge was taken."""

    conditions: list[ConditionResult] = Field(default_factory=list)
    matched_index: int | None = None
    connection_taken: str = ""


class ScriptDetails(_Details):
    """A script node: the code that ran, its inputs, outputs and console."""

    language: str = ""
    code_preview: str = ""
    inputs: Any = None
    outputs: Any = None
    console_logs: list[str] = Field(default_factory=list)
    execution_time_ms: float = 0.0


class QuestionDetails(_Details):
    """A question node: what was asked, the options, and the answer."""

    question_text: str = ""
    rendered_question: str = ""
    options: list[str] = Field(default_factory=list)
    user_response: str = ""
    response_time_ms: float = 0.0


class MessageDetails(_Details):
    """A message node: the template and what it rendered to."""

    template: str = ""
    rendered_message: str = ""
    media_urls: list[str] = Field(default_factory=list)


class VariableChange(_Details):
    """A variable an action changed."""

    name: str = ""
    old_value: Any = None
    new_value: Any = None


class ActionDetails(_Details):
    """An action node: what it did and which variables it changed."""

    action_type: str = ""
    actions_executed: list[str] = Field(default_factory=list)
    variables_changed: list[VariableChange] = Field(default_factory=list)


class WebhookDetails(_Details):
    """A webhook node: the request made and the response received."""

    url: str = ""
    method: str = ""
    request_headers: dict[str, str] = Field(default_factory=dict)
    response_status: int = 0
    response_body: Any = None


NODE_DETAILS: dict[str, type[BaseModel]] = {
    "condition": ConditionDetails,
    "script": ScriptDetails,
    "question": QuestionDetails,
    "message": MessageDetails,
    "action": ActionDetails,
    "webhook": WebhookDetails,
}
"""Node type → its details model."""
