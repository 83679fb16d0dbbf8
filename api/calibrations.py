"""GET /api/v1/calibrations?ids=...: the bias, dark, flat, arc (the configured calibration
types) frames that go with the given files: the same instrument, the same night or up to
`nights` nights around it, and where it matters the same filter (flats) and binning.

Both the files asked about and the calibrations answered pass the one visibility rule: a
file the caller may not see brings no calibrations, and a calibration the caller may not see
is not listed.
"""

from __future__ import annotations

import falcon

from archive_daemon.config import Config
from archive_daemon.visibility import VISIBLE

from .formats import plain
from .params import ID_MAX, Params, bad, whole
from .search import FIELDS

NIGHTS_MAX = 30
# Frame types whose light passed the filter: only these must match the science frame's.
FILTERED = ("flat",)


def binning(alias: str) -> str:
    """SQL: a frame's binning as 'NxM' from its header (CCDSUM, BINNING, or CBIN and RBIN);
    NULL when the header does not say. Cards are 80 columns, so a keyword is matched only
    at the start of one."""
    def card(keyword: str, value: str) -> str:
        return f"substring({alias}.header from '^(?:.{{80}})*{keyword:<8}= *''? *({value})')"
    pair = "[0-9]+[ x,]+[0-9]+"
    return (f"regexp_replace(coalesce({card('CCDSUM', pair)}, {card('BINNING', pair)}, "
            f"{card('CBIN', '[0-9]+')} || 'x' || {card('RBIN', '[0-9]+')}), '[ x,]+', 'x')")


class Calibrations:
    def __init__(self, config: Config):
        self.config = config

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        params = Params(req)
        limits = self.config.api
        asked = params.text("ids")
        nights = params.integer("nights", limits.calibration_nights, 0, NIGHTS_MAX)
        params.done()
        ids = _ids(asked, limits.max_limit)
        columns = ", ".join(FIELDS.values())
        with req.context.connection.cursor() as cursor:
            cursor.execute(f"""
                WITH science AS (
                    SELECT f.id, lower(f.instrument) AS instrument, f.night, lower(f.filter) AS filter,
                           {binning('f')} AS binning
                    FROM files f WHERE f.id = ANY(%(ids)s) AND {VISIBLE}
                      AND f.instrument IS NOT NULL AND f.night IS NOT NULL)
                SELECT {columns}, array_agg(DISTINCT s.id ORDER BY s.id), count(*) OVER ()
                FROM science s JOIN files f
                  ON lower(f.instrument) = s.instrument
                 AND f.night BETWEEN s.night - %(nights)s AND s.night + %(nights)s
                WHERE lower(f.frame_type) = ANY(%(types)s) AND f.id <> ALL(%(ids)s) AND {VISIBLE}
                  AND (lower(f.frame_type) <> ALL(%(filtered)s) OR s.filter IS NULL
                       OR lower(f.filter) = s.filter)
                  AND (s.binning IS NULL OR {binning('f')} IS NULL OR {binning('f')} = s.binning)
                GROUP BY f.id
                ORDER BY f.night, lower(f.frame_type), f.obs_start, f.id
                LIMIT %(limit)s""",
                {"ids": ids, "nights": nights, "types": list(self.config.access.calibration_types),
                 "filtered": list(FILTERED), "principals": req.context.principals, "limit": limits.max_limit})
            rows = cursor.fetchall()
        results = [{**{name: plain(value) for name, value in zip(FIELDS, row)}, "for": row[len(FIELDS)]}
                   for row in rows]
        resp.media = {"count": rows[0][-1] if rows else 0, "results": results}


def _ids(text: str | None, most: int) -> list[int]:
    if text is None:
        raise bad("ids", "give the files' ids, comma-separated")
    parts = [p.strip() for p in text.split(",") if p.strip()]
    numbers = [whole(p) for p in parts]
    if not parts or any(n is None or not 1 <= n <= ID_MAX for n in numbers):
        raise bad("ids", "must be file ids (whole numbers from 1), comma-separated")
    if len(numbers) > most:
        raise bad("ids", f"at most {most} files per request (got {len(numbers)})")
    return list(dict.fromkeys(numbers))
