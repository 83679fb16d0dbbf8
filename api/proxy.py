"""Which requests speak for the front end (Apache), and what they may tell the API.

A request is the front end's only when it carries the shared secret in `SECRET_HEADER`
(api.front_end_secret). Loopback proves nothing: any local user, or any request forgery on
the API host, reaches gunicorn from 127.0.0.1. Only the front end's requests may name a
user (api.user_header, read by auth.py), the client's address (X-Forwarded-For: the
per-client download cap then counts each client, not Apache as one) or the public host and
scheme (X-Forwarded-Host, X-Forwarded-Proto), which then make `req.prefix`, and so every
absolute link, name the archive as its users see it. From everyone else those headers are removed before anything
reads them. gunicorn itself believes no proxy header (api/gunicorn.conf.py).
"""

from __future__ import annotations

import hmac
import ipaddress
import re

import falcon

from archive_daemon.config import ApiConfig

SECRET_HEADER = "X-Archive-Secret"
_HOST = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
# Headers through which a proxy speaks; believed from the front end only (user header aside).
_PROXY_HEADERS = ("X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-For", "X-Forwarded-Server",
                  "X-Forwarded-Prefix", "Forwarded")


def _environ_key(header: str) -> str:
    return "HTTP_" + header.upper().replace("-", "_")


def _last(value: str) -> str:
    """mod_proxy appends its own value to one the client sent: the last item is Apache's."""
    return value.rsplit(",", 1)[-1].strip()


class FrontEnd:
    """Falcon middleware; it must run before anything reads `req.prefix` or the user header."""

    def __init__(self, settings: ApiConfig):
        self.secret = settings.front_end_secret.encode() if settings.front_end_secret else None
        self.untrusted = [_environ_key(h) for h in _PROXY_HEADERS]
        if settings.user_header:
            self.untrusted.append(_environ_key(settings.user_header))

    def _vouched(self, env: dict) -> bool:
        # The secret leaves the environ whoever sent it, so that nothing logs or echoes it.
        sent = env.pop(_environ_key(SECRET_HEADER), None)
        return (self.secret is not None and sent is not None
                and hmac.compare_digest(sent.encode("latin-1"), self.secret))

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.front_end = self._vouched(req.env)
        if not req.context.front_end:
            for key in self.untrusted:
                req.env.pop(key, None)
            return
        host = req.get_header("X-Forwarded-Host")
        if host:
            host = _last(host)
            if not _HOST.fullmatch(host):
                raise falcon.HTTPBadRequest(title="Invalid header X-Forwarded-Host",
                                            description=f"X-Forwarded-Host: {host!r} is not a host name")
            req.env["HTTP_HOST"] = host
        scheme = req.get_header("X-Forwarded-Proto")
        if scheme:
            scheme = _last(scheme).lower()
            if scheme not in ("http", "https"):
                raise falcon.HTTPBadRequest(title="Invalid header X-Forwarded-Proto",
                                            description=f"X-Forwarded-Proto: {scheme!r} is not http or https")
            req.env["wsgi.url_scheme"] = scheme
        client = req.get_header("X-Forwarded-For")
        if client:
            client = _last(client)
            try:
                req.env["REMOTE_ADDR"] = str(ipaddress.ip_address(client))
            except ValueError:
                raise falcon.HTTPBadRequest(title="Invalid header X-Forwarded-For",
                                            description=f"X-Forwarded-For: {client!r} is not an address") from None
