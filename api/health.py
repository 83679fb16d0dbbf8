"""GET /api/v1/health: can the archive answer, and is the daemon keeping it up to date?

Cheap enough to poll every few seconds: the request's pooled connection, small queries;
the revision the schema must be at is read from the migrations once per process. With a
replica configured it also says which database this worker reads from and what it found of
the replica: one that is down or lagging leaves the API healthy (the primary answers), so
monitor `replica`.
"""

from __future__ import annotations

import logging

import falcon
import psycopg2

from archive_daemon import db

log = logging.getLogger("api.health")


class Health:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        report = {"database": "ok", "schema": "current", "daemon_heartbeat_age_s": None}
        try:
            problem = db.schema_problem(db.current_revision(req.context.connection))
            if problem:
                report["schema"] = problem
            else:
                with req.context.connection.cursor() as cursor:
                    cursor.execute("SELECT extract(epoch FROM now() - max(beat_at)) FROM daemon_heartbeat "
                                   "WHERE role = 'leader'")
                    age = cursor.fetchone()[0]
                report["daemon_heartbeat_age_s"] = None if age is None else round(float(age), 1)
        except psycopg2.Error as exc:
            log.warning("health: database unavailable: %s", db.first_line(exc))
            report["database"] = "unavailable"  # the details (host, user) are for the log
        report["reads_from"] = req.context.read_from
        report["replica"] = req.context.replica.status() if req.context.replica else None
        healthy = report["database"] == "ok" and report["schema"] == "current"
        resp.status = falcon.HTTP_200 if healthy else falcon.HTTP_503
        resp.media = {"status": "ok" if healthy else "failing", **report}
