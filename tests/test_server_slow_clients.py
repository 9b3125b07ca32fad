"""Slow clients and malformed bodies under real gunicorn (server/gunicorn_conf.py), and start-up checks.

One gunicorn (one worker, four threads, MAX_IN_FLIGHT=1, clients cut off
after 2 s of silence, headers due within 1.5 s and every request within 3 s) on a free loopback port
serves the tiny model. Trickling clients are paced by waiting for the
server's answer with a short timeout, never by sleeping; every loop is bounded.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import REPO, encode, face_like, free_port, gunicorn_service
from helpers import request_json as request

pytestmark = [pytest.mark.process, pytest.mark.slow]

CLIENT_TIMEOUT_S = 2
HEADERS_DEADLINE_S = 1.5
DEADLINE_S = 3
LIMIT = 200_000
PACE_S = 0.4  # a byte this often: never silent long enough for CLIENT_TIMEOUT_S
STARTUP_S = 120.0


def gunicorn_command(port: int, threads: int = 4) -> list[str]:
    return [sys.executable, "-m", "gunicorn", "-c", "server/gunicorn_conf.py", "--workers", "1",
            "--threads", str(threads), "--bind", f"127.0.0.1:{port}", "server:create_app()"]


def service_env(model: Path, **settings) -> dict:
    return {**os.environ, "MODEL_PATH": str(model), "TF_CPP_MIN_LOG_LEVEL": "3", "FACE_DETECTION": "0",
            **{key: str(value) for key, value in settings.items()}}


@pytest.fixture(scope="module")
def gunicorn(tiny_model_path, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    with gunicorn_service(tiny_model_path, log, port, 4, STARTUP_S, FACE_DETECTION=0, CLIENT_TIMEOUT_S=CLIENT_TIMEOUT_S,
                          REQUEST_DEADLINE_S=DEADLINE_S, HEADERS_DEADLINE_S=HEADERS_DEADLINE_S, MAX_IN_FLIGHT=1,
                          MAX_CONTENT_LENGTH=LIMIT):
        yield port


def trickle(sock: socket.socket, data: bytes, limit_s: float) -> tuple[bytes, float]:
    """Send ``data`` a byte at a time, one every PACE_S, until the server answers or closes; (answer, seconds)."""
    started = time.monotonic()
    sock.settimeout(PACE_S)
    for index in range(len(data)):
        if time.monotonic() - started > limit_s:
            break
        try:
            sock.sendall(data[index : index + 1])
        except OSError:  # closed by the server
            return b"", time.monotonic() - started
        try:
            answer = sock.recv(300)
            return answer, time.monotonic() - started
        except TimeoutError:
            continue
        except OSError:
            return b"", time.monotonic() - started
    raise AssertionError(f"the server still listened after {time.monotonic() - started:.1f} s")


def test_a_client_trickling_its_body_is_cut_off_at_the_deadline_and_holds_no_admission_place(gunicorn):
    port = gunicorn
    sock = socket.create_connection(("127.0.0.1", port))
    try:
        head = (b"POST /v1/detect HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                b"Content-Length: 100000\r\n\r\n")
        sock.sendall(head)
        # While it trickles, the only admission place (MAX_IN_FLIGHT=1) is free for others.
        sock.sendall(b"\x89PNG")
        status, body = request(port, "POST", "/v1/detect", encode(face_like(1)), {"Content-Type": "image/png"})
        assert status == 200, body
        answer, seconds = trickle(sock, b"\x00" * 1000, limit_s=4 * DEADLINE_S)
    finally:
        sock.close()
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer
    assert seconds < DEADLINE_S + CLIENT_TIMEOUT_S + 2


def test_a_client_trickling_its_headers_is_cut_off_at_the_headers_deadline(gunicorn):
    sock = socket.create_connection(("127.0.0.1", gunicorn))
    try:
        answer, seconds = trickle(sock, b"GET /healthz HTTP/1.1\r\nX-Padding: " + b"a" * 1000, 4 * DEADLINE_S)
    finally:
        sock.close()
    assert answer == b"" or answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 408")), answer
    assert seconds < HEADERS_DEADLINE_S + 2 * PACE_S + 1.5  # well before the request's deadline


def chunked_post(port: int, chunks: bytes) -> tuple[int, dict]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                     b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunks)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, json.loads(response.read())


def test_malformed_chunked_encoding_is_a_400(gunicorn):
    status, body = chunked_post(gunicorn, b"zz\r\nhello\r\n0\r\n\r\n")
    assert status == 400, body
    assert body["error"]["code"] == "bad_request"


def test_a_chunked_body_over_the_limit_is_a_413_that_names_it(gunicorn):
    chunk = b"\x00" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(LIMIT // len(chunk) + 2)) + b"0\r\n\r\n"
    status, answer = chunked_post(gunicorn, body)
    assert status == 413, answer
    assert f"{LIMIT:,} bytes" in answer["error"]["message"]


def test_a_well_formed_chunked_upload_is_scored(gunicorn):
    image = encode(face_like(2))
    halves = image[:100], image[100:]
    status, body = chunked_post(gunicorn, b"".join(b"%x\r\n%s\r\n" % (len(h), h) for h in halves) + b"0\r\n\r\n")
    assert status == 200, body
    assert 0.0 <= body["probability_fake"] <= 1.0


@pytest.mark.parametrize("setting, value", [("MAX_BATCH_SIZE", "0"), ("INFERENCE_TIMEOUT_S", "nan"),
                                            ("ALLOWED_ORIGINS", "*"), ("CLIENT_TIMEOUT_S", "soon"),
                                            ("HEADERS_DEADLINE_S", "-1")])
def test_gunicorn_with_a_bad_setting_stops_with_one_line_before_loading_the_model(tiny_model_path, setting, value):
    env = service_env(tiny_model_path, **{setting: value})
    result = subprocess.run(gunicorn_command(free_port()), cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=STARTUP_S)
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"Error: cannot start the detection service: {setting} ")
    assert "Traceback" not in result.stderr and "Booting worker" not in result.stderr
