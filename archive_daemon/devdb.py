"""The embedded default database: a private PostgreSQL cluster with pg_sphere under ./var/.

It listens on a loopback port with a random password (kept in var/devdb/state.json, mode
0600), so other local users cannot use it. PostgreSQL refuses to run as root, so as root
the server runs as the unprivileged `postgres` user that Debian's packages create.
Tests use the same class for their throwaway clusters.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
from pathlib import Path

DATABASE = "archive"
SUPERUSER = "archive"


class DevDBError(Exception):
    """The embedded database could not be set up or reached."""


def default_var_dir() -> Path:
    """./var of the checkout this package runs from (else of the working directory)."""
    checkout = Path(__file__).resolve().parent.parent
    base = checkout if (checkout / "setup.cfg").exists() else Path.cwd()
    return Path(os.environ.get("ARCHIVE_VAR_DIR", base / "var"))


def _bindir() -> Path:
    """The newest PostgreSQL whose pg_sphere is installed (Debian: 15 on 12, 17 on 13)."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    with_sphere = [path for path in glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")
                   if os.path.exists(f"/usr/share/postgresql/{path.split('/')[4]}/extension/pg_sphere.control")]
    if not with_sphere:
        raise DevDBError("PostgreSQL with pg_sphere not found: install postgresql-NN and "
                         "postgresql-NN-pgsphere for your release (scripts/setup.sh does)")
    return Path(max(with_sphere, key=lambda p: int(p.split("/")[4]))).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        # As PostgreSQL binds: connections of its previous run lingering in TIME_WAIT do not
        # keep it from the port, so they must not make us move it (clients know the old one).
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class DevDB:
    """One private cluster: `start`, `stop`, `status`, `url`."""

    def __init__(self, var_dir: Path | None = None, fast: bool = False):
        self.dir = Path(var_dir or default_var_dir()) / "devdb"
        self.state_file = self.dir / "state.json"
        self.fast = fast  # tests: no fsync, for speed on throwaway data
        self.user = None
        if os.geteuid() == 0:
            try:
                self.user = pwd.getpwnam("postgres")
            except KeyError:
                raise DevDBError("running as root needs the `postgres` system user "
                                 "(created by the postgresql packages)") from None

    # -- state ---------------------------------------------------------------------------
    def _state(self) -> dict | None:
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return None

    def _save(self, state: dict) -> None:
        self.state_file.write_text(json.dumps(state))
        os.chmod(self.state_file, 0o600)

    @property
    def data_dir(self) -> Path:
        """./var/devdb/pgdata, or where it links to (see _place_data_dir): the server's real path."""
        link = self.dir / "pgdata"
        return link.resolve() if link.is_symlink() else link

    @property
    def log_file(self) -> Path:
        return self.data_dir.parent / "postgres.log"

    def url(self) -> str | None:
        state = self._state()
        if state is None:
            return None
        return f"postgresql://{SUPERUSER}:{state['password']}@127.0.0.1:{state['port']}/{DATABASE}"

    # -- processes -----------------------------------------------------------------------
    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        kwargs = {}
        if self.user is not None:
            kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        result = subprocess.run([str(_bindir() / args[0]), *args[1:]], capture_output=True, text=True,
                                cwd="/", **kwargs)
        if check and result.returncode != 0:
            raise DevDBError(f"{args[0]} failed: {(result.stderr or result.stdout).strip()}")
        return result

    def _owned_dir(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def _place_data_dir(self) -> None:
        """Create the data directory, where the server's user can reach it.

        As root, ./var may sit below a directory the `postgres` user cannot enter (such as
        /root); the cluster, its log and initdb's password file then live under
        /var/lib/archive-devdb and ./var/devdb/pgdata links to the cluster.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.user is None:
            self.data_dir.mkdir(mode=0o700, exist_ok=True)
            return
        os.chmod(self.dir, 0o755)
        probe = subprocess.run(["test", "-x", str(self.dir)], user=self.user.pw_uid, cwd="/")
        if probe.returncode == 0:
            self._owned_dir(self.data_dir)
            return
        digest = hashlib.sha256(str(self.dir.resolve()).encode()).hexdigest()[:16]
        home = Path("/var/lib/archive-devdb") / digest
        self._owned_dir(home)
        os.chmod(home, 0o700)
        self._owned_dir(home / "pgdata")
        link = self.dir / "pgdata"
        if link.is_symlink():
            link.unlink()
        link.symlink_to(home / "pgdata")

    def _init(self) -> dict:
        self._place_data_dir()
        state = {"port": _free_port(), "password": secrets.token_urlsafe(18)}
        pwfile = self.data_dir.parent / "initdb.pw"
        pwfile.write_text(state["password"] + "\n")
        if self.user is not None:
            os.chown(pwfile, self.user.pw_uid, self.user.pw_gid)
        os.chmod(pwfile, 0o600)
        try:
            self._run("initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "--pwfile", str(pwfile),
                      "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-locale")
        finally:
            pwfile.unlink()
        settings = ["listen_addresses = '127.0.0.1'", "unix_socket_directories = ''", "max_connections = 50"]
        if self.fast:
            settings += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write("\n# archive-daemon devdb\n" + "\n".join(settings) + "\n")
        self._save(state)
        return state

    def running(self) -> bool:
        return (self._state() is not None and self.data_dir.exists()
                and self._run("pg_ctl", "status", "-D", str(self.data_dir), check=False).returncode == 0)

    def start(self) -> str:
        """Initialise if needed, start if stopped, create and migrate the database; returns its URL."""
        state = self._state() if (self.data_dir / "PG_VERSION").exists() else None
        if state is None:
            state = self._init()
        if not self.running():
            if not _port_free(state["port"]):
                state["port"] = _free_port()
                self._save(state)
            if self.user is not None and not self.log_file.exists():
                self.log_file.touch()
                os.chown(self.log_file, self.user.pw_uid, self.user.pw_gid)
            self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data_dir), "-l", str(self.log_file),
                      "-o", f"-p {state['port']}")
        self._create_database(state)
        from . import db  # SQLAlchemy and Alembic only here: `devdb status` and `url` start without them
        engine = db.create_engine(self.url())
        try:
            db.upgrade(engine)
        finally:
            engine.dispose()
        return self.url()

    def _create_database(self, state: dict) -> None:
        import psycopg2
        connection = psycopg2.connect(host="127.0.0.1", port=state["port"], user=SUPERUSER,
                                      password=state["password"], dbname="postgres")
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
                if cursor.fetchone() is None:
                    cursor.execute(f"CREATE DATABASE {DATABASE}")
        finally:
            connection.close()

    def stop(self) -> bool:
        """Stop the server; False when it was not running."""
        if not self.running():
            return False
        self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data_dir))
        return True

    def status(self) -> str:
        if self._state() is None:
            return f"not initialised ({self.dir})"
        state = "running" if self.running() else "stopped"
        return f"{state}: 127.0.0.1:{self._state()['port']}, data in {self.data_dir.resolve()}"
