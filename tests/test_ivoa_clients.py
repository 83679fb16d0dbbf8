"""The IVOA services as researchers' tools see them: docs/ivoa.md's examples run as written,
and the IVOA's own validator (STILTS taplint) finds no error."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import falcon.inspect
import pytest
import yaml

from api.app import create_app
from apiserver import ApiServer, build_archive

DOC = Path(__file__).resolve().parent.parent / "docs" / "ivoa.md"
EXAMPLE_HOST = "https://archive.example.org"


@pytest.fixture(scope="module")
def archive(cluster, tmp_path_factory):
    base = tmp_path_factory.mktemp("ivoa-clients")
    built = build_archive(cluster, base)
    settings = {**built["settings"], "ivoa": {"authority": "obs.example.org", "results_dir": str(base / "results")}}
    built["config_path"].write_text(yaml.safe_dump(settings))
    server = ApiServer(built["config_path"], built["url"], base / "gunicorn.log")
    yield {**built, "server": server}
    server.stop()
    built["close"]()


def _examples(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", DOC.read_text(), re.S | re.M)


def _for(archive, text: str) -> str:
    return text.replace(EXAMPLE_HOST, archive["server"].base).replace("YOUR-TOKEN", archive["tokens"]["alice"])


@pytest.mark.parametrize("number", range(len(_examples("python"))))
def test_each_python_example_in_the_docs_runs(archive, number, capsys):
    exec(compile(_for(archive, _examples("python")[number]), f"docs/ivoa.md example {number + 1}", "exec"), {})
    assert "obs_id" in capsys.readouterr().out or number == 1


def test_the_token_holders_example_sees_their_own_files(archive):
    scope: dict = {}
    exec(_for(archive, _examples("python")[1]), scope)
    assert any("mine.fits" in obs_id for obs_id in scope["mine"]["obs_id"])
    assert len(scope["images"]) and len(scope["near"])


def test_the_stilts_example_in_the_docs_runs(archive):
    (command,) = [block for block in _examples("sh") if block.startswith("stilts tapquery")]
    done = subprocess.run(["bash", "-c", _for(archive, command)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "obs_id,s_ra,s_dec" and len(done.stdout.splitlines()) > 1


def test_taplint_finds_no_error(archive):
    done = subprocess.run(["stilts", "taplint", f"tapurl={archive['server'].base}/ivoa/tap", "report=EWF"],
                          capture_output=True, text=True, timeout=900)
    totals = re.search(r"Totals: Errors: (\d+); Warnings: (\d+)", done.stdout)
    # F- lines are stages it cannot run here (table uploads, ObsLocTAP, examples: not offered).
    errors = "\n".join(line for line in done.stdout.splitlines() if line.startswith("E-"))
    assert totals, done.stdout[-3000:] + done.stderr[-2000:]
    assert int(totals[1]) == 0 and not errors, errors


def test_docs_name_every_ivoa_endpoint_and_no_other(archive):
    app = create_app(archive["config"], archive["engine"])
    served = {route.path for route in falcon.inspect.inspect_routes(app) if route.path.startswith("/ivoa/")}
    documented = set(re.findall(r"`(/ivoa/[^`\s?]*[^/`\s])`", DOC.read_text()))
    generic = {re.sub(r"\{[^}]+\}", "{}", p) for p in served}
    named = {re.sub(r"\{[^}]+\}", "{}", p) for p in documented}
    services = {"/ivoa/tap", "/ivoa/sia2"}  # the base URLs clients are given
    assert generic == named - services
