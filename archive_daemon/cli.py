"""`archive-daemon`: the command line, a thin shell over functions the tests call directly.

Exit status: 0 success, 1 some files could not be archived, 2 usage, configuration or
database error (the database unreachable, or lost on the way), 3 `devdb status` when the
embedded database is not running, 70 an internal error (a bug), 130 interrupted. Errors a
user can cause print one line, never a traceback; so does a bug, with where it happened.

The parser names each command's function as "module:function" and main() imports it only
once that command runs: `--help` and the light commands start without the libraries
(astropy, SQLAlchemy, Alembic, watchdog) that the others need.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback

from .commands import UsageError
from .config import ConfigError, load_config

# Errors of modules that only some commands import, each answered in one line. A module
# the command never imported cannot have raised one, so they are looked up among the loaded
# modules rather than imported for the check.
_USER_ERRORS = ("archive_daemon.db.DatabaseError", "archive_daemon.devdb.DevDBError")
_DATABASE_ERRORS = ("sqlalchemy.exc.OperationalError", "psycopg2.OperationalError", "psycopg2.InterfaceError")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="archive-daemon", description="Observatory FITS archive.")
    parser.add_argument("--config", metavar="FILE",
                        help="configuration file (default: $ARCHIVE_CONFIG, else /etc/archive-daemon/config.yaml)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("ingest", help="load the FITS files under PATHs into the archive")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--root", metavar="NAME", help="the configured root the paths belong to")
    p.add_argument("--workers", type=int, metavar="N", help="header-reading processes (default: one per core)")
    p.set_defaults(handler="commands.load:cmd_ingest")

    p = commands.add_parser("reconcile", help="compare whole roots with the database and bring it up to date")
    p.add_argument("--root", metavar="NAME", help="only this root (default: every root)")
    p.add_argument("--workers", type=int, metavar="N", help="header-reading processes (default: one per core)")
    p.add_argument("--allow-mass-delete", action="store_true",
                   help="drop the rows of missing files even when a large share of a root is missing")
    p.set_defaults(handler="commands.load:cmd_reconcile")

    p = commands.add_parser("access", help="access decisions: recompute them, or explain one")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = actions.add_parser("recompute", help="decide again after the rules, schedule or override files changed")
    a.add_argument("--root", metavar="NAME")
    a.add_argument("--night", metavar="YYYY-MM-DD")
    a = actions.add_parser("explain", help="which rule decides who may read a file, and why")
    a.add_argument("path", metavar="PATH")
    p.set_defaults(handler="commands.access:cmd_access")

    p = commands.add_parser("users", help="users and their programs")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("add").add_argument("name")
    actions.add_parser("list")
    actions.add_parser("disable").add_argument("name")
    a = actions.add_parser("grant", help="make USER a member of PROGRAM")
    a.add_argument("name", metavar="USER")
    a.add_argument("program", metavar="PROGRAM")
    p.set_defaults(handler="commands.access:cmd_users")

    p = commands.add_parser("tokens", help="API tokens")
    p.add_argument("action", choices=["create", "revoke"])
    p.add_argument("user", metavar="USER")
    p.set_defaults(handler="commands.access:cmd_tokens")

    p = commands.add_parser("schedule", help="the observing schedule")
    p.add_argument("action", choices=["load"])
    p.add_argument("file", metavar="FILE", help="CSV (telescope,night,program) or YAML")
    p.set_defaults(handler="commands.access:cmd_schedule")

    p = commands.add_parser("run", help="the service: watch the roots and keep the database equal to them")
    p.set_defaults(handler="commands.load:cmd_run")

    p = commands.add_parser("db", help="database schema")
    p.add_argument("action", choices=["upgrade"])
    p.set_defaults(handler="commands.database:cmd_db")

    p = commands.add_parser("devdb", help="the embedded development database under ./var")
    p.add_argument("action", choices=["start", "stop", "status", "url"])
    p.set_defaults(handler="commands.devdb:cmd_devdb")

    p = commands.add_parser("demo", help="start the embedded database and load the sample data")
    p.set_defaults(handler="demo:run")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # A lost database is reported below in one line; the pool's own complaint, as it drops
    # the dead connections, would be a traceback on top.
    logging.getLogger("sqlalchemy.pool").addHandler(logging.NullHandler())
    try:
        config = load_config(args.config)
        return _handler(args.handler)(config, args)
    except (ConfigError, UsageError, *_loaded(_USER_ERRORS)) as exc:
        print(f"archive-daemon: error: {exc}", file=sys.stderr)
        return 2
    except _loaded(_DATABASE_ERRORS) as exc:
        from .db import first_line  # here, not above: it brings SQLAlchemy
        print(f"archive-daemon: database error: {first_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("archive-daemon: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: one line that says where, not a traceback
        from .db import first_line
        where = traceback.extract_tb(exc.__traceback__)[-1]
        print(f"archive-daemon: internal error at {os.path.basename(where.filename)}:{where.lineno}: "
              f"{type(exc).__name__}: {first_line(exc)}", file=sys.stderr)
        return 70


def _handler(name: str):
    """The function a command names as "module:function" (module relative to this package)."""
    module, function = name.split(":")
    return getattr(importlib.import_module(f"{__package__}.{module}"), function)


def _loaded(names: tuple[str, ...]) -> tuple[type[BaseException], ...]:
    """The exception classes named "module.Class" whose modules are imported."""
    found = []
    for name in names:
        module, cls = name.rsplit(".", 1)
        if module in sys.modules:
            found.append(getattr(sys.modules[module], cls))
    return tuple(found)


if __name__ == "__main__":
    sys.exit(main())
