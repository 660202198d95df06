"""Numbers 1, 2, 3 … per key (step numbers per session, attempts per call key), bounded.

A long-running service sees an unbounded number of sessions and call keys; only the
``limit`` most recently used keys are remembered, so a key idle past that starts at 1
again. Thread-safe; the numbers follow the order of the calls.
"""

from __future__ import annotations

import threading
from collections import OrderedDict


class Numbering:
    """Per-key counters for at most ``limit`` keys (the least recently used is forgotten)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._last: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._last)

    def next(self, key: str) -> int:
        """The key's next number: 1 the first time."""
        with self._lock:
            number = self._last.get(key, 0) + 1
            self._set(key, number)
            return number

    def last(self, key: str) -> int:
        """The key's latest number (0: none yet)."""
        with self._lock:
            return self._last.get(key, 0)

    def continue_after(self, key: str, last: int) -> None:
        """Number the key's next calls after ``last``, unless it is past that already."""
        with self._lock:
            if self._last.get(key, 0) < last:
                self._set(key, last)

    def _set(self, key: str, number: int) -> None:
        self._last[key] = number
        self._last.move_to_end(key)
        while len(self._last) > self.limit:
            self._last.popitem(last=False)
