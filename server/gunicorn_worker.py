"""A gthread worker whose connections have a deadline per request, not only per read.

``server/gunicorn_conf.py`` sets kernel timeouts so that a silent client is
cut off, but such a timeout starts again with every byte: a client sending
one byte every 8 s holds a thread for as long as it likes. Here each read
of a connection (headers, body, the drain of an unread body) waits at most
the time left until the request's deadline, ``REQUEST_DEADLINE_S`` after
the worker took the request up, and at most ``CLIENT_TIMEOUT_S`` of
silence; past the deadline the read fails, and the thread is free again.

Use it with ``worker_class = "server.gunicorn_worker.DeadlineThreadWorker"``
(the default in server/gunicorn_conf.py). Not used with TLS terminated in
gunicorn itself (the wrapped socket could not be wrapped for TLS); put TLS
in the reverse proxy (docs/reliability.md).
"""

from __future__ import annotations

import os
import socket
import time

from gunicorn.http.errors import NoMoreData
from gunicorn.workers.gthread import ThreadWorker


class DeadlinePassed(NoMoreData, TimeoutError):
    """The request did not arrive whole by its deadline (gunicorn closes the connection quietly)."""

    def __str__(self) -> str:
        return "request deadline passed"


def setting(name: str, default: float) -> float:
    """A number from the environment, under the AIFACE_ prefix or plain (as server/config.py reads them)."""
    return float(os.environ.get("AIFACE_" + name, os.environ.get(name, default)))


class DeadlineSocket:
    """A connection's socket whose reads share one deadline per request; everything else is passed through."""

    def __init__(self, sock: socket.socket, deadline_s: float, silence_s: float):
        self._sock = sock
        self._deadline_s = deadline_s
        self._silence_s = silence_s
        self.deadline = time.monotonic() + deadline_s

    def start_request(self) -> None:
        self.deadline = time.monotonic() + self._deadline_s

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
    def enqueue_req(self, conn):
        if not self.cfg.is_ssl and not isinstance(conn.sock, DeadlineSocket):
            deadline_s, silence_s = setting("REQUEST_DEADLINE_S", 30.0), setting("CLIENT_TIMEOUT_S", 10.0)
            conn.sock = DeadlineSocket(conn.sock, deadline_s, silence_s)
        return super().enqueue_req(conn)

    def handle(self, conn):
        if isinstance(conn.sock, DeadlineSocket):
            conn.sock.start_request()
        return super().handle(conn)
