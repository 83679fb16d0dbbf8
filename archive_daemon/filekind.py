"""What the archive never follows or reads as data: symbolic links, hard links and special files.

A link in a public directory could otherwise publish a proprietary file, or a file from
outside the root; a hard link is the same file under a second name, which other rules may
govern; a FIFO would block its reader forever. Scans, watches and readers use lstat (or
O_NOFOLLOW on every directory below the root), never descend into a linked directory, and
record such an entry, when its name is one the root archives, as a failure with one of
these reasons.
"""

from __future__ import annotations

import os
import stat

SYMLINK = "symbolic links are not archived"
NOT_REGULAR = "not a regular file"
HARDLINK = "hard links are not archived (the same file under another name, which other rules may govern)"

BAD_MTIME = "modification time outside the years 1 to 9999"
_NO_LINKS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
# Microseconds since 1970 that a timestamp can hold (0001-01-01 to 9999-12-31); tmpfs,
# btrfs and ZFS keep any 64-bit time that `touch -d` sets.
MTIME_US = (-62135596800 * 10**6, 253402300799 * 10**6)


def refusal(st: os.stat_result) -> str | None:
    """Why an entry with this lstat (or fstat) is not archived (None: a plain file, it may be)."""
    if stat.S_ISLNK(st.st_mode):
        return SYMLINK
    if not stat.S_ISREG(st.st_mode):
        return NOT_REGULAR
    if st.st_nlink > 1:
        return HARDLINK
    if not MTIME_US[0] <= st.st_mtime_ns // 1000 <= MTIME_US[1]:
        return BAD_MTIME
    return None


def open_below(root: str, path: str) -> int:
    """A descriptor of root/path, each directory below the root opened without following a
    link, relative to the one before (nothing can be swapped in between a check and the
    open), the file itself without blocking; raises OSError (ELOOP where a link was met)."""
    directory = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in path.split("/")[:-1]:
            inner = os.open(part, _NO_LINKS | os.O_DIRECTORY, dir_fd=directory)
            os.close(directory)
            directory = inner
        return os.open(path.rsplit("/", 1)[-1], _NO_LINKS | os.O_NONBLOCK, dir_fd=directory)
    finally:
        os.close(directory)
