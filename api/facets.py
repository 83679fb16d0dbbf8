"""GET /api/v1/facets: the instruments, telescopes, frame types and filters that exist, with
their counts, for the search form's choices.

Counted under the search's own parameters and its one visibility rule (a value only the
caller's hidden files carry is not shown); each facet is counted under every parameter but
its own, so that choosing an instrument still offers the others.
"""

from __future__ import annotations

import falcon

from archive_daemon.config import ApiConfig

from .params import Params
from .search import Query

FACETS = {"instrument": "f.instrument", "telescope": "f.telescope", "frame_type": "f.frame_type",
          "filter": "f.filter"}
# Enough for any form; a facet with more values than this shows the most frequent.
MAX_VALUES = 200


class Facets:
    def __init__(self, settings: ApiConfig):
        self.settings = settings

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        params = Params(req)
        query = Query(params, self.settings, req.context.principals)
        params.done()
        # Values differing only in case are one value (the search matches case-insensitively),
        # shown in their most frequent spelling.
        parts = [f"""(SELECT '{name}', mode() WITHIN GROUP (ORDER BY {column}), count(*) FROM files f
                      WHERE {query.where_without(name)} AND {column} IS NOT NULL
                      GROUP BY lower({column}) ORDER BY count(*) DESC, 2 LIMIT {MAX_VALUES})"""
                 for name, column in FACETS.items()]
        with req.context.connection.cursor() as cursor:
            cursor.execute(" UNION ALL ".join(parts), query.args)
            rows = cursor.fetchall()
        facets: dict[str, list] = {name: [] for name in FACETS}
        for name, value, count in rows:
            facets[name].append({"value": value, "count": count})
        resp.media = facets
