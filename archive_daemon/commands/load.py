"""Bringing files into the archive: once (`ingest`, `reconcile`) or as the service (`run`)."""

from __future__ import annotations

import os
from pathlib import Path

from ..config import Config
from ..loader import ingest
from ..progress import Progress
from . import UsageError
from .database import database_url, ready_engine


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
    from ..service import run  # the daemon's imports (watchdog, systemd) only when it runs
    return run(config, args.config, database_url(config))
