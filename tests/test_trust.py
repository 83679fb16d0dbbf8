"""Who the API believes: a real Apache (running docs/security.md's block verbatim) in front
of a real gunicorn, and clients that go around it."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import falcon
import falcon.testing
import pytest
import requests
import yaml

from api.proxy import FrontEnd
from apiserver import REPO, ApiServer, free_port
from archive_daemon import db, principals
from archive_daemon.config import ApiConfig, ConfigError, load_config
from archive_daemon.loader import ingest
from conftest import fresh_database
from fitsmaker import image

SECRET = "f0e1d2c3b4a5968778695a4b3c2d1e0f" * 2
NIGHT = f"{dt.date.today() - dt.timedelta(days=20):%Y-%m/%d}"
MINE = f"{NIGHT}/cam/mine.fits"
PUBLIC_HOST = "archive.example.org"
MODULES = ("mpm_event", "authz_core", "authn_core", "authn_file", "authz_user", "auth_basic", "proxy",
           "proxy_http", "headers")
# The ways of passing Apache's user that are in circulation, and whether each really does.
IDIOMS = {
    'RequestHeader set X-Remote-User expr=%{REMOTE_USER}': True,
    'RequestHeader set X-Remote-User "%{REMOTE_USER}s"': False,
    'RequestHeader set X-Remote-User "%{REMOTE_USER}s" env=REMOTE_USER': False,
}
EARLY = "RequestHeader unset X-Remote-User early"  # the usual way to strip a client's header


def documented_location_block() -> str:
    """The `<Location /api/>` block operators are told to use, exactly as docs/security.md has it."""
    text = (REPO / "docs" / "security.md").read_text()
    blocks = re.findall(r"```apache\n(.*?)```", text, re.S)
    return next(b for b in blocks if "<Location /api/>" in b)


class Apache:
    """A private apache2: its own ServerRoot, two virtual hosts on loopback ports, one public
    and one behind Basic authentication, both using the documented block."""

    def __init__(self, api_port: int):
        self.dir = Path(tempfile.mkdtemp(prefix="archive-apache-"))
        self.dir.chmod(0o755)  # as root, Apache's children run as nobody and read the password file
        self.public, self.login = free_port(), free_port()
        passwords = self.dir / "htpasswd"
        passwords.write_text("".join(f"{user}:{{SHA}}{base64.b64encode(hashlib.sha1(user.encode() + b'-pw').digest()).decode()}\n"
                                     for user in ("alice", "bob")))
        secret_conf = self.dir / "archive-secret.conf"
        secret_conf.write_text(f'RequestHeader set X-Archive-Secret "{SECRET}"\n')
        secret_conf.chmod(0o600)
        block = (documented_location_block().replace("127.0.0.1:8000", f"127.0.0.1:{api_port}")
                 .replace("/etc/apache2/archive-secret.conf", str(secret_conf)))
        login = f"AuthType Basic\nAuthName archive\nAuthUserFile {passwords}\nRequire valid-user\n"
        probes = "".join(f"<Location /idiom{i}/>\n{login}ProxyPass http://127.0.0.1:{api_port}/api/\n"
                         f"Include {secret_conf}\n{idiom}\nRequestHeader unset Authorization\n</Location>\n"
                         for i, idiom in enumerate([*IDIOMS, EARLY]))
        modules = "".join(f"LoadModule {m}_module /usr/lib/apache2/modules/mod_{m}.so\n" for m in MODULES)
        (self.dir / "httpd.conf").write_text(
            f"ServerRoot {self.dir}\nServerName localhost\nPidFile {self.dir}/httpd.pid\n"
            f"ErrorLog {self.dir}/error.log\nDefaultRuntimeDir {self.dir}\nLogLevel warn\n{modules}"
            f"Listen 127.0.0.1:{self.public}\nListen 127.0.0.1:{self.login}\n"
            f"<VirtualHost 127.0.0.1:{self.public}>\nServerName {PUBLIC_HOST}\n{block}</VirtualHost>\n"
            f"<VirtualHost 127.0.0.1:{self.login}>\nServerName {PUBLIC_HOST}\n<Location />\n{login}</Location>\n"
            f"{block}{probes}</VirtualHost>\n")
        apache2 = shutil.which("apache2") or "/usr/sbin/apache2"
        assert Path(apache2).exists(), "apache2 is not installed: run scripts/setup.sh"
        self.process = subprocess.Popen([apache2, "-f", str(self.dir / "httpd.conf"), "-DFOREGROUND"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"http://127.0.0.1:{self.public}/", timeout=2)
                requests.get(f"http://127.0.0.1:{self.login}/", timeout=2)
                return
            except (requests.ConnectionError, requests.Timeout):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = self.dir / "error.log"
                    raise RuntimeError(f"apache2 did not start:\n{log.read_text() if log.exists() else ''}")
                time.sleep(0.1)

    def get(self, port: int, path: str, **kwargs) -> requests.Response:
        return requests.get(f"http://127.0.0.1:{port}{path}", timeout=30, **kwargs)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)
        shutil.rmtree(self.dir)


@pytest.fixture(scope="module")
def site(cluster, tmp_path_factory):
    """Alice's proprietary file and two public ones; gunicorn trusting the secret; Apache in front."""
    base = tmp_path_factory.mktemp("trust")
    root = base / "data"
    obs = f"{dt.date.today() - dt.timedelta(days=19)}T05:00:00"
    image(root / MINE, {"OBJECT": "SN 2026abc", "PROPID": "P1", "DATE-OBS": obs})
    for n in (1, 2):
        image(root / f"2019-05/02/cam/public{n}.fits", {"OBJECT": "M31", "DATE-OBS": f"2019-05-03T0{n}:00:00"})
    secret = base / "front-end.secret"
    secret.write_text(SECRET + "\n")
    secret.chmod(0o640)
    config_path = base / "config.yaml"
    config_path.write_text(yaml.safe_dump({"roots": [{"name": "data", "path": str(root)}],
                                           "api": {"user_header": "X-Remote-User",
                                                   "front_end_secret_file": str(secret)}}))
    url, drop = fresh_database(cluster)
    config = load_config(str(config_path))
    engine = db.create_engine(url)
    ingest(engine, config, config.root("data"), [""], workers=1)
    connection = engine.raw_connection()
    for user in ("alice", "bob"):
        principals.add_user(connection, user)
    principals.grant(connection, "alice", "P1")
    connection.commit()
    connection.close()
    api = ApiServer(config_path, url, base / "gunicorn.log")
    apache = Apache(api.port)
    yield {"api": api, "apache": apache}
    apache.stop()
    api.stop()
    engine.dispose()
    drop()


def paths(response: requests.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {r["path"] for r in response.json()["results"]}


def test_a_user_who_logs_in_through_apache_is_that_user_in_the_api(site):
    apache = site["apache"]
    assert MINE in paths(apache.get(apache.login, "/api/v1/files", auth=("alice", "alice-pw")))
    assert MINE not in paths(apache.get(apache.login, "/api/v1/files", auth=("bob", "bob-pw")))
    assert apache.get(apache.login, "/api/v1/files").status_code == 401  # Apache's own login


def test_a_client_of_apache_cannot_speak_for_it(site):
    apache = site["apache"]
    forged = {"X-Remote-User": "alice", "X-Archive-Secret": SECRET}
    assert MINE not in paths(apache.get(apache.public, "/api/v1/files", headers=forged))
    assert MINE not in paths(apache.get(apache.public, "/api/v1/files",
                                        headers={"x-remote-user": "alice", "x-archive-secret": "wrong"}))
    assert MINE not in paths(apache.get(apache.login, "/api/v1/files", headers=forged, auth=("bob", "bob-pw")))


def test_a_client_of_gunicorn_is_anonymous_whatever_it_claims(site):
    api = site["api"]
    for headers in ({"X-Remote-User": "alice"}, {"X-Remote-User": "alice", "X-Archive-Secret": SECRET[:-1]},
                    {"X-Remote-User": "alice", "X-Forwarded-For": "127.0.0.1", "Forwarded": "for=127.0.0.1"}):
        assert MINE not in paths(api.get("/api/v1/files", headers=headers)), headers
    # The secret is the whole key: whoever holds it is the front end.
    assert MINE in paths(api.get("/api/v1/files", headers={"X-Remote-User": "alice", "X-Archive-Secret": SECRET}))


def test_links_name_the_public_host_and_scheme_only_through_apache(site):
    apache, api = site["apache"], site["api"]
    spoof = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}
    through = apache.get(apache.public, "/api/v1/files", params={"limit": 1}, headers={"Host": PUBLIC_HOST, **spoof})
    assert through.json()["next"].startswith(f"http://{PUBLIC_HOST}/api/v1/files?")  # Apache's scheme, not the client's
    direct = api.get("/api/v1/files", params={"limit": 1}, headers=spoof)
    assert direct.json()["next"].startswith(f"{api.base}/api/v1/files?")
    vouched = api.get("/api/v1/files", params={"limit": 1}, headers={"X-Archive-Secret": SECRET, **spoof})
    assert vouched.json()["next"].startswith("https://evil.example/api/v1/files?")  # the secret is the whole key


def test_a_malformed_forwarded_host_from_the_front_end_is_a_400_naming_it(site):
    response = site["api"].get("/api/v1/files", headers={"X-Archive-Secret": SECRET, "X-Forwarded-Host": "a/b"})
    assert response.status_code == 400 and response.json()["description"].startswith("X-Forwarded-Host:")


def test_script_name_from_a_client_is_not_honoured(site):
    apache, api = site["apache"], site["api"]
    for response in (api.get("/api/v1/files", params={"limit": 1}, headers={"SCRIPT_NAME": "/api"}),
                     apache.get(apache.public, "/api/v1/files", params={"limit": 1}, headers={"SCRIPT_NAME": "/api"})):
        assert response.status_code == 200
        assert "/api/v1/files?" in response.json()["next"]


@pytest.mark.parametrize("idiom", IDIOMS)
def test_which_apache_idiom_passes_the_user(site, idiom):
    apache = site["apache"]
    found = paths(apache.get(apache.login, f"/idiom{list(IDIOMS).index(idiom)}/v1/files", auth=("alice", "alice-pw")))
    assert (MINE in found) is IDIOMS[idiom]


def test_unset_early_inside_a_location_strips_nothing(site):
    """Why the documented block overwrites the header with "set" rather than trusting `early`."""
    apache = site["apache"]
    found = paths(apache.get(apache.login, f"/idiom{len(IDIOMS)}/v1/files", auth=("bob", "bob-pw"),
                             headers={"X-Remote-User": "alice"}))
    assert MINE in found


def _directives(block: str) -> list[str]:
    return [" ".join(line.split()) for line in block.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_the_ansible_vhost_carries_the_documented_block():
    template = (REPO / "ansible" / "roles" / "apache" / "templates" / "archive-site.conf.j2").read_text()
    deployed = re.search(r"<Location /api/>.*?</Location>", template, re.S).group(0)
    documented = documented_location_block().replace("127.0.0.1:8000", "{{ archive_api_bind }}")
    assert _directives(deployed) == _directives(documented)


def _config(tmp_path: Path, api: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"api": api}))
    return path


@pytest.mark.parametrize("api, key, words", [
    ({"user_header": "X-Remote-User"}, "api.user_header", "secret"),
    ({"user_header": "X_Remote_User", "front_end_secret_file": "secret"}, "api.user_header", "not a header name"),
    ({"front_end_secret_file": "missing"}, "api.front_end_secret_file", "cannot read"),
    ({"front_end_secret_file": "short"}, "api.front_end_secret_file", "at least 32"),
    ({"front_end_secret_file": "everyone"}, "api.front_end_secret_file", "readable by every user"),
    ({"trusted_proxies": ["127.0.0.1"]}, "api.trusted_proxies", "unknown key"),
])
def test_a_malformed_trust_setting_stops_start_up_naming_the_key(tmp_path, monkeypatch, api, key, words):
    monkeypatch.delenv("ARCHIVE_API_FRONT_END_SECRET", raising=False)
    for name, text, mode in (("secret", SECRET, 0o600), ("short", "abc", 0o600), ("everyone", SECRET, 0o644)):
        (tmp_path / name).write_text(text)
        (tmp_path / name).chmod(mode)
    with pytest.raises(ConfigError) as error:
        load_config(str(_config(tmp_path, api)))
    message = str(error.value)
    assert "\n" not in message and f": {key}: " in message and words in message


def test_the_secret_can_come_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHIVE_API_FRONT_END_SECRET", SECRET)
    config = load_config(str(_config(tmp_path, {"user_header": "X-Remote-User"})))
    assert config.api.front_end_secret == SECRET and SECRET not in repr(config)


def test_by_default_nobody_speaks_for_the_front_end(tmp_path, monkeypatch):
    monkeypatch.delenv("ARCHIVE_API_FRONT_END_SECRET", raising=False)
    settings = load_config(str(_config(tmp_path, {}))).api
    assert settings.user_header is None and settings.front_end_secret is None


class _Echo:
    def on_get(self, req, resp):
        resp.media = {"remote_addr": req.remote_addr}


@pytest.mark.parametrize("headers, seen", [
    ({"X-Archive-Secret": SECRET, "X-Forwarded-For": "203.0.113.9, 192.0.2.7"}, "192.0.2.7"),  # Apache's value is last
    ({"X-Forwarded-For": "192.0.2.7"}, "127.0.0.1"),                                           # no secret: ignored
])
def test_the_client_address_comes_from_the_front_end_only(headers, seen):
    """Behind Apache, each client is its own for the per-client download cap, not Apache as one."""
    app = falcon.App(middleware=[FrontEnd(ApiConfig(front_end_secret=SECRET))])
    app.add_route("/echo", _Echo())
    result = falcon.testing.TestClient(app).simulate_get("/echo", headers=headers, remote_addr="127.0.0.1")
    assert result.json == {"remote_addr": seen}
    bad = falcon.testing.TestClient(app).simulate_get(
        "/echo", headers={"X-Archive-Secret": SECRET, "X-Forwarded-For": "not-an-address"})
    assert bad.status_code == 400 and bad.json["description"].startswith("X-Forwarded-For:")
