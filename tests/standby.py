"""A streaming replica of a test cluster: `pg_basebackup -R` into a data directory of its
own, started on a port of its own, as an operator would set one up (docs/deploy.md)."""

from __future__ import annotations

import os
import time

import psycopg2
import sqlalchemy as sa

from archive_daemon.devdb import SUPERUSER, DevDB, _free_port


class Standby(DevDB):
    """A hot standby streaming from `primary`, a running DevDB; same users, same passwords."""

    def __init__(self, var_dir, primary: DevDB):
        super().__init__(var_dir, fast=True)
        self.primary = primary

    def start(self) -> str:
        if not (self.data_dir / "PG_VERSION").exists():
            self._clone()
        if not self.running():
            self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data_dir), "-l", str(self.log_file),
                      "-o", f"-p {self._state()['port']}")
        return self.url()

    def _clone(self) -> None:
        self._place_data_dir()
        os.chmod(self.data_dir, 0o700)
        primary = self.primary._state()
        # The replica's own way in to the primary: -R writes it into primary_conninfo.
        passfile = self.data_dir.parent / "primary.pgpass"
        passfile.write_text(f"127.0.0.1:{primary['port']}:*:{SUPERUSER}:{primary['password']}\n")
        if self.user is not None:
            os.chown(passfile, self.user.pw_uid, self.user.pw_gid)
        os.chmod(passfile, 0o600)
        self._run("pg_basebackup", "-D", str(self.data_dir), "-R", "-X", "stream", "-c", "fast",
                  "-d", f"host=127.0.0.1 port={primary['port']} user={SUPERUSER} passfile={passfile}")
        if not self.log_file.exists():
            self.log_file.touch()
            if self.user is not None:
                os.chown(self.log_file, self.user.pw_uid, self.user.pw_gid)
        self._save({"port": _free_port(), "password": primary["password"]})

    def crash(self) -> None:
        """Stop at once, as a host that dies would (no shutdown checkpoint)."""
        self._run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(self.data_dir))

    def of(self, url: str) -> str:
        """The same database as `url` (on the primary), on this replica."""
        return sa.engine.make_url(self.url()).set(database=sa.engine.make_url(url).database) \
            .render_as_string(hide_password=False)

    def query(self, url: str, query: str, *args):
        connection = psycopg2.connect(url)
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute(query, args)
                return cursor.fetchone()[0]
        finally:
            connection.close()

    def caught_up(self, timeout: float = 30.0) -> None:
        """Wait until everything the primary has written so far is replayed here."""
        target = self.query(self.primary.url(), "SELECT pg_current_wal_lsn()")
        deadline = time.monotonic() + timeout
        while not self.query(self.url(), "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", target):
            if time.monotonic() > deadline:
                raise AssertionError(f"the replica did not reach {target} within {timeout} s")
            time.sleep(0.05)

    def pause_replay(self) -> None:
        """Stop applying the primary's WAL (it still arrives), as a replica falling behind would."""
        self.query(self.url(), "SELECT pg_wal_replay_pause()")
        while self.query(self.url(), "SELECT pg_get_wal_replay_pause_state()") != "paused":
            time.sleep(0.02)

    def resume_replay(self) -> None:
        self.query(self.url(), "SELECT pg_wal_replay_resume()")
