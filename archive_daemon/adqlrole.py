"""What only a superuser can do for the role ADQL queries run as (`archive_adql`).

Researchers' ADQL runs as that role, on security-barrier views (migration 0007), and two
things about it need a superuser:

- Indexes. Behind a security barrier PostgreSQL tests a caller's condition only after the
  visibility rule, and uses an index for it only if its operator is leakproof. pg_sphere
  does not mark its comparison operators so (boolean tests of points, circles and
  polygons, which neither fail nor tell more than their answer); this does. Without it
  answers are the same, but a cone on the views reads the whole table.
- Functions every role may call. PostgreSQL lets any role sleep, change its settings
  (set_config: the principals a query is shown are a setting), take advisory locks and
  cancel or end other sessions of its own. The ADQL translator refuses all of them; this
  takes them from every role but the database's owner (the archive's own role, whose
  daemon takes advisory locks and whose API cancels aborted jobs) and superusers, so that
  a query that got past the translator still could not.
- Temporary files. A query's sort or hash may spill to disk; the API bounds that for each
  query (temp_file_limit), which only a superuser, or a role granted it, may set.

The migration runs this when it runs as a superuser (the embedded database); elsewhere the
set-up runs `python -m archive_daemon.adqlrole DATABASE` as the postgres user once
pg_sphere exists (the playbook does). Each change is reported; a second run changes nothing.
"""

from __future__ import annotations

import sys

SQL = r"""
    DO $$ DECLARE
        fn regprocedure;
        owner name := (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database());
    BEGIN
        IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
            RETURN;
        END IF;
        FOR fn IN SELECT DISTINCT o.oprcode::regprocedure FROM pg_operator o
                WHERE o.oprresult = 'boolean'::regtype
                  AND (o.oprleft IN ('spoint'::regtype, 'scircle'::regtype, 'spoly'::regtype)
                       OR o.oprright IN ('spoint'::regtype, 'scircle'::regtype, 'spoly'::regtype))
                  AND NOT (SELECT proleakproof FROM pg_proc WHERE oid = o.oprcode) LOOP
            EXECUTE format('ALTER FUNCTION %s LEAKPROOF', fn);
            RAISE NOTICE 'leakproof: %', fn;
        END LOOP;
        FOR fn IN SELECT p.oid::regprocedure FROM pg_proc p
                WHERE p.pronamespace = 'pg_catalog'::regnamespace
                  AND (p.proname IN ('pg_sleep', 'pg_sleep_for', 'pg_sleep_until', 'set_config',
                                     'pg_cancel_backend', 'pg_terminate_backend')
                       OR p.proname LIKE 'pg\_advisory\_%' OR p.proname LIKE 'pg\_try\_advisory\_%')
                  AND has_function_privilege('public', p.oid, 'EXECUTE') LOOP
            EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', fn);
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', fn, owner);
            RAISE NOTICE 'for the owner only: %', fn;
        END LOOP;
        -- The API bounds each query's temporary files (a sort spilling to disk could fill it).
        IF NOT has_parameter_privilege(owner, 'temp_file_limit', 'SET') THEN
            EXECUTE format('GRANT SET ON PARAMETER temp_file_limit TO %I', owner);
            RAISE NOTICE 'the owner may bound temporary files (temp_file_limit)';
        END IF;
    END $$
"""


def main(argv: list[str]) -> int:
    """Do it in DATABASE, through the local socket as the calling user (postgres)."""
    import psycopg2
    if len(argv) != 1:
        print("usage: python -m archive_daemon.adqlrole DATABASE", file=sys.stderr)
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
