"""The search page (web/) at `/`, so that the demo and the tests need nothing but gunicorn.

In production Apache serves the same directory itself (docs/web.md). What can be served is
decided once, at start-up: the regular files under web/ with a known type, by their exact
URL path. A request names one of them or gets a 404, so no path it spells (`..`, `%2e`,
a link planted later) can reach anything else.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import falcon

WEB = Path(__file__).resolve().parent.parent / "web"
TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
         ".ico": "image/x-icon", ".txt": "text/plain; charset=utf-8"}
# Everything the page loads comes from here, and nothing runs that is not one of our files.
POLICY = ("default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
          "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


def _servable(directory: Path) -> dict[str, tuple[str, str]]:
    """{URL path: (file, content type)} of the plain files under `directory` (no links)."""
    found = {}
    for top, dirs, files in os.walk(directory):  # does not descend into linked directories
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            full = os.path.join(top, name)
            kind = TYPES.get(os.path.splitext(name)[1])
            if kind and not name.startswith(".") and stat.S_ISREG(os.lstat(full).st_mode):
                found["/" + os.path.relpath(full, directory).replace(os.sep, "/")] = (full, kind)
    if "/index.html" in found:
        found["/"] = found["/index.html"]
    return found


class Page:
    """A sink for every path outside /api/: the page's files, GET and HEAD only."""

    def __init__(self, directory: Path = WEB):
        self.files = _servable(directory) if directory.is_dir() else {}

    def __call__(self, req: falcon.Request, resp: falcon.Response, **_) -> None:
        if req.method not in ("GET", "HEAD"):
            raise falcon.HTTPMethodNotAllowed(["GET", "HEAD"])
        if req.path not in self.files:
            raise falcon.HTTPNotFound(title="No such page", description=f"path: nothing at {req.path[:80]!r}")
        full, kind = self.files[req.path]
        try:
            fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            raise falcon.HTTPNotFound(title="No such page", description=f"path: nothing at {req.path!r}") from None
        with os.fdopen(fd, "rb") as body:
            st = os.fstat(body.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise falcon.HTTPNotFound(title="No such page", description=f"path: nothing at {req.path!r}")
            resp.etag = f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
            if req.get_header("If-None-Match") == resp.etag:
                resp.status = falcon.HTTP_304
                return
            resp.data = body.read()
        resp.content_type = kind
        resp.cache_control = ["no-cache"]  # revalidated by ETag: a new release is seen at once
        resp.set_header("X-Content-Type-Options", "nosniff")
        if kind.startswith("text/html"):
            resp.set_header("Content-Security-Policy", POLICY)
            resp.set_header("Referrer-Policy", "same-origin")
