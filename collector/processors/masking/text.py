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

try:
    from . import _scan as _compiled
except ImportError:  # a source tree nobody built: the reference path takes over
    _compiled = None  # type: ignore[assignment]

# (literal bits, digit windows, IBAN windows, email windows, JSON key spans): see _scan.c
Scan = tuple[int, list[tuple[int, int]], list[tuple[int, int]], list[tuple[int, int]], list[tuple[int, int]]]
_WINDOW_INDEX = {"digits": 1, "iban": 2, "email": 3}
_EMPTY_SCAN: Scan = (0, [], [], [], [])

REDACTED = "[REDACTED]"
_NIBBLE = "abcdefghijklmnop"
_PLACEHOLDER = re.compile(r"\[[A-Z_]+(?::[a-p]{16})?\]")
_CLEAN_MAX_LEN = 256  # values up to this long are remembered once found clean
_CLEAN_CACHE = 50_000  # at most this many (about 5 MB)
_MAX_DEPTH = 64  # deeper JSON is masked as text only (no key-based pass below it)
# A bare JSON integer (outside strings) that could be a card: it becomes the string "[CARD]".
_BARE_CARD = re.compile(r"(?<![\w.+-])[2-6]\d{12,18}(?![\d.])", re.ASCII)
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


class Masker:
    """Masks strings and JSON values.

    Args:
        keys: attribute and JSON keys whose values are replaced whatever they hold.
        hash_secret: if set, values become stable keyed-hash tokens (``[EMAIL:3f2a…]``)
            instead of bare placeholders, so rows can still be grouped by person.
        detectors: the pattern detectors (default: all of ``DETECTORS``).
        compiled: use the compiled pre-scan when it is built (False: the reference).
    """

    def __init__(
        self,
        keys: KeyMatcher,
        hash_secret: bytes | None = None,
        detectors: tuple[Detector, ...] = DETECTORS,
        compiled: bool = True,
    ) -> None:
        self.keys = keys
        self._secret = hash_secret
        self._detectors = detectors
        self._any_trigger = any_trigger(detectors)
        self._compiled = compiled and _compiled is not None
        self._clean: set[str] = set()  # short values already found clean
        literals = sorted({t for d in detectors if not d.window for t in d.triggers})
        self._literals = tuple(literals)
        self._card = next((d for d in detectors if d.kind == "card"), None)
        self._bits = [sum(1 << literals.index(t) for t in d.triggers) if not d.window else 0 for d in detectors]

    @property
    def compiled(self) -> bool:
        """Whether the compiled pre-scan (``_scan.c``) is in use."""
        return self._compiled

    @property
    def literals(self) -> tuple[str, ...]:
        """The trigger literals of the detectors that have no window (for the pre-scan)."""
        return self._literals

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
        short = len(value) <= _CLEAN_MAX_LEN
        if short and value in self._clean:
            return value  # seen before, and clean: names, methods, ids repeat on every span
        scan = None
        if self._compiled:
            scan = self._scan(value)
            if scan is None:
                if short:
                    self._remember_clean(value)
                return value  # the compiled scan found nothing any detector could match
        if value[:1] in ("{", "[") or value.lstrip()[:1] in ("{", "["):
            keys = [value[a:b] for a, b in scan[4]] if scan is not None else json_keys(value)
            if "\\u" in value or self._has_sensitive_key(keys) or self._bare_card(value, scan):
                masked = self._json_text(value, counts)
                if masked is not None:
                    return masked
        masked = self.patterns(value, counts, scan)
        if short and masked is value:
            self._remember_clean(value)
        return masked

    def _remember_clean(self, value: str) -> None:
        if len(self._clean) >= _CLEAN_CACHE:  # bounded: forget all and start again
            self._clean.clear()
        self._clean.add(value)

    def _has_sensitive_key(self, keys: list[str]) -> bool:
        sensitive = self.keys.sensitive
        return any("\\" in key or sensitive(key) for key in keys)

    def _bare_card(self, value: str, scan: Scan | None) -> bool:
        """Whether JSON text holds a card number as a bare integer (masked structurally:
        patterns on the text would leave an unquoted placeholder, or miss it after a comma)."""
        if self._card is None:
            return False
        ranges = [(0, len(value))] if scan is None else [(a, min(b + 1, len(value))) for a, b in scan[1]]
        for pos, endpos in ranges:
            for m in _BARE_CARD.finditer(value, pos, endpos):
                if self._card_int(m.group()) and not _inside_string(value, m.start()):
                    return True
        return False

    def _card_int(self, digits: str) -> bool:
        fit = self._card.fit if self._card is not None else None
        return fit is not None and fit(digits) == len(digits)

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

    def _scan(self, value: str) -> Scan | None:
        return _compiled.scan(value, self._literals)

    def patterns(self, value: str, counts: Counter[str], scan: Scan | None = None) -> str:
        """Replace every detector's matches in free text, detector by detector.

        With the compiled pre-scan, a detector runs only where the scan found room for
        a match (its windows, or its literal triggers); after a replacement the text is
        scanned again. Without it (``compiled=False``, the reference), each detector runs
        on the whole text once its triggers occur. The two give the same output.
        """
        if not self._compiled:
            if self._any_trigger.search(value) is None:
                return value
            out = value
            for det in self._detectors:
                if det.triggered(out):
                    out = self._apply(det, out, counts)
            return value if out == value else out
        if scan is None:
            scan = self._scan(value)
            if scan is None:
                return value
        out = value
        for det, bits in zip(self._detectors, self._bits, strict=True):
            if det.window:
                windows: list[tuple[int, int]] = scan[_WINDOW_INDEX[det.window]]  # type: ignore[assignment]
                if not windows:
                    continue
                new = self._apply(det, out, counts, windows)
            elif scan[0] & bits:
                new = self._apply(det, out, counts)
            else:
                continue
            if new is not out:
                out = new
                scan = self._scan(out) or _EMPTY_SCAN
        return value if out == value else out

    def _apply(
        self, det: Detector, text: str, counts: Counter[str], windows: list[tuple[int, int]] | None = None
    ) -> str:
        """Replace ``det``'s matches: in the whole text, or only inside ``windows``."""
        pieces: list[str] = []
        done = 0  # text[:done] is in pieces
        for pos, endpos in [(0, len(text))] if windows is None else [(a, min(b + 1, len(text))) for a, b in windows]:
            # endpos: one character past the window, for the patterns' look-ahead
            done = self._apply_range(det, text, counts, pieces, done, pos, endpos)
        if not pieces:
            return text
        pieces.append(text[done:])
        return "".join(pieces)

    def _apply_range(
        self, det: Detector, text: str, counts: Counter[str], pieces: list[str], done: int, pos: int, endpos: int
    ) -> int:
        search = det.pattern.search
        has_keep = "keep" in det.pattern.groupindex
        pos = max(pos, done)
        while (m := search(text, pos, endpos)) is not None:
            start = m.start("keep") + len(m.group("keep")) if has_keep else m.start()
            candidate = text[start : m.end()]
            length = len(candidate) if det.fit is None else det.fit(candidate)
            if length == 0:
                pos = m.start() + 1  # not here: the next match may start inside this one
                continue
            end = start + length
            if det.run_on is not None and (more := det.run_on.match(text, end, endpos)) is not None:
                end = more.end()
            pieces.append(text[done:start])
            pieces.append(self.token(det.placeholder, text[start:end]))
            counts[det.kind] += 1
            done = pos = end
        return done

    # --- JSON values -------------------------------------------------------------------
    def json_value(self, value: Any, counts: Counter[str], depth: int) -> Any:
        """Mask a parsed JSON value: keys by name, strings by pattern, recursively."""
        if isinstance(value, str):
            return self.patterns(value, counts)
        if type(value) is int and value > 0 and self._card is not None:
            digits = str(value)
            if _BARE_CARD.fullmatch(digits) and self._card_int(digits):
                counts[self._card.kind] += 1
                return self.token(self._card.placeholder, digits)  # a JSON string now
            return value
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
                    out[new_key] = self.redact(
                        json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v, counts
                    )
                else:
                    out[new_key] = self.json_value(v, counts, depth + 1)
            return out
        if isinstance(value, list):
            return [self.json_value(v, counts, depth + 1) for v in value]
        return value


def json_keys(value: str) -> list[str]:
    """The object keys of JSON text, as written (the reference of the compiled scan's)."""
    stripped = value.lstrip(" \t\n\r")
    if stripped[:1] not in ("{", "["):
        return []
    keys: list[str] = []
    start = -1
    escaped = False
    n = len(value)
    for i, c in enumerate(value):
        if escaped:
            escaped = False
        elif start < 0:
            if c == '"':
                start = i + 1
        elif c == "\\":
            escaped = True
        elif c == '"':
            k = i + 1
            while k < n and value[k] in " \t\n\r":
                k += 1
            if k < n and value[k] == ":":
                keys.append(value[start:i])
            start = -1
    return keys


def _inside_string(text: str, pos: int) -> bool:
    """Whether ``pos`` of JSON text lies inside a string literal."""
    for m in _JSON_STRING.finditer(text):
        if m.start() >= pos:
            return False
        if pos < m.end():
            return True
    return False


def _reparse(text: str, fallback: Any) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return REDACTED if fallback is not None else None
