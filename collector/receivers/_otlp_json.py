"""OTLP/HTTP JSON encoding of ``ExportTraceServiceRequest``.

OTLP's "JSON Protobuf Encoding" is the proto3 JSON mapping, except that ids are
hex (not base64), enums are integers, and receivers must ignore unknown fields.
The decoder walks the parsed JSON itself, guided by the message descriptors, not
with ``json_format.ParseDict``, which turns a string given for a message into an
empty message, skips invalid base64 characters, and echoes bad values in errors.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from decimal import Decimal
from typing import Any, NoReturn, cast

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

__all__ = ["OtlpJsonError", "decode_trace_request_json", "encode_trace_request_json"]

# The protobuf binary decoder's limit (nesting below the root message), so JSON
# accepts exactly the nesting that OTLP/protobuf can carry.
_MAX_DEPTH = 100
# Bytes fields that OTLP/JSON encodes as hex instead of base64.
_HEX_FIELDS = frozenset(
    "opentelemetry.proto.trace.v1.Span." + name
    for name in ("trace_id", "span_id", "parent_span_id", "Link.trace_id", "Link.span_id")
)
_HEX_JSON_KEYS = ("traceId", "spanId", "parentSpanId")
_CPP = FieldDescriptor
_INT_TYPES = frozenset([_CPP.CPPTYPE_INT32, _CPP.CPPTYPE_INT64, _CPP.CPPTYPE_UINT32, _CPP.CPPTYPE_UINT64])
_FLOAT_TYPES = frozenset({_CPP.CPPTYPE_DOUBLE, _CPP.CPPTYPE_FLOAT})
_EXPECTED = {_CPP.CPPTYPE_BOOL: "true or false", _CPP.CPPTYPE_ENUM: "an enum number or name"}
_EXPECTED.update({**dict.fromkeys(_INT_TYPES, "an integer"), **dict.fromkeys(_FLOAT_TYPES, "a number")})
_NUMBER_RE = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_FLOAT_WORDS = frozenset({"NaN", "Infinity", "-Infinity"})
_SKIP = object()  # an unknown enum name: ignored, like an unknown field

# A field path, rendered only on error: (parent, JSON field name, array index).
_Where = tuple["_Where", str, int | None] | None
_FieldTable = dict[str, tuple[FieldDescriptor, bool]]
_FIELD_TABLES: dict[Descriptor, _FieldTable] = {}


class OtlpJsonError(ValueError):
    """The body is not a valid OTLP/JSON ``ExportTraceServiceRequest``.

    ``str()`` is a short reason that is safe to send back to the client: it
    names the field path (e.g. ``resourceSpans[0].scopeSpans[1].spans[3].traceId:
    not hex``) and never includes attribute values or other body content.
    """


class _Invalid(Exception):
    """Internal: a field value is invalid; the walker prefixes the field path."""


def decode_trace_request_json(body: bytes) -> ExportTraceServiceRequest:
    """Decodes an OTLP/HTTP JSON body into an ``ExportTraceServiceRequest``.

    Accepts lowerCamelCase and snake_case field names, hex ids in either case,
    enums as integers or names, and 64-bit integers as strings or numbers; ignores
    unknown fields and enum names. Id lengths are not checked; "" is an absent id.

    Args:
        body: The request body: UTF-8 JSON (a leading byte order mark is allowed).

    Returns:
        The decoded request; ``{}`` gives an empty request.

    Raises:
        OtlpJsonError: The body is not UTF-8 JSON, is nested too deeply, or does
            not have the shape of an ``ExportTraceServiceRequest``.
    """
    try:
        obj = json.loads(body.decode("utf-8-sig"), parse_constant=_reject_constant)
    except OtlpJsonError:
        raise
    except UnicodeDecodeError as exc:
        raise OtlpJsonError("body is not valid UTF-8") from exc
    except json.JSONDecodeError as exc:  # exc.msg is a fixed phrase, never content
        where = f"line {exc.lineno} column {exc.colno}"
        raise OtlpJsonError(f"body is not valid JSON: {exc.msg} ({where})") from exc
    except RecursionError as exc:
        raise OtlpJsonError("body is nested too deeply") from exc
    except ValueError as exc:  # e.g. an integer literal with too many digits
        raise OtlpJsonError("body is not valid JSON") from exc
    if not isinstance(obj, dict):
        raise OtlpJsonError("body must be a JSON object")
    request = ExportTraceServiceRequest()
    _fill(obj, request)
    return request


def encode_trace_request_json(request: ExportTraceServiceRequest) -> bytes:
    """Encodes a request in the OTLP JSON encoding; the inverse of decoding.

    Uses lowerCamelCase names, lowercase hex ids, integer enums, 64-bit integers
    as strings and base64 for other bytes; omits fields with default values.

    Args:
        request: The request to encode.

    Returns:
        The UTF-8 JSON body.
    """
    obj = json_format.MessageToDict(request, use_integers_for_enums=True)
    for resource_spans in obj.get("resourceSpans", ()):
        for scope_spans in resource_spans.get("scopeSpans", ()):
            for span in scope_spans.get("spans", ()):
                for item in (span, *span.get("links", ())):
                    for key in _HEX_JSON_KEYS:
                        if key in item:
                            item[key] = base64.b64decode(item[key]).hex()
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def _reject_constant(name: str) -> NoReturn:
    raise OtlpJsonError(f'body is not valid JSON: bare {name} is not allowed, use "{name}"')


def _fields(descriptor: Descriptor) -> _FieldTable:
    """Maps JSON and proto field names of a message to (field, is hex id)."""
    table = _FIELD_TABLES.get(descriptor)
    if table is None:
        table = {}
        for field in descriptor.fields:
            entry = (field, field.full_name in _HEX_FIELDS)
            table[field.name] = table[field.json_name] = entry
        _FIELD_TABLES[descriptor] = table
    return table


def _fill(root: dict[str, Any], request: Message) -> None:
    """Copies a parsed JSON object into ``request``, without recursion."""
    stack: list[tuple[dict[str, Any], Message, _Where, int]] = [(root, request, None, 0)]
    while stack:
        obj, message, where, depth = stack.pop()
        table = _fields(cast(Descriptor, message.DESCRIPTOR))
        for key, value in obj.items():
            entry = table.get(key)
            if entry is None or value is None:  # unknown field, or null: the default
                continue
            field, is_hex = entry
            index: int | None = None
            try:
                if key != field.json_name and field.json_name in obj:
                    raise _Invalid(f"given twice, as {field.json_name} and {key}")
                oneof = field.containing_oneof
                if oneof is not None and message.WhichOneof(oneof.name) is not None:
                    raise _Invalid(f"more than one member of oneof {oneof.name} is set")
                is_message = field.cpp_type == _CPP.CPPTYPE_MESSAGE
                if field.is_repeated:
                    if not isinstance(value, list):
                        raise _Invalid("expected a JSON array")
                    target = getattr(message, field.name)
                    items: Any = enumerate(value)
                else:
                    target = getattr(message, field.name) if is_message else None
                    items = ((None, value),)
                for index, item in items:
                    if item is None:
                        raise _Invalid("null is not allowed in an array")
                    if is_message:
                        if not isinstance(item, dict):
                            raise _Invalid("expected a JSON object")
                        if depth >= _MAX_DEPTH:
                            raise _Invalid(f"nested more than {_MAX_DEPTH} messages deep")
                        child = target if index is None else target.add()
                        if index is None:
                            child.SetInParent()  # even an empty object sets the field
                        stack.append((item, child, (where, field.json_name, index), depth + 1))
                        continue
                    converted = _scalar(field, item, is_hex)
                    if converted is _SKIP:
                        continue
                    try:
                        if index is None:
                            setattr(message, field.name, converted)
                        else:
                            target.append(converted)
                    except UnicodeError as exc:
                        raise _Invalid("not valid Unicode (lone surrogate)") from exc
                    except (ValueError, TypeError) as exc:
                        raise _Invalid("value out of range") from exc
            except _Invalid as exc:
                path = _render((where, field.json_name, index))
                raise OtlpJsonError(f"{path}: {exc}") from exc


def _render(node: _Where) -> str:
    """Renders a field path, eliding the middle of very deep ones."""
    parts: list[str] = []
    while node is not None:
        node, name, index = node
        parts.append(name if index is None else f"{name}[{index}]")
    parts.reverse()
    if len(parts) > 16:
        return ".".join(parts[:8]) + " ... " + ".".join(parts[-4:])
    return ".".join(parts)


def _scalar(field: FieldDescriptor, value: Any, is_hex: bool) -> Any:
    """Converts a JSON scalar to the Python value protobuf stores in ``field``."""
    cpp_type = field.cpp_type
    if cpp_type == _CPP.CPPTYPE_BOOL or isinstance(value, bool):  # bool is an int
        if cpp_type == _CPP.CPPTYPE_BOOL and isinstance(value, bool):
            return value
    elif cpp_type in _INT_TYPES:
        number = _integer(value)
        if number is not None:
            return number
    elif cpp_type in _FLOAT_TYPES:
        if isinstance(value, (int, float)) or (
            isinstance(value, str) and (value in _FLOAT_WORDS or _NUMBER_RE.fullmatch(value))
        ):
            try:
                return float(value)
            except OverflowError as exc:
                raise _Invalid("value out of range") from exc
    elif cpp_type == _CPP.CPPTYPE_ENUM:
        names = field.enum_type.values_by_name if field.enum_type else {}
        named = names.get(value) if isinstance(value, str) else None
        number = named.number if named is not None else _integer(value)
        if number is not None or isinstance(value, str):
            return _SKIP if number is None else number
    elif not isinstance(value, str):
        pass
    elif field.type == _CPP.TYPE_STRING:
        return value
    elif is_hex:
        if len(value) % 2:
            raise _Invalid("odd-length hex")
        try:
            return binascii.unhexlify(value)
        except ValueError as exc:
            raise _Invalid("not hex") from exc
    else:  # proto3 JSON bytes: standard or URL-safe base64, padding optional
        padded = value.replace("-", "+").replace("_", "/") + "=" * (-len(value) % 4)
        try:
            return base64.b64decode(padded, validate=True)
        except ValueError as exc:
            raise _Invalid("not base64") from exc
    raise _Invalid(f"expected {_EXPECTED.get(cpp_type, 'a string')}")


def _integer(value: Any) -> int | None:
    """Reads a proto3 JSON integer: a number or a string, exponent allowed."""
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str) and len(value) <= 40 and _NUMBER_RE.fullmatch(value):
        exact = Decimal(value)  # exact, unlike float, for all 64-bit integers
        if exact.adjusted() <= 40 and exact == exact.to_integral_value():
            return int(exact)
    return None
