"""Per-directory override files: who may read which files of one directory, and their frame type.

Two formats. The Lick `override.access` one, line by line:

    # comments and blank lines are ignored
    r1234.fits obstype flat            # the file's frame type
    r[12]*     access  alice 2024A-007 # these principals may read it (or: public)

and the same in YAML (`override.yaml`), a list of {files, access, obstype}. Numbered
versions (`override.2.access`, `override.3.yaml`...) supersede lower ones: the highest
number in the directory is in force. A pattern `aaa.fits` also matches `aaa.*.fits`
(products derived from the file). Where several lines match a file, the last one wins.
A file that cannot be read or understood, one not owned by an allowed owner (anyone who
can write the directory could have written it), and a directory that cannot be listed, are
errors for the whole directory: the caller must fail closed (rulefile.py says how files are
read).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
from dataclasses import dataclass, field
from typing import Callable

import yaml

from . import rulefile

# ASCII digits only, the whole name: `override.٩.access` or `override.access\n` is no
# override file (int() would read the one as 9, `$` lets the other end in a newline).
_NAME = re.compile(r"override(?:\.([0-9]+))?\.(access|yaml)", re.ASCII)


def is_override(name: str) -> bool:
    """Whether a file name is that of an override file (in force or not)."""
    return bool(_NAME.fullmatch(name))


class OverrideError(Exception):
    """A rule source that cannot be used; the message names the file (and line) and why."""


class DirectoryMissing(OverrideError):
    """The directory is not there (a mount away, or deleted): nothing can be said about it."""


@dataclass(frozen=True)
class Rule:
    pattern: str
    kind: str                  # "access" or "obstype"
    values: tuple[str, ...]
    where: str                 # "path line N", for `access explain`

    def matches(self, name: str) -> bool:
        if fnmatch.fnmatchcase(name, self.pattern):
            return True
        stem, dot, ext = self.pattern.rpartition(".")
        return bool(dot) and fnmatch.fnmatchcase(name, f"{stem}.*.{ext}")


@dataclass
class Overrides:
    """The override file in force for one directory (none: no rules)."""

    path: str | None = None
    rules: list[Rule] = field(default_factory=list)
    error: str | None = None       # set: the directory's files fail closed
    missing: bool = False          # the directory itself is not there
    digest: str | None = None      # sha256 of the file in force (or refused for its owner)
    source: str | None = None      # with an error: the rule file, else the directory, it is about
    owner: int | None = None       # the uid owning that file

    @property
    def fingerprint(self) -> str | None:
        """What the rules were decided from, as recorded in rule_sources (None: no rule source).

        A file that was read is named by its content and owner, whether its owner is allowed
        or not: so a scan, which does not know who is allowed, sees a chown as a change."""
        if self.digest is not None:
            return f"{os.path.basename(self.path)} sha256:{self.digest} uid:{self.owner}"
        if self.error is not None:
            return f"error: {self.error}"
        return None

    def last(self, kind: str, name: str) -> Rule | None:
        found = None
        for rule in self.rules:
            if rule.kind == kind and rule.matches(name):
                found = rule
        return found


def find(directory: str) -> str | None:
    """The override file in force in `directory`: the highest-numbered one.

    A directory that cannot be listed is an error (its files must fail closed), and so is
    one that is missing (DirectoryMissing), which callers may rather wait out.
    """
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        raise DirectoryMissing(f"{directory}: directory missing") from None
    except OSError as exc:
        raise OverrideError(f"{directory}: directory cannot be listed: {exc.strerror}") from None
    candidates = []
    for name in names:
        match = _NAME.fullmatch(name)
        if match:
            candidates.append((int(match.group(1) or 0), match.group(2) == "yaml", name))
    if not candidates:
        return None
    number, _, name = max(candidates)
    same = [c for c in candidates if c[0] == number]
    if len(same) > 1:
        raise OverrideError(f"{directory}: both {same[0][2]} and {same[1][2]} claim to be in force")
    return os.path.join(directory, name)


def _rule(pattern: str, verb: str, values: list[str], where: str) -> Rule:
    if verb not in ("access", "obstype"):
        raise OverrideError(f"{where}: unknown word {verb!r} (expected access or obstype)")
    if not values:
        raise OverrideError(f"{where}: {verb} needs {'at least one name' if verb == 'access' else 'a frame type'}")
    if verb == "obstype" and len(values) != 1:
        raise OverrideError(f"{where}: obstype takes one frame type, got {' '.join(values)}")
    return Rule(pattern, verb, tuple(values), where)


def parse_access(text: str, path: str) -> list[Rule]:
    rules = []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        where = f"{path} line {number}"
        if len(words) < 2:
            raise OverrideError(f"{where}: expected `<files> access <names...>` or `<files> obstype <type>`")
        rules.append(_rule(words[0], words[1], words[2:], where))
    return rules


def parse_yaml(text: str, path: str) -> list[Rule]:
    try:
        data = yaml.safe_load(text) or []
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise OverrideError(f"{path} line {mark.line + 1 if mark else '?'}: not valid YAML") from None
    if not isinstance(data, list):
        raise OverrideError(f"{path}: must be a list of {{files, access, obstype}} entries")
    rules = []
    for number, entry in enumerate(data, 1):
        where = f"{path} entry {number}"
        if not isinstance(entry, dict) or not isinstance(entry.get("files"), str):
            raise OverrideError(f"{where}: needs `files: <pattern>`")
        unknown = set(entry) - {"files", "access", "obstype"}
        if unknown:
            raise OverrideError(f"{where}: unknown key {sorted(unknown)[0]!r}")
        for verb in ("access", "obstype"):
            if verb in entry:
                value = entry[verb]
                values = [value] if isinstance(value, str) else value
                if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                    raise OverrideError(f"{where}: {verb} must be a name or a list of names")
                rules.append(_rule(entry["files"], verb, values, where))
    return rules


def read(directory: str, max_bytes: int = rulefile.DEFAULT_MAX_BYTES,
         owners: frozenset[int] | None = None) -> Overrides:
    """The rules in force for a directory; anything unusable gives Overrides with `error` set.

    `owners`: who may own the file in force (None: not checked, for a fingerprint only)."""
    path = None
    try:
        path = find(directory)
        if path is None:
            return Overrides()
        text, data, uid = rulefile.read_text(path, max_bytes)
        digest = hashlib.sha256(data).hexdigest()
        refused = rulefile.refused_owner(path, uid, owners) if owners is not None else None
        if refused:
            return Overrides(path, [], refused, digest=digest, source=path, owner=uid)
        parse = parse_yaml if path.endswith(".yaml") else parse_access
        return Overrides(path, parse(text, path), digest=digest, owner=uid)
    except DirectoryMissing as exc:
        return Overrides(None, [], str(exc), missing=True, source=directory)
    except (OverrideError, rulefile.RuleFileError) as exc:
        return Overrides(None, [], str(exc), source=path or directory)


class OverrideCache:
    """Override files by directory, read again when the directory or the file in force changes.

    The directory's ctime changes when an override file appears or goes and when its
    permissions change, the file's own when it is edited, chmod-ed or chown-ed (a refused or
    unreadable file included, so fixing it counts): two stats a look-up, no directory
    listing. A stat that fails never trusts the cache.
    """

    def __init__(self, max_bytes: int = rulefile.DEFAULT_MAX_BYTES):
        self.max_bytes = max_bytes
        self._cache: dict[str, tuple[int | None, int | None, Overrides]] = {}

    def get(self, directory: str, owners: Callable[[], frozenset[int] | None] = lambda: None) -> Overrides:
        """The rules for `directory`; `owners()`, asked only when the file is read again, says
        who may own it."""
        directory_ctime = _ctime(directory)
        cached = self._cache.get(directory)
        if (cached is not None and directory_ctime is not None and cached[0] == directory_ctime
                and cached[1] == _ctime(_file_of(cached[2]))):
            return cached[2]
        overrides = read(directory, self.max_bytes, owners())
        self._cache[directory] = (directory_ctime, _ctime(_file_of(overrides)), overrides)
        return overrides


def _file_of(overrides: Overrides) -> str | None:
    """The rule file whose changes matter: the one in force, else the one that failed."""
    return overrides.path or overrides.source


def _ctime(path: str | None) -> int | None:
    if path is None:
        return None
    try:
        return os.lstat(path).st_ctime_ns
    except OSError:
        return None
