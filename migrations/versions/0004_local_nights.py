"""night: the local date on which the observing night began, no longer a UTC date

Revision ID: 0004
Revises: 0003

Earlier versions gave a file off the `YYYY-MM/DD/<instrument>/` layout the UTC date twelve
hours before its observation; the night is now the local date in the site's time zone
(archive_daemon/night.py). Time zones live in the configuration, which a migration does
not see, so this one only forgets those nights (NULL: not known yet) rather than guess.
`archive-daemon db upgrade`, which does read the configuration, finds them again right
after migrating; `archive-daemon access recompute` does too. Nights taken from the layout
are the same under both definitions and stay.
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The layout pattern of archive_daemon/layout.py as it was at revision 0003.
    op.execute(r"UPDATE files SET night = NULL WHERE path !~ '(^|/)\d{4}-\d{2}/\d{2}/[^/]+/'")


def downgrade() -> None:
    # Local nights are as good as the UTC ones to the older code, which never recomputes them.
    pass
