"""Faults under real gunicorn: a killed worker is replaced, stalled uploads do not wedge a worker.

One gunicorn (server/gunicorn_conf.py, one gthread worker with two threads,
clients cut off after 2 s of silence) on a free loopback port serves the
tiny model. Waits poll with a deadline; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest

from helpers import encode, face_like, free_port, gunicorn_service, request_json, wait_for

THREADS = 2
CLIENT_TIMEOUT_S = 2
DEADLINE_S = 60.0

# Real gunicorn in another process, waited on for up to a minute.
pytestmark = [pytest.mark.process, pytest.mark.slow]


def worker_pids(master: int) -> set[int]:
    """Live children of the gunicorn master, from /proc."""
    pids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master and fields[0] != "Z":
            pids.add(int(stat.parent.name))
    return pids


def request(port: int, method: str, path: str, body: bytes | None = None, content_type: str = "image/png"):
    return request_json(port, method, path, body, {"Content-Type": content_type} if body is not None else None)


@pytest.fixture(scope="module")
def gunicorn(tiny_model_path, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    with gunicorn_service(tiny_model_path, log, port, THREADS, DEADLINE_S,
                          CLIENT_TIMEOUT_S=CLIENT_TIMEOUT_S) as process:
        yield process, port


def stalled_upload(port: int, headers_only: bool = False) -> socket.socket:
    """A client that sends part of a request and then falls silent."""
    sock = socket.create_connection(("127.0.0.1", port))
    head = b"POST /v1/detect HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if headers_only:
        sock.sendall(head)
    else:
        sock.sendall(head + b"Content-Type: image/png\r\nContent-Length: 500000\r\n\r\n" + encode(face_like(1))[:200])
    return sock


def test_stalled_uploads_do_not_wedge_the_worker(gunicorn):
    process, port = gunicorn
    workers = worker_pids(process.pid)
    # More stalled clients than the worker has threads, some silent in the
    # body and some in the headers.
    stalled = [stalled_upload(port) for _ in range(THREADS)] + [stalled_upload(port, headers_only=True)]
    try:
        status, body = request(port, "POST", "/v1/detect", encode(face_like(2)))
        assert status == 200 and 0.0 <= body["probability_fake"] <= 1.0
        assert request(port, "GET", "/healthz")[0] == 200
        for sock in stalled[:THREADS]:
            sock.settimeout(DEADLINE_S)
            answer = sock.recv(200)
            # Cut off inside the body: a 408 (or a closed connection).
            assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer
        stalled[-1].settimeout(DEADLINE_S)
        assert stalled[-1].recv(200) == b""  # cut off inside the headers: closed
    finally:
        for sock in stalled:
            sock.close()
    assert worker_pids(process.pid) == workers  # served by the same worker, not a replacement


def test_worker_killed_mid_request_is_replaced_and_the_next_request_succeeds(gunicorn):
    process, port = gunicorn
    (worker,) = worker_pids(process.pid)
    in_flight = stalled_upload(port)  # a request the worker is reading when it dies
    try:
        os.kill(worker, signal.SIGKILL)
        in_flight.settimeout(DEADLINE_S)
        try:
            answer = in_flight.recv(200)
            # Killed while reading it, the worker takes the connection down unanswered. If the kill
            # came before the worker accepted it, the connection waits in the master's listening
            # socket and the replacement answers the half-sent body with a 408: never a hang.
            assert answer == b"" or answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 408"))
        except ConnectionResetError:
            pass
    finally:
        in_flight.close()
    replacement = wait_for(lambda: worker_pids(process.pid) - {worker}, "replacement worker", process, DEADLINE_S)
    assert worker not in replacement
    wait_for(lambda: request(port, "GET", "/healthz")[0] == 200, "healthy replacement", process, DEADLINE_S)
    status, body = request(port, "POST", "/v1/detect", encode(face_like(3)))
    assert status == 200 and body["model"]["name"] == "tiny-test"
