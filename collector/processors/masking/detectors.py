"""What personal data and secrets look like in free text: one detector per kind.

Each detector is a compiled pattern, an optional validator (a checksum, a digit count)
that turns a look-alike away, and the typed placeholder that replaces a match. A
detector also names cheap *triggers* — substrings, or one small pattern — that any
match must contain: text holding none of them is skipped without running the pattern,
which is what keeps masking cheap on the common, clean value.

The patterns are written for few false positives on what traces are full of: UUIDs,
hex ids, timestamps, versions, IP addresses, prices and order numbers
(``tests/testdata/pii/clean.json`` holds them to it).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum of a digit string (payment card numbers)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


# Lengths of IBANs by country (ISO 13616); an unknown country is not an IBAN.
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24,
    "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21,
    "HU": 28, "IE": 22, "IL": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LI": 21,
    "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30,
    "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TN": 24, "TR": 26, "UA": 29, "VG": 24, "XK": 20,
}  # fmt: skip


def iban_ok(text: str) -> bool:
    """Country length and the mod-97 check of an IBAN (spaces allowed)."""
    iban = text.replace(" ", "").upper()
    if IBAN_LENGTHS.get(iban[:2]) != len(iban):
        return False
    rearranged = iban[4:] + iban[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


def _digits(text: str) -> str:
    return "".join(ch for ch in text if "0" <= ch <= "9")


def _card_ok(text: str) -> bool:
    digits = _digits(text)
    return 13 <= len(digits) <= 19 and len(set(digits)) > 1 and luhn_ok(digits)


def _phone_ok(text: str) -> bool:
    return 8 <= len(_digits(text)) <= 15


def _longest(ok: Callable[[str], bool]) -> Callable[[str], int]:
    """A fit function: the longest prefix, ending where a group ends, that ``ok`` accepts.

    Patterns are greedy; a match one group too long (a card number followed by another
    group of digits) must still mask the part that is a card number. Prefixes end only
    before a separator, never inside a group of digits.
    """

    def fit(text: str) -> int:
        for end in range(len(text), 0, -1):
            if (end == len(text) or text[end] in " -.()") and text[end - 1].isalnum() and ok(text[:end]):
                return end
        return 0

    return fit


def _whole_if(fit: Callable[[str], int]) -> Callable[[str], int]:
    """All of a candidate once a prefix of it is a real match.

    A phone pattern can run on into the next number (``+1 000 000 020 7946 0018``): cut
    at the longest valid prefix, the rest would be left showing part of a second phone.
    Masking a few digits too many is the safe side.
    """

    def whole(text: str) -> int:
        return len(text) if fit(text) else 0

    return whole


@dataclass(frozen=True, slots=True)
class Detector:
    """One kind of sensitive value.

    Attributes:
        kind: the name counted in the masking summary (``email``, ``card``, …).
        placeholder: what replaces a match, e.g. ``[EMAIL]``.
        pattern: finds candidates; group ``keep`` (if any) is kept before the placeholder.
        fit: the length of the longest prefix of a candidate that is a real match (0: none);
            default: the whole candidate.
        triggers: substrings of which any match contains at least one.
        trigger_pattern: or, a small pattern any match contains.
        window: for the compiled pre-scan (``_scan.c``), the kind of window every match
            lies in: ``digits``, ``iban`` or ``email``; empty: found by its literal triggers.
        run_on: what is masked along with a real match when the text goes straight on
            after it (matched at the end of the fitted match; it may match empty). It must
            consume only characters of its window, so a window search ends it where a
            search of the whole text does.
    """

    kind: str
    placeholder: str
    pattern: re.Pattern[str]
    fit: Callable[[str], int] | None = None
    triggers: tuple[str, ...] = ()
    trigger_pattern: re.Pattern[str] | None = None
    window: str = ""
    run_on: re.Pattern[str] | None = None

    def triggered(self, text: str) -> bool:
        for t in self.triggers:
            if t in text:
                return True
        return self.trigger_pattern is not None and self.trigger_pattern.search(text) is not None


def _ascii(pattern: str) -> re.Pattern[str]:
    """Patterns read ASCII classes (``\\d`` is 0–9), as the compiled pre-scan does."""
    return re.compile(pattern, re.ASCII)


_B = r"(?<![A-Za-z0-9_])"  # a word start that also treats _ as a word character
_E = r"(?![A-Za-z0-9_])"
_DIGIT_RUN = _ascii(r"\d[\d ().-]{5,}\d")
_UPPER_PAIR = _ascii(r"[A-Z]{2}\d\d")
# More groups of a number straight after a match. A pattern's match stops where its
# shape or its repeat count ends (``+1 0 00000 0 (415)`` in ``+1 0 00000 0 (415) 555-0132``),
# or a fit cuts it; the groups after it may be the rest of a phone whose start it took,
# and no later match can start inside that phone any more. So they are masked with it.
# Only [0-9 ().-]: the characters of a digit window, and never a '+', which starts a phone.
_NUMBER_GROUPS = _ascii(r"(?:[ .-]?\(?\d{1,4}\)?)*")

DETECTORS: tuple[Detector, ...] = (
    # Multi-line secrets first: their bodies must not be re-read as other kinds.
    Detector("private_key", "[REDACTED]",
             # The body never holds a quote: stopping at one keeps JSON text valid when a
             # key was cut before its END line.
             _ascii(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
                        r"(?:[^\"]*?-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|[^\"]*)"),
             triggers=("PRIVATE KEY",)),
    Detector("jwt", "[JWT]",
             _ascii(_B + r"eyJ[A-Za-z0-9_-]{6,}\.eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*" + _E),
             triggers=("eyJ",)),
    Detector("bearer", "[REDACTED]",
             _ascii(r"(?P<keep>\b[Bb]earer[ \t]+)[A-Za-z0-9\-._~+/]{8,}=*"),
             triggers=("earer",)),
    Detector("aws_access_key", "[REDACTED]", _ascii(_B + r"(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}" + _E),
             triggers=("AKIA", "ASIA", "ABIA", "ACCA")),
    Detector("aws_secret_key", "[REDACTED]",
             _ascii(r"(?P<keep>(?i:aws_?secret_?(?:access_?)?key)[\"']?\s*[=:]\s*[\"']?)[A-Za-z0-9/+]{40}" + _E),
             triggers=("ecret", "ECRET")),
    Detector("github_token", "[REDACTED]",
             _ascii(_B + r"(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})" + _E),
             triggers=("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_")),
    Detector("stripe_key", "[REDACTED]", _ascii(_B + r"(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}" + _E),
             triggers=("k_live_", "k_test_")),
    Detector("slack_token", "[REDACTED]", _ascii(_B + r"xox[abposre]-[A-Za-z0-9-]{10,}" + _E),
             triggers=("xox",)),
    Detector("google_api_key", "[REDACTED]", _ascii(_B + r"AIza[0-9A-Za-z_-]{35}" + _E), triggers=("AIza",)),
    Detector("openai_key", "[REDACTED]", _ascii(_B + r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}" + _E),
             triggers=("sk-",)),
    Detector("email", "[EMAIL]",
             _ascii(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}"),
             triggers=("@",), window="email"),
    Detector("iban", "[IBAN]",
             _ascii(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b"),
             fit=_longest(iban_ok), trigger_pattern=_UPPER_PAIR, window="iban"),
    Detector("ssn", "[SSN]",
             _ascii(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])"),
             trigger_pattern=_DIGIT_RUN, window="digits"),
    Detector("card", "[CARD]",
             _ascii(r"(?<![\d.,-])[2-6]\d{3}(?:[ -]?\d){9,15}(?![\d.,-])"),
             fit=_longest(_card_ok), trigger_pattern=_DIGIT_RUN, window="digits", run_on=_NUMBER_GROUPS),
    Detector("phone", "[PHONE]",
             _ascii(
                 r"(?<![\w.+/:-])(?:"
                 r"\+[1-9]\d{0,3}(?:[ .-]?\(?\d{1,4}\)?){2,6}"           # international: +44 20 7946 0958
                 r"|\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}"                     # (415) 555-0132
                 r"|[2-9]\d{2}[ .-]\d{3}[ .-]\d{4}"                     # 415-555-0199
                 r"|0\d{1,4}(?:[ .-]\d{2,4}){2,4}"                      # national: 020 7946 0018, 06 12 34 56 78
                 r")(?![\w.:/-])"),
             fit=_whole_if(_longest(_phone_ok)), trigger_pattern=_DIGIT_RUN, window="digits",
             run_on=_NUMBER_GROUPS),
)  # fmt: skip

KINDS: tuple[str, ...] = tuple(d.kind for d in DETECTORS)


def any_trigger(detectors: tuple[Detector, ...]) -> re.Pattern[str]:
    """One pattern that finds any detector's trigger: text it misses needs no masking."""
    parts = sorted({re.escape(t) for d in detectors for t in d.triggers}, key=len, reverse=True)
    parts += sorted({d.trigger_pattern.pattern for d in detectors if d.trigger_pattern is not None})
    return re.compile("|".join(parts) or r"(?!)")
