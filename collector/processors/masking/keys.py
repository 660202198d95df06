"""Which attribute keys name a sensitive value, whatever the value looks like.

A key matches when its last segment (after the last ``.``), split into words at ``_``,
``-``, spaces and camelCase humps, contains a configured name as a run of whole words:
``http.request.header.authorization``, ``user.email``, ``db.password``,
``refresh_token`` and ``x-api-key`` match; ``gen_ai.usage.input_tokens`` and
``flow.call.key`` do not. Case never matters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

DEFAULT_KEYS: tuple[str, ...] = (
    "email", "e_mail", "phone", "mobile", "password", "passwd", "pwd", "secret", "token", "api_key", "apikey",
    "access_key", "private_key", "authorization", "auth", "cookie", "ssn", "credit_card", "card_number", "cvv",
    "cvc", "iban",
)  # fmt: skip

_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SPLIT = re.compile(r"[_\-\s]+")
_CACHE_LIMIT = 100_000


def words(name: str) -> tuple[str, ...]:
    """``"refreshToken"`` → ``("refresh", "token")``; ``"X-Api-Key"`` → ``("x", "api", "key")``."""
    return tuple(w for w in _SPLIT.split(_HUMP.sub("_", name).lower()) if w)


class KeyMatcher:
    """Decides, with a bounded cache, whether an attribute or JSON key is sensitive."""

    def __init__(self, names: Iterable[str]) -> None:
        self._phrases = [p for p in (words(n) for n in names) if p]
        self._cache: dict[str, bool] = {}

    def sensitive(self, key: str) -> bool:
        """True when ``key``'s last segment contains a configured name as whole words."""
        hit = self._cache.get(key)
        if hit is None:
            hit = self._match(key)
            if len(self._cache) >= _CACHE_LIMIT:  # keys are few in practice; never grow unbounded
                self._cache.clear()
            self._cache[key] = hit
        return hit

    def _match(self, key: str) -> bool:
        segment = words(key.rsplit(".", 1)[-1])
        for phrase in self._phrases:
            n = len(phrase)
            for i in range(len(segment) - n + 1):
                if segment[i : i + n] == phrase:
                    return True
        return False
