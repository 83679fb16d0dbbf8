"""`archive-daemon`: a thin command line over functions the tests call directly.

Exit status: 0 success, 1 some files could not be archived, 2 usage, configuration or
database error (the database unreachable, or lost on the way), 3 `devdb status` when the
embedded database is not running, 70 an internal error (a bug), 130 interrupted. Errors a
user can cause print one line, never a traceback; so does a bug, with where it happened.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
import traceback
from pathlib import Path

import psycopg2
import sqlalchemy as sa

from . import db, demo, ivoaterms, principals, schedule
from .access import Facts
from .recompute import FACT_COLUMNS, decide_all, recompute
from .schedule import current_rules
from .store import failure_path, rule_text
from .config import Config, ConfigError, load_config
from .devdb import DevDB, DevDBError
from .loader import ingest
from .progress import Progress


class UsageError(Exception):
    """A command line that cannot be carried out as given."""


def database_url(config: Config) -> str:
    """The configured database, else the embedded one if it is running."""
    if config.database_url:
        return config.database_url
    devdb = DevDB()
    if devdb.running():
        return devdb.url()
    raise db.DatabaseError("no database configured (database.url in the configuration, or "
                           "$ARCHIVE_DATABASE_URL) and the embedded database is not running: "
                           "start it with `archive-daemon devdb start`")


def ready_engine(config: Config):
    engine = db.create_engine(database_url(config))
    db.check_schema(engine)
    return engine


def cmd_ingest(config: Config, args) -> int:
    by_root: dict[str, list[str]] = {}
    for raw in args.paths:
        path = Path(os.path.abspath(raw))
        if not os.path.lexists(path):  # a dangling link is there, to be recorded as not archived
            raise UsageError(f"{raw}: no such file or directory")
        root, rel = config.root_for(path, args.root)
        by_root.setdefault(root.name, []).append(rel)
    return _load(config, args, "ingest", [(config.root(name), prefixes) for name, prefixes in by_root.items()])


def cmd_reconcile(config: Config, args) -> int:
    roots = [config.root(args.root)] if args.root else list(config.roots)
    if not roots:
        raise UsageError(f"no roots configured in {config.source}")
    return _load(config, args, "reconcile", [(root, [""]) for root in roots], drop_gone=True,
                 allow_mass_delete=args.allow_mass_delete)


def _load(config: Config, args, label: str, work: list, **options) -> int:
    """Ingest each (root, prefixes) with a progress display and a summary; the exit status."""
    engine = ready_engine(config)
    workers = args.workers if args.workers is not None else config.ingest.worker_count
    status = 0
    for root, prefixes in work:
        with Progress(f"{label} {root.name}") as progress:
            summary = ingest(engine, config, root, prefixes, workers, progress.advance, **options)
        summary.report(root.name)
        status = status or (0 if summary.ok else 1)
    return status


def cmd_run(config: Config, args) -> int:
    from .service import run  # the daemon's imports (watchdog, systemd) only when it runs
    return run(config, args.config, database_url(config))


def _connection(config: Config):
    return ready_engine(config).raw_connection()


def cmd_access(config: Config, args) -> int:
    connection = _connection(config)
    rules = current_rules(connection, config)
    if args.action == "recompute":
        if args.root:
            config.root(args.root)
        night = _date(args.night) if args.night else None
        if args.root or night:
            seen, changed = recompute(connection, config, rules, root=args.root, night=night)
        else:  # every file: the archive now follows these settings
            seen, changed = decide_all(connection, config, rules)
        print(f"access recomputed: {seen} files, {changed} changed")
        return 0
    root, rel = config.root_for(Path(os.path.abspath(args.path)))
    with connection.cursor() as cursor:
        cursor.execute(f"""SELECT {FACT_COLUMNS}, public_date, grants, frame_type, access_rule, night
                           FROM files WHERE root = %s AND path = %s""", (root.name, failure_path(rel)))
        row = cursor.fetchone()
    if row is None:
        raise UsageError(f"{args.path}: not in the archive (root {root.name}, path {rel})")
    facts = Facts(rel, *row[:6])
    decision = rules.decide(str(root.path), facts)
    night = rules.night(str(root.path), facts)[0]
    public = decision.public_date.isoformat() if decision.public_date else "never (until the rule is fixed)"
    print(f"{root.name}/{rel}")
    print(f"  night:       {night}")
    print(f"  rule:        {rule_text(decision)}")
    print(f"  public from: {public}")
    print(f"  granted to:  {', '.join(decision.grants) or 'nobody before the public date'}")
    print(f"  frame type:  {decision.frame_type or '-'}")
    stored = (row[6], sorted(row[7]), row[8], row[9], row[10])
    if stored != (decision.public_date, list(decision.grants), decision.frame_type, rule_text(decision), night):
        print("  the database still holds an older decision: run `archive-daemon access recompute`")
    return 0


def cmd_users(config: Config, args) -> int:
    connection = _connection(config)
    if args.action == "add":
        principals.add_user(connection, args.name)
        print(f"user {args.name} added")
    elif args.action == "disable":
        principals.disable_user(connection, args.name)
        print(f"user {args.name} disabled: their tokens no longer work and they see public files only")
    elif args.action == "grant":
        principals.grant(connection, args.name, args.program)
        print(f"user {args.name} is a member of {args.program}")
    else:
        for name, disabled, programs in principals.list_users(connection):
            print(f"{name}{' (disabled)' if disabled else ''}: {', '.join(programs) or 'no programs'}")
    return 0


def cmd_tokens(config: Config, args) -> int:
    connection = _connection(config)
    if args.action == "create":
        print(principals.create_token(connection, args.user))
        print("(shown once: store it now)", file=sys.stderr)
    else:
        print(f"{principals.revoke_tokens(connection, args.user)} tokens of {args.user} revoked")
    return 0


def cmd_schedule(config: Config, args) -> int:
    connection = _connection(config)
    rows = schedule.read_file(Path(args.file), config.access.rule_file_max_bytes)
    nights = schedule.store(connection, rows)
    rules = current_rules(connection, config)
    changed = 0
    for night in sorted({n for _, n in nights}):
        changed += recompute(connection, config, rules, night=night)[1]
    print(f"schedule: {len(rows)} entries for {len(nights)} telescope nights; access changed for {changed} files")
    return 0


def _date(text: str):
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--night: {text!r} is not a date (YYYY-MM-DD)") from None


def cmd_db(config: Config, args) -> int:
    engine = db.create_engine(database_url(config))
    print(f"database schema at revision {db.upgrade(engine)}")
    # A migration cannot see the configured time zones: it leaves the nights it cannot
    # know empty, and they are found here (see migrations/versions/0004_local_nights.py).
    connection = engine.raw_connection()
    seen, changed = recompute(connection, config, current_rules(connection, config), without_night=True)
    ivoaterms.write(connection, config.ivoa)  # the ObsCore terms of this configuration
    if seen:
        print(f"nights found for {changed} of {seen} files without one")
    if changed < seen:
        print(f"roots this configuration does not name hold {seen - changed} of them: run "
              "`archive-daemon access recompute` with the configuration that names them")
    return 0


def cmd_devdb(config: Config, args) -> int:
    devdb = DevDB()
    if args.action == "start":
        devdb.start()
        print(f"embedded database {devdb.status()}")
    elif args.action == "stop":
        print("embedded database stopped" if devdb.stop() else "embedded database was not running")
    elif args.action == "status":
        print(devdb.status())
        return 0 if devdb.running() else 3
    else:
        url = devdb.url()
        if url is None:
            raise UsageError("the embedded database is not initialised: run `archive-daemon devdb start`")
        print(url)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="archive-daemon", description="Observatory FITS archive.")
    parser.add_argument("--config", metavar="FILE",
                        help="configuration file (default: $ARCHIVE_CONFIG, else /etc/archive-daemon/config.yaml)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("ingest", help="load the FITS files under PATHs into the archive")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--root", metavar="NAME", help="the configured root the paths belong to")
    p.add_argument("--workers", type=int, metavar="N", help="header-reading processes (default: one per core)")
    p.set_defaults(handler=cmd_ingest)

    p = commands.add_parser("reconcile", help="compare whole roots with the database and bring it up to date")
    p.add_argument("--root", metavar="NAME", help="only this root (default: every root)")
    p.add_argument("--workers", type=int, metavar="N", help="header-reading processes (default: one per core)")
    p.add_argument("--allow-mass-delete", action="store_true",
                   help="drop the rows of missing files even when a large share of a root is missing")
    p.set_defaults(handler=cmd_reconcile)

    p = commands.add_parser("access", help="access decisions: recompute them, or explain one")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = actions.add_parser("recompute", help="decide again after the rules, schedule or override files changed")
    a.add_argument("--root", metavar="NAME")
    a.add_argument("--night", metavar="YYYY-MM-DD")
    a = actions.add_parser("explain", help="which rule decides who may read a file, and why")
    a.add_argument("path", metavar="PATH")
    p.set_defaults(handler=cmd_access)

    p = commands.add_parser("users", help="users and their programs")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("add").add_argument("name")
    actions.add_parser("list")
    actions.add_parser("disable").add_argument("name")
    a = actions.add_parser("grant", help="make USER a member of PROGRAM")
    a.add_argument("name", metavar="USER")
    a.add_argument("program", metavar="PROGRAM")
    p.set_defaults(handler=cmd_users)

    p = commands.add_parser("tokens", help="API tokens")
    p.add_argument("action", choices=["create", "revoke"])
    p.add_argument("user", metavar="USER")
    p.set_defaults(handler=cmd_tokens)

    p = commands.add_parser("schedule", help="the observing schedule")
    p.add_argument("action", choices=["load"])
    p.add_argument("file", metavar="FILE", help="CSV (telescope,night,program) or YAML")
    p.set_defaults(handler=cmd_schedule)

    p = commands.add_parser("run", help="the service: watch the roots and keep the database equal to them")
    p.set_defaults(handler=cmd_run)

    p = commands.add_parser("db", help="database schema")
    p.add_argument("action", choices=["upgrade"])
    p.set_defaults(handler=cmd_db)

    p = commands.add_parser("devdb", help="the embedded development database under ./var")
    p.add_argument("action", choices=["start", "stop", "status", "url"])
    p.set_defaults(handler=cmd_devdb)

    p = commands.add_parser("demo", help="start the embedded database and load the sample data")
    p.set_defaults(handler=demo.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # A lost database is reported below in one line; the pool's own complaint, as it drops
    # the dead connections, would be a traceback on top.
    logging.getLogger("sqlalchemy.pool").addHandler(logging.NullHandler())
    try:
        config = load_config(args.config)
        return args.handler(config, args)
    except (ConfigError, UsageError, db.DatabaseError, DevDBError) as exc:
        print(f"archive-daemon: error: {exc}", file=sys.stderr)
        return 2
    except (sa.exc.OperationalError, psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
        print(f"archive-daemon: database error: {db.first_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("archive-daemon: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: one line that says where, not a traceback
        where = traceback.extract_tb(exc.__traceback__)[-1]
        print(f"archive-daemon: internal error at {os.path.basename(where.filename)}:{where.lineno}: "
              f"{type(exc).__name__}: {db.first_line(exc)}", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
