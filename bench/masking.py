"""Masking cost per span, no collector: ``pii_masking`` and ``webhook_redaction`` on their own.

Builds ``--batches`` batches of ``--spans`` spans (seeded, so every run times the same
bytes). Each span has 10 attributes, one of them a ~1 KB JSON conversation state
(messages, variables, ISO and epoch timestamps, order numbers, prices): mostly clean,
as real traffic is. ``--secret-share`` of the spans (default 5 %) carry one secret: an
email, a phone number or a card number in a state message, or a bearer token in an
``http.request.header.authorization`` attribute.

Masking works in place, so every timed pass gets fresh copies of the batches, decoded
from their bytes before the clock starts. Timed, per pass over all batches, each in
turn (so drift on a shared machine hits all alike), best of ``--reps``:

- ``walk only``: reading every attribute's key and value through protobuf, nothing else
  (the floor any processor written in Python pays);
- ``pii_masking``: ``PiiMaskingProcessor(PiiMaskingConfig())``, the shipped defaults;
- ``pii_masking, reference``: the same walk with ``Masker(compiled=False)``, the
  pure-Python reference of the compiled pre-scan (``masking/_scan.c``);
- ``webhook_redaction``: ``WebhookRedactionProcessor(WebhookRedactionConfig())``;
- ``both``: ``pii_masking`` then ``webhook_redaction``, as the shipped pipeline runs them.

Then ``Masker.text`` on the clean JSON states alone, compiled and reference, per call,
and where the compiled path spends that time.

``--payload mixed`` or ``raw`` times the same processors on the ingest bench's own
requests instead (``mixed_payload.py`` / ``otlp_payload.py``, no secrets planted): the
in-process counterpart of ``ingest.py --compare-masking``.

    .venv/bin/python bench/masking.py [--spans 512] [--batches 8] [--reps 7] [--secret-share 0.05]
                                      [--state-bytes 1024] [--seed 7] [--payload state|mixed|raw]
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import platform
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from mixed_payload import workload_templates
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span

from tracetables.collector.batch import SpanBatch
from tracetables.collector.processors.masking.detectors import DETECTORS
from tracetables.collector.processors.masking.keys import DEFAULT_KEYS, KeyMatcher
from tracetables.collector.processors.masking.otlp import SUMMARY_KEY, OtlpMasker
from tracetables.collector.processors.masking.text import Masker
from tracetables.collector.processors.pii_masking import PiiMaskingConfig, PiiMaskingProcessor
from tracetables.collector.processors.webhook_redaction import WebhookRedactionConfig, WebhookRedactionProcessor

Process = Callable[[SpanBatch], SpanBatch]
BASE_S = 1_767_000_000  # a fixed "now" (2025-12-29): the same bytes on every run
SECRET_KINDS = ("email", "phone", "card", "bearer")
NODES = ("classify_intent", "retrieve_context", "lookup_order", "check_policy", "draft_reply", "respond")
HOSTS = ("orders.internal", "crm.internal", "refunds.internal", "n8n.internal")
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
    "thanks",
    "hello",
    "my",
    "hi",
    "can",
    "you",
)
FIRST = ("jane", "omar", "li", "maria", "tom", "aisha", "pierre", "ken")
LAST = ("doe", "haddad", "wei", "garcia", "berg", "khan", "martin", "sato")
CARDS = ("4111 1111 1111 1111", "5500-0000-0000-0004", "4012888888881881", "3782 822463 10005")
PHONES = ("+44 20 7946 0958", "(415) 555-0132", "+49 30 901820", "06 12 34 56 78", "415-555-0199")


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _words(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def secret_text(rng: random.Random, kind: str) -> str:
    """A customer message holding one secret of ``kind`` (email, phone or card)."""
    if kind == "email":
        return f"you can reach me at {rng.choice(FIRST)}.{rng.choice(LAST)}{rng.randrange(100)}@example.com thanks"
    if kind == "phone":
        return f"please call me back on {rng.choice(PHONES)} after five"
    return f"charge the card {rng.choice(CARDS)} for the replacement"


def state(rng: random.Random, session: str, turn: int, now: float, size: int, secret: str = "") -> str:
    """A conversation state as ~``size`` bytes of JSON, a secret (if any) in a user message."""
    started = now - rng.randrange(60, 3600)
    order_total = round(rng.uniform(5, 900), 2)
    st: dict[str, object] = {
        "conversation": {
            "session": session,
            "turn": turn,
            "channel": rng.choice(("web", "whatsapp", "email")),
            "locale": rng.choice(("en-GB", "de-DE", "fr-FR")),
            "started_at": _iso(started),
            "updated_at": _iso(now),
        },
        "variables": {
            "order_id": f"ORD-{rng.randrange(10**7):07d}",
            "order_total": order_total,
            "currency": rng.choice(("EUR", "USD", "GBP")),
            "items": rng.randint(1, 6),
            "unit_price": round(order_total / rng.randint(1, 4), 2),
            "discount_pct": rng.choice((0, 5, 10)),
            "eta": _iso(now + rng.randrange(1, 9) * 86400)[:10],
            "intent": "order_status",
            "confidence": round(rng.random(), 3),
            "tier": rng.choice(("free", "plus", "gold")),
        },
        "messages": [],
    }
    messages: list[dict[str, object]] = st["messages"]  # type: ignore[assignment]
    ts = int(started)
    while len(_json(st)) < size - 90:
        ts += rng.randrange(5, 120)
        messages.append({"role": rng.choice(("user", "assistant")), "content": _words(rng, 6, 14), "ts": ts})
    if secret:
        messages.insert(rng.randrange(len(messages) + 1), {"role": "user", "content": secret, "ts": ts + 3})
        while len(messages) > 1 and len(_json(st)) > size + 40:  # keep the size, secret included
            messages.remove(next(m for m in messages if m["content"] != secret))
    return _json(st)


def _kv(key: str, value: object) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    if isinstance(value, list):
        return KeyValue(
            key=key, value=AnyValue(array_value=ArrayValue(values=[AnyValue(string_value=v) for v in value]))
        )
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def span(
    rng: random.Random, trace_id: bytes, step: int, session: str, user: str, now: float, size: int, secret: str
) -> Span:
    """A flow step that called a backend: 10 attributes, the 6th its JSON state."""
    node, host = rng.choice(NODES), rng.choice(HOSTS)
    start = int((now - rng.uniform(1, 5)) * 1e9)
    s = Span(
        trace_id=trace_id,
        span_id=rng.randbytes(8),
        name=f"step {node}",
        kind=Span.SPAN_KIND_INTERNAL,
        start_time_unix_nano=start,
        end_time_unix_nano=start + rng.randrange(10**6, 10**9),
    )
    last: tuple[str, object] = ("flow.duration_ms", round(rng.uniform(0.5, 900.0), 3))
    if secret == "bearer":
        token = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") for _ in range(40))
        last = ("http.request.header.authorization", [f"Bearer {token}"])
    attrs: list[tuple[str, object]] = [
        ("flow.role", "step"),
        ("session.id", session),
        ("user.id", user),
        ("flow.node.id", node),
        ("flow.step.number", step),
        (
            "flow.state.after",
            state(rng, session, step, now, size, secret_text(rng, secret) if secret and secret != "bearer" else ""),
        ),
        (
            "flow.node.details",
            _json(
                {
                    "type": "tool",
                    "model": "gpt-4o-mini",
                    "temperature": 0.2,
                    "prompt_tokens": rng.randrange(200, 3000),
                    "retrieved": [f"doc-{rng.randrange(10**5)}" for _ in range(2)],
                }
            ),
        ),
        ("url.full", f"https://{host}/v1/orders/ORD-{rng.randrange(10**7):07d}?include=items&lang=en"),
        ("http.response.status_code", rng.choice((200, 200, 200, 201, 404, 503))),
        last,
    ]
    s.attributes.extend(_kv(k, v) for k, v in attrs)
    return s


@dataclass
class Batch:
    """One batch's bytes (a ResourceSpans each), span count and planted secrets by kind."""

    encoded: list[bytes]
    spans: int
    planted: Counter[str]

    def fresh(self) -> SpanBatch:
        return SpanBatch([ResourceSpans.FromString(b) for b in self.encoded], self.spans)


def build_batch(rng: random.Random, spans: int, share: float, size: int) -> Batch:
    """``spans`` spans in traces of 6, one service, one scope; ``share`` of them with a secret."""
    rs = ResourceSpans(schema_url="https://opentelemetry.io/schemas/1.26.0")
    service = rng.choice(("support-bot", "order-assistant", "returns-flow"))
    rs.resource.attributes.extend(
        [
            _kv("service.name", service),
            _kv("service.version", "3.1.4"),
            _kv("deployment.environment.name", "production"),
            _kv("host.name", f"{service}-{rng.randrange(10**5):05d}"),
        ]
    )
    ss = rs.scope_spans.add()
    ss.scope.name, ss.scope.version = "tracetables.instrumentation", "0.1.0"
    planted: Counter[str] = Counter()
    now = BASE_S + rng.random() * 3600
    while len(ss.spans) < spans:
        trace_id, session = rng.randbytes(16), f"sess-{rng.getrandbits(48):012x}"
        user, first = f"user-{rng.randrange(10**6)}", rng.randrange(1, 40)
        for i in range(min(6, spans - len(ss.spans))):
            secret = rng.choice(SECRET_KINDS) if rng.random() < share else ""
            if secret:
                planted[secret] += 1
            ss.spans.append(span(rng, trace_id, first + i, session, user, now, size, secret))
    return Batch([rs.SerializeToString()], spans, planted)


def workload_batches(workload: str, seed: int, count: int, spans: int) -> list[Batch]:
    """The ingest bench's requests (``--workload mixed|raw``, 10 attributes for raw) as batches."""
    out = []
    for tpl in workload_templates(workload, seed, count, spans, 10):
        request = ExportTraceServiceRequest.FromString(tpl.body)
        out.append(Batch([rs.SerializeToString() for rs in request.resource_spans], tpl.span_count, Counter()))
    return out


def walk_only(batch: SpanBatch) -> SpanBatch:
    """Touch every attribute's key and string value, as any Python processor must."""
    for rs in batch.resource_spans:
        for ss in rs.scope_spans:
            for s in ss.spans:
                for kv in s.attributes:
                    _ = kv.key
                    v = kv.value
                    if v.WhichOneof("value") == "string_value":
                        _ = v.string_value
    return batch


class ReferenceMasking:
    """``pii_masking`` with the pure-Python reference masker (no compiled pre-scan)."""

    def __init__(self) -> None:
        self._walker = OtlpMasker(Masker(KeyMatcher(DEFAULT_KEYS), None, DETECTORS, compiled=False), True)
        self.masked_values = 0

    def __call__(self, batch: SpanBatch) -> SpanBatch:
        for rs in batch.resource_spans:
            self.masked_values += self._walker.resource_spans(rs)
        return batch


def chain(*steps: Process) -> Process:
    def run(batch: SpanBatch) -> SpanBatch:
        for step in steps:
            batch = step(batch)
        return batch

    return run


def time_passes(variants: dict[str, Process], batches: list[Batch], reps: int) -> dict[str, list[float]]:
    """Seconds per pass over all batches, per variant; variants take turns within each rep."""
    out: dict[str, list[float]] = {name: [] for name in variants}
    for rep in range(reps + 1):  # rep 0 warms caches (key matcher, regexes) and is not kept
        for name, process in variants.items():
            copies = [b.fresh() for b in batches]
            gc.collect()
            gc.disable()
            try:
                t0 = time.perf_counter()
                for copy in copies:
                    process(copy)
                elapsed = time.perf_counter() - t0
            finally:
                gc.enable()
            if rep:
                out[name].append(elapsed)
    return out


def time_texts(masker: Masker, texts: list[str], reps: int) -> float:
    """Best seconds per ``Masker.text`` call over ``texts``."""
    best = float("inf")
    for _ in range(reps + 1):
        gc.disable()
        try:
            t0 = time.perf_counter()
            for t in texts:
                masker.text(t, Counter())
            best = min(best, (time.perf_counter() - t0) / len(texts))
        finally:
            gc.enable()
    return best


def state_breakdown(masker: Masker, states: list[str], reps: int) -> str:
    """Where ``Masker.text`` spends its time on clean JSON states: the compiled pre-scan, the
    check of the JSON keys found against the sensitive names, the detectors run in the
    scan's windows (``digits``: runs of 8+ digits, such as timestamps)."""
    scans = [masker._scan(t) for t in states]  # a bench may look inside
    windows = sum(len(sc[1]) + len(sc[2]) + len(sc[3]) for sc in scans if sc) / len(states)
    keys = sum(len(sc[4]) for sc in scans if sc) / len(states)

    def best(run: Callable[[], object]) -> float:
        out = float("inf")
        for _ in range(reps + 1):
            t0 = time.perf_counter()
            run()
            out = min(out, (time.perf_counter() - t0) / len(states))
        return out * 1e6

    scan_us = best(lambda: [masker._scan(t) for t in states])
    key_us = best(
        lambda: [
            masker._has_sensitive_key([t[a:b] for a, b in sc[4]]) for t, sc in zip(states, scans, strict=True) if sc
        ]
    )
    pattern_us = best(lambda: [masker.patterns(t, Counter(), sc) for t, sc in zip(states, scans, strict=True)])
    return (
        f"pre-scan {scan_us:.1f} us, {keys:.0f} JSON keys checked {key_us:.1f} us, "
        f"detectors in {windows:.1f} windows {pattern_us:.1f} us"
    )


def masked_spans(batch: SpanBatch) -> int:
    return sum(
        1
        for rs in batch.resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
        if any(kv.key == SUMMARY_KEY for kv in s.attributes)
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--spans", type=int, default=512, help="spans per batch (default 512)")
    p.add_argument("--batches", type=int, default=8, help="distinct batches per pass (default 8)")
    p.add_argument("--reps", type=int, default=7, help="timed passes per variant; the best is reported (default 7)")
    p.add_argument("--secret-share", type=float, default=0.05, help="share of spans carrying one secret (default 0.05)")
    p.add_argument("--state-bytes", type=int, default=1024, help="size of each span's JSON state (default 1024)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--payload",
        choices=("state", "mixed", "raw"),
        default="state",
        help="state: the spans above (default); mixed, raw: the ingest bench's workloads, no secrets",
    )
    args = p.parse_args(argv)
    if min(args.spans, args.batches, args.reps, args.state_bytes) <= 0 or not 0 <= args.secret_share <= 1:
        p.error("--spans, --batches, --reps, --state-bytes must be > 0; --secret-share in [0, 1]")

    if args.payload == "state":
        rng = random.Random(args.seed)
        batches = [build_batch(rng, args.spans, args.secret_share, args.state_bytes) for _ in range(args.batches)]
    else:
        batches = workload_batches(args.payload, args.seed, args.batches, args.spans)
    n = sum(b.spans for b in batches)
    planted = sum((b.planted for b in batches), Counter[str]())
    compiled_masker = Masker(KeyMatcher(DEFAULT_KEYS))
    reference_masker = Masker(KeyMatcher(DEFAULT_KEYS), compiled=False)
    sample = [s for rs in batches[0].fresh().resource_spans for ss in rs.scope_spans for s in ss.spans]
    states = [kv.value.string_value for s in sample for kv in s.attributes if kv.key.startswith("flow.state.")]
    clean_states = [t for t in states if compiled_masker.text(t, Counter()) is t]

    pii, ref = PiiMaskingProcessor(PiiMaskingConfig()), ReferenceMasking()
    hook = WebhookRedactionProcessor(WebhookRedactionConfig())
    variants: dict[str, Process] = {
        "walk only": walk_only,
        "pii_masking": pii,
        "pii_masking, reference": ref,
        "webhook_redaction": hook,
        "both": chain(PiiMaskingProcessor(PiiMaskingConfig()), WebhookRedactionProcessor(WebhookRedactionConfig())),
    }
    print(f"timing {len(variants)} variants x {args.reps} passes over {n:,} spans...", file=sys.stderr)
    seconds = time_passes(variants, batches, args.reps)

    # What one pass does: compiled and reference give the same bytes; what was masked.
    a, b = [x.fresh() for x in batches], [x.fresh() for x in batches]
    before = (pii.masked_values, ref.masked_values, hook.redacted_values)
    for x, y in zip(a, b, strict=True):
        pii(x)
        ref(y)
    same = all(
        rx.SerializeToString() == ry.SerializeToString()
        for x, y in zip(a, b, strict=True)
        for rx, ry in zip(x.resource_spans, y.resource_spans, strict=True)
    )
    masked, touched = pii.masked_values - before[0], sum(masked_spans(x) for x in a)
    for one in batches:
        hook(one.fresh())
    redacted = hook.redacted_values - before[2]

    built = importlib.util.find_spec("tracetables.collector.processors.masking._scan") is not None
    scan = "compiled (_scan.c)" if built else "NOT BUILT: compiled == reference"
    per_span = {name: min(v) / n * 1e6 for name, v in seconds.items()}
    walk = per_span["walk only"]
    attrs = sum(len(s.attributes) for s in sample) / len(sample)
    lines = [
        f"parameters   payload {args.payload}: {args.batches} batches x {args.spans} spans, {attrs:.1f} attributes/span"
        + (
            f", JSON state {sum(map(len, states)) / len(states):,.0f} bytes (mean) in {len(states) / len(sample):.0%}"
            " of spans"
            if states
            else ", no JSON state"
        )
        + f"; best of {args.reps} passes, fresh copies each",
        f"secrets      {args.secret_share if args.payload == 'state' else 0:.0%} of spans: "
        f"{sum(planted.values())} planted ("
        + ", ".join(f"{k} {planted[k]}" for k in SECRET_KINDS)
        + f"); seed {args.seed}",
        f"machine      Python {platform.python_version()}, {platform.machine()}; pre-scan {scan}",
    ]
    for name in variants:
        runs = sorted(seconds[name])
        extra = "" if name == "walk only" else f"  ({per_span[name] - walk:+.1f} over the walk)"
        lines.append(f"{name:<24} {per_span[name]:7.2f} us/span  median {runs[len(runs) // 2] / n * 1e6:6.2f}" + extra)
    if per_span["pii_masking"]:
        lines.append(f"reference / compiled     {per_span['pii_masking, reference'] / per_span['pii_masking']:.1f}x")
    if clean_states:
        c, r = (
            time_texts(compiled_masker, clean_states, args.reps),
            time_texts(reference_masker, clean_states, args.reps),
        )
        lines.append(
            f"1 KB state alone         Masker.text on a clean state: compiled {c * 1e6:.2f} us, "
            f"reference {r * 1e6:.2f} us"
        )
        if built:
            lines.append(f"  of which (compiled)    {state_breakdown(compiled_masker, clean_states, args.reps)}")
    lines += [
        f"one pass                 pii_masking masked {masked} values in {touched} of {n:,} spans "
        f"({sum(planted.values())} spans with a planted secret); webhook_redaction redacted {redacted}",
        f"same output              compiled and reference masking: {'yes' if same else 'NO'}",
    ]
    print("\n" + " tracetables masking bench ".center(78, "="))
    print("\n".join(lines))
    print("=" * 78)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
