"""Tests of the embedded PostgreSQL server, against the machine's real PostgreSQL binaries.

Clusters live under a directory made with ``tempfile.mkdtemp`` and chmod'ed 0755 rather
than under pytest's ``tmp_path``: as root the server runs as ``postgres``/``nobody``, and
pytest's base temp dir (``/tmp/pytest-of-<user>``) is 0700, so that user could not reach
the data dir.  Every cluster uses ``durable=False`` to keep the file fast.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, LiteralString

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tracetables.exporters.postgres.embedded import (
    EmbeddedPostgres,
    EmbeddedPostgresConfig,
    EmbeddedPostgresError,
    find_pg_bindir,
    running_dsn,
)

MakePg = Callable[..., EmbeddedPostgres]


def _pid_gone(pid: int) -> bool:
    """True once pid has exited (a zombie waiting for its parent counts as exited)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True


def _wait_gone(pids: list[int], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(_pid_gone(pid) for pid in pids):
        assert time.monotonic() < deadline, f"processes {pids} still alive"
        time.sleep(0.02)


def _children(pid: int) -> list[int]:
    found = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat_file.parent.name))
    return found


def _postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().splitlines()[0])


def _cleanup(base: Path) -> None:
    """Kill (by pid) any postmaster a failed test left running under base, then remove it."""
    for pid_file in base.rglob("postmaster.pid"):
        pid = _postmaster_pid(pid_file.parent)
        if not _pid_gone(pid):
            os.kill(pid, signal.SIGQUIT)
            _wait_gone([pid])
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def base_dir() -> Iterator[Path]:
    """A fresh world-traversable scratch directory (see the module docstring)."""
    path = Path(tempfile.mkdtemp(prefix="tt-embedded-"))
    path.chmod(0o755)
    yield path
    _cleanup(path)


@pytest.fixture
def make_pg(base_dir: Path) -> Iterator[MakePg]:
    """Factory of non-durable EmbeddedPostgres objects, all stopped at teardown."""
    made: list[EmbeddedPostgres] = []

    def make(data_dir: Path | None = None, **settings: Any) -> EmbeddedPostgres:
        config = EmbeddedPostgresConfig(data_dir=data_dir or base_dir / "pg", durable=False, **settings)
        made.append(EmbeddedPostgres(config))
        return made[-1]

    yield make
    for pg in reversed(made):
        pg.stop()


@pytest.fixture(scope="module")
def running_pg() -> Iterator[EmbeddedPostgres]:
    """One shared running server for read-only checks."""
    base = Path(tempfile.mkdtemp(prefix="tt-embedded-"))
    base.chmod(0o755)
    pg = EmbeddedPostgres(EmbeddedPostgresConfig(data_dir=base / "pg", durable=False))
    try:
        pg.start()
        yield pg
    finally:
        pg.stop()
        _cleanup(base)


def _query(dsn: str, query: LiteralString) -> tuple[object, ...]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return tuple(row)


def test_find_pg_bindir_honours_env(monkeypatch: pytest.MonkeyPatch, base_dir: Path) -> None:
    """TRACETABLES_PG_BINDIR wins when valid and fails clearly when it holds no server."""
    found = find_pg_bindir()
    monkeypatch.setenv("TRACETABLES_PG_BINDIR", str(found))
    assert find_pg_bindir() == found
    monkeypatch.setenv("TRACETABLES_PG_BINDIR", str(base_dir))
    with pytest.raises(EmbeddedPostgresError, match="TRACETABLES_PG_BINDIR"):
        find_pg_bindir()


def test_embedded_config_rejects_reserved_setting(base_dir: Path) -> None:
    """extra_settings may not override the socket/port settings the module manages."""
    with pytest.raises(ValueError, match="listen_addresses"):
        EmbeddedPostgres(EmbeddedPostgresConfig(base_dir / "pg", extra_settings={"listen_addresses": "*"}))


def test_embedded_start_serves_queries_over_dsn(running_pg: EmbeddedPostgres) -> None:
    """start() returns a key=value DSN reaching the created database as the configured user."""
    dsn = running_pg.dsn
    assert set(conninfo_to_dict(dsn)) == {"host", "port", "user", "dbname"}
    assert _query(dsn, "SELECT current_user, current_database(), 1 + 1") == ("tracetables", "tracetables", 2)


def test_embedded_listens_on_private_socket_only(running_pg: EmbeddedPostgres) -> None:
    """TCP is off and the socket directory is a 0700 directory owned by the server's user."""
    params = conninfo_to_dict(running_pg.dsn)
    socket_dir = Path(str(params["host"]))
    mode = socket_dir.stat().st_mode
    assert stat.S_IMODE(mode) == 0o700
    assert (socket_dir / f".s.PGSQL.{params['port']}").is_socket()
    assert socket_dir.stat().st_uid == (socket_dir.parent / "PG_VERSION").stat().st_uid
    assert _query(running_pg.dsn, "SHOW listen_addresses") == ("",)


def test_embedded_non_durable_settings_applied(running_pg: EmbeddedPostgres) -> None:
    """durable=False turns fsync & co off; the small-box defaults are in place."""
    assert _query(
        running_pg.dsn,
        "SELECT current_setting('fsync'), "
        "current_setting('synchronous_commit'), current_setting('full_page_writes'), "
        "current_setting('shared_buffers'), current_setting('max_connections')",
    ) == ("off", "off", "off", "128MB", "100")


def test_embedded_restart_keeps_data(make_pg: MakePg) -> None:
    """A second start on the same data dir reuses the cluster and finds earlier rows."""
    first = make_pg(database="spans")
    with psycopg.connect(first.start()) as conn:
        conn.execute("CREATE TABLE t (v text)")
        conn.execute("INSERT INTO t VALUES ('kept')")
    first.stop()
    second = make_pg(database="spans")
    assert _query(second.start(), "SELECT v FROM t") == ("kept",)


def test_embedded_stop_twice_is_safe(make_pg: MakePg, base_dir: Path) -> None:
    """stop() twice is a no-op the second time, and the server is really gone."""
    pg = make_pg()
    pg.start()
    pid = _postmaster_pid(base_dir / "pg")
    pg.stop()
    pg.stop()
    _wait_gone([pid])
    assert not (base_dir / "pg" / "postmaster.pid").exists()


def test_embedded_stop_before_start_is_safe(make_pg: MakePg) -> None:
    """stop() before start() does nothing, and dsn raises until started."""
    pg = make_pg()
    pg.stop()
    with pytest.raises(EmbeddedPostgresError, match="not started"):
        _ = pg.dsn


def test_embedded_context_manager_starts_and_stops(make_pg: MakePg, base_dir: Path) -> None:
    """The with-block runs a server that is stopped on exit."""
    with make_pg() as pg:
        assert _query(pg.dsn, "SELECT 1") == (1,)
        pid = _postmaster_pid(base_dir / "pg")
    _wait_gone([pid])


def test_embedded_second_instance_on_running_dir_fails(make_pg: MakePg, base_dir: Path) -> None:
    """Starting another EmbeddedPostgres on a running data dir names the running pid."""
    make_pg().start()
    pid = _postmaster_pid(base_dir / "pg")
    with pytest.raises(EmbeddedPostgresError, match=f"already running.*pid {pid}"):
        make_pg().start()


def test_embedded_restarts_after_sigkill(make_pg: MakePg, base_dir: Path) -> None:
    """A SIGKILLed server's data dir (stale postmaster.pid) starts again."""
    crashed = make_pg()
    crashed.start()
    pid = _postmaster_pid(base_dir / "pg")
    children = _children(pid)
    os.kill(pid, signal.SIGKILL)
    _wait_gone([pid, *children])  # backends detach shared memory as they notice
    restarted = make_pg()
    assert _query(restarted.start(), "SELECT 1") == (1,)
    crashed.stop()  # must not stop the new server, which has another pid
    assert _query(restarted.dsn, "SELECT 2") == (2,)


def test_embedded_bad_setting_reports_server_log(make_pg: MakePg, base_dir: Path) -> None:
    """A setting the server rejects raises with the server log's complaint; nothing runs."""
    pg = make_pg(extra_settings={"shared_buffers": "nonsense"})
    with pytest.raises(EmbeddedPostgresError) as info:
        pg.start()
    message = str(info.value)
    assert "pg_ctl start failed" in message
    assert 'invalid value for parameter "shared_buffers": "nonsense"' in message
    assert not (base_dir / "pg" / "postmaster.pid").exists()
    with pytest.raises(EmbeddedPostgresError, match="not started"):
        _ = pg.dsn


def test_embedded_long_data_dir_uses_short_socket_dir(make_pg: MakePg, base_dir: Path) -> None:
    """A data dir too deep for a Unix socket path gets a private socket dir in the temp dir."""
    data_dir = base_dir / ("d" * 60) / ("e" * 60) / "pg"
    assert len(str(data_dir)) > 110
    pg = make_pg(data_dir=data_dir)
    dsn = pg.start()
    socket_dir = Path(str(conninfo_to_dict(dsn)["host"]))
    assert data_dir not in socket_dir.parents
    assert stat.S_IMODE(socket_dir.stat().st_mode) == 0o700
    assert _query(dsn, "SELECT current_database()") == ("tracetables",)
    pg.stop()
    assert not socket_dir.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the server to another user")
def test_embedded_untraversable_parent_fails_clearly(make_pg: MakePg, base_dir: Path) -> None:
    """As root, a data dir below a 0700 directory is refused with a clear message."""
    locked = base_dir / "locked"
    locked.mkdir(mode=0o700)
    with pytest.raises(EmbeddedPostgresError, match=r"cannot traverse .*locked"):
        make_pg(data_dir=locked / "pg").start()


def test_running_dsn_finds_ready_server(make_pg: MakePg, base_dir: Path) -> None:
    """running_dsn() reaches a server started on the data dir, and is None once it stops."""
    assert running_dsn(base_dir / "pg") is None
    pg = make_pg()
    pg.start()
    dsn = running_dsn(base_dir / "pg")
    assert dsn is not None
    assert _query(dsn, "SELECT current_database()") == ("tracetables",)
    pg.stop()
    assert running_dsn(base_dir / "pg") is None


def test_embedded_server_log_keeps_failed_statements_values_out(running_pg: EmbeddedPostgres) -> None:
    """A failing statement's values (a rejected COPY row, say) do not reach the server log."""
    secret = "SECRET-9f3a-never-in-logs"
    with psycopg.connect(running_pg.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS log_probe (v jsonb)")
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            with conn.cursor() as cur, cur.copy("COPY log_probe (v) FROM STDIN") as copy:
                copy.write_row([f'{{"card": "{secret}" broken'])
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            conn.execute(f"SELECT '{secret} not json'::jsonb")
    logs = list((running_pg._data_dir / "log").glob("*"))
    assert logs, "the server writes a log"
    text = "".join(p.read_text(errors="replace") for p in logs)
    assert "invalid input syntax for type json" in text  # the error itself is logged
    assert secret not in text
