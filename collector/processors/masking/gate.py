"""The compiled gate (``_gate.c``, see there), or None in a source tree nobody built.

Without it the processors walk every span: the same output, more slowly.
"""

from __future__ import annotations

try:
    from ._scan import Gate
except ImportError:
    Gate = None  # type: ignore[assignment,misc]

__all__ = ["Gate"]
