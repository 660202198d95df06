"""SQL access for tools: the embedded server on a loopback TCP port, and a reader role
made by ``tracetables db grant-reader`` that reads every view and nothing else."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.collector_harness import start_collector
from tests.otlp_wire import http_post, make_request, make_span
from tests.test_cli import SERVE_CONFIG, child_env, free_ports, run_cli
from tracetables.collector.config import parse_config
from tracetables.collector.errors import ConfigError
from tracetables.exporters.postgres.embedded import EmbeddedPostgres, EmbeddedPostgresConfig
from tracetables.exporters.postgres.schema import migrate

PASSWORD = "correct horse battery staple"


@dataclass
class Cluster:
    dsn: str
    port: int
    config: Path
    base: Path


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A migrated embedded cluster listening on a free loopback port, with spans in every projection."""
    base = Path(tempfile.mkdtemp(prefix="tt-reader-"))
    base.chmod(0o755)  # as root the server runs unprivileged and must traverse this dir
    (port,) = free_ports(1)
    server = EmbeddedPostgres(
        EmbeddedPostgresConfig(data_dir=base / "pg", durable=False, listen_host="127.0.0.1", port=port)
    )
    dsn = server.start()
    try:
        migrate(dsn)
        _write_spans(dsn)
        config = base / "otel-config.yaml"
        config.write_text(
            SERVE_CONFIG.format(grpc_port=1, http_port=2).replace(
                "      data_dir: ./pg\n", f'      data_dir: ./pg\n      listen: "127.0.0.1:{port}"\n'
            ),
            encoding="utf-8",
        )
        yield Cluster(dsn, port, config, base)
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def _write_spans(dsn: str) -> None:
    running = start_collector(dsn)
    try:
        spans = [
            make_span(
                trace_id=b"\x0a" * 16, span_id=bytes([1]) * 8, name="run", **{"flow.role": "run", "flow.id": "orders"}
            ),
            make_span(
                trace_id=b"\x0a" * 16,
                span_id=bytes([2]) * 8,
                name="step",
                **{"flow.role": "step", "session.id": "sess-1"},
            ),
            make_span(trace_id=b"\x0a" * 16, span_id=bytes([3]) * 8, name="call", **{"flow.role": "call"}),
            make_span(trace_id=b"\x0a" * 16, span_id=bytes([4]) * 8, name="act", **{"flow.role": "action"}),
            make_span(trace_id=b"\x0a" * 16, span_id=bytes([5]) * 8, name="evt", **{"flow.role": "event"}),
        ]
        spans[1].parent_span_id = spans[0].span_id
        reply = http_post(running.http_port, make_request(*spans).SerializeToString())
        assert reply.status == 200, reply.body
    finally:
        running.stop()


def _grant(cluster: Cluster, name: str, password: str) -> str:
    result = run_cli(
        "db",
        "grant-reader",
        name,
        "--password-env",
        "TT_READER_PW",
        "--config",
        str(cluster.config),
        env={**child_env(None), "TT_READER_PW": password},
        cwd=cluster.base,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _tcp(cluster: Cluster, user: str, password: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(
        host="127.0.0.1",
        port=cluster.port,
        dbname="tracetables",
        user=user,
        password=password,
        sslmode="disable",
        autocommit=True,
        connect_timeout=10,
    )


@pytest.fixture(scope="module")
def reader(cluster: Cluster) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    out = _grant(cluster, "grafana", PASSWORD)
    assert "created role grafana" in out and PASSWORD not in out
    with _tcp(cluster, "grafana", PASSWORD) as conn:
        yield conn


def test_reader_selects_from_every_view(cluster: Cluster, reader: psycopg.Connection[tuple[object, ...]]) -> None:
    with psycopg.connect(cluster.dsn) as owner:
        views = [
            str(r[0])
            for r in owner.execute(
                "SELECT viewname FROM pg_views WHERE schemaname = 'public' ORDER BY viewname"
            ).fetchall()
        ]
        assert {
            "spans_readable",
            "flow_execution_steps",
            "execution_logs",
            "communication_traces",
            "action_records",
            "action_traces",
            "event_traces",
        } <= set(views)
        assert owner.execute("SELECT count(*) FROM spans").fetchone() == (5,)
    rows = {}
    for view in views:
        rows[view] = reader.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(view))).fetchone()
    assert rows["spans_readable"] == (5,)
    assert rows["execution_logs"] == (1,) and rows["flow_execution_steps"] == (1,)
    assert reader.execute("SELECT count(*) FROM spans WHERE service_name = 'svc'").fetchone() == (5,)


def test_reader_calls_a_query_function(reader: psycopg.Connection[tuple[object, ...]]) -> None:
    steps = reader.execute("SELECT node_id FROM tt_session_steps('sess-1')").fetchall()
    assert steps == [("step",)]
    assert reader.execute("SELECT count(*) FROM tt_run_trace(%s)", ("0a" * 16,)).fetchone() == (1,)


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO spans (trace_id, span_id, name) VALUES ('\\x01', '\\x02', 'x')",
        "UPDATE spans SET name = 'changed'",
        "DELETE FROM spans",
        "CREATE TABLE mine (x int)",
        "SELECT rolpassword FROM pg_authid",
        "SELECT count(*) FROM flow_step_rows",
        "SELECT count(*) FROM tracetables_migrations",
        "INSERT INTO tracing_config (flow_id) VALUES ('x')",
        "SELECT tt_grant_reader_access()",
    ],
)
def test_reader_may_not(reader: psycopg.Connection[tuple[object, ...]], statement: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        reader.execute(statement)


def test_wrong_password_is_refused(cluster: Cluster, reader: psycopg.Connection[tuple[object, ...]]) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _tcp(cluster, "grafana", "not the password")


def test_owner_cannot_log_in_over_tcp(cluster: Cluster) -> None:
    """The owner is trusted on the private socket only: over TCP it has no password to give."""
    with pytest.raises(psycopg.OperationalError):
        _tcp(cluster, "tracetables", "")


def test_grant_reader_again_updates_the_password(
    cluster: Cluster, reader: psycopg.Connection[tuple[object, ...]]
) -> None:
    assert "updated role grafana" in _grant(cluster, "grafana", "second password")
    with _tcp(cluster, "grafana", "second password") as conn:
        assert conn.execute("SELECT count(*) FROM spans_readable").fetchone() == (5,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _tcp(cluster, "grafana", PASSWORD)
    _grant(cluster, "grafana", PASSWORD)


def test_grant_reader_generates_a_password_without_terminal(cluster: Cluster) -> None:
    result = run_cli(
        "db", "grant-reader", "notebook", "--config", str(cluster.config), env=child_env(None), cwd=cluster.base
    )
    assert result.returncode == 0, result.stderr
    password = next(line.split(": ", 1)[1] for line in result.stdout.splitlines() if line.startswith("password: "))
    with _tcp(cluster, "notebook", password) as conn:
        assert conn.execute("SELECT count(*) FROM spans").fetchone() == (5,)


def test_grant_reader_refuses_an_existing_role_that_could_do_more(cluster: Cluster) -> None:
    with psycopg.connect(cluster.dsn, autocommit=True) as owner:
        owner.execute("CREATE ROLE writer NOLOGIN")
        owner.execute("CREATE ROLE wide LOGIN IN ROLE writer")
        owner.execute("CREATE ROLE maker LOGIN CREATEDB")
    for name, message in (("wide", "is a member of writer"), ("maker", "privileges beyond reading")):
        result = run_cli(
            "db",
            "grant-reader",
            name,
            "--password-env",
            "TT_READER_PW",
            "--config",
            str(cluster.config),
            env={**child_env(None), "TT_READER_PW": "x"},
            cwd=cluster.base,
        )
        assert result.returncode == 1
        assert f"NAME: role {name!r} exists" in result.stderr and message in result.stderr


@pytest.mark.parametrize(
    ("name", "env", "message"),
    [
        ("Bad-Name", {"TT_READER_PW": "x"}, "NAME: 'Bad-Name' is not a plain role name"),
        ("pg_monitor", {"TT_READER_PW": "x"}, "NAME: 'pg_monitor' is reserved"),
        ("tracetables", {"TT_READER_PW": "x"}, "NAME: 'tracetables' is the role this command connects as"),
        ("bob", {}, "--password-env: environment variable TT_READER_PW is unset or empty"),
    ],
)
def test_grant_reader_bad_input_names_it(cluster: Cluster, name: str, env: dict[str, str], message: str) -> None:
    result = run_cli(
        "db",
        "grant-reader",
        name,
        "--password-env",
        "TT_READER_PW",
        "--config",
        str(cluster.config),
        env={**child_env(None), **env},
        cwd=cluster.base,
    )
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("listen", "message"),
    [
        ("0.0.0.0:5433", "loopback only"),
        ("10.1.2.3:5433", "loopback only"),
        ("127.0.0.1:0", "port 1-65535"),
        ("127.0.0.1:70000", "port 1-65535"),
        ("127.0.0.1", "host:port"),
    ],
)
def test_listen_must_be_loopback_with_a_port(listen: str, message: str) -> None:
    text = SERVE_CONFIG.format(grpc_port=1, http_port=2).replace(
        "      data_dir: ./pg\n", f'      data_dir: ./pg\n      listen: "{listen}"\n'
    )
    with pytest.raises(ConfigError, match=r"exporters\.postgres\.embedded\.listen") as caught:
        parse_config(text, {})
    assert message in str(caught.value)


def test_cluster_made_without_listen_accepts_tcp_once_restarted_with_it() -> None:
    """A reused data dir (initdb'd with TCP rejected) gets the password rules on the next start."""
    base = Path(tempfile.mkdtemp(prefix="tt-reader-reuse-"))
    base.chmod(0o755)
    (port,) = free_ports(1)
    try:
        with EmbeddedPostgres(EmbeddedPostgresConfig(data_dir=base / "pg", durable=False)) as first:
            with psycopg.connect(first.dsn, autocommit=True) as owner:
                assert owner.execute("SHOW listen_addresses").fetchone() == ("",)
                verifier = owner.pgconn.encrypt_password(b"pw", b"tool", b"scram-sha-256").decode()
                owner.execute(sql.SQL("CREATE ROLE tool LOGIN PASSWORD {}").format(sql.Literal(verifier)))
        config = EmbeddedPostgresConfig(data_dir=base / "pg", durable=False, listen_host="127.0.0.1", port=port)
        with EmbeddedPostgres(config):
            with psycopg.connect(
                host="127.0.0.1",
                port=port,
                dbname="tracetables",
                user="tool",
                password="pw",
                sslmode="disable",
                connect_timeout=10,
            ) as conn:
                assert conn.execute("SELECT current_user").fetchone() == ("tool",)
    finally:
        shutil.rmtree(base, ignore_errors=True)
