"""GET /api/v1/files/{id}/preview: a quick-look PNG of a file the caller may read (else
404, like every other endpoint), from the disk cache when it has it."""

from __future__ import annotations

import os

import falcon

from archive_daemon.config import Config

from .files import open_archived, visible_file
from .params import Params
from archive_daemon.previewcache import PreviewCache
from archive_daemon.quicklook import STRETCHES, NoData, render


class Preview:
    def __init__(self, config: Config):
        self.config = config
        self.cache = PreviewCache(config.api.preview_cache_dir, config.api.preview_cache_bytes)

    def on_get(self, req: falcon.Request, resp: falcon.Response, file_id: str) -> None:
        params = Params(req)
        size = params.integer("size", min(256, self.config.api.preview_max_size), 16, self.config.api.preview_max_size)
        stretch = params.choice("stretch", "asinh", tuple(STRETCHES))
        params.done()
        fd, full = open_archived(self.config, *visible_file(req, file_id, "f.root, f.path, f.size, f.mtime"))
        with os.fdopen(fd, "rb") as source:
            key = PreviewCache.key(os.fstat(fd), size, stretch)
            resp.etag = f'"{key}"'
            # Private: a proprietary file's preview must not sit in a shared cache.
            resp.cache_control = ["private", "no-cache"]
            if req.get_header("If-None-Match") == resp.etag:
                resp.status = falcon.HTTP_304
                return
            resp.content_type = "image/png"
            cached = self.cache.path(key)
            if cached is not None and self._send(resp, cached):
                return
            png = self._render(source, size, stretch, file_id)
        self.cache.put(key, png)
        resp.data = png

    def _send(self, resp: falcon.Response, cached: os.PathLike) -> bool:
        """Answers with the cached preview; False when it was evicted in between."""
        if self.config.api.x_sendfile:
            resp.set_header("X-Sendfile", str(cached))
            return True
        try:
            body = open(cached, "rb")
        except OSError:
            return False
        resp.set_stream(body, os.fstat(body.fileno()).st_size)  # gunicorn sends it with sendfile(2)
        return True

    @staticmethod
    def _render(source, size: int, stretch: str, file_id: str) -> bytes:
        try:
            return render(source, size, stretch)
        except NoData as reason:
            raise falcon.HTTPNotFound(title="No preview", description=f"file_id: {reason}") from None
        # A damaged file raises whatever astropy meets first (OSError, ValueError, TypeError,
        # IndexError...): each is the file's mistake, answered as such, never a 500.
        except Exception as error:  # noqa: BLE001
            raise falcon.HTTPNotFound(title="No preview", description=f"file_id: the file's data cannot be "
                                      f"drawn ({type(error).__name__})") from None
