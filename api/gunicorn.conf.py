"""gunicorn settings for the archive API (gunicorn -c api/gunicorn.conf.py api.app:application).

Threaded workers: a download to a slow client occupies a thread, not the worker, so the
worker keeps answering gunicorn's heartbeat and is never killed by `timeout` however long
the transfer takes. Files go out through sendfile(2).
"""

import os

bind = os.environ.get("ARCHIVE_API_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("ARCHIVE_API_WORKERS", os.cpu_count() or 2))
worker_class = "gthread"
threads = int(os.environ.get("ARCHIVE_API_THREADS", 8))
timeout = int(os.environ.get("ARCHIVE_API_TIMEOUT", 30))
graceful_timeout = 30
keepalive = 5
# sendfile(2) is on by default. Do not write `sendfile = True` here: gunicorn reads any
# value of the setting as --no-sendfile.
accesslog = "-"
# gunicorn believes no proxy header. By default it takes X-Forwarded-Proto, and a header
# literally named SCRIPT_NAME (which moves every route), from any loopback client, and from
# anyone on a unix socket. api/proxy.py believes the forwarded host and scheme only from a
# request carrying the front end's secret; nothing sets SCRIPT_NAME (docs/security.md).
forwarded_allow_ips = ""
secure_scheme_headers = {}
forwarder_headers = ""
# gunicorn's control socket would live in $HOME, which the hardened unit keeps read-only.
control_socket_disable = True
