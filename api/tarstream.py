"""POST /api/v1/download: many files as one tar stream, built while it is sent.

Constant memory, no temporary file: each member's header, then its bytes read a megabyte
at a time, then the padding. A MANIFEST.txt at the end lists what was sent and what was
not (unknown, not readable by the caller, gone from disk: one message for all three, so
that nothing hints at files the caller may not see). Optionally gzip-compressed.
"""

from __future__ import annotations

import os
import tarfile
import time
import zlib

import falcon

from archive_daemon.config import Config
from archive_daemon.visibility import VISIBLE

from .files import resolve
from .params import Params, bad

BLOCK = 512
READ = 1 << 20


def _requested(req: falcon.Request) -> tuple[list[int], list[str], bool]:
    """ids and root/path names from a JSON body or a form post; and whether to gzip."""
    if req.content_type and req.content_type.startswith("application/json"):
        body = req.get_media(default_when_empty=None)
        if not isinstance(body, dict):
            raise bad("body", 'expected a JSON object like {"ids": [1, 2], "paths": ["root/path"]}')
        unknown = set(body) - {"ids", "paths", "gzip"}
        if unknown:
            raise bad(sorted(unknown)[0], "unknown field")
        ids, names, gzip = body.get("ids", []), body.get("paths", []), body.get("gzip", False)
    else:
        form = req.get_media(default_when_empty={}) if req.content_type else {}
        if not isinstance(form, dict):
            raise bad("body", "expected a form or a JSON object")
        values = lambda k: form.get(k, []) if isinstance(form.get(k, []), list) else [form[k]]  # noqa: E731
        ids, names, gzip = values("ids"), values("paths"), form.get("gzip", "false") in ("true", "1")
    if not isinstance(ids, list) or not all(isinstance(i, int) or (isinstance(i, str) and i.isdigit()) for i in ids):
        raise bad("ids", "must be a list of file ids")
    if not isinstance(names, list) or not all(isinstance(n, str) and "/" in n for n in names):
        raise bad("paths", "must be a list of 'root/path' names")
    if not isinstance(gzip, bool):
        raise bad("gzip", "must be true or false")
    if not ids and not names:
        raise bad("ids", "give at least one id or path")
    return [int(i) for i in ids], names, gzip


class TarDownload:
    def __init__(self, config: Config):
        self.config = config

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        Params(req).done()
        ids, names, gzip = _requested(req)
        limits = self.config.api
        if len(ids) + len(names) > limits.tar_max_files:
            raise bad("ids", f"at most {limits.tar_max_files} files per request (got {len(ids) + len(names)})")
        pairs = [tuple(n.split("/", 1)) for n in names]
        with req.context.connection.cursor() as cursor:
            cursor.execute(f"""
                SELECT f.id, f.root, f.path, f.size FROM files f
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
        resp.stream = _gzipped(stream) if gzip else stream


def _member(name: str, size: int, mtime: float) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, int(mtime), 0o644
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _tar(config: Config, rows: list[tuple], missing: list[str]):
    manifest = []
    for _, root, path, _ in rows:
        name = f"{root}/{path}"
        try:
            full = resolve(config, root, path)
            handle = open(full, "rb")
        except (falcon.HTTPNotFound, OSError):
            missing.append(name)
            continue
        with handle:
            size = os.fstat(handle.fileno()).st_size
            yield _member(name, size, os.fstat(handle.fileno()).st_mtime)
            sent = 0
            while sent < size:
                chunk = handle.read(min(READ, size - sent))
                if not chunk:  # shrank while being sent: the member keeps its promised size
                    manifest.append(f"CHANGED {name}: shorter than when the transfer began; padded with zeros")
                    yield bytes(size - sent)
                    break
                sent += len(chunk)
                yield chunk
        yield bytes(-size % BLOCK)
        manifest.append(f"SENT {name} {size}")
    manifest += [f"NOT AVAILABLE {m}: unknown, not yours to read, or no longer on disk" for m in missing]
    text = ("\n".join(manifest) + "\n").encode()
    yield _member("MANIFEST.txt", len(text), time.time())
    yield text + bytes(-len(text) % BLOCK)
    yield bytes(2 * BLOCK)


def _gzipped(chunks):
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    for chunk in chunks:
        out = compressor.compress(chunk)
        if out:
            yield out
    yield compressor.flush()
