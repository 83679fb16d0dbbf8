"""The one rule every read of the archive obeys: who may see a file.

A file is visible when its public date has passed, or when it is granted to one of the
caller's principals (the user's own name and the programs they belong to). Searches,
counts, header views, downloads and tar streams all filter through `VISIBLE`; files
carry their grants on their own row, so a file visible twice over is still one row.
"""

from __future__ import annotations

from .principals import token_hash

# `files` must be aliased f; bind %(principals)s to caller_principals().
VISIBLE = "(f.public_date <= now() OR f.grants && %(principals)s::text[])"


def principals_of(connection, username: str | None) -> list[str]:
    """The caller's principals: nothing for anonymous, unknown or disabled users."""
    if not username:
        return []
    with connection.cursor() as cursor:
        cursor.execute("""
            SELECT p.name, array_agg(m.program) FILTER (WHERE m.program IS NOT NULL)
            FROM principals p LEFT JOIN memberships m ON m.username = p.name
            WHERE p.name = %s AND p.kind = 'user' AND NOT p.disabled GROUP BY p.name""", (username,))
        row = cursor.fetchone()
    return [row[0], *(row[1] or [])] if row else []


def user_of_token(connection, token: str) -> str | None:
    """The user an API token belongs to, unless it is revoked or the user disabled."""
    with connection.cursor() as cursor:
        cursor.execute("""
            SELECT t.username FROM api_tokens t JOIN principals p ON p.name = t.username
            WHERE t.token_hash = %s AND t.revoked_at IS NULL AND NOT p.disabled""", (token_hash(token),))
        row = cursor.fetchone()
    return row[0] if row else None
