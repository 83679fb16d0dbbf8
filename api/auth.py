"""Who is asking: a bearer token, or the user the front end (Apache) authenticated.

The front end's user header counts only on requests that proxy.py found to carry the
front end's secret; an empty one (Apache authenticated nobody) is anonymous. The caller's
principals (their name and their programs) go to `req.context.principals`; an anonymous
caller has none. A token that is unknown, revoked or whose user is disabled
is refused (401) rather than treated as anonymous, so that a script notices.
"""

from __future__ import annotations

import falcon

from archive_daemon.config import ApiConfig
from archive_daemon.visibility import principals_of, user_of_token


class Authentication:
    def __init__(self, settings: ApiConfig):
        self.settings = settings

    def _user(self, req: falcon.Request) -> str | None:
        header = req.get_header("Authorization")
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise falcon.HTTPUnauthorized(title="Invalid credentials",
                                              description="Authorization: expected 'Bearer <token>'")
            user = user_of_token(req.context.connection, token.strip())
            if user is None:
                raise falcon.HTTPUnauthorized(title="Invalid credentials",
                                              description="Authorization: the token is unknown or revoked")
            return user
        if self.settings.user_header and req.context.front_end:
            return (req.get_header(self.settings.user_header) or "").strip() or None
        return None

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.user = self._user(req)
        # Anonymous callers need no database connection for this (see database.py).
        req.context.principals = principals_of(req.context.connection, req.context.user) if req.context.user else []
