"""rule_sources: what each directory's access was decided from; rule errors among the failures

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One row per directory whose files are governed by a rule source: an override file in
    # force (its name and sha256), or an error (unreadable, unparsable, unlistable). A
    # reconcile compares the disk with these rows, so override files written, edited or
    # removed while nobody watched are applied all the same.
    op.execute("""
        CREATE TABLE rule_sources (
            root         text NOT NULL,
            directory    text COLLATE "C" NOT NULL,   -- relative to the root, '' the root itself
            fingerprint  text NOT NULL,               -- 'override.access sha256:...' or 'error: ...'
            error        text,                        -- why the directory's files fail closed
            decided_at   timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (root, directory)
        )
    """)
    # A rule source that fails is listed with the data files that fail, but must never be
    # taken for one by the scans' merge: kind tells them apart.
    op.execute("ALTER TABLE ingest_failures ADD COLUMN kind text NOT NULL DEFAULT 'file' "
               "CHECK (kind IN ('file', 'rules'))")


def downgrade() -> None:
    op.execute("DELETE FROM ingest_failures WHERE kind = 'rules'")
    op.execute("ALTER TABLE ingest_failures DROP COLUMN kind")
    op.execute("DROP TABLE rule_sources")
