"""The masker on its own: every kind of secret caught, clean text left alone, and the
properties that make it safe to run on anything (never raises, idempotent, valid output)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans

from tracetables.collector.batch import SpanBatch
from tracetables.collector.processors.masking.keys import DEFAULT_KEYS, KeyMatcher
from tracetables.collector.processors.masking.otlp import SUMMARY_KEY, OtlpMasker
from tracetables.collector.processors.masking.text import Masker
from tracetables.collector.processors.pii_masking import PiiMaskingConfig, PiiMaskingProcessor

DATA = Path(__file__).parent.parent / "testdata" / "pii"
SECRETS: list[dict[str, str]] = json.loads((DATA / "secrets.json").read_text())
CLEAN: list[str] = json.loads((DATA / "clean.json").read_text())
MASKER = Masker(KeyMatcher(DEFAULT_KEYS))
HASHER = Masker(KeyMatcher(DEFAULT_KEYS), hash_secret=b"a-test-secret-of-some-length")


def mask(text: str, masker: Masker = MASKER) -> str:
    return masker.text(text, Counter())


def test_corpus_is_big_enough() -> None:
    assert len(SECRETS) >= 40 and len(CLEAN) >= 80
    assert len({s["kind"] for s in SECRETS}) >= 12


@pytest.mark.parametrize("secret", SECRETS, ids=[f"{s['kind']}-{i}" for i, s in enumerate(SECRETS)])
def test_each_secret_alone_and_in_prose(secret: dict[str, str]) -> None:
    counts: Counter[str] = Counter()
    assert MASKER.text(secret["value"], counts) == secret["placeholder"]
    assert counts[secret["kind"]] == 1
    sentence = f"Customer wrote: {secret['value']} — please check."
    masked = mask(sentence)
    assert secret["needle"] not in masked
    assert masked.startswith("Customer wrote: ") and masked.endswith(" — please check.")


# Known false positives, kept on purpose (privacy first): the tail of an IBAN whose
# checksum is wrong reads as a national phone number.
KNOWN_FALSE_POSITIVES = {"FR55 1425 1084 2935 0874 9116 101": "FR55 1425 1084 2935 [PHONE]"}


@pytest.mark.parametrize("text", CLEAN)
def test_clean_text_passes_unchanged(text: str) -> None:
    if text in KNOWN_FALSE_POSITIVES:
        assert mask(text) == KNOWN_FALSE_POSITIVES[text]
    else:
        assert mask(text) is text  # the same object: nothing was even rebuilt


@pytest.mark.parametrize("key, sensitive", [
    ("http.request.header.authorization", True), ("user.email", True), ("db.password", True),
    ("refresh_token", True), ("refreshToken", True), ("x-api-key", True), ("X-Api-Key", True), ("app.apiKey", True),
    ("payment.card_number", True), ("customer.iban", True), ("set-cookie", True), ("ssn", True),
    ("gen_ai.usage.input_tokens", False), ("flow.call.key", False), ("llm.token_count.prompt", False),
    ("author", False), ("oauth.provider", False), ("email.verified.count", False), ("session.id", False),
])  # fmt: skip
def test_sensitive_keys(key: str, sensitive: bool) -> None:
    assert KeyMatcher(DEFAULT_KEYS).sensitive(key) is sensitive


def test_json_is_masked_by_key_and_by_pattern_and_stays_json() -> None:
    state = {
        "user": {"name": "Ada", "Email": "ada@example.com", "password": "hunter2", "age": 36},
        "notes": ["call +44 20 7946 0958", {"apiKey": 12345}],
        "ok": True,
    }
    counts: Counter[str] = Counter()
    out = json.loads(MASKER.text(json.dumps(state), counts))
    assert out == {
        "user": {"name": "Ada", "Email": "[REDACTED]", "password": "[REDACTED]", "age": 36},
        "notes": ["call [PHONE]", {"apiKey": "[REDACTED]"}],
        "ok": True,
    }
    assert counts == Counter({"key": 3, "phone": 1})


def test_escaped_json_cannot_hide_an_email() -> None:
    sneaky = '{"note": "write to jane\\u0040example.com"}'
    assert "example.com" not in mask(sneaky)


def test_hash_mode_is_stable_distinct_and_keyless() -> None:
    a1, a2, b = mask("mail ada@example.com", HASHER), mask("ada@example.com", HASHER), mask("bo@example.com", HASHER)
    token = a2
    assert token.startswith("[EMAIL:") and token in a1 and token != b
    assert "ada" not in token and mask(token, HASHER) == token
    other = Masker(KeyMatcher(DEFAULT_KEYS), hash_secret=b"another-secret-entirely")
    assert mask("ada@example.com", other) != token  # keyed: the token depends on the secret


def _span_batch() -> tuple[SpanBatch, Any]:
    rs = ResourceSpans()
    rs.resource.attributes.append(
        KeyValue(key="deployment.owner_email", value=AnyValue(string_value="ops@example.com"))
    )
    ss = rs.scope_spans.add()
    ss.scope.attributes.append(KeyValue(key="note", value=AnyValue(string_value="ssn 123-45-6789")))
    span = ss.spans.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="GET /users/jane@example.com")
    span.status.message = "card 4111 1111 1111 1111 declined"
    span.attributes.append(
        KeyValue(
            key="tags",
            value=AnyValue(
                array_value={"values": [AnyValue(string_value="ok"), AnyValue(string_value="+1 415 555 0132")]}
            ),
        )
    )
    span.attributes.append(
        KeyValue(
            key="ctx",
            value=AnyValue(
                kvlist_value={
                    "values": [
                        KeyValue(key="password", value=AnyValue(int_value=1234)),
                        KeyValue(key="flag", value=AnyValue(bool_value=True)),
                    ]
                }
            ),
        )
    )
    event = span.events.add(name="mail to bo@example.com failed")
    event.attributes.append(KeyValue(key="token", value=AnyValue(string_value="abc")))
    link = span.links.add(trace_id=b"\x03" * 16, span_id=b"\x04" * 8)
    link.attributes.append(KeyValue(key="by", value=AnyValue(string_value="AKIAIOSFODNN7EXAMPLE")))
    return SpanBatch([rs], 1), span


def test_every_place_in_a_span_is_masked_with_a_summary() -> None:
    batch, span = _span_batch()
    processor = PiiMaskingProcessor(PiiMaskingConfig())
    processor(batch)
    text = str(batch.resource_spans[0])
    for secret in (
        "ops@example.com",
        "123-45-6789",
        "jane@",
        "4111",
        "555 0132",
        "1234",
        "bo@example",
        'abc"',
        "AKIAIOSFODNN7EXAMPLE",
    ):
        assert secret not in text, secret
    assert span.name == "GET /users/[EMAIL]"
    assert span.status.message == "card [CARD] declined"
    summary = {kv.key: kv.value.string_value for kv in span.attributes}[SUMMARY_KEY]
    # the resource's owner_email is caught by its key, so it counts as "key"
    assert json.loads(summary) == {"aws_access_key": 1, "card": 1, "email": 2, "key": 3, "phone": 1, "ssn": 1}
    assert processor.masked_values == 9
    assert span.attributes[1].value.kvlist_value.values[1].value.bool_value is True  # booleans carry nothing
    before = batch.resource_spans[0].SerializeToString()
    processor(batch)
    assert batch.resource_spans[0].SerializeToString() == before  # masking twice equals masking once


SECRET_VALUES = st.sampled_from([s["value"] for s in SECRETS])
TEXT = st.one_of(st.text(max_size=60), SECRET_VALUES, st.sampled_from(CLEAN))
MIXED = st.lists(TEXT, max_size=5).map(" ".join)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([4111111111111111, 5500000000000004])
    | st.floats(allow_nan=False, allow_infinity=False)
    | MIXED,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.one_of(st.sampled_from(["email", "password", "name", "x", "apiKey"]), st.text(max_size=8)),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(text=MIXED)
def test_text_masking_never_raises_and_is_idempotent(text: str) -> None:
    once = mask(text)
    assert mask(once) == once
    assert mask(once, HASHER) is not None


@settings(max_examples=300, deadline=None)
@given(value=JSON_VALUES)
@example(value={"n": 4111111111111111})  # was masked to {"n": [CARD]}: not JSON
@example(value=[1, 4111111111111111, {"x": [4111111111111111]}])
def test_json_stays_json_and_masking_is_idempotent(value: Any) -> None:
    text = json.dumps(value)
    once = mask(text)
    hashed = mask(text, HASHER)
    if isinstance(value, (dict, list)):  # JSON text; a bare scalar is free text ("4111…" -> [CARD])
        json.loads(once)  # still valid JSON
        json.loads(hashed)
    assert mask(once) == once
    assert mask(hashed, HASHER) == hashed


@pytest.mark.parametrize("text, masked", [
    ('{"n": 4111111111111111}', '{"n": "[CARD]"}'),
    ('[1,4111111111111111]', '[1, "[CARD]"]'),  # right after a comma
    ('[4111111111111111, 2]', '["[CARD]", 2]'),  # first in an array, a comma after it
    ('{"a": [4111111111111111], "b": 5500000000000004}', '{"a": ["[CARD]"], "b": "[CARD]"}'),
    ('{"note": "call 4111111111111111, ok"}', '{"note": "call 4111111111111111, ok"}'),  # in a string: free-text rules
    ('[4111111111111112]', '[4111111111111112]'),  # Luhn fails
    ('[-4111111111111111, 4111111111111111.5]', '[-4111111111111111, 4111111111111111.5]'),  # no card numbers
    ('[4111111111111111e5]', '[4111111111111111e5]'),  # a float: left as it was, never "[CARD]e5"
])  # fmt: skip
@pytest.mark.parametrize("masker", ["compiled", "reference"])
def test_a_bare_json_card_number_becomes_a_json_string(text: str, masked: str, masker: str) -> None:
    m = MASKER if masker == "compiled" else REFERENCE
    counts: Counter[str] = Counter()
    once = m.text(text, counts)
    assert once == masked
    assert counts["card"] == masked.count("[CARD]")
    json.loads(once)
    assert m.text(once, Counter()) == once


def test_a_bare_json_card_number_is_hashed_in_hash_mode() -> None:
    once = mask('{"n": [1,4111111111111111]}', HASHER)
    token = mask("4111111111111111", HASHER)
    assert token.startswith("[CARD:") and json.loads(once) == {"n": [1, token]}
    assert mask(once, HASHER) == once


def test_a_bare_json_card_number_is_left_when_the_card_detector_is_off() -> None:
    from tracetables.collector.processors.masking.detectors import DETECTORS

    no_cards = Masker(KeyMatcher(DEFAULT_KEYS), detectors=tuple(d for d in DETECTORS if d.kind != "card"))
    assert no_cards.text("[1,4111111111111111]", Counter()) == "[1,4111111111111111]"


ANY_VALUES = st.recursive(
    st.builds(lambda s: AnyValue(string_value=s), MIXED)
    | st.builds(lambda i: AnyValue(int_value=i), st.integers(-5, 5))
    | st.builds(lambda b: AnyValue(bytes_value=b), st.binary(max_size=8)),
    lambda children: (
        st.builds(lambda vs: AnyValue(array_value={"values": vs}), st.lists(children, max_size=3))
        | st.builds(
            lambda kvs: AnyValue(kvlist_value={"values": [KeyValue(key=k, value=v) for k, v in kvs]}),
            st.lists(st.tuples(st.sampled_from(["token", "name", "phone", "x"]), children), max_size=3),
        )
    ),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.tuples(st.sampled_from(["secret", "note", "user.email", "a.b"]), ANY_VALUES), max_size=4),
    name=MIXED,
)
def test_otlp_masking_never_raises_and_is_idempotent(values: list[tuple[str, AnyValue]], name: str) -> None:
    rs = ResourceSpans()
    span = rs.scope_spans.add().spans.add(name=name)
    for key, value in values:
        span.attributes.append(KeyValue(key=key, value=value))
    walker = OtlpMasker(MASKER)
    walker.resource_spans(rs)
    once = rs.SerializeToString()
    walker.resource_spans(rs)
    assert rs.SerializeToString() == once
    out = rs.SerializeToString()
    for secret in SECRETS:  # a whole secret, set off by spaces, never survives
        if f" {secret['value']} " in f" {name} " or any(f" {secret['value']} " in f" {v} " for _, v in values):
            assert secret["needle"].encode() not in out, secret["kind"]


# The compiled pre-scan (masking/_scan.c) must change nothing but the speed.
REFERENCE = Masker(KeyMatcher(DEFAULT_KEYS), compiled=False)
TRICKY = st.text(alphabet='0123456789 ()+-.,/:@_abcdeyJKAISZGB"{}[]\\u\u00e9\u0663\n', max_size=80)
# digit runs near the window rule's edges: 8-13 digits, separators, a leading 0 or '+', dates
DIGIT_RUNS = st.lists(
    st.one_of(
        st.text(alphabet="0123456789", min_size=1, max_size=5),
        st.sampled_from([" ", "-", ".", "(", ")", "+", "0", "T", ":", "/", "a", "_", '"', "+44 ", "(0", "2025-12-29"]),
    ),
    max_size=12,
).map("".join)


def test_the_compiled_scan_is_built_and_used() -> None:
    from tracetables.collector.processors.masking import text as text_module

    assert text_module._compiled is not None, "the install did not build masking/_scan.c"
    assert MASKER._compiled and not REFERENCE._compiled


@settings(max_examples=1000, deadline=None)
@given(
    text=st.one_of(
        MIXED, TRICKY, DIGIT_RUNS, JSON_VALUES.map(json.dumps), st.lists(st.one_of(TRICKY, SECRET_VALUES)).map("".join)
    )
)
def test_compiled_scan_gives_the_reference_output(text: str) -> None:
    fast, slow = Counter[str](), Counter[str]()
    assert MASKER.text(text, fast) == REFERENCE.text(text, slow)
    assert fast == slow


@pytest.mark.parametrize("text, gone", [
    ("+100000000 020 7946 0018", "7946 0018"),  # a phone pattern running on into the next phone
    ("4111111111111111 000 000 00", "4111111111111111"),  # a card followed by more digits
    ("+14155550123 00000", "4155550123"),
])  # fmt: skip
def test_greedy_matches_leave_no_part_of_a_secret(text: str, gone: str) -> None:
    assert gone not in mask(text)
    assert gone not in REFERENCE.text(text, Counter())


# A number before a phone, set off by one space: a pattern's match that starts in it can
# end inside the phone (its repeat count runs out, or a fit cuts it), and no later match
# can start inside a phone already partly taken. The rest of the phone must go with it.
RUN_ON_PREFIXES = [
    "+1 0 00000 0 ",
    "+1 0 0 0 0 ",
    "+1 00 0000 ",
    "+44 0 00 ",
    "+1 0 00000 0 (0) ",
    "+1-0-00000-0 ",
    "+1.0.0000.0 ",
    "2236068796 6 ",
    "525820170866462 ",
]
PHONES = [s for s in SECRETS if s["kind"] == "phone"]


def test_a_phone_after_a_number_is_masked_whole() -> None:
    text = "+1 0 00000 0 (415) 555-0132"  # found by hypothesis: '555-0132' survived
    assert mask(text) == REFERENCE.text(text, Counter()) == "[PHONE]"


@pytest.mark.parametrize("prefix", RUN_ON_PREFIXES)
@pytest.mark.parametrize("phone", PHONES, ids=[s["value"] for s in PHONES])
def test_no_part_of_a_phone_survives_a_match_running_into_it(prefix: str, phone: dict[str, str]) -> None:
    for text in (prefix + phone["value"], f"call {prefix}{phone['value']} today"):
        fast, slow = Counter[str](), Counter[str]()
        once = MASKER.text(text, fast)
        assert once == REFERENCE.text(text, slow) and fast == slow
        assert phone["needle"] not in once, once
        assert mask(once) == once
        if text.startswith("call "):  # the words around the number are kept
            assert once.startswith("call ") and once.endswith("] today"), once
