"""Login roles for tools that only read: members of ``tracetables_reader`` (migration 0010).

The password is hashed (SCRAM-SHA-256) by the client library before it is sent, so the
clear text never reaches the server, its log or ``pg_stat_activity``.
"""

from __future__ import annotations

import re

import psycopg
from psycopg import sql

READER_GROUP = "tracetables_reader"
_ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}\Z")


class ReaderRoleError(ValueError):
    """The role cannot be made a reader; the message says why."""


def check_role_name(name: str) -> None:
    """A plain lower-case identifier, not reserved by PostgreSQL or tracetables.

    Raises:
        ReaderRoleError: naming the role.
    """
    if not _ROLE_NAME.match(name):
        raise ReaderRoleError(
            f"NAME: {name!r} is not a plain role name (lower-case letters, digits, _; "
            "at most 63, not starting with a digit)"
        )
    if name.startswith("pg_") or name in (READER_GROUP, "public"):
        raise ReaderRoleError(f"NAME: {name!r} is reserved")


def grant_reader(dsn: str, name: str, password: str) -> bool:
    """Create the login role ``name`` in ``tracetables_reader``, or update an existing one's
    password and membership; returns True if the role was created.

    Raises:
        ReaderRoleError: the name is not allowed, the schema is not migrated, the group
            role is missing, or ``name`` is the connecting role or an existing one that
            could do more than read (attributes, other memberships, owned relations).
        psycopg.Error: the database refused (e.g. this user may not create roles).
    """
    check_role_name(name)
    if not password:
        raise ReaderRoleError("the password is empty")
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT to_regprocedure('tt_grant_reader_access()') IS NOT NULL, "
            "EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %s), current_user",
            (READER_GROUP,),
        ).fetchone()
        assert row is not None
        migrated, group_exists, me = bool(row[0]), bool(row[1]), str(row[2])
        if not migrated:
            raise ReaderRoleError(
                "the schema is not migrated (migration 0010 defines the reader role's "
                "grants): run `tracetables db migrate` first"
            )
        if not group_exists:
            raise ReaderRoleError(
                f"role {READER_GROUP} does not exist: {me} could not create it when migrating; "
                f"an administrator can run CREATE ROLE {READER_GROUP} NOLOGIN, then this again"
            )
        if name == me:
            raise ReaderRoleError(f"NAME: {name!r} is the role this command connects as")
        existing = conn.execute(
            "SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls"
            " FROM pg_roles WHERE rolname = %s",
            (name,),
        ).fetchone()
        if existing is not None and existing[0]:
            raise ReaderRoleError(
                f"NAME: role {name!r} exists and has privileges beyond reading "
                "(superuser, createrole, createdb, replication or bypassrls)"
            )
        if existing is not None:
            other = conn.execute(
                "SELECT string_agg(g.rolname, ', ' ORDER BY g.rolname) FROM pg_auth_members m"
                " JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles r ON r.oid = m.member"
                " WHERE r.rolname = %s AND g.rolname <> %s",
                (name, READER_GROUP),
            ).fetchone()
            owns = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE r.rolname = %s)",
                (name,),
            ).fetchone()
            if other is not None and other[0]:
                raise ReaderRoleError(
                    f"NAME: role {name!r} exists and is a member of {other[0]}: it could do more than read"
                )
            if owns is not None and owns[0]:
                raise ReaderRoleError(
                    f"NAME: role {name!r} exists and owns tables or views here: it could do more than read"
                )
        verifier = conn.pgconn.encrypt_password(password.encode(), name.encode(), b"scram-sha-256").decode()
        role, group = sql.Identifier(name), sql.Identifier(READER_GROUP)
        with conn.transaction():
            if existing is None:
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(role, sql.Literal(verifier), group)
                )
            else:
                conn.execute(sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(role, sql.Literal(verifier)))
                conn.execute(sql.SQL("GRANT {} TO {}").format(group, role))
            conn.execute("SELECT tt_grant_reader_access()")  # views a migration forgot to grant
    return existing is None
