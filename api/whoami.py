"""GET /api/v1/whoami: who the API takes the caller for, so the page can say so."""

from __future__ import annotations

import falcon

from .params import Params


class WhoAmI:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        Params(req).done()
        user = req.context.user
        known = bool(req.context.principals)  # an unknown or disabled user is anonymous
        resp.media = {
            "user": user if known else None,
            "programs": req.context.principals[1:] if known else [],
            "by": None if not known else "token" if req.get_header("Authorization") else "front end",
        }
