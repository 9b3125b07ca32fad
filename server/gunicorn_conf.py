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
loses its connection (a 408 when it stalled inside the body) and its thread
is free again. A client that keeps sending a byte now and then is cut off at
its request's deadline instead (from when the worker takes the request up:
``HEADERS_DEADLINE_S``, default 10 s, for the headers, ``REQUEST_DEADLINE_S``,
default 30 s, for the whole request): the worker class,
server/gunicorn_worker.py, gives every read only the time left until then.

Settings are checked in the master before any worker starts: a bad one
(``MAX_BATCH_SIZE=0``, ``INFERENCE_TIMEOUT_S=nan``, ``ALLOWED_ORIGINS=*``)
stops gunicorn with one line, ``Error: cannot start the detection service:
...``, and exit status 1.
"""

from __future__ import annotations

import ctypes
import os
import socket
import struct

from server.gunicorn_worker import seconds

worker_class = "server.gunicorn_worker.DeadlineThreadWorker"  # gthread, with a deadline per request
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
# More threads than MAX_IN_FLIGHT (32 requests): past capacity, requests reach
# admission control (server/admission.py) and get a fast 503 rather than
# waiting in gunicorn's own unbounded queue of accepted connections for a free thread.
threads = 64
# A worker that stops answering gunicorn's heartbeat this long is killed and replaced.
timeout = 60
graceful_timeout = 30
keepalive = 5
# A worker is replaced after this many requests (spread by the jitter, so that
# workers do not all restart at once): whatever memory the allocator kept
# from a burst of large images goes back to the system.
max_requests = 2000
max_requests_jitter = 200
# No gunicornc control socket: nothing here uses it, and two instances run
# by one user would contend for its default path.
control_socket_disable = True


def client_timeout_s() -> float:
    return seconds("CLIENT_TIMEOUT_S", 10.0)


# glibc's mallopt parameters (malloc.h).
M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8


def limit_malloc_retention() -> None:
    """Give the memory of large images back to the system once they are freed.

    By default glibc raises its mmap threshold after the first large block is
    freed, so later blocks (Pillow decodes into 16 MB ones) come from per-thread
    arenas that keep them: after 8 concurrent 7000 x 7000 uploads a worker kept
    1.3 GB. Blocks of 1 MiB and more are mmapped (a fixed threshold) and given
    back when freed, and at most two arenas are made.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    libc.mallopt(M_MMAP_THRESHOLD, 1 << 20)
    libc.mallopt(M_ARENA_MAX, 2)


def post_fork(server, worker) -> None:
    limit_malloc_retention()


def on_starting(server) -> None:
    """Check every setting before a worker loads the model; RuntimeError makes gunicorn print one line and exit 1."""
    from server import check_settings

    client_timeout_s()
    seconds("HEADERS_DEADLINE_S", 10.0)
    problem = check_settings()
    if problem is not None:
        raise RuntimeError(problem)


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
