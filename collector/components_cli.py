"""``tracetables components``: the component types this build has, as a table or JSON."""

from __future__ import annotations

import json

from .component import Registry


def describe(registry: Registry, as_json: bool) -> str:
    """The registry as aligned text (kind, type, stability, description) or a JSON list."""
    rows = [
        {"kind": str(f.kind), "type": f.type, "stability": str(f.stability), "description": f.description}
        for f in registry
    ]
    if as_json:
        return json.dumps(rows, indent=2)
    headers = ["kind", "type", "stability", "description"]
    widths = [max(len(h), *(len(r[h]) for r in rows)) for h in headers]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(r[h].ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)
