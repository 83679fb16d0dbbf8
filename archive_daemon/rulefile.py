"""Reading the files that decide who may see data: override files and the schedule.

Anyone who can write a data directory can put a rule file there, so reading one must never
hang the daemon, fill its memory or be steered elsewhere: a rule file is opened without
following a symbolic link and without blocking (a FIFO would wait for a writer forever),
must be a regular file, and is read up to a size cap. A byte-order mark is ignored; bytes
that are not UTF-8 are an error, never guessed at. Every refusal is a RuleFileError whose
message names the file and says why, so the caller can fail closed and report it.

Nor is everyone who can write there trusted to set access: a rule file in the data tree
counts only when its owner is one of access.rule_file_owners (`refused_owner`), checked on
the descriptor that was read, so the file cannot be swapped in between.
"""

from __future__ import annotations

import errno
import os
import pwd
import stat

from .filekind import NOT_REGULAR, SYMLINK

DEFAULT_MAX_BYTES = 1 << 20


class RuleFileError(Exception):
    """A rule file that cannot be used; the message names the file and the reason."""


def read_text(path: str, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[str, bytes, int]:
    """The text of a rule file, its bytes (for a fingerprint) and its owner's uid; raises
    RuleFileError."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        reason = SYMLINK if exc.errno == errno.ELOOP else f"cannot open: {exc.strerror}"
        raise RuleFileError(f"{path}: {reason}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise RuleFileError(f"{path}: {NOT_REGULAR}")
        os.set_blocking(fd, True)
        data = _read_capped(fd, max_bytes)
    except OSError as exc:
        raise RuleFileError(f"{path}: cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise RuleFileError(f"{path}: larger than {max_bytes} bytes (access.rule_file_max_bytes)")
    try:
        return data.decode("utf-8-sig"), data, st.st_uid
    except UnicodeDecodeError as exc:
        raise RuleFileError(f"{path}: not UTF-8 text (byte {exc.start + 1})") from None


def _read_capped(fd: int, max_bytes: int) -> bytes:
    """At most max_bytes + 1 bytes: enough to know the file is too large, never more."""
    chunks, left = [], max_bytes + 1
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def refused_owner(path: str, uid: int, owners: frozenset[int]) -> str | None:
    """Why a rule file owned by `uid` does not count (None: it does)."""
    if uid in owners:
        return None
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = "no such user"
    return f"{path}: owned by uid {uid} ({name}), not one of access.rule_file_owners"


def owners_under(root_path: str, configured: tuple[int, ...] | None) -> frozenset[int]:
    """Who may own the rule files of a root: root and the configured owners, else (none
    configured) root and the owner of the root directory, the account staff write it as."""
    if configured is not None:
        return frozenset((0, *configured))
    try:
        return frozenset((0, os.stat(root_path).st_uid))
    except OSError:  # the mount is away: nothing below it is read anyway
        return frozenset((0,))
