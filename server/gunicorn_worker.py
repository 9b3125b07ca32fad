"""A gthread worker whose connections have a deadline per request, not only per read.

``server/gunicorn_conf.py`` sets kernel timeouts so that a silent client is
cut off, but such a timeout starts again with every byte: a client sending
one byte every 8 s holds a thread for as long as it likes. Here each read
of a connection (headers, body, the drain of an unread body) waits at most
the time left until the request's deadline and at most ``CLIENT_TIMEOUT_S``
of silence; past the deadline the read fails, and the thread is free again.
The headers must have arrived ``HEADERS_DEADLINE_S`` (10 s) after the worker
took the request up, the whole request ``REQUEST_DEADLINE_S`` (30 s) after.

Use it with ``worker_class = "server.gunicorn_worker.DeadlineThreadWorker"``
(the default in server/gunicorn_conf.py). Not used with TLS terminated in
gunicorn itself (the wrapped socket could not be wrapped for TLS); put TLS
in the reverse proxy (docs/reliability.md).
"""

from __future__ import annotations

import math
import os
import socket
import time

from gunicorn.http.errors import NoMoreData
from gunicorn.workers.gthread import ThreadWorker

from server.config import DEFAULTS


class DeadlinePassed(NoMoreData, TimeoutError):
    """The request did not arrive whole by its deadline (gunicorn closes the connection quietly)."""

    def __str__(self) -> str:
        return "request deadline passed"


def seconds(name: str, default: float) -> float:
    """A number of seconds from the environment, under the AIFACE_ prefix or plain (as server/config.py reads them).

    Raises RuntimeError with one line when it is not between 0.1 and 3600.
    """
    text = os.environ.get("AIFACE_" + name, os.environ.get(name, str(default)))
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0.1 <= value <= 3600:
        raise RuntimeError(f"cannot start the detection service: {name} is {text!r}; "
                           f"it must be a number of seconds between 0.1 and 3600")
    return value


class DeadlineSocket:
    """A connection's socket whose reads share one deadline per request; everything else is passed through."""

    def __init__(self, sock: socket.socket, deadline_s: float, headers_s: float, silence_s: float):
        self._sock = sock
        self._deadline_s = deadline_s
        self._headers_s = min(headers_s, deadline_s)
        self._silence_s = silence_s
        self.start_request()

    def start_request(self) -> None:
        self.started = time.monotonic()
        self.deadline = self.started + self._headers_s

    def headers_read(self) -> None:
        self.deadline = self.started + self._deadline_s

    def recv(self, size: int, *flags) -> bytes:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlinePassed()
        self._sock.settimeout(min(remaining, self._silence_s))
        try:
            return self._sock.recv(size, *flags)
        except TimeoutError:
            if time.monotonic() >= self.deadline:
                raise DeadlinePassed() from None
            raise
        finally:
            self._sock.settimeout(None)  # blocking again, as gunicorn left it

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


class DeadlineThreadWorker(ThreadWorker):
    def init_process(self):
        # Read once per worker, not on every connection (gunicorn_conf.on_starting has checked them).
        self._deadlines = (
            seconds("REQUEST_DEADLINE_S", DEFAULTS["REQUEST_DEADLINE_S"]), seconds("HEADERS_DEADLINE_S", 10.0),
            seconds("CLIENT_TIMEOUT_S", 10.0),
        )
        super().init_process()

    def enqueue_req(self, conn):
        if not self.cfg.is_ssl and not isinstance(conn.sock, DeadlineSocket):
            conn.sock = DeadlineSocket(conn.sock, *self._deadlines)
        return super().enqueue_req(conn)

    def handle(self, conn):
        if isinstance(conn.sock, DeadlineSocket):
            conn.sock.start_request()
        return super().handle(conn)

    def handle_request(self, req, conn):
        # gunicorn has parsed the headers; the body may take until the request's deadline.
        if isinstance(conn.sock, DeadlineSocket):
            conn.sock.headers_read()
        return super().handle_request(req, conn)
