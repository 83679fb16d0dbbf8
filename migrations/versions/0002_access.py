"""access: users, programs, memberships, schedule, API tokens, and per-file grants

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Users and programs share one namespace of principal names: a grant names either.
    op.execute("""
        CREATE TABLE principals (
            name        text PRIMARY KEY,
            kind        text NOT NULL CHECK (kind IN ('user', 'program')),
            title       text,
            disabled    boolean NOT NULL DEFAULT false,
            created_at  timestamptz NOT NULL DEFAULT now()
        )
    """)
    op.execute("""
        CREATE TABLE memberships (
            username    text NOT NULL REFERENCES principals (name) ON DELETE CASCADE,
            program     text NOT NULL REFERENCES principals (name) ON DELETE CASCADE,
            PRIMARY KEY (username, program)
        )
    """)
    op.execute("""
        CREATE TABLE schedule (
            telescope   text NOT NULL,
            night       date NOT NULL,
            program     text NOT NULL REFERENCES principals (name),
            PRIMARY KEY (telescope, night, program)
        )
    """)
    op.execute("CREATE INDEX schedule_program ON schedule (program)")
    op.execute("""
        CREATE TABLE api_tokens (
            id          bigserial PRIMARY KEY,
            username    text NOT NULL REFERENCES principals (name) ON DELETE CASCADE,
            token_hash  text NOT NULL UNIQUE,      -- sha256 of the token; the token itself is never stored
            created_at  timestamptz NOT NULL DEFAULT now(),
            revoked_at  timestamptz
        )
    """)
    # Bumped by whatever changes the inputs of access decisions that live in the database
    # (schedule, principals), so that a running daemon knows to reload them.
    op.execute("CREATE TABLE access_state (version bigint NOT NULL)")
    op.execute("INSERT INTO access_state VALUES (1)")
    # Per-file grants are an array on the file's row: a file granted to several of a
    # caller's principals is still one row, so it is listed and counted once. The GIN index
    # answers `grants && caller's principals`.
    op.execute("ALTER TABLE files ADD COLUMN grants text[] NOT NULL DEFAULT '{}'")
    op.execute("ALTER TABLE files ADD COLUMN access_rule text")
    op.execute("ALTER TABLE files ADD COLUMN header_frame_type text")
    op.execute("UPDATE files SET header_frame_type = frame_type")
    op.execute("CREATE INDEX files_grants ON files USING gin (grants)")


def downgrade() -> None:
    op.execute("DROP INDEX files_grants")
    op.execute("ALTER TABLE files DROP COLUMN header_frame_type, DROP COLUMN access_rule, DROP COLUMN grants")
    op.execute("DROP TABLE access_state")
    op.execute("DROP TABLE api_tokens")
    op.execute("DROP TABLE schedule")
    op.execute("DROP TABLE memberships")
    op.execute("DROP TABLE principals")
