"""Masking one value: free text by pattern, JSON text by key and pattern, recursively.

``Masker.text`` returns the very same string object when nothing was found, so callers
can tell "unchanged" with ``is`` and skip writing it back. JSON text (an object or
array — state snapshots and payloads travel so) is parsed only when something in it
could need masking; it is then masked value by value, keys included, and written back
as JSON, so it stays valid. Masking is idempotent: placeholders match no detector.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections import Counter
from typing import Any

from .detectors import DETECTORS, Detector, any_trigger
from .keys import KeyMatcher

REDACTED = "[REDACTED]"
_NIBBLE = "abcdefghijklmnop"
_PLACEHOLDER = re.compile(r"\[[A-Z_]+(?::[a-p]{16})?\]")
_MAX_DEPTH = 64  # deeper JSON is masked as text only (no key-based pass below it)


class Masker:
    """Masks strings and JSON values.

    Args:
        keys: attribute and JSON keys whose values are replaced whatever they hold.
        hash_secret: if set, values become stable keyed-hash tokens (``[EMAIL:3f2a…]``)
            instead of bare placeholders, so rows can still be grouped by person.
        detectors: the pattern detectors (default: all of ``DETECTORS``).
    """

    def __init__(self, keys: KeyMatcher, hash_secret: bytes | None = None,
                 detectors: tuple[Detector, ...] = DETECTORS) -> None:
        self.keys = keys
        self._secret = hash_secret
        self._detectors = detectors
        self._any_trigger = any_trigger(detectors)

    # --- replacements ------------------------------------------------------------------
    def token(self, placeholder: str, value: str) -> str:
        """The replacement for ``value``: its placeholder, keyed-hashed in hash mode.

        The hash is written in the letters a–p (one per 4 bits), so a token holds no
        digits for a detector to find again: masking twice equals masking once.
        """
        if self._secret is None:
            return placeholder
        digest = hmac.new(self._secret, value.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()[:8]
        letters = "".join(_NIBBLE[b >> 4] + _NIBBLE[b & 15] for b in digest)
        return f"{placeholder[:-1]}:{letters}]"

    def redact(self, value: str, counts: Counter[str]) -> str:
        """A value under a sensitive key (an existing placeholder stays as it is)."""
        if _PLACEHOLDER.fullmatch(value):
            return value
        counts["key"] += 1
        return self.token(REDACTED, value)

    # --- free text ---------------------------------------------------------------------
    def text(self, value: str, counts: Counter[str]) -> str:
        """Mask a string: JSON structurally when it holds a sensitive key, else by pattern.

        Patterns alone are safe on JSON text: no pattern matches a quote or a backslash
        (so a replacement never breaks the JSON), and text with ``\\u`` escapes, which
        could hide an ``@`` from them, is always parsed.
        """
        if value[:1] in ("{", "[") or value.lstrip()[:1] in ("{", "["):
            if "\\u" in value or self._has_sensitive_key(value):
                masked = self._json_text(value, counts)
                if masked is not None:
                    return masked
        return self.patterns(value, counts)

    def _has_sensitive_key(self, value: str) -> bool:
        sensitive = self.keys.sensitive
        for key in _JSON_KEY.findall(value):
            if "\\" in key or sensitive(key):
                return True
        return False

    def _json_text(self, value: str, counts: Counter[str]) -> str | None:
        """Parse, mask, re-serialize; None when ``value`` is not a JSON object or array."""
        try:
            parsed = json.loads(value)
        except (ValueError, RecursionError):
            return None
        if not isinstance(parsed, (dict, list)):
            return None
        local: Counter[str] = Counter()
        masked = self.json_value(parsed, local, 0)
        if not local:
            return value
        counts.update(local)
        return json.dumps(masked, ensure_ascii=False)

    def patterns(self, value: str, counts: Counter[str]) -> str:
        """Replace every detector's matches in free text, detector by detector."""
        if self._any_trigger.search(value) is None:
            return value
        out = value
        for det in self._detectors:
            if det.triggered(out):
                out = self._apply(det, out, counts)
        return value if out == value else out

    def _apply(self, det: Detector, text: str, counts: Counter[str]) -> str:
        pieces: list[str] = []
        done = 0  # text[:done] is in pieces
        pos = 0
        search = det.pattern.search
        has_keep = "keep" in det.pattern.groupindex
        while (m := search(text, pos)) is not None:
            start = m.start("keep") + len(m.group("keep")) if has_keep else m.start()
            candidate = text[start:m.end()]
            length = len(candidate) if det.fit is None else det.fit(candidate)
            if length == 0:
                pos = m.start() + 1  # not here: the next match may start inside this one
                continue
            pieces.append(text[done:start])
            pieces.append(self.token(det.placeholder, candidate[:length]))
            counts[det.kind] += 1
            done = pos = start + length
        if not pieces:
            return text
        pieces.append(text[done:])
        return "".join(pieces)

    # --- JSON values -------------------------------------------------------------------
    def json_value(self, value: Any, counts: Counter[str], depth: int) -> Any:
        """Mask a parsed JSON value: keys by name, strings by pattern, recursively."""
        if isinstance(value, str):
            return self.patterns(value, counts)
        if depth >= _MAX_DEPTH:
            if isinstance(value, (dict, list)):
                text = json.dumps(value, ensure_ascii=False)
                masked = self.patterns(text, counts)
                return value if masked is text else _reparse(masked, value)
            return value
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for k, v in value.items():
                new_key = self.patterns(k, counts) if isinstance(k, str) else k
                if self.keys.sensitive(k) and v is not None and not isinstance(v, bool):
                    out[new_key] = self.redact(json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v, counts)
                else:
                    out[new_key] = self.json_value(v, counts, depth + 1)
            return out
        if isinstance(value, list):
            return [self.json_value(v, counts, depth + 1) for v in value]
        return value


_JSON_KEY = re.compile(r'"((?:[^"\\]|\\.){1,256})"\s*:')


def _reparse(text: str, fallback: Any) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return REDACTED if fallback is not None else None
