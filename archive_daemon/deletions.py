"""Which of the files a scan no longer finds may really be dropped from the archive.

A mount that blips looks exactly like a mass deletion: the root, or a night directory, is
suddenly missing, empty or unreadable. Rows are only ever dropped for files whose
directory is there and readable, and never more than `max_delete_fraction` of a root in one
pass unless the operator says so (`archive-daemon reconcile --allow-mass-delete`, which lifts
both limits for empty directories and the share, never for missing or unreadable ones).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .config import RootConfig
from .watcher import ScanProblems

ALWAYS_DROPPABLE = 10  # this few files may always go, whatever share of a small root they are
EMPTY = "is empty"


@dataclass
class Deletions:
    drop: list[str] = field(default_factory=list)
    withheld: list[str] = field(default_factory=list)  # why some or all were kept, for STATUS and the log


def _unavailable(directory: str) -> str | None:
    try:
        with os.scandir(directory) as entries:
            if next(entries, None) is None:
                return EMPTY
    except FileNotFoundError:
        return "is missing"
    except OSError as exc:
        return f"is unreadable ({exc.strerror})"
    return None


def _night_dir(path: str) -> str:
    """The directory whose disappearance would explain the file's: its night (YYYY-MM/DD), else its parent."""
    parts = path.split("/")
    return "/".join(parts[:2]) if len(parts) > 3 else "/".join(parts[:-1])


def guard(root: RootConfig, gone: list[str], known: int, problems: ScanProblems,
          max_fraction: float, allow_mass_delete: bool = False) -> Deletions:
    """Split the files a scan did not find into those to drop and those to keep for now."""
    result = Deletions()
    if not gone:
        return result
    problem = _unavailable(str(root.path))
    if problem and not (allow_mass_delete and problem == EMPTY):
        # The operator may say an empty root really was emptied; a root that is missing or
        # unreadable says nothing about its files, whatever the operator allows.
        later = "until it is back" if problem != EMPTY else (
            f"until it is back; if they are really gone, run `archive-daemon reconcile --root {root.name} "
            f"--allow-mass-delete`")
        result.withheld.append(f"root {root.name} ({root.path}) {problem}: {len(gone)} archived files kept {later}")
        return result
    checked: dict[str, str | None] = {}
    kept: dict[str, int] = {}
    candidates = []
    for path in gone:
        if problems.covers(path):
            kept["an unreadable directory"] = kept.get("an unreadable directory", 0) + 1
            continue
        night = _night_dir(path)
        if night not in checked:
            checked[night] = _unavailable(os.path.join(root.path, night)) if night else None
        if checked[night] and not (allow_mass_delete and not checked[night].startswith("is unreadable")):
            reason = f"{night} {checked[night]}"
            kept[reason] = kept.get(reason, 0) + 1
            continue
        candidates.append(path)
    for reason, count in kept.items():
        result.withheld.append(f"root {root.name}: {count} archived files kept because {reason}")
    limit = max(max_fraction * known, ALWAYS_DROPPABLE)
    if len(candidates) > limit and not allow_mass_delete:
        result.withheld.append(
            f"root {root.name}: {len(candidates)} of {known} archived files are no longer on disk, more than "
            f"the {max_fraction:.0%} a scan may drop: kept; if they are really gone, run "
            f"`archive-daemon reconcile --root {root.name} --allow-mass-delete`")
        return result
    result.drop = candidates
    return result
