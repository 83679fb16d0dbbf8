"""One file: its metadata, its header, and the file itself.

A file the caller may not read answers 404, exactly like one that does not exist.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import urllib.parse

import falcon
from falcon.util.misc import secure_filename

from archive_daemon.config import Config
from archive_daemon.filekind import open_below, refusal
from archive_daemon.fitsfile import card_fields
from archive_daemon.store import EPOCH
from archive_daemon.visibility import VISIBLE

from .formats import plain
from .params import Params, unfit_character, whole
from .streams import FileBody, Streams

_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)", re.IGNORECASE)
_DETAIL = ("id", "root", "path", "size", "mtime", "night", "instrument", "telescope", "object", "obs_start",
           "obs_end", "date_source", "exptime", "frame_type", "filter", "program", "ra", "dec", "public_date",
           "notes", "ingested_at")


def visible_file(req: falcon.Request, file_id: str, columns: str) -> tuple:
    """The row of a file the caller may read, else 404."""
    number = whole(file_id)
    if number is None or number < 1:
        raise falcon.HTTPNotFound(title="No such file", description=f"file_id: no file {file_id[:40]!r}")
    with req.context.connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns} FROM files f WHERE f.id = %(id)s AND {VISIBLE}",
                       {"id": number, "principals": req.context.principals})
        row = cursor.fetchone()
    if row is None:
        raise falcon.HTTPNotFound(title="No such file", description=f"file_id: no file {number}")
    return row


class File:
    def on_get(self, req: falcon.Request, resp: falcon.Response, file_id: str) -> None:
        Params(req).done()
        row = visible_file(req, file_id, ", ".join(f"f.{c}" for c in _DETAIL))
        resp.media = {name: plain(value) for name, value in zip(_DETAIL, row)}


class Header:
    def on_get(self, req: falcon.Request, resp: falcon.Response, file_id: str) -> None:
        params = Params(req)
        fmt = params.choice("format", "text", ("text", "json"))
        params.done()
        (text,) = visible_file(req, file_id, "f.header")
        cards = [text[i:i + 80] for i in range(0, len(text), 80)]
        if fmt == "text":
            resp.content_type = "text/plain; charset=us-ascii"
            resp.text = "\n".join(cards) + "\n"
        else:
            resp.media = {"cards": [_card(c) for c in cards]}


def _card(image: str) -> dict:
    try:
        keyword, value, comment = card_fields(image)
    except ValueError:  # a corrupt card is shown as it is
        return {"keyword": image[:8].strip(), "value": None, "comment": None, "card": image}
    if isinstance(value, float) and not math.isfinite(value) or not isinstance(value, (str, int, float, bool)):
        value = None  # complex numbers, and 1E999, which JSON cannot carry
    return {"keyword": keyword, "value": value, "comment": comment}


def open_archived(config: Config, root_name: str, path: str, size: int, mtime: dt.datetime) -> tuple[int, str]:
    """An open descriptor of an archived file and its path on disk; else 404.

    Served only when no component of its path under the root is a symbolic link (a link in
    a public directory could lead to anyone's file, or out of the archive), opened as the
    daemon opens it (filekind.open_below: nothing can be swapped in between a check and the
    open); plain files only: a FIFO put in a file's place must not hang a worker, and a hard
    link is the same data under a name other rules may govern. The single download,
    X-Sendfile, previews and the tar stream all come through here.

    And only while it is the file that was archived, with the row's size and mtime: what
    the access decision was made for. A file replaced since (another file renamed over it,
    say a hard link to someone's proprietary data) waits until the daemon has read it anew.
    """
    roots = {r.name: r.path for r in config.roots}
    if root_name not in roots:
        raise _not_on_disk("the file's root is not configured here")
    parts = path.split("/")
    if any(part in ("", ".", "..") or "\0" in part for part in parts):
        raise _not_on_disk("the file is no longer on disk")
    base = os.path.realpath(roots[root_name])  # the root itself may be a link the operator made
    try:
        fd = open_below(base, path)
    except OSError:  # ELOOP for a link, ENOENT, ENOTDIR, EACCES: all "not here"
        raise _not_on_disk("the file is no longer on disk") from None
    st = os.fstat(fd)
    if refusal(st):  # a FIFO put in its place, or a hard link made since
        os.close(fd)
        raise _not_on_disk("the file is no longer on disk")
    if (st.st_size, st.st_mtime_ns // 1000) != (size, (mtime - EPOCH) // dt.timedelta(microseconds=1)):
        os.close(fd)
        raise _not_on_disk("the file on disk changed since it was archived; it is served again once "
                           "the archive has read it anew")
    return fd, os.path.join(base, path)


def _not_on_disk(description: str) -> falcon.HTTPNotFound:
    return falcon.HTTPNotFound(title="No such file", description=description)


def attachment(name: str) -> str:
    """A Content-Disposition for any file name: quoted as it is when it is plain ASCII, else
    an ASCII stand-in plus the exact name percent-encoded (RFC 6266), never a raw control
    character or quote."""
    if name.isascii() and name.isprintable() and '"' not in name and "\\" not in name:
        return f'attachment; filename="{name}"'
    return f"attachment; filename=\"{secure_filename(name)}\"; filename*=UTF-8''{urllib.parse.quote(name, safe='')}"


class Download:
    """The file itself: sendfile through gunicorn, or X-Sendfile for Apache; Range, ETag."""

    def __init__(self, config: Config, streams: Streams):
        self.config, self.streams = config, streams

    def on_get(self, req: falcon.Request, resp: falcon.Response, file_id: str) -> None:
        Params(req).done()
        root, path, size, mtime = visible_file(req, file_id, "f.root, f.path, f.size, f.mtime")
        fd, full = open_archived(self.config, root, path, size, mtime)
        streamed = False
        try:
            streamed = self._answer(req, resp, fd, full, path)
        finally:
            if not streamed:
                os.close(fd)

    def _answer(self, req: falcon.Request, resp: falcon.Response, fd: int, full: str, path: str) -> bool:
        """Headers, and the body when we send it; True when the body now owns `fd`."""
        st = os.fstat(fd)
        etag = f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
        modified = dt.datetime.fromtimestamp(st.st_mtime, dt.timezone.utc)
        resp.etag, resp.last_modified = etag, modified
        if _etag_matches(req.get_header("If-None-Match"), etag):
            resp.status = falcon.HTTP_304
            return False
        resp.set_header("Content-Disposition", attachment(os.path.basename(path)))
        resp.accept_ranges = "bytes"
        resp.content_type = "application/fits" if ".fits" in path or path.endswith((".fit", ".fts")) else \
            "application/octet-stream"
        # Headers carry bytes: the path's own bytes, as WSGI spells them (Latin-1). A name
        # with a control character cannot go in a header at all; such a file we send ourselves.
        sendfile_path = os.fsencode(full).decode("latin-1")
        if self.config.api.x_sendfile and not unfit_character(sendfile_path):
            resp.set_header("X-Sendfile", sendfile_path)
            return False
        start, length = 0, st.st_size
        wanted = req.get_header("Range")
        if wanted and wanted.strip().lower().startswith("bytes=") and \
                _still_valid(req.get_header("If-Range"), etag, modified):
            start, length = _byte_range(wanted, st.st_size)
            resp.status = falcon.HTTP_206
            resp.content_range = (start, start + length - 1, st.st_size)
        os.lseek(fd, start, os.SEEK_SET)
        # gunicorn hands a file object with a known length to sendfile(2), from its position.
        resp.set_stream(FileBody(fd, length, self.streams.acquire(req)), length)
        return True


def _etag_matches(header: str | None, etag: str) -> bool:
    """If-None-Match: '*', or a list of tags, weak ones compared weakly (RFC 9110 13.1.2)."""
    if not header:
        return False
    tags = [tag.strip() for tag in header.split(",")]
    return "*" in tags or any(tag.removeprefix("W/") == etag for tag in tags)


def _still_valid(if_range: str | None, etag: str, modified: dt.datetime) -> bool:
    """If-Range: the range is sent only while the file is the one named (strong ETag, or
    exactly its Last-Modified date); otherwise the whole file (RFC 9110 13.1.5)."""
    return if_range is None or if_range.strip() in (etag, falcon.dt_to_http(modified))


def _byte_range(header: str, size: int) -> tuple[int, int]:
    """(start, length) of the one byte range asked for, else 416 naming the header."""
    if size == 0:
        raise _unsatisfiable(size, "the file is empty")
    match = _RANGE.fullmatch(header.strip())
    if not match or match.groups() == ("", ""):
        raise _unsatisfiable(size, "expected bytes=first-last, bytes=first- or bytes=-length (one range)")
    first, last = (_position(group, size) for group in match.groups())
    if first is None:
        if last == 0:
            raise _unsatisfiable(size, "bytes=-0 asks for no bytes at all")
        length = min(last, size)
        return size - length, length
    if first >= size:
        raise _unsatisfiable(size, f"the file has {size} bytes; the range starts beyond them")
    if last is not None and last < first:
        raise _unsatisfiable(size, "the range ends before it starts")
    end = size - 1 if last is None else min(last, size - 1)
    return first, end - first + 1


def _position(digits: str, size: int) -> int | None:
    """A byte position as a number no larger than size + 1 (which says "beyond the end"),
    without ever converting thousands of digits."""
    if not digits:
        return None
    digits = digits.lstrip("0") or "0"
    return size + 1 if len(digits) > 19 else min(int(digits), size + 1)


def _unsatisfiable(size: int, why: str) -> falcon.HTTPRangeNotSatisfiable:
    return falcon.HTTPRangeNotSatisfiable(size, title="Range not satisfiable", description=f"Range: {why}")
