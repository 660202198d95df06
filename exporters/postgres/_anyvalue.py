"""OTLP attribute values ⇄ JSON, the form the ``spans`` table stores in ``jsonb``.

Attributes become one JSON object, key → value, so SQL reads them plainly
(``attributes->>'http.request.method'``). A value keeps its OTLP type:

============== ============================================ ==========================
OTLP           JSON                                         example
============== ============================================ ==========================
string         string                                       ``"GET"``
bool           true / false                                 ``true``
int            integer number                               ``200``
double         number with a fraction part                  ``0.5``, ``2.0``
double, other  ``{"@double": "<repr>"}``: NaN, ±Infinity,   ``{"@double": "1e+300"}``
               -0.0, and values Python writes with an
               exponent
bytes          ``{"@bytes": "<base64>"}``                   ``{"@bytes": "AAE="}``
array          array of values                              ``[1, "a"]``
kvlist         object of values                             ``{"k": "v"}``
kvlist whose   ``{"@kvlist": {…}}`` (so it cannot be taken
only key       for one of the wrappers above)
starts with @
empty value    null                                         ``null``
============== ============================================ ==========================

Keys are unique within a list, as the OTLP spec requires; should a sender repeat one,
the last value is kept. Doubles are written by ``repr``, so they read back bit-exact.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

JsonValue = Any


def attributes_to_json(attributes: Iterable[KeyValue]) -> dict[str, JsonValue]:
    """KeyValue list → JSON object (see the module table)."""
    out: dict[str, JsonValue] = {}
    for kv in attributes:
        value = kv.value
        kind = value.WhichOneof("value")
        # The common scalar cases inline: this runs for every attribute of every span.
        if kind == "string_value":
            out[kv.key] = value.string_value
        elif kind == "int_value":
            out[kv.key] = value.int_value
        elif kind == "bool_value":
            out[kv.key] = value.bool_value
        else:
            out[kv.key] = _value_to_json(value, kind)
    return out


def _value_to_json(value: AnyValue, kind: str | None) -> JsonValue:
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "double_value":
        return _double_to_json(value.double_value)
    if kind == "bytes_value":
        return {"@bytes": base64.b64encode(value.bytes_value).decode("ascii")}
    if kind == "array_value":
        return [_value_to_json(v, v.WhichOneof("value")) for v in value.array_value.values]
    if kind == "kvlist_value":
        obj = attributes_to_json(value.kvlist_value.values)
        if len(obj) == 1 and next(iter(obj)).startswith("@"):
            return {"@kvlist": obj}
        return obj
    return None


def _double_to_json(number: float) -> JsonValue:
    text = repr(number)
    if "e" in text or not math.isfinite(number) or (number == 0.0 and text.startswith("-")):
        return {"@double": text}
    return number


def json_to_attributes(obj: dict[str, JsonValue]) -> list[KeyValue]:
    """JSON object → KeyValue list: the inverse of :func:`attributes_to_json`."""
    return [KeyValue(key=key, value=json_to_value(value)) for key, value in obj.items()]


def json_to_value(value: JsonValue) -> AnyValue:
    """JSON → one AnyValue: the inverse of :func:`value_to_json`."""
    if value is None:
        return AnyValue()
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, list):
        out = AnyValue()
        out.array_value.SetInParent()
        out.array_value.values.extend(json_to_value(v) for v in value)
        return out
    if isinstance(value, dict):
        if len(value) == 1:
            ((key, inner),) = value.items()
            if key == "@double":
                return AnyValue(double_value=float(inner))
            if key == "@bytes":
                return AnyValue(bytes_value=base64.b64decode(inner))
            if key == "@kvlist":
                value = inner
        out = AnyValue()
        out.kvlist_value.SetInParent()
        out.kvlist_value.values.extend(json_to_attributes(value))
        return out
    raise ValueError(f"not a stored attribute value: {type(value).__name__}")
