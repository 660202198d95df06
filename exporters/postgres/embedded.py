"""A private PostgreSQL server run from the machine's PostgreSQL server binaries.

``tracetables serve`` uses it when no database DSN is configured (a durable data
directory reused across runs), and the test suite for throwaway clusters
(``durable=False``).  The server listens on a Unix socket in a private (0700)
directory, where the owner role is trusted; TCP is off unless ``listen_host`` is set
(loopback), and TCP connections need a password (scram-sha-256).  As root, the server runs as
the ``postgres`` user (else ``nobody``), since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import logging
import math
import os
import pwd
import re
import shlex
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

logger = logging.getLogger(__name__)

_SOCKET_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux
_LOG_TAIL_LINES = 20
_RESERVED_SETTINGS = frozenset({"port", "listen_addresses", "unix_socket_directories", "hba_file"})
_HBA_FILE = "tracetables_hba.conf"
_LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*\Z")
_BINARIES = ("initdb", "pg_ctl", "postgres")


class EmbeddedPostgresError(RuntimeError):
    """A step of managing the embedded server failed; says which, with the server log tail."""


class NoClusterError(EmbeddedPostgresError):
    """The data directory holds no cluster, and this caller may not create one."""


@dataclass(frozen=True, slots=True)
class EmbeddedPostgresConfig:
    """Settings of an embedded PostgreSQL cluster.

    Attributes:
        data_dir: Cluster directory; initdb'd when missing or empty, reused otherwise.
        database: Database created on start when missing.
        user: Superuser name given to initdb; the DSN connects as this role.
        durable: False turns off fsync, synchronous_commit and full_page_writes.
        extra_settings: More postgresql.conf settings, passed as ``-c name=value``.
        port: Port number; names the socket file, and is the TCP port with ``listen_host``.
        listen_host: Loopback address to accept TCP connections on (password required);
            empty: Unix socket only.
        create: False: fail with :class:`NoClusterError` (creating nothing) when
            ``data_dir`` holds no cluster, instead of running initdb.
    """

    data_dir: Path
    database: str = "tracetables"
    user: str = "tracetables"
    durable: bool = True
    extra_settings: Mapping[str, str] = field(default_factory=dict)
    port: int = 5432
    listen_host: str = ""
    create: bool = True


def find_pg_bindir() -> Path:
    """Find the directory holding ``initdb``, ``pg_ctl`` and ``postgres``.

    Tries env ``TRACETABLES_PG_BINDIR`` (alone, when set), else ``pg_config --bindir``, the
    highest ``/usr/lib/postgresql/*/bin``, then the directory of ``initdb`` on PATH.

    Returns:
        The binaries directory.

    Raises:
        EmbeddedPostgresError: No candidate directory holds all three binaries.
    """
    env = os.environ.get("TRACETABLES_PG_BINDIR")
    candidates = [Path(env)] if env else _bindir_candidates()
    for bindir in candidates:
        if all(os.access(bindir / name, os.X_OK) for name in _BINARIES):
            return bindir
    raise EmbeddedPostgresError(
        f"PostgreSQL server binaries ({', '.join(_BINARIES)}) not found (tried: "
        f"{', '.join(map(str, candidates)) or 'nothing'}); install them (Debian: apt-get "
        "install postgresql) or set TRACETABLES_PG_BINDIR"
    )


def _bindir_candidates() -> list[Path]:
    found = []
    pg_config = shutil.which("pg_config")
    try:
        out = (
            subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=False)
            if pg_config
            else None
        )
        if out and out.returncode == 0 and out.stdout.strip():
            found.append(Path(out.stdout.strip()))
    except (OSError, subprocess.SubprocessError):
        pass

    def version(bindir: Path) -> tuple[int, ...]:
        parts = bindir.parent.name.split(".")
        return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else (-1,)

    found += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    initdb = shutil.which("initdb")
    return found + ([Path(initdb).resolve().parent] if initdb else [])


def _run_as() -> pwd.struct_passwd | None:
    """The unprivileged user to run PostgreSQL as when this process is root, else None."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
    raise EmbeddedPostgresError(
        "running as root, and neither user 'postgres' nor 'nobody' "
        "exists to run PostgreSQL as (it refuses to run as root)"
    )


def _can_traverse(path: Path, who: pwd.struct_passwd) -> bool:
    st = path.stat()
    if st.st_uid == who.pw_uid:
        return bool(st.st_mode & stat.S_IXUSR)
    in_group = st.st_gid in os.getgrouplist(who.pw_name, who.pw_gid)
    return bool(st.st_mode & (stat.S_IXGRP if in_group else stat.S_IXOTH))


def _quoted(path: Path) -> str:
    """A path as a double-quoted postgresql.conf value."""
    return '"' + str(path).replace('"', '""') + '"'


def _pid_state(pid: int) -> str:
    """'alive', 'zombie' (exited, not reaped yet) or 'dead'."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "dead"
    except PermissionError:
        return "alive"
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return "alive"
    return "zombie" if state == "Z" else "alive"


def _read_pid(lock_file: Path) -> int | None:
    try:
        return int(lock_file.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None


def running_dsn(data_dir: Path, database: str = "tracetables", user: str = "tracetables") -> str | None:
    """The DSN of a server already running and ready on ``data_dir``, if any.

    Lets one-shot commands share the server of a collector serving from the same data dir.

    Args:
        data_dir: The cluster directory.
        database: Database to put in the DSN.
        user: Role to put in the DSN.

    Returns:
        A key=value DSN read from ``postmaster.pid``, or None when no server is ready.
    """
    try:
        lines = (Path(data_dir) / "postmaster.pid").read_text().splitlines()
        pid, port, socket_dir, status = int(lines[0]), int(lines[3]), lines[4], lines[7]
    except (OSError, ValueError, IndexError):
        return None
    if _pid_state(pid) != "alive" or status.strip() != "ready" or not socket_dir:
        return None
    return make_conninfo(host=socket_dir, port=port, user=user, dbname=database)


class EmbeddedPostgres:
    """A PostgreSQL server started by this object, reachable over a private Unix socket.

    Args:
        config: Where the cluster lives and how the server is set up.

    Raises:
        ValueError: ``extra_settings`` has a malformed or reserved setting name, or
            ``listen_host`` is not a loopback address.
    """

    def __init__(self, config: EmbeddedPostgresConfig) -> None:
        for name in config.extra_settings:
            if not _SETTING_NAME.match(name) or name in _RESERVED_SETTINGS:
                raise ValueError(f"extra_settings: {name!r} is not a setting you may pass")
        if config.listen_host and config.listen_host not in _LOOPBACK_HOSTS:
            raise ValueError(f"listen_host: loopback only (127.0.0.1, ::1 or localhost), got {config.listen_host!r}")
        self._config = config
        self._data_dir = Path(config.data_dir).expanduser().resolve()
        self._pid_file = self._data_dir / "postmaster.pid"
        self._bindir = Path()
        self._run_user: pwd.struct_passwd | None = None
        self._pid: int | None = None
        self._dsn: str | None = None
        self._tmp_socket_dir: Path | None = None

    @property
    def dsn(self) -> str:
        """The libpq key=value DSN of the running server.

        Raises:
            EmbeddedPostgresError: The server is not started (by this object).
        """
        if self._dsn is None:
            raise EmbeddedPostgresError(f"embedded PostgreSQL on {self._data_dir} is not started")
        return self._dsn

    def start(self, timeout: float = 60.0) -> str:
        """Initialise the cluster if needed, start the server and create the database.

        Args:
            timeout: Seconds allowed for initdb plus the server start.

        Returns:
            The DSN ``host=<socket dir> port=… user=… dbname=…``; unchanged if started.

        Raises:
            EmbeddedPostgresError: A binary or step failed, or a server already runs on
                the data dir.
        """
        if self._dsn is not None:
            return self._dsn
        began = time.monotonic()
        deadline, data_dir, cfg = began + timeout, self._data_dir, self._config
        if not cfg.create and not (data_dir / "PG_VERSION").is_file():
            raise NoClusterError(
                f"no database cluster in {data_dir}; create it with `tracetables serve` or "
                "`tracetables db migrate` (or point --config at the config that made it)"
            )
        self._bindir, self._run_user = find_pg_bindir(), _run_as()
        self._prepare_data_dir()
        old_pid = _read_pid(self._pid_file)
        if old_pid and _pid_state(old_pid) == "alive":
            raise EmbeddedPostgresError(
                f"PostgreSQL is already running on {data_dir}, pid {old_pid}; stop it first "
                f"(if no such server exists, remove {self._pid_file})"
            )
        if not (data_dir / "PG_VERSION").exists():
            self._initdb(deadline)
        log_file = self._private_dir(data_dir / "log") / "server.log"
        hba_file = self._write_hba()
        socket_dir = self._socket_dir()
        # postgres clears a crashed server's lock files itself, but it takes a pid that
        # exited and was not reaped yet (a zombie, under a lax init) for a live server.
        for lock in (self._pid_file, socket_dir / f".s.PGSQL.{cfg.port}.lock"):
            lock_pid = _read_pid(lock)
            if lock_pid and _pid_state(lock_pid) == "zombie":
                logger.warning("removing %s of exited, unreaped pid %d", lock, lock_pid)
                lock.unlink(missing_ok=True)
        settings = {
            "shared_buffers": "128MB",
            "max_connections": "100",
            # tt_project locks each trace of a batch that holds runs or steps.
            "max_locks_per_transaction": "256",
            # Error reports without DETAIL/CONTEXT lines and without the statement: a
            # failed COPY would otherwise copy span values into the server log.
            "log_error_verbosity": "terse",
            "log_min_error_statement": "panic",
        }
        if not cfg.durable:
            settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        settings.update(cfg.extra_settings)
        settings.update(
            listen_addresses=cfg.listen_host,
            port=str(cfg.port),
            hba_file=str(hba_file),
            unix_socket_directories=_quoted(socket_dir),
        )
        options = " ".join(f"-c {shlex.quote(f'{k}={v}')}" for k, v in settings.items())
        log_offset = log_file.stat().st_size if log_file.exists() else 0
        wait = max(1, math.ceil(deadline - time.monotonic()))
        result = self._run(
            ["pg_ctl", "-D", str(data_dir), "-l", str(log_file), "-w", "-t", str(wait), "-o", options, "start"],
            wait + 15,
        )
        if result.returncode != 0:
            pid = _read_pid(self._pid_file)
            if pid and _pid_state(pid) == "alive":  # e.g. timed out: don't leave it behind
                self._run(["pg_ctl", "-D", str(data_dir), "-m", "immediate", "-w", "stop"], 30)
            self._remove_tmp_socket_dir()
            raise EmbeddedPostgresError(self._failure("pg_ctl start", result, log_file, log_offset))
        self._pid = _read_pid(self._pid_file)
        if self._pid is None:
            raise EmbeddedPostgresError(f"pg_ctl started a server but {self._pid_file} is unreadable")
        dsn = make_conninfo(host=str(socket_dir), port=cfg.port, user=cfg.user, dbname=cfg.database)
        try:
            self._create_database(make_conninfo(dsn, dbname="postgres"))
        except psycopg.Error as exc:
            self.stop()
            raise EmbeddedPostgresError(f"creating database {cfg.database!r} failed: {exc}") from exc
        self._dsn = dsn
        logger.info(
            "embedded PostgreSQL started: data_dir=%s pid=%d socket_dir=%s tcp=%s (%.2fs)",
            data_dir,
            self._pid,
            socket_dir,
            f"{cfg.listen_host}:{cfg.port}" if cfg.listen_host else "off",
            time.monotonic() - began,
        )
        return dsn

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server (fast shutdown); safe to call twice or before start.

        Args:
            timeout: Seconds to wait for the server to exit.

        Raises:
            EmbeddedPostgresError: pg_ctl stop failed (the server may still be running).
        """
        pid = self._pid
        if pid is None:
            return
        began = time.monotonic()
        if _read_pid(self._pid_file) == pid and _pid_state(pid) == "alive":
            result = self._run(
                [
                    "pg_ctl",
                    "-D",
                    str(self._data_dir),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    str(max(1, math.ceil(timeout))),
                    "stop",
                ],
                timeout + 15,
            )
            if result.returncode != 0:
                raise EmbeddedPostgresError(
                    self._failure("pg_ctl stop", result, self._data_dir / "log" / "server.log", 0)
                )
            logger.info(
                "embedded PostgreSQL stopped: data_dir=%s pid=%d (%.2fs)", self._data_dir, pid, time.monotonic() - began
            )
        else:  # crashed or killed; never stop a server someone else started since
            logger.warning("embedded PostgreSQL on %s (pid %d) was no longer running", self._data_dir, pid)
        self._pid = self._dsn = None
        self._remove_tmp_socket_dir()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _prepare_data_dir(self) -> None:
        data_dir, who = self._data_dir, self._run_user
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        blocked = next((p for p in data_dir.parents if who and not _can_traverse(p, who)), None)
        if who and blocked:
            raise EmbeddedPostgresError(
                f"PostgreSQL must run as user {who.pw_name!r} (this process is root), but that "
                f"user cannot traverse {blocked} ({stat.filemode(blocked.stat().st_mode)}); "
                "make it traversable (e.g. chmod o+x) or put the data dir elsewhere"
            )
        data_dir.mkdir(mode=0o700, exist_ok=True)
        if who and not any(data_dir.iterdir()):
            os.chown(data_dir, who.pw_uid, who.pw_gid)

    def _private_dir(self, path: Path) -> Path:
        path.mkdir(mode=0o700, exist_ok=True)
        path.chmod(0o700)
        if self._run_user:
            os.chown(path, self._run_user.pw_uid, self._run_user.pw_gid)
        return path

    def _write_hba(self) -> Path:
        """The client authentication rules, rewritten on every start (so a reused data dir
        gets them too): the owner role over the socket trusted, everyone else, and TCP
        from loopback, by scram-sha-256 password; nothing else is accepted."""
        path = self._data_dir / _HBA_FILE
        user = self._config.user.replace('"', '""')
        path.write_text(
            "# Written by tracetables on each start of the embedded server; edits are lost.\n"
            f'local all "{user}" trust\n'
            "local all all scram-sha-256\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
            "host all all ::1/128 scram-sha-256\n",
            encoding="utf-8",
        )
        path.chmod(0o600)
        if self._run_user:
            os.chown(path, self._run_user.pw_uid, self._run_user.pw_gid)
        return path

    def _socket_dir(self) -> Path:
        preferred = self._data_dir / "sockets"
        if len(os.fsencode(preferred / f".s.PGSQL.{self._config.port}")) <= _SOCKET_PATH_MAX:
            return self._private_dir(preferred)
        base = tempfile.gettempdir()  # a short private dir instead: sockets have a path limit
        base = base if len(os.fsencode(base)) <= 64 else "/tmp"
        self._tmp_socket_dir = self._private_dir(Path(tempfile.mkdtemp(prefix="ttpg-", dir=base)))
        return self._tmp_socket_dir

    def _remove_tmp_socket_dir(self) -> None:
        if self._tmp_socket_dir is not None:
            shutil.rmtree(self._tmp_socket_dir, ignore_errors=True)
            self._tmp_socket_dir = None

    def _initdb(self, deadline: float) -> None:
        cfg, began = self._config, time.monotonic()
        result = self._run(
            [
                "initdb",
                "-D",
                str(self._data_dir),
                "--auth-local=trust",
                "--auth-host=reject",
                "-U",
                cfg.user,
                "-E",
                "UTF8",
                "--locale=C",
                *([] if cfg.durable else ["--no-sync"]),
            ],
            max(1.0, deadline - began),
        )
        if result.returncode != 0:
            raise EmbeddedPostgresError(self._failure("initdb", result, None, 0))
        logger.info("initialised PostgreSQL cluster in %s (%.2fs)", self._data_dir, time.monotonic() - began)

    def _run(self, cmd: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        argv, who = [str(self._bindir / cmd[0]), *cmd[1:]], self._run_user
        try:
            return subprocess.run(
                argv,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout,
                check=False,
                cwd="/",
                user=who.pw_uid if who else None,
                group=who.pw_gid if who else None,
                extra_groups=os.getgrouplist(who.pw_name, who.pw_gid) if who else None,
            )
        except subprocess.TimeoutExpired as exc:
            raise EmbeddedPostgresError(f"{argv[0]} timed out after {timeout:.0f}s") from exc
        except OSError as exc:
            raise EmbeddedPostgresError(f"could not run {argv[0]}: {exc}") from exc

    def _failure(
        self, step: str, result: subprocess.CompletedProcess[str], log_file: Path | None, log_offset: int
    ) -> str:
        output = f"{result.stderr.strip()}\n{result.stdout.strip()}".strip()
        message = f"{step} failed (exit {result.returncode}) for {self._data_dir}:\n{output}"
        if log_file is None:
            return message
        try:
            with log_file.open("rb") as fh:
                fh.seek(log_offset)
                lines = fh.read().decode(errors="replace").splitlines()
        except OSError as exc:
            lines = [f"(server log unreadable: {exc})"]
        return message + f"\n--- last lines of {log_file} ---\n" + "\n".join(lines[-_LOG_TAIL_LINES:])

    def _create_database(self, admin_dsn: str) -> None:
        name = self._config.database
        with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=10) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                return
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            logger.info("created database %s", name)
