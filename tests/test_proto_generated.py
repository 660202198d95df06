"""The project's protos: generated code is current, and the pydantic details mirror the messages."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from google.protobuf import json_format
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel

from tracetables.instrumentation import details as models
from tracetables.instrumentation import step
from tracetables.proto import execution_details_pb2 as pb

PROTO_DIR = Path(__file__).resolve().parent.parent / "proto"
MESSAGES = [
    "ConditionResult",
    "ConditionDetails",
    "ScriptDetails",
    "QuestionDetails",
    "MessageDetails",
    "VariableChange",
    "ActionDetails",
    "WebhookDetails",
]


def test_regenerating_the_protos_changes_nothing(tmp_path: Path) -> None:
    """proto/generate.py, run now, writes exactly the checked-in *_pb2.py and *_pb2.pyi."""
    sys.path.insert(0, str(PROTO_DIR))
    try:
        import generate  # proto/generate.py

        generate.generate(tmp_path)
    finally:
        sys.path.remove(str(PROTO_DIR))
    produced = sorted(p.name for p in tmp_path.iterdir())
    assert produced == ["execution_details_pb2.py", "execution_details_pb2.pyi"]
    for name in produced:
        assert (tmp_path / name).read_text() == (PROTO_DIR / name).read_text(), (
            f"{name} is stale: run proto/generate.py"
        )


@pytest.mark.parametrize("name", MESSAGES)
def test_details_model_mirrors_its_message(name: str) -> None:
    """Each pydantic model has exactly the fields of the proto message of the same name."""
    model: type[BaseModel] = getattr(models, name)
    message = getattr(pb, name)
    assert set(model.model_fields) == {f.name for f in message.DESCRIPTOR.fields}


def test_details_json_parses_as_the_proto_message() -> None:
    """A step's recorded details parse into the proto message (what another language would read)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    webhook = models.WebhookDetails(
        url="https://hooks.example/x",
        method="POST",
        request_headers={"x-id": "7"},
        response_status=502,
        response_body={"error": "bad gateway", "retry": True},
    )
    with step("notify", "webhook", details=webhook, session_id="s-proto", tracer_provider=provider):
        pass
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None
    recorded = json.loads(str(span.attributes["flow.node.details"]))
    message = json_format.ParseDict(recorded, pb.WebhookDetails())
    assert (message.url, message.method, message.response_status) == ("https://hooks.example/x", "POST", 502)
    assert dict(message.request_headers) == {"x-id": "7"}
    assert json_format.MessageToDict(message.response_body) == {"error": "bad gateway", "retry": True}
    condition = models.ConditionDetails(
        conditions=[models.ConditionResult(expression="age > 18", result=True)],
        matched_index=0,
        connection_taken="adult",
    )
    parsed = json_format.ParseDict(condition.model_dump(), pb.ConditionDetails())
    assert parsed.HasField("matched_index") and parsed.conditions[0].expression == "age > 18"
