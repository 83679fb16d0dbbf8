"""POST /api/v1/download: many files as one tar stream, built while it is sent.

Constant memory, no temporary file: each member's header, then its bytes read a megabyte
at a time, then the padding. A MANIFEST.txt at the end lists what was sent and what was
not (unknown, not readable by the caller, gone from disk: one message for all three, so
that nothing hints at files the caller may not see). Optionally gzip-compressed.
"""

from __future__ import annotations

import json
import os
import tarfile
import time
import zlib

import falcon

from archive_daemon.config import Config
from archive_daemon.visibility import VISIBLE

from .files import open_archived
from .params import ID_MAX, UNFIT, Params, bad, unfit_character, whole
from .streams import Body, Streams

BLOCK = 512
# Small enough that a client reading at a few kB/s still takes each piece within
# api.stream_write_timeout; large enough to cost little per piece.
READ = 1 << 18


def _body(req: falcon.Request, cap: int, within: float) -> bytes:
    """The request body, refused with 413 before it is parsed when it is larger than `cap`
    (by its Content-Length, or once `cap` bytes have arrived without one), and with 408
    when it has not all come within `within` seconds: a body that trickles in holds a
    thread, however slowly each piece arrives."""
    length = req.content_length  # falcon answers 400 itself for a Content-Length that is no number
    if length is not None and length > cap:
        raise _too_large(cap)
    # Without a length the body comes chunked; gunicorn's input decodes it and ends with it.
    stream = req.bounded_stream if length is not None else req.stream
    deadline = time.monotonic() + within
    pieces, size = [], 0
    try:
        while size <= cap:
            piece = stream.read(min(1 << 16, cap + 1 - size))
            if not piece:
                break
            pieces.append(piece)
            size += len(piece)
            if time.monotonic() > deadline and size <= cap and (length is None or size < length):
                raise TimeoutError
    except OSError:  # the socket's own timeout (Streams.acquire set it), or the deadline
        raise falcon.HTTPRequestTimeout(title="Request body too slow",
                                        description=f"body: not all received within {within:g} s "
                                                    "(api.stream_write_timeout)") from None
    if size > cap:
        raise _too_large(cap)
    return b"".join(pieces)


def _too_large(cap: int) -> falcon.HTTPContentTooLarge:
    return falcon.HTTPContentTooLarge(title="Request body too large",
                                      description=f"body: at most {cap} bytes (api.max_body_bytes)")


def _requested(req: falcon.Request, cap: int, within: float) -> tuple[list[int], list[str], bool]:
    """ids and root/path names from a JSON body or a form post; and whether to gzip."""
    data = _body(req, cap, within)
    if req.content_type and req.content_type.startswith("application/json"):
        try:
            body = json.loads(data) if data.strip() else None
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            raise bad("body", "is not JSON") from None
        if not isinstance(body, dict):
            raise bad("body", 'expected a JSON object like {"ids": [1, 2], "paths": ["root/path"]}')
        unknown = set(body) - {"ids", "paths", "gzip"}
        if unknown:
            raise bad(_shown(sorted(unknown)[0]), "unknown field")
        ids, names, gzip = body.get("ids", []), body.get("paths", []), body.get("gzip", False)
    else:
        try:
            form = falcon.uri.parse_query_string(data.decode(), keep_blank=True, csv=False)
        except UnicodeDecodeError:
            raise bad("body", "expected a form or a JSON object") from None
        values = lambda k: form.get(k, []) if isinstance(form.get(k, []), list) else [form[k]]  # noqa: E731
        ids, names, gzip = values("ids"), values("paths"), form.get("gzip", "false") in ("true", "1")
    if not isinstance(ids, list) or not all(_id(i) is not None for i in ids):
        raise bad("ids", "must be a list of file ids (whole numbers from 1)")
    if not isinstance(names, list) or not all(isinstance(n, str) and "/" in n and not unfit_character(n)
                                              for n in names):
        raise bad("paths", "must be a list of 'root/path' names (no control characters or unpaired surrogates)")
    if not isinstance(gzip, bool):
        raise bad("gzip", "must be true or false")
    if not ids and not names:
        raise bad("ids", "give at least one id or path")
    return [_id(i) for i in ids], names, gzip


def _id(value) -> int | None:
    """A file id from JSON (a number, not true/false) or a form (ASCII digits); else None."""
    number = whole(value) if isinstance(value, str) else None if isinstance(value, bool) else value
    return number if isinstance(number, int) and 1 <= number <= ID_MAX else None


def _shown(name: str) -> str:
    """A name from the body, safe to repeat in an error message."""
    return repr(name) if unfit_character(name) else name


class TarDownload:
    def __init__(self, config: Config, streams: Streams):
        self.config, self.streams = config, streams

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        Params(req).done()
        # The download's slot is taken before its body is read: a body that comes slowly
        # holds a thread as surely as a client that reads slowly, so both count alike.
        slot = self.streams.acquire(req)
        try:
            resp.stream = self._answer(req, resp, slot)
        except BaseException:
            slot.release()
            raise

    def _answer(self, req: falcon.Request, resp: falcon.Response, slot) -> Body:
        limits = self.config.api
        ids, names, gzip = _requested(req, limits.max_body_bytes, limits.stream_write_timeout)
        if len(ids) + len(names) > limits.tar_max_files:
            raise bad("ids", f"at most {limits.tar_max_files} files per request (got {len(ids) + len(names)})")
        pairs = [tuple(n.split("/", 1)) for n in names]
        with req.context.connection.cursor() as cursor:
            cursor.execute(f"""
                SELECT f.id, f.root, f.path, f.size, f.mtime FROM files f
                WHERE (f.id = ANY(%(ids)s) OR (f.root, f.path) IN (SELECT * FROM unnest(%(roots)s::text[], %(paths)s::text[])))
                  AND {VISIBLE} ORDER BY f.root, f.path""",
                {"ids": ids, "roots": [p[0] for p in pairs], "paths": [p[1] for p in pairs],
                 "principals": req.context.principals})
            rows = cursor.fetchall()
        total = sum(r[3] for r in rows)
        if total > limits.tar_max_bytes:
            raise bad("ids", f"the files come to {total} bytes, over the {limits.tar_max_bytes} allowed per request")
        found_ids = {r[0] for r in rows}
        found_names = {f"{r[1]}/{r[2]}" for r in rows}
        missing = [f"id {i}" for i in ids if i not in found_ids] + [n for n in names if n not in found_names]
        resp.content_type = "application/gzip" if gzip else "application/x-tar"
        resp.downloadable_as = "archive.tar.gz" if gzip else "archive.tar"
        stream = _tar(self.config, rows, missing)
        return Body(_gzipped(stream) if gzip else stream, slot)


def _member(name: str, size: int, mtime: float) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, int(mtime), 0o644
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _tar(config: Config, rows: list[tuple], missing: list[str]):
    manifest = []
    for _, root, path, size, mtime in rows:
        name = f"{root}/{path}"
        try:
            fd, _ = open_archived(config, root, path, size, mtime)
        except falcon.HTTPNotFound:
            missing.append(name)
            continue
        with open(fd, "rb", buffering=0) as handle:
            size = os.fstat(handle.fileno()).st_size
            yield _member(name, size, os.fstat(handle.fileno()).st_mtime)
            sent = 0
            while sent < size:
                chunk = handle.read(min(READ, size - sent))
                if not chunk:  # shrank while being sent: the member keeps its promised size
                    manifest.append(f"CHANGED {_listed(name)}: shorter than when the transfer began; padded with zeros")
                    chunk = bytes(min(READ, size - sent))
                sent += len(chunk)
                yield chunk
        yield bytes(-size % BLOCK)
        manifest.append(f"SENT {_listed(name)} {size}")
    manifest += [f"NOT AVAILABLE {_listed(m)}: unknown, not yours to read, or no longer on disk" for m in missing]
    text = ("\n".join(manifest) + "\n").encode()
    yield _member("MANIFEST.txt", len(text), time.time())
    yield text + bytes(-len(text) % BLOCK)
    yield bytes(2 * BLOCK)


def _listed(name: str) -> str:
    """A name on one line of the manifest: control characters written as \\xNN."""
    return UNFIT.sub(lambda m: f"\\x{ord(m.group()):02x}", name)


def _gzipped(chunks):
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    try:
        for chunk in chunks:
            out = compressor.compress(chunk)
            if out:
                yield out
        yield compressor.flush()
    finally:
        chunks.close()  # the file being sent is closed too when the client goes away
