"""The span conventions have one source: the generated C and SQL match it, no ``flow.*``
key is spelled outside it, and the migration that names the role codes keeps an older
store's rows and projects new spans as before."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import tokenize
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tests.otlp_wire import make_request
from tracetables.exporters.postgres import encoder, gen_conventions
from tracetables.exporters.postgres.schema import applied_versions, available_migrations, migrate
from tracetables.exporters.postgres.writer import SpanWriter
from tracetables.instrumentation import conventions as cv

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "exporters" / "postgres"
SOURCES = ("collector", "exporters", "instrumentation", "proto")
TABLE = ROOT / "instrumentation" / "conventions.py"
GENERATED = {PACKAGE / relative for relative in gen_conventions.render()}
# A word of the conventions' shape inside any text: flow.role, flow.call.external_id ...
KEY_WORD = re.compile(r"\bflow\.[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*")
# Where a flow.* key may still be spelled as a literal, and why.
SPELLED_ELSEWHERE = {
    # Released migrations are never edited, and jsonb_to_record's column names and ->> keys
    # cannot be parameters: their keys are checked against the table instead.
    **{path: "released migration" for path in (PACKAGE / "migrations").glob("000[1-8]_*.sql")},
}


def source_files() -> Iterator[Path]:
    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix in {".py", ".c", ".h", ".sql"} and "_pb2" not in path.name:
                yield path


def python_strings(path: Path) -> Iterator[tuple[int, str]]:
    """Every string literal of a Python file (docstrings too), with its line."""
    with path.open("rb") as f:
        for token in tokenize.tokenize(f.readline):
            if token.type == tokenize.STRING:
                yield token.start[0], token.string


C_LITERAL = re.compile(r'"((?:[^"\\\n]|\\.)*)"')


def test_regenerating_changes_nothing(tmp_path: Path) -> None:
    """The checked-in header and migration are exactly what the generator writes now."""
    result = subprocess.run(
        [sys.executable, "-m", "tracetables.exporters.postgres.gen_conventions", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(gen_conventions.render())
    for relative in written:
        assert (tmp_path / relative).read_text(encoding="utf-8") == (PACKAGE / relative).read_text(encoding="utf-8"), (
            f"{relative} is stale: run python -m tracetables.exporters.postgres.gen_conventions"
        )


def test_no_later_migration_redefines_tt_project() -> None:
    """0009 is shipped, and tt_project is not re-created after it (a later copy made from an
    older body would lose the role names: extend the generator instead)."""
    versions = [m.version for m in available_migrations()]
    assert gen_conventions.MIGRATION_VERSION in versions
    later = [m for m in available_migrations() if m.version > gen_conventions.MIGRATION_VERSION]
    assert not [m.name for m in later if "FUNCTION tt_project" in m.sql]


def test_generator_refuses_a_bare_role_it_cannot_name(tmp_path: Path) -> None:
    """A role number in a shape the rewrite does not know is an error naming it, not a silent miss."""
    (tmp_path / "0003_tt_project.sql").write_text(
        "CREATE FUNCTION tt_project(keys bytea) RETURNS void\n    LANGUAGE plpgsql AS $$\nBEGIN\n"
        "    PERFORM 1 FROM unnest(roles) AS r(role) WHERE r.role <> 3;\nEND $$;\n",
        encoding="utf-8",
    )
    with pytest.raises(gen_conventions.GenerationError, match=r"role <> 3"):
        gen_conventions.render_migration(tmp_path)


def test_generator_reports_a_missing_definition(tmp_path: Path) -> None:
    """No earlier migration defining tt_project: an error that says so."""
    with pytest.raises(gen_conventions.GenerationError, match="defines tt_project"):
        gen_conventions.render_migration(tmp_path)


def test_every_flow_key_in_the_sources_is_in_the_table() -> None:
    """Every ``flow.*`` word in the packages' Python strings and comments, and anywhere in
    their C and SQL, is a key of the table (Python code like ``flow.session_id`` is a
    variable named flow, not a key)."""
    unknown = []
    for path in source_files():
        if path.suffix == ".py":
            texts = list(python_texts(path))
        else:
            texts = list(enumerate(path.read_text(encoding="utf-8").splitlines(), 1))
        for number, text in texts:
            unknown += [
                f"{path.relative_to(ROOT)}:{number}: {word}"
                for word in KEY_WORD.findall(text)
                if word not in cv.FLOW_KEYS
            ]
    assert not unknown, "flow.* keys not in instrumentation/conventions.py:\n" + "\n".join(unknown)


def python_texts(path: Path) -> Iterator[tuple[int, str]]:
    """A Python file's string literals and comments, with their first line."""
    with path.open("rb") as f:
        for token in tokenize.tokenize(f.readline):
            if token.type in (tokenize.STRING, tokenize.COMMENT):
                yield token.start[0], token.string


def test_no_flow_key_is_spelled_outside_the_table() -> None:
    """Outside the table, its generated files and the released migrations, a key is a constant, not a literal."""
    spelled = []
    for path in source_files():
        if path == TABLE or path in GENERATED or path in SPELLED_ELSEWHERE:
            continue
        if path.suffix == ".py":
            for number, literal in python_strings(path):
                value = literal.lstrip("rbuRBU").strip("\"'")
                if value.startswith(cv.FLOW_PREFIX) and KEY_WORD.fullmatch(value):
                    spelled.append(f"{path.relative_to(ROOT)}:{number}: {literal}")
        else:
            text = path.read_text(encoding="utf-8")
            for match in (
                C_LITERAL.finditer(text)
                if path.suffix in {".c", ".h"}
                else re.finditer(r"['\"](flow\.[^'\"]*)['\"]", text)
            ):
                if match.group(1).startswith(cv.FLOW_PREFIX):
                    spelled.append(f"{path.relative_to(ROOT)}: {match.group(0)}")
    assert not spelled, "use the constants of instrumentation/conventions.py:\n" + "\n".join(spelled)


def test_the_header_defines_every_role_and_key() -> None:
    header = (PACKAGE / gen_conventions.HEADER).read_text(encoding="utf-8")
    for role in cv.Role:
        assert f"ROLE_{role.name} = {role.value}," in header
    for key in cv.FLOW_KEYS:
        assert f' "{key}"\n' in header
    assert '#include "_conventions.h"' in (PACKAGE / "_fastrows.c").read_text(encoding="utf-8")


# ---------- upgrade: a store at 0006 with projected spans, migrated to head ----------

Conn = psycopg.Connection[tuple[Any, ...]]
ROLE_TABLES = {
    "execution_log_rows": "span_id",
    "flow_step_rows": "span_id",
    "communication_rows": "span_id",
    "action_rows": "span_id",
    "provenance_edges": "span_id, cause_span_id",
    "event_rows": "span_id",
}
# Columns derived from the trace id: they differ between two traces of the same shape.
TRACE_COLUMNS = {"trace_id", "execution_id", "trace_key", "flow_token", "cause_trace_id"}


def _kv(key: str, value: str | int | bool) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


Attrs = dict[str, str | int | bool]


def _span(
    trace: bytes,
    sid: int,
    parent: int,
    name: str,
    attrs: Attrs,
    kind: int = Span.SPAN_KIND_INTERNAL,
    failed: bool = False,
) -> Span:
    span = Span(
        trace_id=trace,
        span_id=sid.to_bytes(8, "big"),
        parent_span_id=parent.to_bytes(8, "big") if parent else b"",
        name=name,
        kind=kind,
        flags=0x100,  # type: ignore[arg-type]
        start_time_unix_nano=1_700_000_000_000_000_000 + sid * 1_000_000,
        end_time_unix_nano=1_700_000_000_000_000_000 + sid * 1_000_000 + 250_000_000,
    )
    if failed:
        span.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message="boom"))
    span.attributes.extend(_kv(k, v) for k, v in attrs.items())
    return span


def _flow(trace: bytes) -> bytes:
    """One trace with a span of every role: run start marker, run, two steps, a call and its
    pending marker, an action linked to the run, an event."""
    common: Attrs = {cv.SESSION_ID: "s-1", cv.USER_ID: "u-1", cv.FLOW_ID: "support", cv.FLOW_VERSION: "2"}
    spans = [
        _span(trace, 1, 0, "run", {**common, cv.FLOW_ROLE: "run"}),
        _span(trace, 2, 1, "run started", {**common, cv.FLOW_ROLE: "run", cv.FLOW_PENDING: True}),
        _span(trace, 3, 1, "step a", {**common, cv.FLOW_ROLE: "step", cv.FLOW_NODE_ID: "a", cv.FLOW_STEP_NUMBER: 1}),
        _span(
            trace,
            4,
            1,
            "step b",
            {**common, cv.FLOW_ROLE: "step", cv.FLOW_NODE_ID: "b", cv.FLOW_STEP_NUMBER: 2, cv.FLOW_NEXT_NODE_ID: "a"},
            failed=True,
        ),
        _span(
            trace,
            5,
            3,
            "GET",
            {
                cv.HTTP_REQUEST_METHOD: "GET",
                cv.FLOW_CALL_KEY: "k-1",
                "http.response.status_code": 503,
                cv.SERVER_ADDRESS: "api",
            },
            kind=Span.SPAN_KIND_CLIENT,
        ),
        _span(trace, 6, 5, "GET pending", {cv.FLOW_PENDING: True, cv.FLOW_CALL_KEY: "k-1"}),
        _span(
            trace,
            7,
            1,
            "Order::place",
            {cv.FLOW_ROLE: "action", cv.FLOW_ACTION_CONCEPT: "Order", cv.FLOW_ACTION_NAME: "place", cv.USER_ID: "u-1"},
        ),
        _span(trace, 8, 1, "event clicked", {cv.FLOW_ROLE: "event", cv.FLOW_EVENT_TYPE: "clicked", cv.USER_ID: "u-1"}),
    ]
    link = spans[6].links.add()
    link.trace_id, link.span_id = trace, (1).to_bytes(8, "big")
    link.attributes.append(_kv(cv.FLOW_SYNCHRONIZATION, "on-run"))
    return make_request(*spans).SerializeToString()


def _store(payload: bytes, dsn: str) -> None:
    batch = encoder.encode_request(payload)
    assert len(batch.keys) == 8 * 25

    async def write() -> None:
        writer = SpanWriter(dsn)
        try:
            assert await writer.write(batch.data, batch.rows, batch.keys) == 8
        finally:
            await writer.close()

    asyncio.run(write())


def _projected(conn: Conn, trace: bytes, keep_trace: bool = True) -> dict[str, list[dict[str, Any]]]:
    out = {}
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        for table, order in ROLE_TABLES.items():
            found = cur.execute(f"SELECT * FROM {table} WHERE trace_id = %s ORDER BY {order}", (trace,)).fetchall()
            out[table] = [{k: v for k, v in row.items() if keep_trace or k not in TRACE_COLUMNS} for row in found]
    return out


@pytest.fixture
def old_store(session_dsn: str) -> Iterator[str]:
    """A database of its own, migrated to 0006 only (the head before the role names)."""
    name = f"tt_upgrade_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(session_dsn, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield psycopg.conninfo.make_conninfo(session_dsn, dbname=name)
    finally:
        with psycopg.connect(session_dsn, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def test_upgrade_keeps_rows_and_projects_the_same(old_store: str) -> None:
    applied = migrate(old_store, target=6)
    assert [m.version for m in applied] == [1, 2, 3, 4, 5, 6]
    before_trace, after_trace = b"\x0a" * 16, b"\x0b" * 16
    _store(_flow(before_trace), old_store)
    with psycopg.connect(old_store, autocommit=True) as conn:
        old = _projected(conn, before_trace)
    assert all(old.values()), {table: len(rows) for table, rows in old.items()}  # every role table got rows

    assert gen_conventions.MIGRATION_VERSION in [m.version for m in migrate(old_store)]  # later ones may follow
    with psycopg.connect(old_store, autocommit=True) as conn:
        assert max(applied_versions(conn)) == max(m.version for m in available_migrations())
        assert _projected(conn, before_trace) == old  # the upgrade rewrote nothing
        assert conn.execute("SELECT tt_role_run(), tt_role_run_pending()").fetchone() == (1, 7)
    _store(_flow(after_trace), old_store)
    with psycopg.connect(old_store, autocommit=True) as conn:
        assert _projected(conn, after_trace, keep_trace=False) == _projected(conn, before_trace, keep_trace=False)


def test_role_names_fold_to_constants(conn: Conn) -> None:
    """The planner inlines tt_role_*(): a statement of tt_project filters on the bare number."""
    plan = "\n".join(
        str(r[0])
        for r in conn.execute(
            "EXPLAIN (VERBOSE, COSTS OFF) SELECT k.trace_id FROM unnest(ARRAY['\\x01'::bytea], ARRAY[1])"
            " AS k(trace_id, role) WHERE k.role IN (tt_role_run(), tt_role_step(), tt_role_run_pending())"
        ).fetchall()
    )
    assert "tt_role" not in plan
    assert re.search(r"role = ANY \('\{1,2,7\}'::integer\[\]\)", plan), plan
