"""Gunicorn settings for the detection service: ``gunicorn -c server/gunicorn_conf.py 'server:create_app()'``.

Threaded workers, so that concurrent requests in one process share forward
passes through the micro-batcher; about one worker per two cores, since
TensorFlow uses several threads per forward pass. Every value can be
overridden on the command line (``--workers 4``) or with ``GUNICORN_CMD_ARGS``.

Slow or stalled clients: a gthread worker reads headers and body on a
blocking socket with no timeout, so a handful of clients that send part of a
request and fall silent take every thread of the worker, and gunicorn's
``timeout`` does not notice (the worker itself is alive). Every connection
therefore gets kernel receive and send timeouts (``SO_RCVTIMEO`` and
``SO_SNDTIMEO``, inherited from the listening socket by each accepted one):
a client silent for ``CLIENT_TIMEOUT_S`` seconds (environment, default 10)
loses its connection (a 400 when it stalled inside the body) and its thread
is free again.
"""

from __future__ import annotations

import os
import socket
import struct

worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
# More threads than MAX_IN_FLIGHT (32 requests): past capacity, requests reach
# admission control (server/admission.py) and get a fast 503 rather than
# waiting in gunicorn's own unbounded queue of accepted connections for a free thread.
threads = 64
# A worker that stops answering gunicorn's heartbeat this long is killed and replaced.
timeout = 60
graceful_timeout = 30
keepalive = 5
# No gunicornc control socket: nothing here uses it, and two instances run
# by one user would contend for its default path.
control_socket_disable = True


def client_timeout_s() -> float:
    return float(os.environ.get("AIFACE_CLIENT_TIMEOUT_S", os.environ.get("CLIENT_TIMEOUT_S", "10")))


def bound_client_silence(listening_socket: socket.socket, seconds: float) -> None:
    whole = int(seconds)
    value = struct.pack("ll", whole, int((seconds - whole) * 1_000_000))
    listening_socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
    listening_socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)


def when_ready(server) -> None:
    seconds = client_timeout_s()
    for listener in server.LISTENERS:
        bound_client_silence(listener.sock, seconds)
    server.log.info("clients silent for %g s are disconnected", seconds)
