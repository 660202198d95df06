"""The ``tracetables`` command line, run as a real process against a real PostgreSQL."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.otlp_wire import grpc_export, http_post, make_request, make_span

BAD_CONFIGS = Path(__file__).parent / "testdata" / "config"
START_TIMEOUT = 60.0  # a first start of the embedded server runs initdb
STOP_TIMEOUT = 30.0
COMMAND_TIMEOUT = 60.0

SERVE_CONFIG = """\
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc_port}
      http:
        endpoint: 127.0.0.1:{http_port}
processors:
  batch:
    timeout: 20ms
exporters:
  postgres:
    embedded:
      data_dir: ./pg
    retry_on_failure:
      max_elapsed_time: 2s
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [postgres]
  telemetry:
    metrics:
      address: 127.0.0.1:0
    logs:
      level: info
"""


def tracetables_argv(*args: str) -> list[str]:
    """The installed console script, else the same entry point through this interpreter."""
    script = Path(sys.executable).with_name("tracetables")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script), *args]
    return [sys.executable, "-c", "from tracetables.collector.cli import main; main()", *args]


def child_env(database_url: str | None) -> dict[str, str]:
    """This environment without any TRACETABLES_* variable, plus the database URL if given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACETABLES_")}
    if database_url is not None:
        env["TRACETABLES_DATABASE_URL"] = database_url
    return env


def free_ports(count: int) -> list[int]:
    """Ports the kernel just handed out on 127.0.0.1 (bound together, so distinct)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def write_config(directory: Path, grpc_port: int, http_port: int, name: str = "otel-config.yaml") -> Path:
    path = directory / name
    path.write_text(SERVE_CONFIG.format(grpc_port=grpc_port, http_port=http_port), encoding="utf-8")
    return path


def run_cli(*args: str, env: Mapping[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run one command to completion (bounded)."""
    return subprocess.run(
        tracetables_argv(*args), env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
        check=False,
    )


@dataclass
class Served:
    """A ``tracetables serve`` process; its stderr goes to a file, read once it exited."""

    process: subprocess.Popen[bytes]
    log_path: Path
    grpc_port: int
    http_port: int

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self) -> None:
        """Poll until the HTTP port accepts (after the exporters and the gRPC port are up)."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"serve exited with {self.process.returncode} before listening:\n{self.log()}")
            if accepts(self.http_port):
                return
            time.sleep(0.05)
        pytest.fail(f"serve did not listen on port {self.http_port} within {START_TIMEOUT}s:\n{self.log()}")

    def terminate(self, sig: signal.Signals = signal.SIGTERM) -> int:
        """Send ``sig`` (SIGTERM by default), then wait (bounded) for the exit code."""
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"serve did not exit within {STOP_TIMEOUT}s of {sig.name}:\n{self.log()}")

    def kill(self) -> None:
        """Leave nothing behind: kill the process if it still runs, and reap it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=STOP_TIMEOUT)


@contextmanager
def serve(directory: Path, env: Mapping[str, str]) -> Iterator[Served]:
    """``tracetables serve`` on fresh loopback ports with the config written into ``directory``."""
    grpc_port, http_port = free_ports(2)
    config = write_config(directory, grpc_port, http_port)
    log_path = directory / f"serve-{http_port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            tracetables_argv("serve", "--config", config.name), env=dict(env), cwd=directory,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
    served = Served(process, log_path, grpc_port, http_port)
    try:
        yield served
    finally:
        served.kill()


def post_span(port: int, trace_byte: int, name: str) -> None:
    body = make_request(make_span(trace_id=bytes([trace_byte]) * 16, span_id=bytes([trace_byte]) * 8, name=name))
    reply = http_post(port, body.SerializeToString())
    assert reply.status == 200, reply.body


class TestServeBadConfig:
    def test_serve_bad_config_exits_2_naming_key_path(self, tmp_path: Path) -> None:
        """``serve`` with an invalid config exits 2, names the key path on stderr, and listens on nothing."""
        grpc_port, http_port = free_ports(2)
        config = write_config(tmp_path, grpc_port, http_port)
        config.write_text(config.read_text().replace("    timeout: 20ms\n", "    timeout: 20ms\n    send_batch_size: 0\n"))
        result = run_cli("serve", "--config", str(config), env=child_env("host=unused"), cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert "processors.batch.send_batch_size: must be > 0" in result.stderr
        assert "Traceback" not in result.stderr
        assert not accepts(grpc_port) and not accepts(http_port)

    def test_serve_bad_config_file_from_testdata(self, tmp_path: Path) -> None:
        """A bad file from testdata is reported by the CLI with its key path, exit 2."""
        result = run_cli(
            "serve", "--config", str(BAD_CONFIGS / "unknown-component-key.yaml"), env=child_env(None), cwd=tmp_path
        )
        assert result.returncode == 2
        assert "receivers.otlp.protocols.grpc.endpointt: unknown key" in result.stderr

    def test_serve_missing_config_exits_2_naming_file(self, tmp_path: Path) -> None:
        """``serve --config`` naming no file exits 2 and names the file."""
        result = run_cli("serve", "--config", "missing.yaml", env=child_env(None), cwd=tmp_path)
        assert result.returncode == 2
        assert "missing.yaml: cannot read config file" in result.stderr


class TestDbCommands:
    def test_db_migrate_reports_up_to_date(self, dsn: str, tmp_path: Path) -> None:
        """``db migrate`` on the migrated test database applies nothing and says so."""
        config = write_config(tmp_path, 0, 0)
        result = run_cli("db", "migrate", "--config", str(config), env=child_env(dsn), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "schema is up to date"

    def test_db_status_lists_applied_migration(self, dsn: str, tmp_path: Path) -> None:
        """``db status`` lists 0001_spans as applied and exits 0 (nothing pending)."""
        config = write_config(tmp_path, 0, 0)
        result = run_cli("db", "status", "--config", str(config), env=child_env(dsn), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "0001_spans  applied" in result.stdout.splitlines()
        assert "pending" not in result.stdout

    def test_db_status_unreachable_database_exits_1_without_traceback(self, tmp_path: Path) -> None:
        """``db status`` against a database that is not there exits 1 with the connection error, no traceback."""
        config = write_config(tmp_path, 0, 0)
        missing = tmp_path / "no-server-here"
        result = run_cli("db", "status", "--config", str(config), env=child_env(f"host={missing} connect_timeout=5"),
                         cwd=tmp_path)
        assert result.returncode == 1
        assert str(missing) in result.stderr
        assert "Traceback" not in result.stderr

    def test_db_without_action_exits_2(self, tmp_path: Path) -> None:
        """``db`` with no action prints usage and exits 2."""
        result = run_cli("db", env=child_env(None), cwd=tmp_path)
        assert result.returncode == 2
        assert "usage" in result.stdout.lower()


class TestSqlCommand:
    def test_sql_prints_result_table(self, dsn: str, tmp_path: Path) -> None:
        """``sql -c`` prints the column names, the rows and the row count."""
        config = write_config(tmp_path, 0, 0)
        result = run_cli("sql", "--config", str(config), "-c", "SELECT 1 AS one", env=child_env(dsn), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0].strip() == "one"
        assert lines[2].strip() == "1"
        assert lines[-1] == "(1 row)"

    def test_sql_error_exits_1_on_stderr(self, dsn: str, tmp_path: Path) -> None:
        """``sql -c`` with a failing query exits 1 and prints the database error on stderr only."""
        config = write_config(tmp_path, 0, 0)
        result = run_cli("sql", "--config", str(config), "-c", "SELECT * FROM nope", env=child_env(dsn), cwd=tmp_path)
        assert result.returncode == 1
        assert 'relation "nope" does not exist' in result.stderr
        assert "Traceback" not in result.stderr
        assert result.stdout == ""


class TestServe:
    def test_serve_stores_spans_and_stops_on_sigterm(self, dsn: str, conn: psycopg.Connection, tmp_path: Path) -> None:
        """``serve`` stores spans sent over HTTP and gRPC, and on SIGTERM drains, logs it and exits 0."""
        with serve(tmp_path, child_env(dsn)) as served:
            served.wait_ready()
            post_span(served.http_port, 0xA1, "cli-http")
            request = make_request(make_span(trace_id=b"\xa2" * 16, span_id=b"\xa2" * 8, name="cli-grpc"))
            code, _, details = grpc_export(served.grpc_port, request.SerializeToString())
            assert code.name == "OK", details
            rows = conn.execute("SELECT name, service_name FROM spans ORDER BY name").fetchall()
            assert rows == [("cli-grpc", "svc"), ("cli-http", "svc")]
            assert served.terminate() == 0, served.log()
            log = served.log()
            assert "shutting down" in log
            assert "Traceback" not in log
            assert not accepts(served.http_port) and not accepts(served.grpc_port)
        assert not (tmp_path / "pg").exists()  # a DSN was given: no embedded server was made


    def test_serve_stops_cleanly_on_sigint(self, dsn: str, conn: psycopg.Connection, tmp_path: Path) -> None:
        """Ctrl-C (SIGINT) drains and exits 0 like SIGTERM, without a KeyboardInterrupt traceback."""
        with serve(tmp_path, child_env(dsn)) as served:
            served.wait_ready()
            post_span(served.http_port, 0xB1, "before-sigint")
            assert served.terminate(signal.SIGINT) == 0, served.log()
            log = served.log()
            assert "shutting down" in log and "Traceback" not in log and "KeyboardInterrupt" not in log
        assert conn.execute("SELECT name FROM spans").fetchall() == [("before-sigint",)]

    def test_serve_port_in_use_exits_1(self, dsn: str, tmp_path: Path) -> None:
        """``serve`` whose HTTP port is taken logs why it cannot start and exits 1, its gRPC port closed again."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            (grpc_port,) = free_ports(1)
            config = write_config(tmp_path, grpc_port, taken.getsockname()[1])
            result = run_cli("serve", "--config", str(config), env=child_env(dsn), cwd=tmp_path)
        assert result.returncode == 1, result.stderr
        assert "cannot start" in result.stderr
        assert "Traceback" not in result.stderr
        assert not accepts(grpc_port)


def postmaster_pid(data_dir: Path) -> Path:
    return data_dir / "postmaster.pid"


def servers_on(data_dir: Path) -> list[int]:
    """Pids of processes whose command line names ``data_dir`` (a postgres left running)."""
    found = []
    needle = os.fsencode(str(data_dir.resolve()))
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if needle in cmdline and int(entry.name) != os.getpid():
                found.append(int(entry.name))
    return found


def stop_leftover_server(data_dir: Path) -> None:
    """If a test failed midway: immediate-stop the postgres the collector started on ``data_dir``."""
    pid_file = postmaster_pid(data_dir)
    try:
        pid = int(pid_file.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return
    try:
        os.kill(pid, signal.SIGQUIT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)


class TestServeEmbedded:
    def test_serve_embedded_default_keeps_spans_across_restarts(self) -> None:
        """With no DSN, ``serve`` runs its own PostgreSQL, stops it on SIGTERM, and finds the spans again next start."""
        base = Path(tempfile.mkdtemp(prefix="tt-cli-embedded-"))
        base.chmod(0o755)  # as root the server runs unprivileged and must traverse this dir
        data_dir = base / "pg"
        env = child_env(None)
        query = "SELECT name FROM spans ORDER BY name"
        try:
            with serve(base, env) as first:
                first.wait_ready()
                assert postmaster_pid(data_dir).exists()
                post_span(first.http_port, 0xB1, "before-restart")
                assert first.terminate() == 0, first.log()
                assert "shutting down" in first.log()
            assert not postmaster_pid(data_dir).exists()
            assert servers_on(data_dir) == []

            with serve(base, env) as second:
                second.wait_ready()
                post_span(second.http_port, 0xB2, "after-restart")
                # `sql` shares the running collector's server (running_dsn), same config and cwd
                result = run_cli("sql", "--config", "otel-config.yaml", "-c", query, env=env, cwd=base)
                assert result.returncode == 0, result.stderr
                assert [line.strip() for line in result.stdout.splitlines()[2:4]] == ["after-restart", "before-restart"]
                assert second.terminate() == 0, second.log()
            assert not postmaster_pid(data_dir).exists()
            assert servers_on(data_dir) == []

            # with no collector running, `sql` starts the embedded server for the command only
            result = run_cli("sql", "--config", "otel-config.yaml", "-c", query, env=env, cwd=base)
            assert result.returncode == 0, result.stderr
            assert "before-restart" in result.stdout and "after-restart" in result.stdout
            assert not postmaster_pid(data_dir).exists()
            assert servers_on(data_dir) == []
        finally:
            stop_leftover_server(data_dir)
            shutil.rmtree(base, ignore_errors=True)
