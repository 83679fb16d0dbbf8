"""Which filesystem a root lives on, and so how it must be watched.

inotify only sees changes made through this machine's kernel: writes that another NFS or
SMB client makes never raise an event here. Roots on such filesystems are polled.
"""

from __future__ import annotations

import os

NETWORK_FILESYSTEMS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "9p", "afs", "lustre")
MOUNTS = "/proc/self/mounts"


def _unescape(field: str) -> str:
    # /proc/self/mounts writes space, tab, newline and backslash as octal escapes.
    return (field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
            .replace("\\134", "\\"))


def filesystem_type(path: str, mounts: str = MOUNTS) -> str | None:
    """The type of the filesystem holding `path` (the longest mount point above it)."""
    target = os.path.realpath(path)
    best, best_type = "", None
    try:
        with open(mounts) as lines:
            for line in lines:
                fields = line.split()
                if len(fields) < 3:
                    continue
                point = _unescape(fields[1])
                inside = target == point or target.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best):
                    best, best_type = point, fields[2]
    except OSError:
        return None
    return best_type


def is_network(fstype: str | None) -> bool:
    return fstype is not None and (fstype in NETWORK_FILESYSTEMS or fstype.startswith("fuse."))


def watch_mode(configured: str, path: str, mounts: str = MOUNTS) -> str:
    """`inotify` or `polling`: as configured, or for `auto` from the filesystem type."""
    if configured != "auto":
        return configured
    return "polling" if is_network(filesystem_type(path, mounts)) else "inotify"
