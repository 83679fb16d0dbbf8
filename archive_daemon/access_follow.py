"""Access decisions kept current while the daemon runs.

The rules the loader decides with include the schedule and the principals from the
database: when their version number moves, new rules are made. When an override file
changes, the files of its directory are decided again; when the settings that decide access
are not those the archive's decisions were made with (compared on leading and on a reload,
so a change made while the daemon was stopped counts), all files are.
"""

from __future__ import annotations

import logging
import time

from . import rulesources, schedule
from .access import Rules
from .config import Config
from .recompute import decide_all, decide_directory, settings_changed

log = logging.getLogger("archive_daemon.access_follow")

VERSION_CHECK = 5.0    # how often the leader looks for schedule or user changes


class AccessFollower:
    """The current rules, and the directories whose override file changed since the last look.

    Directories whose rules cannot be used (their files readable by staff only) show in
    `warnings` (STATUS) under "rules"."""

    def __init__(self, config: Config, warnings: dict[str, str], on_progress, url: str | None = None,
                 clock=time.monotonic):
        """`url`: the database's, for the connections a recompute of every file writes with."""
        self.config, self.warnings, self.on_progress, self.clock = config, warnings, on_progress, clock
        self.url = url
        self.version: int | None = None
        self.rules: Rules | None = None
        self.next_check = 0.0
        self.overridden: set[tuple[str, str]] = set()

    def reconfigure(self, config: Config) -> None:
        self.config = config
        self.version = None  # new rules at the next look, should the database be away now

    def rules_now(self, connection) -> Rules:
        """Rules with the schedule as the database holds it now."""
        return self._rules_at(connection, schedule.version(connection))

    def changed_rules(self, connection) -> Rules | None:
        """New rules if the schedule or the principals changed (looked at every VERSION_CHECK seconds)."""
        if self.clock() < self.next_check:
            return None
        self.next_check = self.clock() + VERSION_CHECK
        self._warn_unusable(connection)
        version = schedule.version(connection)
        return self._rules_at(connection, version) if version != self.version else None

    def _rules_at(self, connection, version: int) -> Rules:
        self.version = version
        self.rules = schedule.current_rules(connection, self.config)
        return self.rules

    def override_changed(self, root: str, directory: str) -> None:
        self.overridden.add((root, directory))

    def decide_overridden(self, connection) -> None:
        """Decide again for the files directly in each directory whose rule sources changed."""
        while self.overridden:
            root, directory = self.overridden.pop()
            seen, changed, error = decide_directory(connection, self.config, self.rules, root, directory,
                                                    on_progress=self.on_progress)
            log.info("rules changed in %s/%s: access decided again for %d files, %d changed",
                     root, directory, seen, changed, extra={"ROOT": root, "FILE_PATH": directory})
            if error:
                log.warning("%s: files there readable by staff only: %s", root, error,
                            extra={"ROOT": root, "FILE_PATH": directory, "REASON": error})
                self._warn_unusable(connection)

    def _warn_unusable(self, connection) -> None:
        count, example = rulesources.broken(connection)
        if count:
            self.warnings["rules"] = f"{count} directories readable by staff only, their rules unusable (e.g. {example})"
        else:
            self.warnings.pop("rules", None)

    def decide_all(self, connection) -> None:
        """Decide again for every file if the archive's decisions were made with other settings."""
        if not settings_changed(connection, self.config):
            return
        seen, changed = decide_all(connection, self.config, self.rules, on_progress=self.on_progress, url=self.url)
        log.info("access settings changed: decided again for %d files, %d changed", seen, changed)
        self._warn_unusable(connection)
