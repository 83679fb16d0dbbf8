"""Who may read what: access decisions, the observing schedule, users and their tokens."""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

from .. import principals, schedule
from ..access import Facts
from ..config import Config
from ..recompute import FACT_COLUMNS, decide_all, recompute
from ..schedule import current_rules
from ..store import failure_path, rule_text
from . import UsageError
from .database import connect, database_url


def cmd_access(config: Config, args) -> int:
    connection, url = connect(config), database_url(config)
    rules = current_rules(connection, config)
    if args.action == "recompute":
        if args.root:
            config.root(args.root)
        night = _date(args.night) if args.night else None
        if args.root or night:
            seen, changed = recompute(connection, config, rules, root=args.root, night=night, url=url)
        else:  # every file: the archive now follows these settings
            seen, changed = decide_all(connection, config, rules, url=url)
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
    night = decision.night
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


def _date(text: str):
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--night: {text!r} is not a date (YYYY-MM-DD)") from None


def cmd_schedule(config: Config, args) -> int:
    connection = connect(config)
    rows = schedule.read_file(Path(args.file), config.access.rule_file_max_bytes)
    nights = schedule.store(connection, rows)
    rules = current_rules(connection, config)
    changed = 0
    for night in sorted({n for _, n in nights}):
        changed += recompute(connection, config, rules, night=night)[1]
    print(f"schedule: {len(rows)} entries for {len(nights)} telescope nights; access changed for {changed} files")
    return 0


def cmd_users(config: Config, args) -> int:
    connection = connect(config)
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
    connection = connect(config)
    if args.action == "create":
        print(principals.create_token(connection, args.user))
        print("(shown once: store it now)", file=sys.stderr)
    else:
        print(f"{principals.revoke_tokens(connection, args.user)} tokens of {args.user} revoked")
    return 0
