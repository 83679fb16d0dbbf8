"""How many files a search matches, without counting millions of rows to say so.

Up to api.exact_count_limit the count is exact: the matches are counted, but never further
than one past the limit. Beyond it the count is an estimate, flagged as one: the matches
in a fixed-size sample of the table's blocks, scaled up and rounded to two significant
figures. The sample is filtered by the same visibility rule as the search, so an estimate
is built from the caller's visible files only and says nothing of hidden ones. The
planner's row estimate would be cheaper, but its statistics cover every row, hidden ones
included: it would tell anyone roughly how many proprietary files match a search.
"""

from __future__ import annotations

# Rows in the sample (whole blocks of them): a broad search's estimate comes within about a
# tenth even when its files lie together on disk (a time range, ingested in order), for a
# few tens of milliseconds at ten million rows.
SAMPLE_ROWS = 100_000


def sample(cursor) -> tuple[str, float]:
    """The FROM item of the sample, and the factor that scales its counts up to the table.

    Its share of the table comes from the planner's row count (-1 before the first ANALYZE:
    then all of it), written into the query so that the planner knows how little it reads
    (from a subquery it would plan for a tenth of the table, and spend longer compiling the
    query than running it). A fixed seed draws the same blocks every time, so a search's
    estimate does not change from one page to the next.
    """
    cursor.execute("SELECT reltuples FROM pg_class WHERE oid = 'files'::regclass")
    percent = float(f"{min(100.0, 100.0 * SAMPLE_ROWS / max(cursor.fetchone()[0], 1.0)):.6g}")
    return f"files f TABLESAMPLE SYSTEM ({percent!r}) REPEATABLE (0)", 100.0 / percent


def within(cursor, where: str, args: dict, limit: int) -> int | None:
    """The exact number of files matching `where`, or None when there are more than `limit`."""
    cursor.execute(f"SELECT count(*) FROM (SELECT FROM files f WHERE {where} LIMIT %(count_cap)s) s",
                   {**args, "count_cap": limit + 1})
    counted = cursor.fetchone()[0]
    return counted if counted <= limit else None


def count(cursor, where: str, args: dict, limit: int) -> tuple[int, bool]:
    """(count, exact) of the files matching `where`, a clause that applies VISIBLE."""
    counted = within(cursor, where, args, limit)
    if counted is not None:
        return counted, True
    source, scale = sample(cursor)
    cursor.execute(f"SELECT count(*) FROM {source} WHERE {where}", args)
    return about(cursor.fetchone()[0] * scale, above=limit), False


def about(value: float, above: int = 0) -> int:
    """`value` rounded to two significant figures, and more than `above` (what the rows
    counted already proved): an estimate should not look more precise than it is."""
    value = max(float(value), above + 1)
    step = 10 ** max(0, len(str(int(value))) - 2)
    rounded = round(value / step) * step
    return rounded if rounded > above else (above // step + 1) * step
