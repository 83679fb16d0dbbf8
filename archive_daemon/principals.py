"""Users, programs (groups of users), memberships and API tokens.

Users and programs share one namespace of names, since a grant or an override file names
either. A token is shown once, when created; only its SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import secrets

from .config import ConfigError
from .schedule import bump_version


class PrincipalError(ConfigError):
    """A user or program command that cannot be carried out; the message says why."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _kind(cursor, name: str) -> str | None:
    cursor.execute("SELECT kind FROM principals WHERE name = %s", (name,))
    row = cursor.fetchone()
    return row[0] if row else None


def add_user(connection, name: str, title: str | None = None) -> None:
    with connection.cursor() as cursor:
        kind = _kind(cursor, name)
        if kind is not None:
            raise PrincipalError(f"{name!r} already exists (a {kind})")
        cursor.execute("INSERT INTO principals (name, kind, title) VALUES (%s, 'user', %s)", (name, title))
    connection.commit()


def list_users(connection) -> list[tuple[str, bool, list[str]]]:
    """(name, disabled, programs) for every user."""
    with connection.cursor() as cursor:
        cursor.execute("""
            SELECT p.name, p.disabled, coalesce(array_agg(m.program ORDER BY m.program)
                                                FILTER (WHERE m.program IS NOT NULL), '{}')
            FROM principals p LEFT JOIN memberships m ON m.username = p.name
            WHERE p.kind = 'user' GROUP BY p.name, p.disabled ORDER BY p.name""")
        rows = cursor.fetchall()
    connection.commit()
    return rows


def _user(cursor, name: str) -> None:
    if _kind(cursor, name) != "user":
        raise PrincipalError(f"no user named {name!r}")


def disable_user(connection, name: str) -> None:
    with connection.cursor() as cursor:
        _user(cursor, name)
        cursor.execute("UPDATE principals SET disabled = true WHERE name = %s", (name,))
    connection.commit()


def grant(connection, username: str, program: str) -> None:
    """Make a user a member of a program (created if new)."""
    with connection.cursor() as cursor:
        _user(cursor, username)
        kind = _kind(cursor, program)
        if kind == "user":
            raise PrincipalError(f"{program!r} is a user, not a program")
        if kind is None:
            cursor.execute("INSERT INTO principals (name, kind) VALUES (%s, 'program')", (program,))
        cursor.execute("INSERT INTO memberships VALUES (%s, %s) ON CONFLICT DO NOTHING", (username, program))
        bump_version(cursor)
    connection.commit()


def create_token(connection, username: str) -> str:
    token = secrets.token_urlsafe(32)
    with connection.cursor() as cursor:
        _user(cursor, username)
        cursor.execute("INSERT INTO api_tokens (username, token_hash) VALUES (%s, %s)", (username, token_hash(token)))
    connection.commit()
    return token


def revoke_tokens(connection, username: str) -> int:
    with connection.cursor() as cursor:
        _user(cursor, username)
        cursor.execute("UPDATE api_tokens SET revoked_at = now() WHERE username = %s AND revoked_at IS NULL",
                       (username,))
        count = cursor.rowcount
    connection.commit()
    return count
