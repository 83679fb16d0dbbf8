"""access_state.settings: the access settings the stored decisions were made with

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A digest of every setting access decisions and nights depend on (recompute.py). A
    # daemon that starts leading with other settings decides again for every file, so
    # settings changed while it was stopped reach archived files. NULL (an archive from
    # before this revision): unknown, so the first leader decides again.
    op.execute("ALTER TABLE access_state ADD COLUMN settings text")


def downgrade() -> None:
    op.execute("ALTER TABLE access_state DROP COLUMN settings")
