"""Real auto-instrumentation → a real collector → PostgreSQL, with no tracetables code in
the instrumented "service": the classification rules (exporters/postgres/roles.py) must
recognise what the stock instrumentors emit.

- opentelemetry-instrumentation-requests / -httpx, under both HTTP semantic-convention
  modes (the default, old names, and ``OTEL_SEMCONV_STABILITY_OPT_IN=http``, stable
  names), calling a local server that answers 200 and 500, and a refused port:
  one ``communication_traces`` row per call.
- a LangGraph graph of plain Python functions traced by
  openinference-instrumentation-langchain: one ``execution_logs`` row per run, one
  ``flow_execution_steps`` row per node visit (a branch function is not a step).
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, TypedDict

import httpx
import psycopg
import pytest
import requests
from langgraph.graph import END, START, StateGraph
from openinference.instrumentation import using_session, using_user
from openinference.instrumentation.langchain import LangChainInstrumentor
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation._semconv import _OpenTelemetrySemanticConventionStability
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tests.collector_harness import RunningCollector

Conn = psycopg.Connection[tuple[Any, ...]]
SERVICE = "web-client"


def rows(conn: Conn, query: str, *params: Any) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(query, params).fetchall()


@pytest.fixture
def provider(collector: RunningCollector) -> Iterator[TracerProvider]:
    """A plain SDK provider; SimpleSpanProcessor exports each span as it ends, so every
    span is in the database (the collector acknowledges after writing) before we query."""
    tracer_provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
    tracer_provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"127.0.0.1:{collector.grpc_port}", insecure=True, timeout=10))
    )
    yield tracer_provider
    tracer_provider.shutdown()


# --- HTTP clients -------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        code = 500 if self.path.startswith("/fail") else 200
        body = json.dumps({"path": self.path}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass(frozen=True)
class Endpoints:
    ok: str
    fail: str
    refused: str


@pytest.fixture(scope="module")
def endpoints() -> Iterator[Endpoints]:
    """A local server answering 200 on /ok and 500 on /fail, and a port nothing listens on."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, name="test-http-server", daemon=True)
    thread.start()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    port = server.server_address[1]
    try:
        yield Endpoints(
            ok=f"http://127.0.0.1:{port}/ok",
            fail=f"http://127.0.0.1:{port}/fail",
            refused=f"http://127.0.0.1:{free_port}/nothing",
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


Library = Literal["requests", "httpx"]
Mode = Literal["default", "http"]


@pytest.fixture
def semconv_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Mode]:
    """Set OTEL_SEMCONV_STABILITY_OPT_IN for the test, and make the instrumentation re-read it.

    The mode is read once per process into class attributes of
    ``_OpenTelemetrySemanticConventionStability``; the flag is reset so the next
    ``instrument()`` reads the variable again, and restored afterwards.
    """
    mode: Mode = request.param
    if mode == "http":
        monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
    else:
        monkeypatch.delenv("OTEL_SEMCONV_STABILITY_OPT_IN", raising=False)
    stability = _OpenTelemetrySemanticConventionStability
    saved = (stability._initialized, dict(stability._OTEL_SEMCONV_STABILITY_SIGNAL_MAPPING))
    stability._initialized = False
    stability._OTEL_SEMCONV_STABILITY_SIGNAL_MAPPING = {}
    try:
        yield mode
    finally:
        stability._initialized, mapping = saved
        stability._OTEL_SEMCONV_STABILITY_SIGNAL_MAPPING = mapping


def _requests_calls(endpoints: Endpoints) -> None:
    with requests.Session() as session:
        session.trust_env = False  # no proxy from the environment for loopback calls
        assert session.get(endpoints.ok, timeout=10).status_code == 200
        assert session.get(endpoints.fail, timeout=10).status_code == 500
        with pytest.raises(requests.ConnectionError):
            session.get(endpoints.refused, timeout=10)


def _httpx_calls(endpoints: Endpoints) -> None:
    with httpx.Client(trust_env=False, timeout=10) as client:
        assert client.get(endpoints.ok).status_code == 200
        assert client.get(endpoints.fail).status_code == 500
        with pytest.raises(httpx.ConnectError):
            client.get(endpoints.refused)


CALLS: dict[Library, Callable[[Endpoints], None]] = {"requests": _requests_calls, "httpx": _httpx_calls}
# The refused call: what each instrumentation puts in error.type under
# OTEL_SEMCONV_STABILITY_OPT_IN=http (the class name) ...
REFUSED_ERROR_TYPE: dict[Library, str] = {"requests": "ConnectionError", "httpx": "ConnectError"}
# ... and what the SDK records as exception.type on its exception event, in both modes.
REFUSED_EXCEPTION_TYPE: dict[Library, str] = {
    "requests": "requests.exceptions.ConnectionError",
    "httpx": "httpx.ConnectError",
}


@pytest.fixture
def instrumented(request: pytest.FixtureRequest, semconv_mode: Mode, provider: TracerProvider) -> Iterator[Library]:
    """The client library, instrumented with its real instrumentor for this test only."""
    library: Library = request.param
    instrumentor = RequestsInstrumentor() if library == "requests" else HTTPXClientInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        yield library
    finally:
        instrumentor.uninstrument()


@pytest.mark.parametrize("semconv_mode", ["default", "http"], indirect=True)
@pytest.mark.parametrize("instrumented", ["requests", "httpx"], indirect=True)
def test_http_client_calls(instrumented: Library, semconv_mode: Mode, endpoints: Endpoints, conn: Conn) -> None:
    CALLS[instrumented](endpoints)

    got = rows(conn, "SELECT * FROM communication_traces ORDER BY requested_at")
    assert len(got) == 3, got
    ok, fail, refused = got
    spans = rows(conn, "SELECT count(*) AS n FROM spans")
    assert spans == [{"n": 3}]

    assert [r["overall_status"] for r in got] == ["success", "failed", "failed"]
    assert [r["http_status_code"] for r in got] == [200, 500, None]
    # Default mode has only http.url (the host comes from the URL); http mode has server.address.
    assert [r["destination_service"] for r in got] == ["127.0.0.1"] * 3
    assert [r["action"] for r in got] == ["GET"] * 3
    assert [r["attempt_number"] for r in got] == [1, 1, 1]
    assert [r["source_service"] for r in got] == [SERVICE] * 3
    for r in got:
        assert r["requested_at"] <= r["responded_at"]
        assert r["trace_key"] == r["execution_id"] and len(r["trace_key"]) == 32
        assert r["duration_ms"] >= 0
        assert r["request_payload"] is None and r["response_payload"] is None
        assert r["workflow_id"] is None and r["user_id"] is None and r["external_execution_id"] is None
    assert len({r["trace_key"] for r in got}) == 3  # three top-level calls, three traces

    assert ok["error_code"] is None and ok["error_detail"] is None
    # The 500: status ERROR with no description and no exception event. Default mode has no
    # error.type, so the code comes from the status code; http mode's error.type is "500" too.
    assert (fail["error_code"], fail["error_detail"]) == ("500", None)
    if semconv_mode == "default":
        # No error.type: the exception event's exception.type, which the SDK writes
        # module-qualified (so the same failure reads differently in the two modes).
        assert refused["error_code"] == REFUSED_EXCEPTION_TYPE[instrumented]
    else:
        assert refused["error_code"] == REFUSED_ERROR_TYPE[instrumented]  # error.type
    # The status description the instrumentation set: "<exception class>: <message>".
    assert refused["error_detail"].startswith(f"{REFUSED_ERROR_TYPE[instrumented]}: ")
    assert "Connection refused" in refused["error_detail"]


# --- LangGraph, traced by OpenInference ---------------------------------------------------


class State(TypedDict, total=False):
    text: str
    channel: str
    intent: str
    score: int
    reply: str
    done: bool


# Every input and output below has two keys or more on purpose: OpenInference unwraps a
# dict of one key to its bare value (see test_single_key_state_is_unwrapped_by_openinference).
REQUEST: State = {"text": "hello bot", "channel": "web"}
CLASSIFIED: State = {"intent": "greeting", "score": 3}
GREETED: State = {"reply": "Hi there!", "done": True}


def classify(state: State) -> State:
    if not state.get("text"):
        raise ValueError("cannot classify an empty message")
    return CLASSIFIED.copy() if "hello" in state["text"] else {"intent": "other", "score": 0}


def route(state: State) -> Literal["greet", "fallback"]:
    """The conditional edge: a branch function, traced as a span under classify's visit."""
    return "greet" if state["intent"] == "greeting" else "fallback"


def greet(state: State) -> State:
    return GREETED.copy()


def fallback(state: State) -> State:
    return {"reply": "Sorry?", "done": True}


def build_graph() -> Any:
    graph = StateGraph(State)
    graph.add_node("classify", classify)
    graph.add_node("greet", greet)
    graph.add_node("fallback", fallback)
    graph.add_edge(START, "classify")
    graph.add_conditional_edges("classify", route, ["greet", "fallback"])
    graph.add_edge("greet", END)
    graph.add_edge("fallback", END)
    return graph.compile()


@pytest.fixture
def langchain_instrumented(provider: TracerProvider) -> Iterator[None]:
    instrumentor = LangChainInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        yield
    finally:
        instrumentor.uninstrument()


def test_langgraph_run_and_steps(langchain_instrumented: None, conn: Conn) -> None:
    app = build_graph()
    with using_session("sess-42"), using_user("user-7"):
        final = app.invoke(REQUEST.copy())
    assert final == {**REQUEST, **CLASSIFIED, **GREETED}

    (log,) = rows(conn, "SELECT *, encode(span_id, 'hex') AS sid FROM execution_logs")
    assert log["status"] == "completed" and log["run_status"] == "ok"
    assert (log["session_id"], log["user_id"]) == ("sess-42", "user-7")
    assert json.loads(log["request_message"]) == REQUEST  # input.value: the input state as JSON text
    assert json.loads(log["response_message"]) == final  # output.value: the final state as JSON text
    assert log["step_count"] == 2
    assert [s["node"] for s in log["execution_trace"]] == ["classify", "greet"]
    assert [(s["node_type"], s["step_number"], s["status"]) for s in log["execution_trace"]] == [
        ("chain", 1, "completed"),
        ("chain", 2, "completed"),
    ]
    assert log["failed_nodes"] == [] and log["error_summary"] is None

    steps = rows(
        conn,
        "SELECT *, encode(span_id, 'hex') AS sid, encode(parent_span_id, 'hex') AS parent"
        " FROM flow_execution_steps ORDER BY step_number",
    )
    # One row per node visit: the `route` branch span (below classify, metadata naming
    # classify) is part of classify's visit, not a step.
    assert [s["node_id"] for s in steps] == ["classify", "greet"]
    assert [s["sid"] for s in steps] == [s["span_id"] for s in log["execution_trace"]]
    first, second = steps
    for step in steps:
        assert (step["session_id"], step["user_id"]) == ("sess-42", "user-7")
        assert (step["node_type"], step["status"]) == ("chain", "completed")
        assert step["parent"] == log["sid"]  # each node visit is a child of the LangGraph root
        assert step["error_message"] is None and step["error_details"] is None
        assert step["started_at"] <= step["completed_at"]
    assert first["step_number"] == 1 and second["step_number"] == 2
    assert first["state_before"] == REQUEST and first["state_after"] == CLASSIFIED
    assert second["state_before"] == {**REQUEST, **CLASSIFIED} and second["state_after"] == GREETED

    # The branch span is stored, only not projected as a step.
    (branch,) = rows(conn, "SELECT encode(parent_span_id, 'hex') AS parent, attributes FROM spans WHERE name = 'route'")
    assert branch["parent"] == first["sid"]
    assert json.loads(branch["attributes"]["metadata"])["langgraph_node"] == "classify"


def test_langgraph_failing_node(langchain_instrumented: None, conn: Conn) -> None:
    app = build_graph()
    with using_session("sess-43"), using_user("user-7"), pytest.raises(ValueError, match="empty message"):
        app.invoke({"text": "", "channel": "web"})

    (log,) = rows(conn, "SELECT * FROM execution_logs")
    assert (log["status"], log["run_status"]) == ("failed", "error")
    assert (log["session_id"], log["user_id"]) == ("sess-43", "user-7")
    assert log["failed_nodes"] == ["classify"]
    assert log["step_count"] == 1
    assert [(s["node"], s["status"]) for s in log["execution_trace"]] == [("classify", "failed")]
    assert "cannot classify an empty message" in log["error_summary"]

    (step,) = rows(conn, "SELECT * FROM flow_execution_steps")
    assert (step["node_id"], step["step_number"], step["status"]) == ("classify", 1, "failed")
    assert "cannot classify an empty message" in step["error_message"]
    assert step["error_details"]["type"] == "ValueError"
    assert step["state_before"] == {"text": "", "channel": "web"}
    assert step["state_after"] is None  # the node returned nothing


def test_single_key_state_is_unwrapped_by_openinference(langchain_instrumented: None, conn: Conn) -> None:
    """OpenInference writes a one-key dict as its bare value ({"text": "hi"} → input.value
    "hi"), so such a state is stored as a JSON string, not the dict: upstream behaviour,
    which the projection cannot undo."""

    class Small(TypedDict, total=False):
        text: str
        reply: str

    def answer(state: Small) -> Small:
        return {"reply": state["text"].upper()}

    graph = StateGraph(Small)
    graph.add_node("answer", answer)
    graph.add_edge(START, "answer")
    graph.add_edge("answer", END)
    assert graph.compile().invoke({"text": "hi"}) == {"text": "hi", "reply": "HI"}

    (log,) = rows(conn, "SELECT request_message, response_message, status FROM execution_logs")
    assert log == {
        "request_message": "hi",
        "response_message": json.dumps({"text": "hi", "reply": "HI"}),
        "status": "completed",
    }
    (step,) = rows(conn, "SELECT node_id, state_before, state_after FROM flow_execution_steps")
    assert step == {"node_id": "answer", "state_before": "hi", "state_after": "HI"}
