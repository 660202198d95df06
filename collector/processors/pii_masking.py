"""The ``pii_masking`` processor: personal data and secrets never get past the collector.

Runs on every request before the batch processor, so nothing downstream — the
PostgreSQL exporter, a spool, a debug log — ever sees what it masks. See
``masking/`` for the rules: keys (``masking/keys.py``), patterns
(``masking/detectors.py``), and the places values hide (``masking/otlp.py``).
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass

from prometheus_client import Counter

from ..batch import SpanBatch
from ..component import Host, StatelessLifecycle
from ..errors import ConfigError
from .masking.detectors import DETECTORS, KINDS
from .masking.keys import DEFAULT_KEYS, KeyMatcher
from .masking.otlp import OtlpMasker
from .masking.text import Masker

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PiiMaskingConfig:
    """``processors.pii_masking``."""

    keys: tuple[str, ...] = DEFAULT_KEYS
    """Key names whose values are replaced whatever they hold (matched on the key's last
    segment, as whole words, case-insensitive). Setting it replaces the defaults."""
    extra_keys: tuple[str, ...] = ()
    """Key names added to ``keys``."""
    patterns: tuple[str, ...] = KINDS
    """The pattern detectors to run: email, phone, card, iban, ssn, jwt, bearer,
    private_key and the API key formats (see ``masking/detectors.py``)."""
    mode: str = "placeholder"
    """``placeholder`` (``[EMAIL]``) or ``hash``: a keyed hash (``[EMAIL:fkbn…]``),
    stable per value, so rows can be grouped by person without showing the value."""
    hash_secret: str = ""
    """The HMAC key for ``hash`` mode (at least 16 characters; use ``${env:…}``)."""
    summary: bool = True
    """Add ``tracetables.masked`` (counts by kind) to each span where something was masked."""

    def validate(self, path: str) -> None:
        unknown = sorted(set(self.patterns) - set(KINDS))
        if unknown:
            raise ConfigError(f"{path}.patterns: unknown detector {unknown[0]!r}; known: {', '.join(KINDS)}")
        if self.mode not in ("placeholder", "hash"):
            raise ConfigError(f"{path}.mode: must be 'placeholder' or 'hash', got {self.mode!r}")
        if self.mode == "hash" and len(self.hash_secret) < 16:
            raise ConfigError(f"{path}.hash_secret: hash mode needs a secret of at least 16 characters")
        if self.mode != "hash" and self.hash_secret:
            raise ConfigError(f"{path}.hash_secret: only used with mode: hash")
        for i, key in enumerate(self.keys + self.extra_keys):
            if not key.strip():
                raise ConfigError(f"{path}.keys[{i}]: must not be empty")


class PiiMaskingProcessor(StatelessLifecycle):
    """Masks every batch in place.

    Attributes:
        masked_values: values replaced since start (for operators and tests).
    """

    def __init__(self, config: PiiMaskingConfig, component_id: str = "pii_masking") -> None:
        detectors = tuple(d for d in DETECTORS if d.kind in set(config.patterns))
        secret = config.hash_secret.encode() if config.mode == "hash" else None
        masker = Masker(KeyMatcher(config.keys + config.extra_keys), secret, detectors)
        self._walker = OtlpMasker(masker, config.summary)
        self.masked_values = 0
        self._id = component_id
        self._counter: Counter | None = None

    async def start(self, host: Host) -> None:
        """Find the counter of masked values (labelled by kind)."""
        self._counter = host.telemetry.masked_values

    def __call__(self, batch: SpanBatch) -> SpanBatch:
        walk = self._walker.mask
        gated = self._walker.gated
        masked = 0
        kinds: collections.Counter[str] = collections.Counter()
        for i, rs in enumerate(batch.resource_spans):
            n = walk(rs, batch.serialized(i) if gated else None, kinds)
            if n:
                batch.changed(i)
                masked += n
        self.masked_values += masked
        if self._counter is not None:
            for kind, count in kinds.items():
                self._counter.labels(self._id, kind).inc(count)
        return batch
