"""The documentation names exactly what exists: configuration keys, API endpoints and
parameters, command-line commands and options.

What exists is read from the code that accepts it (the configuration parser, the running
API application, the argparse parser), never from a list kept here; each failure names
the item and the document that lacks it or names it wrongly.
"""

from __future__ import annotations

import argparse
import importlib
import re
from pathlib import Path

import falcon
import falcon.inspect
import falcon.testing
import pytest
import yaml

from api.openapi import document
from api.params import Params
from archive_daemon.cli import build_parser
from archive_daemon.config import DEFAULTS_FILE, FRONT_END_SECRET_ENV, ConfigError, load_config
from archive_daemon.confread import Section

TOP = Path(__file__).resolve().parents[1]
DOCS = [TOP / "README.md", *sorted((TOP / "docs").glob("*.md"))]
API_DOC = TOP / "docs" / "api.md"
# `access.md` or `keywords.py` in the docs are files, not configuration keys
# The tables the IVOA services publish (`ivoa.obscore`) are named like configuration keys.
PUBLISHED_TABLES = {"ivoa.obscore", "archive.files"}
FILE_SUFFIXES = {"py", "md", "yaml", "yml", "json", "cfg", "ini", "conf", "service", "txt", "sh", "j2"}


def _where(path: Path) -> str:
    return str(path.relative_to(TOP))


def _problems(problems: list[str]) -> str:
    return "\n".join(["the documentation disagrees with the code:", *problems])


# --- configuration keys -------------------------------------------------------------------

def uncommented(text: str) -> str:
    """defaults.yaml with its commented-out settings (`#key: value`, and the `#  ...` lines
    indented under one) turned on; prose comments (`# ...`) stay comments."""
    lines, block = [], None
    for line in text.splitlines():
        start = re.match(r"^(\s*)#(?=[^\s#])", line)
        if start:
            block = start.group(1)
            lines.append(line.replace("#", "", 1))
        elif block is not None and re.match(rf"^{block}#  ", line):
            lines.append(line.replace("#", "", 1))
        else:
            block = None
            lines.append(line)
    return "\n".join(lines) + "\n"


class Keys:
    """The keys the configuration parser asks for while it reads a file.

    Every accessor of confread.Section reads through `raw` (or asks `has` first), so what
    they were asked for is what the parser accepts; `keys()` marks a table of free names
    (`access.telescopes.<name>`), written `.*` here. Keys nobody asked for, which the
    parser would refuse one at a time, are left for the comparison to list all at once.
    """

    def __init__(self, monkeypatch):
        self.asked: set[str] = set()
        self.tables: set[str] = set()
        raw, has, keys = Section.raw, Section.has, Section.keys

        def spy_raw(section, name, default=None):
            self.asked.add(_plain(section._name(str(name))))
            return raw(section, name, default)

        def spy_has(section, name):
            self.asked.add(_plain(section._name(str(name))))
            return has(section, name)

        def spy_keys(section):
            self.tables.add(_plain(section.key))
            return keys(section)

        monkeypatch.setattr(Section, "raw", spy_raw)
        monkeypatch.setattr(Section, "has", spy_has)
        monkeypatch.setattr(Section, "keys", spy_keys)
        monkeypatch.setattr(Section, "done", lambda section: None)

    def generic(self, key: str) -> str:
        """`access.telescopes.Shane.timezone` as `access.telescopes.*.timezone`."""
        parts, out = key.split("."), []
        for part in parts:
            out.append("*" if ".".join(out) in self.tables else part)
        return ".".join(out)

    @property
    def accepted(self) -> set[str]:
        return {self.generic(k) for k in self.asked} | {f"{t}.*" for t in self.tables}


def _plain(key: str) -> str:
    return re.sub(r"\[\d+\]", "[]", key)


def flattened(data, prefix: str = "") -> set[str]:
    """Every key of a YAML document, dotted, with `[]` for the entries of a list."""
    keys: set[str] = set()
    if isinstance(data, dict):
        for name, value in data.items():
            key = f"{prefix}.{name}" if prefix else str(name)
            keys |= {key} | flattened(value, key)
    elif isinstance(data, list):
        for item in data:
            keys |= flattened(item, f"{prefix}[]")
    return keys


def _read_as_config(tmp_path: Path, monkeypatch, text: str) -> tuple[Keys, str | None]:
    """Load `text` as a configuration file, noting the keys asked for; and the error that
    stopped it, if one did."""
    path = tmp_path / "documented.yaml"
    path.write_text(text)
    with monkeypatch.context() as patch:
        keys = Keys(patch)
        # Examples name the secret file of a deployed host; the environment stands in for it.
        patch.setenv(FRONT_END_SECRET_ENV, "s" * 32)
        try:
            load_config(str(path))
        except ConfigError as exc:
            return keys, str(exc).replace(f"{path}: ", "")
    return keys, None


def _profile_keywords(keys: set[str]) -> set[str]:
    """An instrument profile's `keywords:` is read by the same parser as the top-level
    `keywords:` (keywords.read_keyword_map), so it is documented there."""
    return {re.sub(r"^instruments\[\]\.keywords\.", "keywords.", k) for k in keys}


def test_defaults_yaml_documents_every_configuration_key_and_no_other(tmp_path, monkeypatch):
    documented_text = uncommented(DEFAULTS_FILE.read_text())
    keys, error = _read_as_config(tmp_path, monkeypatch, documented_text)
    assert error is None, f"archive_daemon/defaults.yaml, with its commented settings turned on: {error}"
    profile = {k[len("instruments[].keywords."):] for k in keys.accepted if k.startswith("instruments[].keywords.")}
    generic = {k[len("keywords."):] for k in keys.accepted if k.startswith("keywords.")}
    assert profile <= generic, "instrument profiles no longer take the keys of `keywords:`"
    accepted = _profile_keywords(keys.accepted)
    documented = _profile_keywords({keys.generic(k) for k in flattened(yaml.safe_load(documented_text))})
    problems = [f"configuration key {k}: accepted by archive_daemon/config.py, not in archive_daemon/defaults.yaml"
                for k in sorted(accepted - documented)]
    problems += [f"configuration key {k}: in archive_daemon/defaults.yaml, refused by archive_daemon/config.py"
                 for k in sorted(documented - accepted)]
    assert not problems, _problems(problems)


def _accepted_keys(tmp_path, monkeypatch) -> tuple[set[str], Keys]:
    keys, error = _read_as_config(tmp_path, monkeypatch, uncommented(DEFAULTS_FILE.read_text()))
    assert error is None, error
    return _profile_keywords(keys.accepted), keys


def _fenced(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.S | re.M)


def test_configuration_shown_in_the_docs_uses_only_real_keys(tmp_path, monkeypatch):
    accepted, reference = _accepted_keys(tmp_path, monkeypatch)
    top_level = {k for k in accepted if "." not in k and "[" not in k}
    problems = []
    for doc in DOCS:
        for block in _fenced(doc.read_text(), "yaml"):
            data = yaml.safe_load(block)
            if not isinstance(data, dict) or not set(data) & top_level:
                continue  # not a configuration (an override file, say)
            _, error = _read_as_config(tmp_path, monkeypatch, block)
            shown = _profile_keywords({reference.generic(k) for k in flattened(data)})
            problems += [f"configuration key {k}: shown in {_where(doc)}, refused by archive_daemon/config.py"
                         for k in sorted(shown - accepted)]
            if error and not shown - accepted:
                problems.append(f"{_where(doc)}: a configuration example that does not load: {error}")
        for key in re.findall(r"`([a-z_]+(?:\[\])?(?:\.[a-z_]+(?:\[\])?)+)`", doc.read_text()):
            if (key.split(".")[0].split("[")[0] in top_level and key.rsplit(".", 1)[1] not in FILE_SUFFIXES
                    and key not in PUBLISHED_TABLES):
                if key not in accepted and f"{key.rsplit('.', 1)[0]}.*" not in accepted:
                    problems.append(f"configuration key {key}: named in {_where(doc)}, refused by "
                                    "archive_daemon/config.py")
    assert not problems, _problems(problems)


# --- API endpoints and parameters ----------------------------------------------------------

@pytest.fixture
def api(config, engine, database_url, monkeypatch):
    """The application on a real database, and the query parameters each request asked for."""
    monkeypatch.setenv("ARCHIVE_DATABASE_URL", database_url)  # api.app builds gunicorn's app on import
    create_app = importlib.import_module("api.app").create_app
    asked: dict[tuple[str, str], set[str]] = {}
    done = Params.done

    def spy_done(params):
        asked.setdefault((params.request.method, params.request.uri_template), set()).update(params.used)
        done(params)

    init = Params.__init__

    def spy_init(params, req, *args, **kwargs):
        params.request = req
        init(params, req, *args, **kwargs)

    monkeypatch.setattr(Params, "__init__", spy_init)
    monkeypatch.setattr(Params, "done", spy_done)
    app = create_app(config, engine)
    yield app, falcon.testing.TestClient(app), asked


def _routes(app, prefix: str = "/api/") -> set[tuple[str, str]]:
    """(method, path template) of every route the application serves under `prefix`: the
    JSON API's (/api/) are in the OpenAPI document and docs/api.md, the IVOA protocols'
    (/ivoa/) in docs/ivoa.md."""
    return {(m.method, route.path) for route in falcon.inspect.inspect_routes(app)
            for m in route.methods if not m.internal and route.path.startswith(prefix)}


def _accepted_params(app, client, asked) -> dict[tuple[str, str], set[str]]:
    """The query parameters of each route, as its resource asks for them (a resource that
    reads none through api.params accepts none)."""
    for method, path in sorted(_routes(app)):
        client.simulate_request(method, re.sub(r"\{[^}]+\}", "1", path))
    return {route: asked.get(route, set()) for route in _routes(app)}


def _generic(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def test_openapi_document_describes_every_endpoint_and_parameter_and_no_other(api, config):
    app, client, asked = api
    accepted = _accepted_params(app, client, asked)
    paths = document(config.api)["paths"]
    described = {(method.upper(), path): {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
                 for path, operations in paths.items() for method, operation in operations.items()}
    problems = [f"endpoint {m} {p}: served, not in the OpenAPI document (api/openapi.py)"
                for m, p in sorted(accepted.keys() - described.keys())]
    problems += [f"endpoint {m} {p}: in the OpenAPI document (api/openapi.py), not served"
                 for m, p in sorted(described.keys() - accepted.keys())]
    for route in sorted(accepted.keys() & described.keys()):
        problems += [f"parameter {n} of {' '.join(route)}: accepted, not in the OpenAPI document (api/openapi.py)"
                     for n in sorted(accepted[route] - described[route])]
        problems += [f"parameter {n} of {' '.join(route)}: in the OpenAPI document (api/openapi.py), refused"
                     for n in sorted(described[route] - accepted[route])]
    assert not problems, _problems(problems)


def _documented_in_api_md() -> tuple[set[tuple[str, str]], set[str]]:
    """docs/api.md's endpoints (`GET /api/v1/...`, or a bare path for GET) and parameters
    (the first column of a table headed `parameter`, or `name=value` in code)."""
    text = API_DOC.read_text()
    endpoints = {(method or "GET", _generic(path))
                 for method, path in re.findall(r"`(?:(GET|POST|PUT|PATCH|DELETE) )?(/api/[^`\s?]*[^/`])`", text)}
    params: set[str] = set()
    in_table = False
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if cells and cells[0] == "parameter":
            in_table = True
        elif not cells:
            in_table = False
        elif in_table and not set(cells[0]) <= {"-", ":"}:
            params.update(re.findall(r"`([a-z_]+)`", cells[0]))
    params.update(re.findall(r"`([a-z_]+)=[^`]*`", text))
    return endpoints, params


def test_api_md_describes_every_endpoint_and_parameter_and_no_other(api):
    app, client, asked = api
    accepted = _accepted_params(app, client, asked)
    endpoints, params = _documented_in_api_md()
    served = {(m, _generic(p)) for m, p in accepted}
    every = set().union(*accepted.values())
    problems = [f"endpoint {m} {p}: served, not in docs/api.md" for m, p in sorted(served - endpoints)]
    problems += [f"endpoint {m} {p}: in docs/api.md, not served" for m, p in sorted(endpoints - served)]
    problems += [f"parameter {n}: accepted, not in docs/api.md" for n in sorted(every - params)]
    problems += [f"parameter {n}: in docs/api.md, refused by every endpoint" for n in sorted(params - every)]
    assert not problems, _problems(problems)


def test_every_documented_tar_download_field_is_accepted(api, config):
    app, client, asked = api
    body = document(config.api)["paths"]["/api/v1/download"]["post"]["requestBody"]
    fields = body["content"]["application/json"]["schema"]["properties"]
    problems = []
    for name in fields:
        answer = client.simulate_post("/api/v1/download", json={"ids": [1], name: None})
        if answer.status_code == 400 and "unknown field" in answer.json["description"]:
            problems.append(f"field {name} of POST /api/v1/download: in the OpenAPI document, refused")
    assert not problems, _problems(problems)


# --- command line ---------------------------------------------------------------------------

def _commands(parser, path=(), inherited=frozenset()) -> tuple[dict, dict]:
    """({command: options it takes}, {command with a parser of its own: its own options}).

    A command is a subcommand, or a choice of a positional (`devdb start`), whose parser's
    options it takes.
    """
    own = {o for a in parser._actions for o in a.option_strings if o.startswith("--") and o != "--help"}
    takes, parsers = {path: own | inherited}, {path: own}
    for action in parser._actions:
        if action.option_strings:
            continue
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                more_takes, more_parsers = _commands(sub, path + (name,))
                takes.update(more_takes)
                parsers.update(more_parsers)
        elif action.choices:
            takes.update({path + (choice,): own for choice in action.choices})
    return takes, parsers


def _invocations(text: str):
    """The words after each `archive-daemon` that begins a command line (a shell line, or
    code): `archive-daemon devdb start|stop`, `.venv/bin/archive-daemon ...`; each word as
    its `|` alternatives, `[...]` marks dropped."""
    for match in re.finditer(r"(?:^|`|\$ )[\w./-]*?(?<![\w-])archive-daemon((?:[ \t]+[^\s`#]+)*)", text, re.M):
        yield [word.split("|") for word in match.group(1).replace("[", " ").replace("]", " ").split()]


def _expects_command(commands, path) -> bool:
    return any(len(c) == len(path) + 1 and c[:len(path)] == path for c in commands)


def _shown_commands(commands) -> tuple[dict[tuple[str, ...], set[str]], list[str]]:
    """What README.md and docs/ show: {command: options shown with it}; and the problems
    with words shown as commands that are none."""
    shown: dict[tuple[str, ...], set[str]] = {(): set()}
    problems = []
    for doc in DOCS:
        text = doc.read_text()
        shown[()] |= set(re.findall(r"`(--[a-z-]+)", text)) & commands[()]  # global options, named anywhere
        for words in _invocations(text):
            paths = [()]
            for alternatives in words:
                if alternatives[0].startswith("--"):
                    for path in paths:
                        shown.setdefault(path, set()).update(alternatives)
                    continue
                if not any(_expects_command(commands, path) for path in paths):
                    continue  # a value: a path, a user name
                deeper = [path + (w,) for path in paths for w in alternatives if path + (w,) in commands]
                for word in alternatives:
                    if re.fullmatch(r"[a-z][a-z-]*", word) and not any(path + (word,) in commands for path in paths):
                        problems.append(f"command archive-daemon {' '.join(paths[0] + (word,))}: in {_where(doc)}, "
                                        "not in archive_daemon/cli.py")
                if deeper:
                    paths = deeper
                    for path in paths:
                        shown.setdefault(path, set())
    return shown, problems


def test_readme_and_docs_show_every_command_and_option_and_no_other():
    commands, parsers = _commands(build_parser())
    shown, problems = _shown_commands(commands)
    for command in sorted(c for c in commands if not _expects_command(commands, c) and c not in shown):
        problems.append(f"command archive-daemon {' '.join(command)}: in archive_daemon/cli.py, not in README.md "
                        "or docs/")
    for command, options in sorted(parsers.items()):
        documented = set().union(*(o for c, o in shown.items() if c[:len(command)] == command))
        problems += [f"option {o} of archive-daemon {' '.join(command)}: in archive_daemon/cli.py, not in "
                     "README.md or docs/" for o in sorted(options - documented)]
    for command, options in sorted(shown.items()):
        problems += [f"option {o} of archive-daemon {' '.join(command)}: in README.md or docs/, not in "
                     "archive_daemon/cli.py" for o in sorted(options - commands.get(command, set()))]
    assert not problems, _problems(problems)
