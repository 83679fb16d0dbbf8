"""files and ingest_failures, with spatial, time, text and path indexes

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_sphere")
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    # Paths use the C collation: byte order makes prefix ranges index scans, and matches
    # the order in which the reconcile scan walks the disk.
    op.execute("""
        CREATE TABLE files (
            id           bigserial PRIMARY KEY,
            root         text NOT NULL,
            path         text COLLATE "C" NOT NULL,
            size         bigint NOT NULL,
            mtime        timestamptz NOT NULL,
            night        date,
            instrument   text,
            telescope    text,
            object       text,
            obs_start    timestamptz,
            obs_end      timestamptz,
            date_source  text,
            exptime      double precision,
            frame_type   text,
            filter       text,
            program      text,
            ra           double precision CHECK (ra >= 0 AND ra < 360),
            dec          double precision CHECK (dec >= -90 AND dec <= 90),
            pos          spoint,
            footprint    spoly,
            public_date  timestamptz,
            header       text COMPRESSION lz4 NOT NULL,  -- lz4: several times cheaper to write than pglz
            notes        text,
            ingested_at  timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT files_root_path UNIQUE (root, path)
        )
    """)
    op.execute("CREATE INDEX files_pos ON files USING gist (pos)")
    op.execute("CREATE INDEX files_footprint ON files USING gist (footprint)")
    op.execute("CREATE INDEX files_obs_start ON files (obs_start)")
    op.execute("CREATE INDEX files_night ON files (night)")
    op.execute("CREATE INDEX files_instrument ON files (lower(instrument), obs_start)")
    op.execute("CREATE INDEX files_telescope ON files (lower(telescope), obs_start)")
    op.execute("CREATE INDEX files_program ON files (program, obs_start)")
    op.execute("CREATE INDEX files_frame_type ON files (frame_type)")
    op.execute("CREATE INDEX files_public_date ON files (public_date)")
    op.execute("CREATE INDEX files_object_prefix ON files (lower(object) text_pattern_ops)")
    op.execute("CREATE INDEX files_object_trgm ON files USING gin (lower(object) gin_trgm_ops)")
    op.execute("""
        CREATE TABLE ingest_failures (
            root          text NOT NULL,
            path          text COLLATE "C" NOT NULL,
            size          bigint NOT NULL,
            mtime         timestamptz NOT NULL,
            reason        text NOT NULL,
            attempts      integer NOT NULL DEFAULT 1,
            first_attempt timestamptz NOT NULL DEFAULT now(),
            last_attempt  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (root, path)
        )
    """)
    # A footprint pgsphere rejects (e.g. a degenerate polygon) is stored as none, without
    # failing the batch it arrived in.
    op.execute("""
        CREATE FUNCTION archive_spoly(literal text) RETURNS spoly
        LANGUAGE plpgsql IMMUTABLE AS $$
        BEGIN
            RETURN literal::spoly;
        EXCEPTION WHEN others THEN
            RETURN NULL;
        END $$
    """)


def downgrade() -> None:
    op.execute("DROP FUNCTION archive_spoly(text)")
    op.execute("DROP TABLE ingest_failures")
    op.execute("DROP TABLE files")
