"""``tracetables sql -c`` output: statement results as an aligned table, JSON or CSV.

Values are shown the same way in every format: SQL NULL as nothing (``null`` in JSON),
booleans as ``true``/``false``, json/jsonb as compact JSON, timestamps in ISO 8601,
intervals as PostgreSQL writes them, bytea as hex, arrays as JSON arrays.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from .sql_results import JsonValue, StatementResult

FORMATS = ("table", "json", "csv")


def render(results: Sequence[StatementResult], fmt: str, statements: int) -> str:
    """The text to print for ``results``, ending in a line end (empty for nothing).

    Args:
        fmt: ``table``, ``json`` or ``csv``.
        statements: how many statements the command held that answered; JSON nests one
            array per statement when it is more than one.
    """
    if fmt == "json":
        return render_json(results, nested=statements > 1) + "\n"
    # several result sets: an empty line between them
    if fmt == "csv":
        return "\r\n".join(
            r.copied if r.copied is not None else render_csv(r) for r in results if r.has_rows or r.copied is not None
        )
    return "\n".join(render_table(r) + "\n" for r in results)


def to_json(value: Any) -> Any:
    """A cell as a JSON-serialisable value (JSON cells nested, not as strings)."""
    if isinstance(value, JsonValue):
        return value.value
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            return str(value)
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    return cell_text(value)


def cell_text(value: Any) -> str:
    """A cell as text for the table and CSV formats."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, JsonValue):
        return json.dumps(value.value, ensure_ascii=False)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, list | tuple | dict):
        return json.dumps(to_json(value), ensure_ascii=False)
    return str(value)  # numbers, text, uuid, interval and the rest


def render_json(results: Sequence[StatementResult], nested: bool) -> str:
    """One JSON document: an array of row objects, or (``nested``) one such array per statement;
    for a ``COPY ... TO STDOUT``, the array of the lines it sent."""
    arrays = [
        r.copied.splitlines()
        if r.copied is not None
        else [dict(zip(unique_names(r.columns), map(to_json, row), strict=True)) for row in r.rows]
        for r in results
    ]
    document: Any = arrays if nested else (arrays[0] if arrays else [])
    return json.dumps(document, ensure_ascii=False)


def unique_names(columns: Sequence[str]) -> list[str]:
    """Column names as object keys: a name given again gets ``_2``, ``_3`` … (never a taken name)."""
    used = set(columns)
    seen: set[str] = set()
    names: list[str] = []
    for name in columns:
        key = name
        if key in seen:
            n = 2
            while f"{name}_{n}" in used:
                n += 1
            key = f"{name}_{n}"
            used.add(key)
        seen.add(key)
        names.append(key)
    return names


def render_csv(result: StatementResult) -> str:
    """RFC 4180 CSV of a result set: a header row, then the rows, each ending in CRLF."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(result.columns)
    writer.writerows([cell_text(v) for v in row] for row in result.rows)
    return out.getvalue()


_ESCAPES = str.maketrans({"\n": "\\n", "\r": "\\r", "\t": "\\t"})


def render_table(result: StatementResult) -> str:
    """Aligned columns (numbers to the right) and a row count; the status for a command;
    what a ``COPY ... TO STDOUT`` sent, as sent."""
    if result.copied is not None:
        return result.copied.removesuffix("\n")
    if not result.has_rows:
        return result.status
    cells = [[cell_text(v).translate(_ESCAPES) for v in row] for row in result.rows]
    numeric = [
        any(row[i] is not None for row in result.rows)
        and all(row[i] is None or _is_number(row[i]) for row in result.rows)
        for i in range(len(result.columns))
    ]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(result.columns)]
    lines = [
        " | ".join(h.ljust(w) for h, w in zip(result.columns, widths, strict=True)).rstrip(),
        "-+-".join("-" * w for w in widths),
    ]
    for r in cells:
        line = " | ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(r, widths, numeric, strict=True))
        lines.append(line.rstrip())
    n = len(result.rows)
    lines.append(f"({n} row{'' if n == 1 else 's'})")
    return "\n".join(lines)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)
