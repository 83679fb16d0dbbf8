"""What ObsCore says that no header does, as the configuration says it: the wavelengths of
each filter (em_min, em_max from ivoa.bands) and the instruments that make spectra
(dataproduct_type from ivoa.spectrum_instruments).

The published view ivoa.obscore joins the tables written here (migration 0007). The API
only reads, so the writers are the leading daemon (when it starts leading and on a reload)
and `archive-daemon db upgrade`: a changed configuration is published the next time either runs.
"""

from __future__ import annotations

from psycopg2.extras import execute_values

from .config import IvoaConfig


def write(connection, ivoa: IvoaConfig) -> None:
    """Replace every row of ivoa_bands and ivoa_instruments with `ivoa`'s, in one transaction."""
    # Names are lower case already; two spellings of one filter leave the last one's range.
    bands = {name: (low, high) for name, low, high in ivoa.bands}
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM ivoa_bands")
        cursor.execute("DELETE FROM ivoa_instruments")
        execute_values(cursor, "INSERT INTO ivoa_bands (filter, em_min, em_max) VALUES %s",
                       [(name, low, high) for name, (low, high) in bands.items()])
        execute_values(cursor, "INSERT INTO ivoa_instruments (instrument, dataproduct_type) VALUES %s",
                       [(name, "spectrum") for name in sorted(set(ivoa.spectrum_instruments))])
    connection.commit()
