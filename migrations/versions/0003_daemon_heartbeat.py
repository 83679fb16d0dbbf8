"""daemon_heartbeat: each daemon's last sign of life, for the API's health check

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE daemon_heartbeat (
            name      text PRIMARY KEY,          -- 'archive-daemon HOST PID'
            role      text NOT NULL,             -- leader or standby
            status    text NOT NULL,             -- its STATUS line
            beat_at   timestamptz NOT NULL DEFAULT now()
        )
    """)


def downgrade() -> None:
    op.execute("DROP TABLE daemon_heartbeat")
