"""Storing strings that hold U+0000, which PostgreSQL ``text`` and ``jsonb`` refuse.

OTLP strings may hold any Unicode character, NUL included; PostgreSQL text cannot
hold the byte 0 and jsonb refuses ``\\u0000``. So every string the exporter stores, in
a text column or as a jsonb key or value, is escaped with one escape character,
U+001A (SUB, ASCII's "substitute"):

============== ============================
in the span    stored
============== ============================
U+0000         U+001A ``0``
U+001A         U+001A U+001A
anything else  unchanged
============== ============================

Every U+001A stored starts a two-character pair, so decoding is unambiguous, and a
string holding neither character — nearly every string — is stored byte for byte as
sent. In jsonb the escape character reads ``\\u001a`` (JSON writes control
characters so), e.g. ``"a\\u001a0b"`` for ``a<NUL>b``. SQL decodes with
``tt_unescape`` (migration 0007).

Both encoders write this: ``_fastrows.c`` inline, ``rows.py`` with the functions here.
"""

from __future__ import annotations

import re
from typing import Any

ESCAPE = "\x1a"
NUL = "\x00"

_ENCODED = re.compile("\x1a[\x1a0]")
_DECODED = {ESCAPE + "0": NUL, ESCAPE + ESCAPE: ESCAPE}
# In JSON text from json.dumps, a NUL or escape character is the six characters \u0000
# or \u001a, unless that backslash is itself the second of an escaped backslash: an
# odd-length run of backslashes before the "u" is an escape.
_JSON_TARGETS = re.compile(r"(?<!\\)((?:\\\\)*)\\u00(00|1a)")
_JSON_REPLACEMENT = {"00": r"\u001a0", "1a": r"\u001a\u001a"}


def escape(text: str) -> str:
    """A string as stored in a text column (see the module table)."""
    if NUL not in text and ESCAPE not in text:
        return text
    return text.replace(ESCAPE, ESCAPE + ESCAPE).replace(NUL, ESCAPE + "0")


def unescape(text: str) -> str:
    """The inverse of :func:`escape`; a lone escape character (never written) is kept."""
    if ESCAPE not in text:
        return text
    return _ENCODED.sub(lambda m: _DECODED[m.group()], text)


def escape_json(text: str) -> str:
    """JSON text (as ``json.dumps`` writes it) with every string, keys too, escaped."""
    if "\\u0000" not in text and "\\u001a" not in text:
        return text
    return _JSON_TARGETS.sub(lambda m: m.group(1) + _JSON_REPLACEMENT[m.group(2)], text)


def unescape_value(value: Any) -> Any:
    """A parsed JSON value with every string in it, keys too, unescaped."""
    if isinstance(value, str):
        return unescape(value)
    if isinstance(value, list):
        return [unescape_value(item) for item in value]
    if isinstance(value, dict):
        return {unescape(key): unescape_value(item) for key, item in value.items()}
    return value
