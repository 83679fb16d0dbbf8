"""tap_jobs: asynchronous TAP jobs (UWS), kept where every API worker on every host sees them

Revision ID: 0008
Revises: 0007

A job's whole state is its row, so that any worker answers for any job and a restart of the
API loses none. The executor that runs a job records who it is (host, process, a token of
that process's start) and its PostgreSQL backend, and beats a heartbeat: a job whose
executor is gone is found out and ended, never left EXECUTING.
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE tap_jobs (
            id                 text PRIMARY KEY,      -- 128 random bits in hex: job URLs are unguessable
            owner              text,                  -- the user who created it; NULL: anonymous
            address            text,                  -- an anonymous creator's address: theirs alone
            run_id             text,
            phase              text NOT NULL DEFAULT 'PENDING'
                               CHECK (phase IN ('PENDING', 'QUEUED', 'EXECUTING', 'COMPLETED', 'ERROR', 'ABORTED')),
            parameters         jsonb NOT NULL DEFAULT '{}',  -- lower-case names: values as sent
            base_url           text NOT NULL,         -- scheme://host the creator used, for access_url
            created_at         timestamptz NOT NULL DEFAULT now(),
            started_at         timestamptz,
            ended_at           timestamptz,
            execution_duration integer NOT NULL CHECK (execution_duration > 0),  -- seconds
            destruction        timestamptz NOT NULL,
            error              text,
            result_name        text,                  -- file name under ivoa.results_dir
            result_size        bigint,
            result_type        text,
            executor_host      text,
            executor_pid       integer,
            executor_token     text,                  -- one per executor process start
            backend_pid        integer,               -- the executor's backend, with its start time:
            backend_start      timestamptz,           -- together they name it even after pids are reused
            heartbeat          timestamptz,
            CHECK (owner IS NOT NULL OR address IS NOT NULL)
        )""")
    op.execute("CREATE INDEX tap_jobs_owner ON tap_jobs (owner, created_at) WHERE owner IS NOT NULL")
    op.execute("CREATE INDEX tap_jobs_address ON tap_jobs (address, created_at) WHERE owner IS NULL")
    op.execute("CREATE INDEX tap_jobs_active ON tap_jobs (phase, created_at) WHERE phase IN ('QUEUED', 'EXECUTING')")
    op.execute("CREATE INDEX tap_jobs_destruction ON tap_jobs (destruction)")


def downgrade() -> None:
    op.execute("DROP TABLE tap_jobs")
