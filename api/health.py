"""GET /api/v1/health: can the archive answer, and is the daemon keeping it up to date?"""

from __future__ import annotations

import falcon
import psycopg2

from archive_daemon import db


class Health:
    def __init__(self, engine):
        self.engine = engine

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        report = {"database": "ok", "schema": "current", "daemon_heartbeat_age_s": None}
        try:
            db.check_schema(self.engine)
            with req.context.connection.cursor() as cursor:
                cursor.execute("SELECT extract(epoch FROM now() - max(beat_at)) FROM daemon_heartbeat "
                               "WHERE role = 'leader'")
                age = cursor.fetchone()[0]
            report["daemon_heartbeat_age_s"] = None if age is None else round(float(age), 1)
        except db.DatabaseError as exc:
            report["schema"] = str(exc)
        except psycopg2.Error as exc:
            report["database"] = db.first_line(exc)
        healthy = report["database"] == "ok" and report["schema"] == "current"
        resp.status = falcon.HTTP_200 if healthy else falcon.HTTP_503
        resp.media = {"status": "ok" if healthy else "failing", **report}
