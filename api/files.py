"""One file: its metadata, its header, and the file itself.

A file the caller may not read answers 404, exactly like one that does not exist.
"""

from __future__ import annotations

import datetime as dt
import os
import re

import falcon

from archive_daemon.config import Config
from archive_daemon.visibility import VISIBLE

from .formats import plain
from .params import Params

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_DETAIL = ("id", "root", "path", "size", "mtime", "night", "instrument", "telescope", "object", "obs_start",
           "obs_end", "date_source", "exptime", "frame_type", "filter", "program", "ra", "dec", "public_date",
           "notes", "ingested_at")


def visible_file(req: falcon.Request, file_id: str, columns: str) -> tuple:
    """The row of a file the caller may read, else 404."""
    if not file_id.isdigit() or len(file_id) > 18:
        raise falcon.HTTPNotFound(title="No such file", description=f"no file {file_id!r}")
    with req.context.connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns} FROM files f WHERE f.id = %(id)s AND {VISIBLE}",
                       {"id": int(file_id), "principals": req.context.principals})
        row = cursor.fetchone()
    if row is None:
        raise falcon.HTTPNotFound(title="No such file", description=f"no file {file_id}")
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
    from astropy.io.fits import Card
    try:
        card = Card.fromstring(image)
        value = card.value
        value = value if isinstance(value, (str, int, float, bool)) else None
        return {"keyword": card.keyword, "value": value, "comment": card.comment or None}
    except Exception:  # a corrupt card is shown as it is
        return {"keyword": image[:8].strip(), "value": None, "comment": None, "card": image}


def resolve(config: Config, root_name: str, path: str) -> str:
    """The file on disk, refusing anything that leads out of its root (.., symlinks): 404."""
    roots = {r.name: r.path for r in config.roots}
    if root_name not in roots:
        raise falcon.HTTPNotFound(title="No such file", description="the file's root is not configured here")
    base = os.path.realpath(roots[root_name])
    full = os.path.realpath(os.path.join(base, path))
    if not full.startswith(base + os.sep) or not os.path.isfile(full):
        raise falcon.HTTPNotFound(title="No such file", description="the file is no longer on disk")
    return full


class Download:
    """The file itself: sendfile through gunicorn, or X-Sendfile for Apache; Range, ETag."""

    def __init__(self, config: Config):
        self.config = config

    def on_get(self, req: falcon.Request, resp: falcon.Response, file_id: str) -> None:
        Params(req).done()
        root, path = visible_file(req, file_id, "f.root, f.path")
        full = resolve(self.config, root, path)
        st = os.stat(full)
        etag = f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
        resp.etag = etag
        resp.last_modified = dt.datetime.fromtimestamp(st.st_mtime, dt.timezone.utc)
        resp.downloadable_as = os.path.basename(path)
        resp.accept_ranges = "bytes"
        resp.content_type = "application/fits" if ".fits" in path or path.endswith((".fit", ".fts")) else \
            "application/octet-stream"
        if req.get_header("If-None-Match") == etag:
            resp.status = falcon.HTTP_304
            return
        if self.config.api.x_sendfile:
            resp.set_header("X-Sendfile", full)
            return
        start, length = 0, st.st_size
        wanted = req.get_header("Range")
        if wanted and req.get_header("If-Range") in (None, etag):
            start, length = _byte_range(wanted, st.st_size)
            resp.status = falcon.HTTP_206
            resp.content_range = (start, start + length - 1, st.st_size)
        handle = open(full, "rb")
        handle.seek(start)
        # gunicorn hands a file object with a known length to sendfile(2), from its position.
        resp.set_stream(handle, length)


def _byte_range(header: str, size: int) -> tuple[int, int]:
    match = _RANGE.match(header.strip())
    if not match or match.groups() == ("", ""):
        raise falcon.HTTPRangeNotSatisfiable(size)
    first, last = match.groups()
    if first == "":
        length = min(int(last), size)
        return size - length, length
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        raise falcon.HTTPRangeNotSatisfiable(size)
    return start, end - start + 1
