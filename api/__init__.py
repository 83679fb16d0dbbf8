"""The archive's web API: a Falcon WSGI application served by gunicorn (see app.py)."""
