"""The ``tracetables`` command line: ``serve``, ``validate``, ``components``, ``db migrate``,
``db status``, ``db grant-reader``, ``sql``, and ``--version``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import logging
import os
import shutil
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .components_cli import describe
from .config import CollectorConfig, default_config_path, load_config
from .errors import ConfigError
from .log_format import JsonLogFormatter
from .sql_output import FORMATS, render
from .sql_results import run_statements
from .validate import validate_config

if TYPE_CHECKING:
    import psycopg.errors

logger = logging.getLogger("tracetables")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the console script; exits non-zero with a message on failure."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        raise SystemExit(2)
    import psycopg

    from tracetables.exporters.postgres.embedded import EmbeddedPostgresError

    try:
        code = args.func(args)
    except ConfigError as exc:
        print(f"tracetables: invalid config: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except (psycopg.Error, EmbeddedPostgresError) as exc:  # e.g. the database is unreachable: no traceback
        print(f"tracetables: {exc}".rstrip(), file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:  # Ctrl-C outside serve (which stops cleanly on it): no traceback
        print("tracetables: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except BrokenPipeError:  # the reader went away (``| head``): stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        raise SystemExit(141) from None
    raise SystemExit(code)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tracetables", description="OpenTelemetry spans into PostgreSQL tables.")
    parser.add_argument("--version", action="version", version=f"tracetables {_version()}")
    sub = parser.add_subparsers(metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", type=Path, help="collector config (default: ./otel-config.yaml or the built-in one)")
        return p

    serve = with_config(sub.add_parser("serve", help="run the collector until SIGTERM or SIGINT"))
    serve.set_defaults(func=_serve)
    validate = with_config(
        sub.add_parser("validate", help="check a config as far as a start would, without binding ports or connecting")
    )
    validate.set_defaults(func=_validate)
    components = sub.add_parser("components", help="list the component types of this build")
    components.add_argument("--format", choices=("table", "json"), default="table", help="output format (table)")
    components.set_defaults(func=_components)
    db = sub.add_parser("db", help="database schema")
    dbsub = db.add_subparsers(metavar="ACTION")
    with_config(
        dbsub.add_parser(
            "migrate",
            help="apply pending migrations (creates the embedded cluster if its data dir has none)",
        )
    ).set_defaults(func=_db_migrate)
    with_config(dbsub.add_parser("status", help="show applied and pending migrations")).set_defaults(func=_db_status)
    grant = with_config(
        dbsub.add_parser(
            "grant-reader",
            help="create or update a login role that can only read the views and call the query functions",
        )
    )
    grant.add_argument("name", metavar="NAME", help="the role to create or update")
    grant.add_argument(
        "--password-env",
        metavar="VAR",
        help="read the password from this environment variable (else: prompted on a terminal, "
        "else generated and printed once)",
    )
    grant.set_defaults(func=_db_grant_reader)
    sqlp = with_config(sub.add_parser("sql", help="run a query (-c) or open psql on the configured database"))
    sqlp.add_argument("-c", "--command", help="SQL to run (one or more statements); prints each result")
    sqlp.add_argument("--format", choices=FORMATS, default="table", help="output of -c (table)")
    sqlp.set_defaults(func=_sql)
    return parser


def _version() -> str:
    try:
        return importlib.metadata.version("tracetables")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def _load(args: argparse.Namespace) -> CollectorConfig:
    return load_config(args.config or default_config_path())


def _setup_logging(level: str, encoding: str = "console") -> None:
    handler = logging.StreamHandler()
    if encoding == "json":
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level={"warn": "WARNING"}.get(level.lower(), level.upper()), handlers=[handler])


def _serve(args: argparse.Namespace) -> int:
    config = _load(args)
    logs = config.service.telemetry.logs
    _setup_logging(logs.level, logs.encoding)
    return asyncio.run(_run_service(config))


async def _run_service(config: CollectorConfig) -> int:
    from .service import Service

    service = Service(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await service.start()
    except Exception as exc:
        logger.error("cannot start: %s", exc)
        return 1
    ports = ", ".join(
        f"{rid}/{name} on port {server.port}"
        for rid, r in service.receivers.items()
        for name, server in r.servers.items()
    )
    logger.info("tracetables is serving: %s", ports)
    await stop.wait()
    logger.info("shutting down: draining requests and batches")
    await service.shutdown()
    return 0


@contextlib.contextmanager
def _database(config: CollectorConfig, create: bool = False) -> Iterator[str]:
    """The DSN of the configured database, starting the embedded one for the duration.

    The embedded cluster is created (initdb) only with ``create``; otherwise a data dir
    without one fails with a line naming it (NoClusterError), and nothing is created.
    """
    from tracetables.exporters.postgres.config import PostgresExporterConfig

    pg = next((c for c in config.exporters.values() if isinstance(c, PostgresExporterConfig)), None)
    if pg is None:
        raise ConfigError("exporters: no postgres exporter is configured")
    if pg.dsn:
        yield pg.dsn
        return
    from tracetables.exporters.postgres.embedded import EmbeddedPostgres, running_dsn
    from tracetables.exporters.postgres.store import embedded_server_config

    server_config = embedded_server_config(pg, create=create)
    dsn = running_dsn(server_config.data_dir)
    if dsn is not None:  # a collector is serving from this data directory: share its server
        yield dsn
        return
    with EmbeddedPostgres(server_config) as server:
        yield server.dsn


def _validate(args: argparse.Namespace) -> int:
    path = args.config or default_config_path()
    validate_config(path)
    print(f"config is valid: {path}")
    return 0


def _components(args: argparse.Namespace) -> int:
    from .components import REGISTRY

    print(describe(REGISTRY, as_json=args.format == "json"))
    return 0


def _db_migrate(args: argparse.Namespace) -> int:
    from tracetables.exporters.postgres.schema import migrate

    with _database(_load(args), create=True) as dsn:
        applied = migrate(dsn)
    for m in applied:
        print(f"applied {m.version:04d}_{m.name}")
    if not applied:
        print("schema is up to date")
    return 0


def _db_status(args: argparse.Namespace) -> int:
    import psycopg

    from tracetables.exporters.postgres.schema import applied_versions, available_migrations

    with _database(_load(args)) as dsn, psycopg.connect(dsn) as conn:
        done = applied_versions(conn)
    pending = 0
    for m in available_migrations():
        state = "applied" if m.version in done else "pending"
        pending += state == "pending"
        print(f"{m.version:04d}_{m.name}  {state}")
    return 1 if pending else 0


def _db_grant_reader(args: argparse.Namespace) -> int:
    from tracetables.exporters.postgres.reader_role import ReaderRoleError, check_role_name, grant_reader

    try:
        check_role_name(args.name)
    except ReaderRoleError as exc:
        print(f"tracetables: {exc}", file=sys.stderr)
        return 2
    password, generated = _reader_password(args.name, args.password_env)
    if password is None:
        return 2
    with _database(_load(args)) as dsn:
        try:
            created = grant_reader(dsn, args.name, password)
        except ReaderRoleError as exc:
            print(f"tracetables: {exc}", file=sys.stderr)
            return 1
    print(f"{'created' if created else 'updated'} role {args.name} (member of tracetables_reader)")
    if generated:
        print(f"password: {password}")
        print("(shown once: store it now, e.g. in your Grafana data source)")
    return 0


def _reader_password(name: str, env_var: str | None) -> tuple[str | None, bool]:
    """The password and whether it was generated: from ``env_var``, else asked on a terminal,
    else generated. None (after a message) when the variable is unset or empty."""
    import getpass
    import secrets

    if env_var is not None:
        value = os.environ.get(env_var, "")
        if not value:
            print(f"tracetables: --password-env: environment variable {env_var} is unset or empty", file=sys.stderr)
            return None, False
        return value, False
    if sys.stdin.isatty():
        value = getpass.getpass(f"password for {name} (empty: generate one): ")
        if value:
            if getpass.getpass("again: ") != value:
                print("tracetables: the passwords differ", file=sys.stderr)
                return None, False
            return value, False
    return secrets.token_urlsafe(24), True


def _sql(args: argparse.Namespace) -> int:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    with _database(_load(args)) as dsn:
        if args.command is None:
            psql = shutil.which("psql")
            if psql is None:
                print("tracetables: psql not found; use -c to run a query", file=sys.stderr)
                return 1
            # The password travels in the environment, not on a command line others can read.
            params = conninfo_to_dict(dsn)
            password = params.pop("password", None)
            env = dict(os.environ, **({"PGPASSWORD": str(password)} if password is not None else {}))
            return os.spawnve(os.P_WAIT, psql, [psql, make_conninfo(**{k: str(v) for k, v in params.items()})], env)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.add_notice_handler(_print_notice)
            run = run_statements(conn, args.command)
    if run.results or run.error is None:  # what ran before a failing statement is shown too
        sys.stdout.write(render(run.results, args.format, run.statements))
        sys.stdout.flush()
    if run.error is not None:
        print(f"tracetables: {run.error}".rstrip(), file=sys.stderr)
        return 1
    return 0


def _print_notice(diag: psycopg.errors.Diagnostic) -> None:
    """A server notice (``RAISE NOTICE``, ``... already exists, skipping``) on stderr, as psql shows it."""
    print(f"{diag.severity or 'NOTICE'}:  {diag.message_primary or ''}", file=sys.stderr)
