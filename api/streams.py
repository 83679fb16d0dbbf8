"""Downloads in flight: few at once, and none held open by a client that stopped reading.

A download occupies one of its worker's threads for as long as the client takes to read it.
Without bounds, a handful of clients that stop reading hold every thread, and even
/api/v1/health times out. So each worker process sends at most `api.max_streams` downloads
at once (keep it below gunicorn's threads, so that searches and health checks always find
one), at most `api.max_streams_per_client` of them to one client, and a client that takes
longer than `api.stream_write_timeout` to accept one piece is cut off, freeing its thread.
"""

from __future__ import annotations

import collections
import io
import socket
import threading

import falcon

from archive_daemon.config import ApiConfig


class Slot:
    """One download's place; given back once, however the response ends."""

    def __init__(self, streams: Streams, client: str):
        self._streams, self._client = streams, client
        self._held = True

    def release(self) -> None:
        with self._streams.lock:
            if self._held:
                self._held = False
                self._streams.release(self._client)


class Streams:
    """The downloads one worker process is sending, counted per client."""

    def __init__(self, settings: ApiConfig):
        self.settings = settings
        self.lock = threading.Lock()
        self.by_client: collections.Counter = collections.Counter()

    def acquire(self, req: falcon.Request) -> Slot:
        """A slot for a download to this caller, else 429 (theirs are all busy) or 503."""
        # A signed-in user is one client wherever they connect from; anyone else is their address.
        client = f"user {req.context.user}" if req.context.user else f"address {req.remote_addr}"
        settings = self.settings
        with self.lock:
            if self.by_client[client] >= settings.max_streams_per_client:
                raise falcon.HTTPTooManyRequests(
                    title="Too many downloads at once",
                    description=f"downloads: at most {settings.max_streams_per_client} at once per client; "
                                "wait for one to finish", retry_after=10)
            if sum(self.by_client.values()) >= settings.max_streams:
                raise falcon.HTTPServiceUnavailable(
                    title="Too many downloads at once",
                    description="downloads: the server is sending as many as it can; try again shortly",
                    retry_after=10)
            self.by_client[client] += 1
        # gunicorn writes the body on this socket: a timeout on it bounds each write (and
        # sendfile's wait for room); gunicorn resets it before the connection's next request.
        sock = req.env.get("gunicorn.socket")
        if sock is not None:
            sock.settimeout(settings.stream_write_timeout)
        return Slot(self, client)

    def release(self, client: str) -> None:
        """Called with the lock held."""
        self.by_client[client] -= 1
        if not self.by_client[client]:
            del self.by_client[client]


class Body:
    """A streamed response body that gives its slot back when the server closes it."""

    def __init__(self, chunks, slot: Slot):
        self._chunks, self._slot = chunks, slot

    def __iter__(self):
        return iter(self._chunks)

    def close(self) -> None:
        try:
            self._chunks.close()
        finally:
            self._slot.release()


class FileBody(io.FileIO):
    """`length` bytes of an open file from its position, sent as the body (gunicorn hands
    the descriptor to sendfile(2) with that length; a server that reads it instead gets no
    more); closing it gives its slot back."""

    def __init__(self, fd: int, length: int, slot: Slot):
        super().__init__(fd, "rb")
        self._left, self._slot = length, slot

    def read(self, size: int = -1) -> bytes:
        data = super().read(self._left if size is None or size < 0 else min(size, self._left))
        self._left -= len(data)
        return data

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._slot.release()


class UnreadBodies:
    """Middleware: a refused request's body is not waited for.

    gunicorn reads whatever is left of a request's body before it reads the connection's
    next request; from a client that sends slowly, or never, that holds a thread however
    quickly the request was refused. So after refusing a request whose body was not read
    to its end, we stop reading from its client: the answer still goes out, saying
    `Connection: close`, then the connection closes. A refused request whose body was read
    whole keeps its connection, which clients reuse."""

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource, req_succeeded: bool) -> None:
        has_body = req.content_length or req.get_header("Transfer-Encoding")
        sock = req.env.get("gunicorn.socket")
        if not has_body or sock is None or resp.status_code < 400:
            return
        read = getattr(req, "_bounded_stream", None)  # made when a resource first read the body
        if read is not None and read.eof:
            return
        resp.set_header("Connection", "close")
        try:
            sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass  # already gone
