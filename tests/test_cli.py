"""The ``tracetables`` command line, run as a real process against a real PostgreSQL."""

from __future__ import annotations

import csv
import importlib.metadata
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from cryptography.hazmat.primitives import serialization

import tests.test_config as cfg
import tests.test_telemetry as telemetry
import tracetables.collector
from tests.otlp_wire import grpc_export, http_post, make_request, make_span
from tests.tls_certs import Pki, make_pki
from tracetables.collector.cli import main
from tracetables.collector.components import REGISTRY

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
        tracetables_argv(*args),
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
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
            tracetables_argv("serve", "--config", config.name),
            env=dict(env),
            cwd=directory,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
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
        config.write_text(
            config.read_text().replace("    timeout: 20ms\n", "    timeout: 20ms\n    send_batch_size: 0\n")
        )
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
        result = run_cli(
            "db", "status", "--config", str(config), env=child_env(f"host={missing} connect_timeout=5"), cwd=tmp_path
        )
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


class TestVersionAndComponents:
    def test_version_prints_the_installed_version(self, tmp_path: Path) -> None:
        """``--version`` prints ``tracetables X.Y.Z`` from the package metadata and exits 0."""
        result = run_cli("--version", env=child_env(None), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"tracetables {importlib.metadata.version('tracetables')}\n"
        assert re.fullmatch(r"tracetables \d+\.\d+\.\d+\S*\n", result.stdout)

    def test_components_table_lists_every_registered_type(self, tmp_path: Path) -> None:
        """``components`` prints a line per factory: kind, type, stability, description."""
        result = run_cli("components", env=child_env(None), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0].split() == ["kind", "type", "stability", "description"]
        rows = {tuple(line.split()[:3]) for line in lines[1:]}
        assert rows == {(str(f.kind), f.type, str(f.stability)) for f in REGISTRY}
        assert len(lines) == 1 + len(list(REGISTRY))

    def test_components_json_parses_and_lists_every_registered_type(self, tmp_path: Path) -> None:
        """``components --format json`` is a JSON list of every factory with its description."""
        result = run_cli("components", "--format", "json", env=child_env(None), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        listed = json.loads(result.stdout)
        assert listed == [
            {"kind": str(f.kind), "type": f.type, "stability": str(f.stability), "description": f.description}
            for f in REGISTRY
        ]

    def test_closed_pipe_ends_quietly(self, tmp_path: Path) -> None:
        """Output into a pipe nobody reads any more (``| head``) ends without a traceback."""
        read_end, write_end = os.pipe()
        os.close(read_end)  # closed before the child starts: its first write fails with EPIPE
        try:
            result = subprocess.run(
                tracetables_argv("components", "--format", "json"),
                env=child_env(None),
                cwd=tmp_path,
                stdout=write_end,
                stderr=subprocess.PIPE,
                text=True,
                timeout=COMMAND_TIMEOUT,
                check=False,
            )
        finally:
            os.close(write_end)
        assert result.returncode == 141, result.stderr
        assert result.stderr == ""

    def test_components_unknown_format_exits_2_naming_it(self, tmp_path: Path) -> None:
        """A format other than table or json is a usage error naming ``--format``."""
        result = run_cli("components", "--format", "yaml", env=child_env(None), cwd=tmp_path)
        assert result.returncode == 2
        assert "--format" in result.stderr and "'yaml'" in result.stderr
        assert "Traceback" not in result.stderr


SHIPPED_CONFIG = Path(__file__).resolve().parent.parent / "otel-config.yaml"
PACKAGED_CONFIG = Path(tracetables.collector.__file__).with_name("default-config.yaml")


def validate_in_process(capsys: pytest.CaptureFixture[str], config: Path) -> tuple[int, str, str]:
    """``main(["validate", ...])``: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exited:
        main(["validate", "--config", str(config)])
    out, err = capsys.readouterr()
    code = exited.value.code
    assert isinstance(code, int)
    return code, out, err


def assert_refused(code: int, out: str, err: str, key_path: str) -> None:
    """Exit 2, the ``serve`` message format (``tracetables: invalid config: KEY: ...``), no traceback."""
    assert code == 2, (out, err)
    assert err.startswith(f"tracetables: invalid config: {key_path}: "), err
    assert out == ""
    assert "Traceback" not in err


@pytest.fixture
def no_tracetables_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process runs read the environment: none of the TRACETABLES_* variables."""
    for name in [k for k in os.environ if k.startswith("TRACETABLES_")]:
        monkeypatch.delenv(name)


def _tls_case(make: Callable[[Pki, Path], str], key_path: str) -> Callable[[Pki, Path], tuple[str, str]]:
    return lambda pki, tmp: (make(pki, tmp), key_path)


def _encrypted_key(pki: Pki, tmp: Path) -> Path:
    key = serialization.load_pem_private_key(pki.server.key.read_bytes(), password=None)
    locked = tmp / "locked.key"
    locked.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"hunter2"),
        )
    )
    return locked


_TLS = cfg.TestReceiverTlsAndCors
TLS_HTTP = "receivers.otlp.protocols.http.tls"
TLS_GRPC = "receivers.otlp.protocols.grpc.tls"

# The inline bad configs of tests/test_config.py and tests/test_telemetry.py: (id, make text, key path).
INLINE_BAD_CONFIGS: list[tuple[str, Callable[[Pki, Path], tuple[str, str]]]] = [
    ("empty-file", lambda pki, tmp: ("", "service")),
    ("connectors", lambda pki, tmp: (cfg.minimal() + "connectors:\n  forward: {}\n", "connectors")),
    *[
        (
            f"duration-{i}",
            (
                lambda text: (
                    lambda pki, tmp: (
                        cfg.minimal() + f"processors:\n  batch:\n    timeout: {text}\n",
                        "processors.batch.timeout",
                    )
                )
            )(text),
        )
        for i, text in enumerate(["-1s", "5 parsecs", "1s5", "''", "true"])
    ],
    (
        "env-unset-in-list",
        lambda pki, tmp: (
            cfg.minimal().replace("exporters: [postgres]", "exporters:\n        - ${env:EXPORTER}"),
            "service.pipelines.traces.exporters[0]",
        ),
    ),
    (
        "named-unknown-type",
        lambda pki, tmp: (
            cfg.minimal().replace("exporters:\n", "exporters:\n  kafka/archive: {}\n"),
            "exporters.kafka/archive",
        ),
    ),
    (
        "pipeline-needs-exact-id",
        lambda pki, tmp: (
            cfg.minimal().replace("  otlp:\n", "  otlp/internal:\n", 1),
            "service.pipelines.traces.receivers[0]",
        ),
    ),
    (
        "tls-key-of-another-cert",
        _tls_case(
            lambda pki, tmp: _TLS._with("http", _TLS._tls(pki.server.cert, pki.client.key)), f"{TLS_HTTP}.key_file"
        ),
    ),
    (
        "tls-cert-without-certificate",
        _tls_case(
            lambda pki, tmp: _TLS._with("grpc", _TLS._tls(pki.server.key, pki.server.key)), f"{TLS_GRPC}.cert_file"
        ),
    ),
    (
        "tls-encrypted-key",
        _tls_case(
            lambda pki, tmp: _TLS._with("http", _TLS._tls(pki.server.cert, _encrypted_key(pki, tmp))),
            f"{TLS_HTTP}.key_file",
        ),
    ),
    (
        "tls-unreadable-key",
        _tls_case(
            lambda pki, tmp: _TLS._with("http", _TLS._tls(pki.server.cert, tmp / "gone.key")), f"{TLS_HTTP}.key_file"
        ),
    ),
    (
        "tls-client-ca-without-certificate",
        _tls_case(
            lambda pki, tmp: _TLS._with(
                "http", _TLS._tls(pki.server.cert, pki.server.key, f"          client_ca_file: {pki.server.key}\n")
            ),
            f"{TLS_HTTP}.client_ca_file",
        ),
    ),
    (
        "tls-grpc-min-version-1.3",
        _tls_case(
            lambda pki, tmp: _TLS._with(
                "grpc", _TLS._tls(pki.server.cert, pki.server.key, '          min_version: "1.3"\n')
            ),
            f"{TLS_GRPC}.min_version",
        ),
    ),
    ("tls-empty", _tls_case(lambda pki, tmp: _TLS._with("http", "        tls:\n"), f"{TLS_HTTP}.cert_file")),
    *[
        (
            f"telemetry-{key}",
            (
                lambda snippet, key: (
                    lambda pki, tmp: (
                        telemetry.config()
                        .replace('metrics: {address: "127.0.0.1:0"}', snippet)
                        .replace("${env:DSN}", "host=unused"),
                        key,
                    )
                )
            )(snippet, key),
        )
        for snippet, key in [
            ("metrics: {level: verbose}", "service.telemetry.metrics.level"),
            ("metrics: {address: nowhere}", "service.telemetry.metrics.address"),
            ("logs: {encoding: xml}", "service.telemetry.logs.encoding"),
        ]
    ],
    *[
        (
            f"health-check-{key}",
            (
                lambda replacement, key: (
                    lambda pki, tmp: (
                        telemetry.config()
                        .replace('endpoint: "127.0.0.1:0", path: /health', replacement)
                        .replace("${env:DSN}", "host=unused"),
                        f"extensions.health_check.{key}",
                    )
                )
            )(replacement, key),
        )
        for replacement, key in [('endpoint: "nope"', "endpoint"), ('endpoint: "127.0.0.1:0", path: health', "path")]
    ],
]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA with a server and a client certificate, as PEM files."""
    return make_pki(tmp_path_factory.mktemp("pki"))


class TestValidate:
    def test_shipped_config_is_valid_and_nothing_is_started(self, tmp_path: Path) -> None:
        """The repository's otel-config.yaml validates; no embedded data directory appears (no DB start)."""
        result = run_cli("validate", "--config", str(SHIPPED_CONFIG), env=child_env(None), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"config is valid: {SHIPPED_CONFIG}\n"
        assert list(tmp_path.iterdir()) == []  # ./.tracetables/pg would be the embedded server's

    def test_packaged_default_config_is_valid(self, tmp_path: Path) -> None:
        """With no --config and no ./otel-config.yaml, the config shipped in the package is validated."""
        result = run_cli("validate", env=child_env(None), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert Path(result.stdout.removeprefix("config is valid: ").strip()).samefile(PACKAGED_CONFIG)
        assert list(tmp_path.iterdir()) == []

    def test_config_of_the_working_directory_is_the_default(self, tmp_path: Path) -> None:
        """Without --config, ./otel-config.yaml is the one validated, and a bad one exits 2."""
        write_config(tmp_path, 0, 0)
        result = run_cli("validate", env=child_env(None), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout == "config is valid: otel-config.yaml\n"
        (tmp_path / "otel-config.yaml").write_text("service: {}\n")
        result = run_cli("validate", env=child_env(None), cwd=tmp_path)
        assert result.returncode == 2
        assert result.stderr.startswith("tracetables: invalid config: service.pipelines: ")
        assert "Traceback" not in result.stderr

    def test_bad_file_in_a_subprocess_exits_2_naming_the_key(self, tmp_path: Path) -> None:
        """The real console script: the key path on stderr, exit 2, nothing on stdout."""
        result = run_cli(
            "validate", "--config", str(BAD_CONFIGS / "zero-send-batch-size.yaml"), env=child_env(None), cwd=tmp_path
        )
        assert_refused(result.returncode, result.stdout, result.stderr, "processors.batch.send_batch_size")

    @pytest.mark.parametrize(
        ("name", "key_path", "words"), cfg.BAD_CASES, ids=[c[0].removesuffix(".yaml") for c in cfg.BAD_CASES]
    )
    @pytest.mark.usefixtures("no_tracetables_env")
    def test_every_bad_config_file_is_refused(
        self, capsys: pytest.CaptureFixture[str], name: str, key_path: object, words: tuple[str, ...]
    ) -> None:
        """Each file of testdata/config: exit 2, the message naming its key path and problem."""
        path = BAD_CONFIGS / name
        code, out, err = validate_in_process(capsys, path)
        assert_refused(code, out, err, str(path) if key_path is cfg.FILE else str(key_path))
        for word in words:
            assert word.lower() in err.lower()

    @pytest.mark.parametrize(("make",), [(c[1],) for c in INLINE_BAD_CONFIGS], ids=[c[0] for c in INLINE_BAD_CONFIGS])
    @pytest.mark.usefixtures("no_tracetables_env")
    def test_every_inline_bad_config_is_refused(
        self, capsys: pytest.CaptureFixture[str], tmp_path: Path, pki: Pki, make: Callable[[Pki, Path], tuple[str, str]]
    ) -> None:
        """The suite's inline bad configs, each written to a file: exit 2 naming the key path."""
        text, key_path = make(pki, tmp_path)
        path = tmp_path / "bad.yaml"
        path.write_text(text, encoding="utf-8")
        assert_refused(*validate_in_process(capsys, path), key_path)

    @pytest.mark.parametrize("kind", ["missing", "directory", "not-utf8"])
    def test_unreadable_file_is_refused_naming_it(
        self, capsys: pytest.CaptureFixture[str], tmp_path: Path, kind: str
    ) -> None:
        """A config that is not there, a directory, or not UTF-8: exit 2 naming the file."""
        path = {"missing": tmp_path / "nowhere" / "c.yaml", "directory": tmp_path, "not-utf8": tmp_path / "l1.yaml"}[
            kind
        ]
        if kind == "not-utf8":
            path.write_bytes(b"service: \xff\xfe\n")
        code, out, err = validate_in_process(capsys, path)
        assert_refused(code, out, err, str(path))
        assert "cannot read config file" in err


VALUES_QUERY = """\
SELECT 42 AS n, 'left' AS label, true AS yes, false AS no, NULL::text AS nothing,
       '{"a": null, "b": [1, "x"]}'::jsonb AS doc, '[1,  2]'::json AS raw_json, 'null'::jsonb AS json_null,
       '\\x00ff10'::bytea AS blob, '2026-01-02 03:04:05.5+00'::timestamptz AS at, 2.50::numeric AS amount,
       ARRAY[1, 2] AS list"""


def sql(tmp_path: Path, dsn: str, command: str, *extra: str) -> subprocess.CompletedProcess[str]:
    config = write_config(tmp_path, 0, 0)
    return run_cli("sql", "--config", str(config), "-c", command, *extra, env=child_env(dsn), cwd=tmp_path)


class TestSqlStatements:
    def test_every_statement_result_is_printed_in_order(self, dsn: str, tmp_path: Path) -> None:
        """Several statements: each one's table or status, in order, an empty line between them."""
        result = sql(
            tmp_path,
            dsn,
            "CREATE TEMP TABLE t (x int, y text); INSERT INTO t VALUES (1, 'a'), (22, 'b');"
            " SELECT x, y FROM t ORDER BY x; UPDATE t SET y = 'c'; SELECT 'last' AS z",
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == (
            "CREATE TABLE\n\n"
            "INSERT 0 2\n\n"
            "x  | y\n"
            "---+--\n"
            " 1 | a\n"
            "22 | b\n"
            "(2 rows)\n\n"
            "UPDATE 2\n\n"
            "z\n"
            "----\n"
            "last\n"
            "(1 row)\n"
        )

    def test_table_shows_values_readably(self, dsn: str, tmp_path: Path) -> None:
        """JSON compact, booleans true/false, NULL empty, ISO 8601 time, bytea hex, numbers right-aligned."""
        result = sql(tmp_path, dsn, VALUES_QUERY)
        assert result.returncode == 0, result.stderr
        header, _rule, row, count = result.stdout.splitlines()
        cells = dict(zip([h.strip() for h in header.split(" | ")], [c.strip() for c in row.split(" | ")], strict=True))
        assert cells == {
            "n": "42",
            "label": "left",
            "yes": "true",
            "no": "false",
            "nothing": "",
            "doc": '{"a": null, "b": [1, "x"]}',
            "raw_json": "[1, 2]",
            "json_null": "null",
            "blob": "00ff10",
            "at": "2026-01-02T03:04:05.500000+00:00",
            "amount": "2.50",
            "list": "[1, 2]",
        }
        widths = [len(h) for h in header.split(" | ")]
        assert row.split(" | ")[0] == "42".rjust(widths[0])  # a number column: right-aligned
        assert row.split(" | ")[1] == "left".ljust(widths[1])  # a text column: left-aligned
        assert count == "(1 row)"

    def test_json_one_statement_is_an_array_of_objects(self, dsn: str, tmp_path: Path) -> None:
        """``--format json``: the rows as objects; JSON values nested as JSON, not strings."""
        result = sql(tmp_path, dsn, VALUES_QUERY, "--format", "json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == [
            {
                "n": 42,
                "label": "left",
                "yes": True,
                "no": False,
                "nothing": None,
                "doc": {"a": None, "b": [1, "x"]},
                "raw_json": [1, 2],
                "json_null": None,
                "blob": "00ff10",
                "at": "2026-01-02T03:04:05.500000+00:00",
                "amount": 2.5,
                "list": [1, 2],
            }
        ]

    def test_json_several_statements_nest_one_array_each(self, dsn: str, tmp_path: Path) -> None:
        """Several statements: one array per statement, in order; a command without rows is []."""
        result = sql(
            tmp_path,
            dsn,
            "SELECT 1 AS a UNION ALL SELECT 2; CREATE TEMP TABLE t (x int); SELECT '{\"k\": 1}'::jsonb AS j",
            "--format",
            "json",
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == [[{"a": 1}, {"a": 2}], [], [{"j": {"k": 1}}]]

    def test_csv_is_rfc4180_with_a_header(self, dsn: str, tmp_path: Path) -> None:
        """``--format csv``: header row, CRLF rows, quoting of commas, quotes and newlines; JSON compact."""
        result = run_cli(
            "sql",
            "--config",
            str(write_config(tmp_path, 0, 0)),
            "-c",
            "SELECT 'a,b' AS t, 'say \"hi\"' AS q, E'two\\nlines' AS m, NULL AS e,"
            " '{\"a\": null}'::jsonb AS j, true AS b",
            "--format",
            "csv",
            env=child_env(dsn),
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr
        out = subprocess.run(
            tracetables_argv(
                "sql", "--config", str(tmp_path / "otel-config.yaml"), "-c", "SELECT 1 AS x", "--format", "csv"
            ),
            env=child_env(dsn),
            cwd=tmp_path,
            capture_output=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        assert out.stdout == b"x\r\n1\r\n"  # line ends as RFC 4180 has them
        rows = list(csv.reader(io.StringIO(result.stdout, newline="")))
        assert rows == [["t", "q", "m", "e", "j", "b"], ["a,b", 'say "hi"', "two\nlines", "", '{"a": null}', "true"]]

    def test_failing_statement_keeps_earlier_results_and_exits_1(self, dsn: str, tmp_path: Path) -> None:
        """The results before the failing statement are printed, the error goes to stderr, the rest does not run."""
        result = sql(tmp_path, dsn, "SELECT 'first' AS f; SELECT * FROM nope; SELECT 'third' AS t")
        assert result.returncode == 1
        assert result.stdout == "f\n-----\nfirst\n(1 row)\n"
        assert 'relation "nope" does not exist' in result.stderr
        assert "third" not in result.stdout
        assert "Traceback" not in result.stderr

    def test_failing_statement_in_json_leaves_a_valid_document(self, dsn: str, tmp_path: Path) -> None:
        """With --format json the earlier results are still one parseable document (one array per statement)."""
        result = sql(tmp_path, dsn, "SELECT 1 AS a; SELECT 1/0", "--format", "json")
        assert result.returncode == 1
        assert json.loads(result.stdout) == [[{"a": 1}]]
        assert "division by zero" in result.stderr

    def test_statements_run_as_one_transaction_like_psql_c(
        self, dsn: str, conn: psycopg.Connection, tmp_path: Path
    ) -> None:
        """As with ``psql -c``, a failure rolls back the statements before it in the same string."""
        conn.execute("CREATE TABLE IF NOT EXISTS cli_probe (x int)")
        try:
            result = sql(tmp_path, dsn, "INSERT INTO cli_probe VALUES (1); SELECT 1/0")
            assert result.returncode == 1
            assert result.stdout == "INSERT 0 1\n"
            assert conn.execute("SELECT count(*) FROM cli_probe").fetchone() == (0,)
            assert sql(tmp_path, dsn, "INSERT INTO cli_probe VALUES (2)").stdout == "INSERT 0 1\n"
            assert conn.execute("SELECT x FROM cli_probe").fetchall() == [(2,)]
        finally:
            conn.execute("DROP TABLE cli_probe")

    def test_copy_to_stdout_prints_what_the_server_sent(self, dsn: str, tmp_path: Path) -> None:
        """``COPY ... TO STDOUT`` output is printed as sent, in order; in JSON as its lines."""
        command = "SELECT 1 AS a; COPY (SELECT x, x * 2 FROM generate_series(1, 2) x) TO STDOUT WITH (FORMAT csv)"
        result = sql(tmp_path, dsn, command + "; SELECT 'after' AS b")
        assert result.returncode == 0, result.stderr
        assert result.stdout == "a\n-\n1\n(1 row)\n\n1,2\n2,4\n\nb\n-----\nafter\n(1 row)\n"
        result = sql(tmp_path, dsn, command, "--format", "json")
        assert json.loads(result.stdout) == [[{"a": 1}], ["1,2", "2,4"]]

    def test_copy_from_stdin_is_refused_and_stops_the_rest(
        self, dsn: str, conn: psycopg.Connection, tmp_path: Path
    ) -> None:
        """``COPY ... FROM STDIN`` has no input here: a clear error, exit 1, and what follows does not run."""
        conn.execute("CREATE TABLE IF NOT EXISTS cli_copy_probe (x int)")
        try:
            result = sql(
                tmp_path, dsn, "SELECT 1 AS a; COPY cli_copy_probe FROM STDIN; INSERT INTO cli_copy_probe VALUES (1)"
            )
            assert result.returncode == 1
            assert result.stdout == "a\n-\n1\n(1 row)\n"
            assert "COPY FROM STDIN cannot run through sql -c" in result.stderr and "psql" in result.stderr
            assert "Traceback" not in result.stderr
            assert conn.execute("SELECT count(*) FROM cli_copy_probe").fetchone() == (0,)
        finally:
            conn.execute("DROP TABLE cli_copy_probe")

    def test_json_keeps_a_column_name_given_twice(self, dsn: str, tmp_path: Path) -> None:
        """``SELECT 1, 2`` (two ``?column?``) loses no value: the later key gets ``_2``, never a taken name."""
        result = sql(tmp_path, dsn, "SELECT 1, 2, 3 AS a, 4 AS a, 5 AS a_2", "--format", "json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == [{"?column?": 1, "?column?_2": 2, "a": 3, "a_3": 4, "a_2": 5}]

    def test_interval_is_shown_as_postgresql_writes_it(self, dsn: str, tmp_path: Path) -> None:
        """An interval reads as PostgreSQL's text in every format, NULL still empty / null."""
        command = "SELECT interval '1 day 2 hours' AS i UNION ALL SELECT NULL"
        table = sql(tmp_path, dsn, command)
        assert table.stdout.splitlines()[2:4] == ["1 day 02:00:00", ""]
        assert json.loads(sql(tmp_path, dsn, command, "--format", "json").stdout) == [
            {"i": "1 day 02:00:00"},
            {"i": None},
        ]

    def test_notices_go_to_stderr(self, dsn: str, tmp_path: Path) -> None:
        """A server notice is shown on stderr, the results stay alone on stdout."""
        result = sql(
            tmp_path, dsn, "DO $$BEGIN RAISE NOTICE 'hello from plpgsql'; END$$; SELECT 1 AS a", "--format", "json"
        )
        assert result.returncode == 0, result.stderr
        assert "NOTICE:  hello from plpgsql" in result.stderr
        assert json.loads(result.stdout) == [[], [{"a": 1}]]

    def test_ctrl_c_cancels_the_running_statement(self, dsn: str, conn: psycopg.Connection, tmp_path: Path) -> None:
        """SIGINT while a statement runs cancels it on the server: its error on stderr, exit 1, no traceback."""
        config = write_config(tmp_path, 0, 0)
        process = subprocess.Popen(
            tracetables_argv("sql", "--config", str(config), "-c", "SELECT 'before' AS b; SELECT pg_sleep(600)"),
            env=child_env(dsn),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + COMMAND_TIMEOUT
            while conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE %s AND pid <> pg_backend_pid()",
                ["%pg_sleep(600)%"],
            ).fetchone() != (1,):
                assert process.poll() is None and time.monotonic() < deadline, "the query never started"
                time.sleep(0.05)
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=COMMAND_TIMEOUT)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        assert process.returncode == 1, err
        assert "canceling statement due to user request" in err
        assert "Traceback" not in err and "KeyboardInterrupt" not in err
        assert out == "b\n------\nbefore\n(1 row)\n"

    def test_unknown_format_is_a_usage_error(self, tmp_path: Path) -> None:
        """``--format xml`` exits 2 naming the option, before any database is reached."""
        result = sql(tmp_path, "host=unused", "SELECT 1", "--format", "xml")
        assert result.returncode == 2
        assert "--format" in result.stderr and "'xml'" in result.stderr
