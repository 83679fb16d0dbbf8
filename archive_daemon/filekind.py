"""What the archive never follows or reads as data: symbolic links and special files.

A link in a public directory could otherwise publish a proprietary file, or a file from
outside the root; a FIFO would block its reader forever. Scans, watches and readers use
lstat (or O_NOFOLLOW), never descend into a linked directory, and record such an entry,
when its name is one the root archives, as a failure with one of these reasons.
"""

from __future__ import annotations

import stat

SYMLINK = "symbolic links are not archived"
NOT_REGULAR = "not a regular file"


def refusal(mode: int) -> str | None:
    """Why an entry of this lstat mode is not archived (None: a regular file, it may be)."""
    if stat.S_ISLNK(mode):
        return SYMLINK
    if not stat.S_ISREG(mode):
        return NOT_REGULAR
    return None
