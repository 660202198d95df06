"""The ``mixed`` workload: conversation-flow traces whose spans feed the projection tables.

Each trace is what one turn of a conversational flow service emits, with the attribute
names ``tracetables.instrumentation`` (and OpenTelemetry's semantic conventions) use:

- an HTTP SERVER span (the turn's request; plain, no role), the trace's root;
- a run span (``flow.role=run``) below it, with its start marker (a zero-length child,
  ``flow.pending=true``): a ``running`` row first, replaced by the run's own;
- 4–6 step spans (``flow.role=step``), children of the run, in sequence: node id and
  type, step number, ~1 KB JSON state before and after (the next step's before is this
  one's after), JSON node details, the edge taken; 2 % fail with an exception event;
- 1–2 calls (``flow.role=call``, CLIENT, HTTP attributes) below a step, each attempt
  with its pending marker child; 35 % of calls fail once (HTTP 503) and are retried
  (same ``flow.call.key``, ``flow.call.attempt`` 2);
- 1–2 actions (``flow.role=action``) below steps; a second one links to the first
  (link attribute ``flow.synchronization``), so links stay inside the trace;
- 1 event (``flow.role=event``) with JSON data and a context snapshot;
- 2–4 plain spans: database client calls and internal work (the ``raw`` categories).

A request is filled with whole traces; the spans left over (fewer than a flow trace)
become plain traces. Templates are :class:`otlp_payload.Template`, re-sent with fresh ids.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field

import otlp_payload
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from otlp_payload import Template, _any, _attributes, sdk_resource_spans, self_check
from projection_check import role_counts

WORKLOADS = ("raw", "mixed")
FLOW_SERVICES = ("support-bot", "order-assistant", "returns-flow", "onboarding")
FLOWS = ("support_triage", "order_status", "refund_request", "account_setup")
NODES = (
    ("classify_intent", "llm"),
    ("retrieve_context", "retriever"),
    ("route", "router"),
    ("lookup_order", "tool"),
    ("check_policy", "tool"),
    ("draft_reply", "llm"),
    ("guardrail", "validator"),
    ("respond", "llm"),
)
BACKENDS = (
    ("orders.internal", "POST", "/v1/orders/lookup"),
    ("crm.internal", "GET", "/v1/customers/{id}"),
    ("refunds.internal", "POST", "/v1/refunds"),
    ("n8n.internal", "POST", "/webhook/flow"),
)
CONCEPTS = ("urn:concept:Order", "urn:concept:Ticket", "urn:concept:Refund", "urn:concept:Customer")
ACTIONS = ("create", "update", "assign", "close", "notify")
SYNCS = ("ticket-on-order", "refund-after-check", "notify-on-close")
EVENTS = ("message.received", "intent.detected", "handoff.requested", "feedback.given")
WORDS = (
    "order",
    "refund",
    "delivery",
    "package",
    "arrived",
    "late",
    "please",
    "check",
    "status",
    "account",
    "invoice",
    "address",
    "changed",
    "customer",
    "wants",
    "to",
    "know",
    "when",
    "the",
    "their",
    "is",
    "was",
    "shipping",
    "label",
    "return",
    "window",
    "days",
    "policy",
    "support",
    "agent",
    "thanks",
    "hello",
)
SCOPE_FLOW = ("tracetables.instrumentation", "0.1.0")
SCOPE_SERVER = ("opentelemetry.instrumentation.asgi", "0.55b0")
MS = 10**6


def _text(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def _state(rng: random.Random, session: str, turn: int, size: int = 1024) -> str:
    """A conversation state as JSON text of about ``size`` bytes."""
    state: dict[str, object] = {
        "conversation": {
            "session": session,
            "turn": turn,
            "channel": rng.choice(("web", "whatsapp", "email")),
            "locale": rng.choice(("en-GB", "de-DE", "fr-FR")),
        },
        "slots": {
            "order_id": f"ORD-{rng.randrange(10**7):07d}",
            "intent": rng.choice(("order_status", "refund")),
            "confidence": round(rng.random(), 3),
            "escalate": rng.random() < 0.1,
        },
        "messages": [],
    }
    messages: list[dict[str, str]] = state["messages"]  # type: ignore[assignment]
    while len(_json(state)) < size - 80:
        messages.append({"role": rng.choice(("user", "assistant")), "content": _text(rng, 6, 14)})
    return _json(state)


@dataclass
class _Trace:
    """One trace being built: its spans, each with its instrumentation scope."""

    rng: random.Random
    trace_id: bytes
    spans: list[tuple[tuple[str, str], Span]] = field(default_factory=list)

    def add(
        self,
        scope: tuple[str, str],
        name: str,
        kind: Span.SpanKind.ValueType,
        attrs: dict[str, object],
        parent: Span | None,
        start: int,
        end: int,
    ) -> Span:
        span = Span(
            trace_id=self.trace_id,
            span_id=self.rng.randbytes(8),
            kind=kind,
            flags=0x101,
            name=name,
            start_time_unix_nano=start,
            end_time_unix_nano=end,
        )
        if parent is not None:
            span.parent_span_id = parent.span_id
        span.attributes.extend(KeyValue(key=k, value=_any(v)) for k, v in attrs.items())
        self.spans.append((scope, span))
        return span

    def within(self, parent: Span) -> tuple[int, int]:
        lo, hi = parent.start_time_unix_nano, parent.end_time_unix_nano
        start = self.rng.randrange(lo, hi)
        return start, self.rng.randrange(start + 1, hi + 1)


def _fail(rng: random.Random, span: Span, message: str) -> None:
    span.status.code = Status.STATUS_CODE_ERROR
    span.status.message = message
    event = span.events.add(name="exception", time_unix_nano=span.end_time_unix_nano - rng.randrange(1000))
    event.attributes.extend(
        [
            KeyValue(key="exception.type", value=_any("RuntimeError")),
            KeyValue(key="exception.message", value=_any(message)),
        ]
    )


def _flow_trace(rng: random.Random, service: str, now_ns: int) -> _Trace:
    t = _Trace(rng, rng.randbytes(16))
    session, user = f"sess-{rng.getrandbits(48):012x}", f"user-{rng.randrange(10**6)}"
    flow_id = rng.choice(FLOWS)
    ctx: dict[str, object] = {"session.id": session, "user.id": user, "flow.id": flow_id, "flow.version": "3"}
    t0 = now_ns - rng.randrange(5 * 10**9) - 6 * 10**9
    server = t.add(
        SCOPE_SERVER,
        "POST /api/chat",
        Span.SPAN_KIND_SERVER,
        {
            "http.request.method": "POST",
            "http.route": "/api/chat",
            "url.path": "/api/chat",
            "url.scheme": "https",
            "http.response.status_code": 200,
            "server.address": f"{service}.example.com",
            "server.port": 443,
            "client.address": f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            "user_agent.original": rng.choice(otlp_payload.AGENTS),
            "network.protocol.version": "1.1",
        },
        None,
        t0,
        t0 + rng.randrange(800 * MS, 4000 * MS),
    )
    run = t.add(
        SCOPE_FLOW,
        f"run {flow_id}",
        Span.SPAN_KIND_INTERNAL,
        {
            "flow.role": "run",
            **ctx,
            "flow.run.request": _json({"message": _text(rng, 8, 20), "channel": "web"}),
            "flow.run.response": _json({"reply": _text(rng, 15, 35), "handoff": False}),
        },
        server,
        server.start_time_unix_nano + MS,
        server.end_time_unix_nano - MS,
    )
    t.add(
        SCOPE_FLOW,
        f"run {flow_id} pending",
        Span.SPAN_KIND_INTERNAL,
        {"flow.role": "run", "flow.pending": True, **ctx},
        run,
        run.start_time_unix_nano,
        run.start_time_unix_nano,
    )
    steps: list[Span] = []
    count, first = rng.randint(4, 6), rng.randrange(1, 200)
    slot = (run.end_time_unix_nano - run.start_time_unix_nano) // count
    before = _state(rng, session, first)
    for i in range(count):
        node, node_type = NODES[(i + rng.randrange(2)) % len(NODES)]
        after = _state(rng, session, first + i + 1)
        start = run.start_time_unix_nano + i * slot
        step = t.add(
            SCOPE_FLOW,
            f"step {node}",
            Span.SPAN_KIND_INTERNAL,
            {
                "flow.role": "step",
                **ctx,
                "flow.node.id": node,
                "flow.node.type": node_type,
                "flow.step.number": first + i,
                "flow.state.before": before,
                "flow.state.after": after,
                "flow.node.details": _json(
                    {
                        "type": node_type,
                        "model": "gpt-4o-mini",
                        "temperature": 0.2,
                        "prompt_tokens": rng.randrange(200, 3000),
                        "completion_tokens": rng.randrange(10, 600),
                        "retrieved": [f"doc-{rng.randrange(10**5)}" for _ in range(3)],
                        "reason": _text(rng, 5, 12),
                    }
                ),
                "flow.connection.type": rng.choice(("direct", "conditional")),
                "flow.next_node.id": NODES[(i + 1) % len(NODES)][0],
            },
            run,
            start + rng.randrange(MS),
            start + slot - rng.randrange(MS),
        )
        if rng.random() < 0.02:
            _fail(rng, step, "node raised: upstream timeout")
        steps.append(step)
        before = after
    for n in range(rng.randint(1, 2)):
        _call(t, rng.choice(steps), ctx, f"{session}:call:{n}", retry=rng.random() < 0.35)
    actions: list[Span] = []
    for _ in range(rng.randint(1, 2)):
        concept, name = rng.choice(CONCEPTS), rng.choice(ACTIONS)
        parent = rng.choice(steps)
        action = t.add(
            SCOPE_FLOW,
            f"{concept}::{name}",
            Span.SPAN_KIND_INTERNAL,
            {
                "flow.role": "action",
                **ctx,
                "flow.action.concept": concept,
                "flow.action.name": name,
                "flow.action.inputs": _json(
                    {"id": f"{concept.rsplit(':', 1)[1].lower()}-{rng.randrange(10**6)}", "reason": _text(rng, 4, 10)}
                ),
                "flow.action.outputs": _json({"ok": True, "version": rng.randrange(1, 20)}),
            },
            parent,
            *t.within(parent),
        )
        for cause in actions:  # provenance: this action was caused by the earlier ones
            link = action.links.add(trace_id=t.trace_id, span_id=cause.span_id, flags=0x101)
            link.attributes.append(KeyValue(key="flow.synchronization", value=_any(rng.choice(SYNCS))))
        actions.append(action)
    event_type = rng.choice(EVENTS)
    t.add(
        SCOPE_FLOW,
        f"event {event_type}",
        Span.SPAN_KIND_INTERNAL,
        {
            "flow.role": "event",
            **ctx,
            "flow.event.type": event_type,
            "flow.event.data": _json({"text": _text(rng, 6, 16), "score": round(rng.random(), 3)}),
            "flow.context.snapshot": _json(
                {
                    "node": rng.choice(NODES)[0],
                    "turn": first + count,
                    "slots": {"intent": "order_status", "lang": "en"},
                    "recent": [_text(rng, 5, 10) for _ in range(3)],
                }
            ),
        },
        run,
        *t.within(run),
    )
    for _ in range(rng.randint(2, 4)):
        _plain(t, rng.choice(steps))
    return t


def _call(t: _Trace, parent: Span, ctx: dict[str, object], key: str, retry: bool) -> None:
    host, method, path = t.rng.choice(BACKENDS)
    path = path.replace("{id}", str(t.rng.randrange(10**6)))
    for attempt in (1, 2) if retry else (1,):
        status = 503 if retry and attempt == 1 else 200
        response = (
            {"error": "service unavailable"}
            if status >= 500
            else {
                "status": t.rng.choice(("shipped", "processing", "delivered")),
                "eta_days": t.rng.randrange(1, 9),
                "items": [{"sku": f"SKU-{t.rng.randrange(10**5)}", "qty": t.rng.randrange(1, 4)} for _ in range(3)],
            }
        )
        call = t.add(
            SCOPE_FLOW,
            f"{method} {host}",
            Span.SPAN_KIND_CLIENT,
            {
                "flow.role": "call",
                **ctx,
                "flow.call.key": key,
                "flow.call.attempt": attempt,
                "server.address": host,
                "http.request.method": method,
                "url.full": f"http://{host}{path}",
                "http.response.status_code": status,
                "flow.call.request": _json(
                    {"order_id": f"ORD-{t.rng.randrange(10**7):07d}", "note": _text(t.rng, 4, 9)}
                ),
                "flow.call.response": _json(response),
            },
            parent,
            *t.within(parent),
        )
        if status >= 500:
            call.status.code, call.status.message = Status.STATUS_CODE_ERROR, f"HTTP {status}"
            call.attributes.append(KeyValue(key="error.type", value=_any(str(status))))
        t.add(
            SCOPE_FLOW,
            f"{method} {host} pending",
            Span.SPAN_KIND_INTERNAL,
            {
                "flow.role": "call",
                "flow.pending": True,
                "flow.call.key": key,
                "flow.call.attempt": attempt,
            },
            call,
            call.start_time_unix_nano,
            call.start_time_unix_nano,
        )


def _plain(t: _Trace, parent: Span) -> Span:
    cat = t.rng.choice((otlp_payload.DB_CATEGORY, otlp_payload.INTERNAL_CATEGORY))
    span = t.add(cat.scope, cat.name(t.rng), cat.kind, {}, parent, *t.within(parent))
    span.attributes.extend(_attributes(t.rng, cat.attrs, 10))
    return span


def _plain_trace(rng: random.Random, size: int, service: str, now_ns: int) -> _Trace:
    t = _Trace(rng, rng.randbytes(16))
    start = now_ns - rng.randrange(5 * 10**9) - 600 * MS
    t.add(
        SCOPE_SERVER,
        "GET /api/history",
        Span.SPAN_KIND_SERVER,
        {
            "http.request.method": "GET",
            "http.route": "/api/history",
            "http.response.status_code": 200,
            "server.address": f"{service}.example.com",
        },
        None,
        start,
        start + rng.randrange(2 * MS, 300 * MS),
    )
    while len(t.spans) < size:
        _plain(t, rng.choice([s for _, s in t.spans]))
    return t


def build_mixed_request(rng: random.Random, variant: int, spans: int, now_ns: int) -> ExportTraceServiceRequest:
    """One export of exactly ``spans`` spans: flow traces while they fit, then plain traces."""
    service = FLOW_SERVICES[variant % len(FLOW_SERVICES)]
    request = ExportTraceServiceRequest()
    rs = sdk_resource_spans(request, rng, service, f"3.{variant % 4}.{variant % 13}")
    traces: list[_Trace] = []
    made = 0
    while made < spans:
        trace = _flow_trace(rng, service, now_ns)
        if made + len(trace.spans) > spans:  # does not fit: plain traces of up to 12 spans fill the rest
            trace = _plain_trace(rng, min(12, spans - made), service, now_ns)
        traces.append(trace)
        made += len(trace.spans)
    scopes: dict[tuple[str, str], list[Span]] = {}
    for trace in traces:
        for scope, span in trace.spans:
            scopes.setdefault(scope, []).append(span)
    for (name, version), group in scopes.items():
        ss = rs.scope_spans.add()
        ss.scope.name, ss.scope.version = name, version
        ss.spans.extend(group)
    return request


def workload_templates(workload: str, seed: int, count: int, spans: int, attributes: int) -> list[Template]:
    """``count`` templates of the workload, each knowing its role counts (``Template.counts``).

    ``attributes`` applies to the raw workload only; the mixed one has its own attributes.
    """
    if workload == "raw":
        templates = otlp_payload.build_templates(seed, count, spans, attributes)
    elif workload == "mixed":
        rng, now = random.Random(seed), time.time_ns()
        templates = [Template.from_request(build_mixed_request(rng, i, spans, now), now) for i in range(count)]
        self_check(templates[0])
    else:
        raise ValueError(f"unknown workload {workload!r} (known: {', '.join(WORKLOADS)})")
    for tpl in templates:
        tpl.counts = role_counts(ExportTraceServiceRequest.FromString(tpl.body))
    return templates
