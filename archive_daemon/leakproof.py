"""Let cone and region searches on the published views use their indexes.

The IVOA views (migration 0007) are security barriers: PostgreSQL tests a caller's own
condition on a row only after the visibility rule, unless the condition's functions are
leakproof, and only then may it use an index for it. pg_sphere does not mark its
comparison operators so (boolean tests of points, circles and polygons, which neither fail
nor tell more than their answer), and only a superuser may. The migration does it when it
runs as one; where the archive's role is not a superuser (the playbook), the set-up runs
`python -m archive_daemon.leakproof DATABASE` as the postgres user once pg_sphere exists.
Searches are right either way; without it a cone on the views scans the table.
"""

from __future__ import annotations

import sys

SQL = """
    DO $$ DECLARE fn regprocedure; BEGIN
        IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
            FOR fn IN SELECT DISTINCT o.oprcode::regprocedure FROM pg_operator o
                    WHERE o.oprresult = 'boolean'::regtype
                      AND (o.oprleft IN ('spoint'::regtype, 'scircle'::regtype, 'spoly'::regtype)
                           OR o.oprright IN ('spoint'::regtype, 'scircle'::regtype, 'spoly'::regtype))
                      AND NOT (SELECT proleakproof FROM pg_proc WHERE oid = o.oprcode) LOOP
                EXECUTE format('ALTER FUNCTION %s LEAKPROOF', fn);
                RAISE NOTICE 'leakproof: %', fn;
            END LOOP;
        END IF;
    END $$
"""


def main(argv: list[str]) -> int:
    """Mark them in DATABASE, through the local socket as the calling user (postgres)."""
    import psycopg2
    if len(argv) != 1:
        print("usage: python -m archive_daemon.leakproof DATABASE", file=sys.stderr)
        return 2
    connection = psycopg2.connect(dbname=argv[0])
    with connection, connection.cursor() as cursor:
        cursor.execute(SQL)
    for notice in connection.notices:
        print(notice.strip().removeprefix("NOTICE:  "))
    connection.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
