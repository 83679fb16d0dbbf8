"""GET /api/v1/facets: the instruments, telescopes, frame types and filters that exist, with
their counts, for the search form's choices.

Counted under the search's own parameters and its one visibility rule (a value only the
caller's hidden files carry is not shown); each facet is counted under every parameter but
its own, so that choosing an instrument still offers the others. Over more than
api.exact_count_limit files a facet is counted in the sample that estimates search counts
(api/counts.py): its counts are estimates, and a value too rare to be drawn is not offered.
"""

from __future__ import annotations

import falcon

from archive_daemon.config import ApiConfig

from . import counts
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
        limit = self.settings.exact_count_limit
        wheres = {name: query.where_without(name) for name in FACETS}
        with req.context.connection.cursor() as cursor:
            # Facets without their own parameter in the search count the same files: decided once.
            exact = {where: counts.within(cursor, where, query.args, limit) is not None
                     for where in set(wheres.values())}
            source, scale = ("files f", 1.0) if all(exact.values()) else counts.sample(cursor)
            cursor.execute(" UNION ALL ".join(
                _part(name, column, wheres[name], "files f" if exact[wheres[name]] else source)
                for name, column in FACETS.items()), query.args)
            rows = cursor.fetchall()
        facets: dict[str, list] = {name: [] for name in FACETS}
        for name, value, count in rows:
            exactly = exact[wheres[name]]
            facets[name].append({"value": value, "count": count if exactly else counts.about(count * scale),
                                 "count_exact": exactly})
        resp.media = facets


def _part(name: str, column: str, where: str, source: str) -> str:
    """One facet's values and counts, in all the files or in the sample."""
    # Values differing only in case are one value (the search matches case-insensitively),
    # shown in their most frequent spelling.
    return f"""(SELECT '{name}', mode() WITHIN GROUP (ORDER BY {column}), count(*)
                FROM {source} WHERE {where} AND {column} IS NOT NULL
                GROUP BY lower({column}) ORDER BY count(*) DESC, 2 LIMIT {MAX_VALUES})"""
